"""How deep the creases are after an edit takes off the expression that pressed them (the
frown's furrows, the smile's folds), against the person's own calm frames, and whether the
lift flickers.

    python scripts/measure_creases.py [--clips ../shared/clips] [--names expr_d3.mp4 ...]
        [--emotion neutral] [--crease furrows|"eye lines"|"forehead lines"]

Each clip is analysed as `spfem edit` analyses it and every frame with a face is edited to the
emotion twice, with the creases lifted (`present` given to `edit_frame`) and without. Over the
crease's region (`Crease.weight` above one half, where the edit put the landmarks), the crease
depth is the mean darkness of the detail between the crease's scale and the skin's shading
(`creases.crease_depth`), in log luminance. Printed per clip:

- the depth on the person's calm frames (the crease's action units below 0.05 together), and
  on the frames the edit takes at least half of them off (`share_taken_off`): the input,
  the edit without the lift and with it;
- the frame-to-frame change over the region (levels, mean over consecutive frames both with
  the action units taken off): the input, without the lift and with it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from spfem_cli.generator.creases import (
    CREASES,
    Crease,
    crease_depth,
    crease_region,
    share_taken_off,
)
from spfem_cli.generator.expression import ExpressionModel
from spfem_cli.generator.generator import build_generator
from spfem_cli.media import FrameReader, probe
from spfem_cli.pipeline import analyse_video
from spfem_cli.progress import SilentReporter

DEFAULT_NAMES = {
    "furrows": ("expr_d3.mp4", "expr_d10.mp4", "expr_d14.mp4", "expr_d9.mp4"),
    "eye lines": ("expr_d0.mp4", "expr_d3.mp4", "expr_d19.mp4", "talk_s32_1280x720.mp4"),
    "forehead lines": ("expr_d3.mp4", "expr_d9.mp4", "expr_d12.mp4"),
}
CALM = 0.05


def measure(path: Path, *, emotion: str, crease: Crease) -> None:
    model = ExpressionModel.load()
    gen = build_generator(model=model, device=torch.device("cpu"), kind="warp")
    info = probe(path)
    target = model.emotion_vector(emotion).double().numpy()
    idx = [model.au_names.index(name) for name in crease.aus]
    depth: dict[str, list[float]] = {"calm": [], "input": [], "plain": [], "lifted": []}
    change: dict[str, list[float]] = {"input": [], "plain": [], "lifted": []}
    with tempfile.TemporaryDirectory() as tmp:
        analysis = analyse_video(info, model=model, workdir=Path(tmp), reporter=SilentReporter())
        track = analysis.track
        deltas = analysis.deltas(target=target, weights=np.ones(track.n_frames))
        before: dict[str, np.ndarray] | None = None
        with FrameReader(info) as reader:
            for t, frame in enumerate(reader):
                if not track.valid[t]:
                    before = None
                    continue
                face, points = track.frame(t), np.asarray(track.norm[t], np.float64)
                present = analysis.current[t]
                if present[idx].sum() < CALM:
                    crop, inside = crease_region(
                        frame.shape, crease=crease, face=face, points=points
                    )
                    depth["calm"].append(
                        crease_depth(frame, crease=crease, window=crop, inside=inside, iod=face.iod)
                    )
                share = share_taken_off(
                    deltas[t], present=present, au_names=model.au_names, aus=crease.aus
                )
                if share < 0.5:
                    before = None
                    continue
                kw = {"face": face, "points": points, "delta": deltas[t], "rims": analysis.rims}
                outs = {
                    "input": frame,
                    "plain": gen.edit_frame(frame, **kw),
                    "lifted": gen.edit_frame(frame, present=present, **kw),
                }
                moved = points + gen.displacement(deltas[t], points=points)
                crop, inside = crease_region(frame.shape, crease=crease, face=face, points=moved)
                for name, out in outs.items():
                    depth[name].append(
                        crease_depth(out, crease=crease, window=crop, inside=inside, iod=face.iod)
                    )
                if before is not None:
                    for name, out in outs.items():
                        diff = np.abs(out[crop].astype(int) - before[name][crop]).mean(axis=-1)
                        change[name].append(float(diff[inside].mean()))
                before = outs
    mean = {k: np.mean(v) if v else float("nan") for k, v in depth.items()}
    print(
        f"{path.name}, {emotion}: {crease.name} depth (log luminance) calm frames "
        f"{mean['calm']:.4f} ({len(depth['calm'])}); {'+'.join(crease.aus)} taken off "
        f"({len(depth['input'])} frames): input {mean['input']:.4f}, without the lift "
        f"{mean['plain']:.4f}, lifted {mean['lifted']:.4f}"
    )
    if change["input"]:
        print(
            f"  frame-to-frame change over the {crease.name}, levels: "
            + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in change.items())
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=Path("../shared/clips"))
    parser.add_argument("--names", nargs="*")
    parser.add_argument("--emotion", default="neutral")
    kinds = {crease.name: crease for crease in CREASES}
    parser.add_argument("--crease", choices=list(kinds), default="furrows")
    args = parser.parse_args()
    crease = kinds[args.crease]
    for name in args.names or DEFAULT_NAMES[args.crease]:
        measure(args.clips / name, emotion=args.emotion, crease=crease)


if __name__ == "__main__":
    main()
