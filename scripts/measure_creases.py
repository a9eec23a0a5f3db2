"""How deep the furrows between the brows are after an edit takes a frown off, against the
person's own calm frames, and whether the lift flickers.

    python scripts/measure_creases.py [--clips ../shared/clips] [--names expr_d3.mp4 ...]
        [--emotion neutral]

Each clip is analysed as `spfem edit` analyses it and every frame with a face is edited to the
emotion twice, with the furrows lifted (`present` given to `edit_frame`) and without. Over the
glabella (`creases.glabella_weight` above one half, where the edit put the landmarks), the
furrow depth is the mean darkness of the detail between the crease's scale and the skin's
shading (`creases.CREASE_SCALE`, `SHADING_SCALE`), in log luminance. Printed per clip:

- the depth on the person's calm frames (no frown read: AU4 below 0.05), and on the frames the
  edit takes a frown off (`frown_share` above one half): the input, the edit without the lift
  and with it;
- the frame-to-frame change over the glabella (levels, mean over consecutive frames both
  with a frown taken off): the input, without the lift and with it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.creases import (
    CREASE_SCALE,
    SHADING_SCALE,
    frown_share,
    glabella_weight,
)
from spfem_cli.generator.expression import ExpressionModel
from spfem_cli.generator.generator import build_generator
from spfem_cli.generator.warp import face_box
from spfem_cli.media import FrameReader, probe
from spfem_cli.pipeline import analyse_video
from spfem_cli.progress import SilentReporter

DEFAULT_NAMES = ("expr_d3.mp4", "expr_d10.mp4", "expr_d14.mp4", "expr_d9.mp4")
CALM_AU4 = 0.05
LUMA = np.array([0.299, 0.587, 0.114])


def glabella(
    shape: tuple[int, ...], *, face: FaceFrame, points: np.ndarray
) -> tuple[tuple[slice, slice], np.ndarray]:
    """Where the glabella lies in a frame of shape (H, W, ...): the crop around the face
    (rows, columns) and the mask of its pixels where `glabella_weight` > 0.5."""
    h, w = shape[:2]
    x0, y0, x1, y1 = face_box(face.to_image(points), width=w, height=h, margin=0.0)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    query = face.to_face(np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64))
    inside = (glabella_weight(query, points=points) > 0.5).reshape(y1 - y0, x1 - x0)
    return (slice(y0, y1), slice(x0, x1)), inside


def furrow_depth(
    frame: np.ndarray, *, crop: tuple[slice, slice], inside: np.ndarray, iod: float
) -> float:
    """The mean furrow darkness (log luminance, >= 0) of frame (H, W, 3) uint8 over the
    glabella's pixels (`glabella`)."""
    lum = np.log(frame[crop].astype(np.float64) @ LUMA + 1.0)
    band = gaussian_filter(lum, CREASE_SCALE * iod) - gaussian_filter(lum, SHADING_SCALE * iod)
    return float(np.maximum(-band[inside], 0.0).mean())


def measure(path: Path, *, emotion: str) -> None:
    model = ExpressionModel.load()
    gen = build_generator(model=model, device=torch.device("cpu"), kind="warp")
    info = probe(path)
    target = model.emotion_vector(emotion).double().numpy()
    a4 = model.au_names.index("AU4")
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
                if present[a4] < CALM_AU4:
                    crop, inside = glabella(frame.shape, face=face, points=points)
                    depth["calm"].append(
                        furrow_depth(frame, crop=crop, inside=inside, iod=face.iod)
                    )
                share = frown_share(deltas[t], present=present, au_names=model.au_names)
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
                crop, inside = glabella(frame.shape, face=face, points=moved)
                for name, out in outs.items():
                    depth[name].append(furrow_depth(out, crop=crop, inside=inside, iod=face.iod))
                if before is not None:
                    for name, out in outs.items():
                        diff = np.abs(out[crop].astype(int) - before[name][crop]).mean(axis=-1)
                        change[name].append(float(diff[inside].mean()))
                before = outs
    mean = {k: np.mean(v) if v else float("nan") for k, v in depth.items()}
    print(
        f"{path.name}, {emotion}: furrow depth (log luminance) calm frames {mean['calm']:.4f} "
        f"({len(depth['calm'])}); frown taken off ({len(depth['input'])} frames): input "
        f"{mean['input']:.4f}, without the lift {mean['plain']:.4f}, lifted {mean['lifted']:.4f}"
    )
    if change["input"]:
        print(
            "  frame-to-frame change over the glabella, levels: "
            + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in change.items())
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=Path("../shared/clips"))
    parser.add_argument("--names", nargs="*", default=list(DEFAULT_NAMES))
    parser.add_argument("--emotion", default="neutral")
    args = parser.parse_args()
    for name in args.names:
        measure(args.clips / name, emotion=args.emotion)


if __name__ == "__main__":
    main()
