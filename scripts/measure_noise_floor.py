"""What the present expression's noise floor trades: calming a face against inventing.

    python scripts/measure_noise_floor.py [--clips ../shared/clips] [--floors 0.15 0.1 0.05 0]

An edit takes off the expression already on the face, counted from the person's rest less a
noise floor (`present_expression`, NOISE_FLOOR activation units). For each floor:

1. Calming: the smiling speaker (talk_s32) edited to "neutral"; the slow movement of her upper
   face above her calmest state, re-read on the output, per replaced AU and in all, and as a
   share of the input's (`slow_movement`; `test_neutral_calms_an_expressive_face` asks for
   less than 0.8 at the shipped floor).
2. Inventing: on calm speakers, the expression each floor reads as present (median and 90th
   percentile over the frames, per replaced AU, in activation units after the detector-gain
   correction): what an edit would take off where little is there to take off.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from spfem_cli.evaluate import slow_movement, video_landmarks
from spfem_cli.generator.expression import (
    NOISE_FLOOR,
    REPLACED_AUS,
    ExpressionModel,
    present_expression,
)
from spfem_cli.generator.generator import FaceGenerator
from spfem_cli.media import probe
from spfem_cli.pipeline import (
    EXPRESSION_SMOOTHING_S,
    analyse_video,
    render_video,
    slow_activations,
)
from spfem_cli.progress import SilentReporter

SMILING = "talk_s32_1280x720.mp4"
CALM = (
    "talk_s18_1280x720.mp4",
    "talk_s20_480x908.mp4",
    "speech_obama_450x450.mp4",
    "speech_man_256x256.mp4",
)


def calming(clips: Path, floors: list[float], model: ExpressionModel) -> None:
    clip = clips / SMILING
    info = probe(clip)
    lm_in = video_landmarks(clip)
    generator = FaceGenerator(model=model, device=torch.device("cpu"))
    print(f"\n{SMILING} to neutral: slow movement above her calmest state")
    names = " ".join(f"{n:>6}" for n in REPLACED_AUS)
    print(f"{'floor':>6} {names} {'all':>6} {'share':>6}")
    with tempfile.TemporaryDirectory(prefix="spfem-floor-") as tmp:
        work = Path(tmp)
        analysis = analyse_video(info, model=model, workdir=work, reporter=SilentReporter())
        acts = slow_activations(
            analysis.track, model=model, sigma_frames=EXPRESSION_SMOOTHING_S * float(info.fps)
        )
        spread_in = None
        for floor in floors:
            current = present_expression(
                acts, au_names=model.au_names, valid=analysis.track.valid, noise_floor=floor
            )
            edit = replace(analysis, current=current)
            deltas = edit.deltas(
                target=np.zeros(len(model.au_names)), weights=np.ones(analysis.track.n_frames)
            )
            out = work / f"neutral-{floor}.mp4"
            render_video(
                edit, generator=generator, deltas=deltas, output=out, workdir=work,
                preset="veryfast",
            )  # fmt: skip
            spread_in, spread_out = slow_movement(
                lm_in, video_landmarks(out), fps=float(info.fps), model=model
            )
            print(
                f"{floor:6.2f} "
                + " ".join(f"{v:6.3f}" for v in spread_out)
                + f" {spread_out.sum():6.3f} {spread_out.sum() / spread_in.sum():6.2f}",
                flush=True,
            )
        if spread_in is not None:
            print(
                f"{'input':>6} "
                + " ".join(f"{v:6.3f}" for v in spread_in)
                + f" {spread_in.sum():6.3f} {1:6.2f}"
            )


def inventing(clips: Path, floors: list[float], model: ExpressionModel) -> None:
    print("\ncalm speakers: the expression read as present, median / 90th percentile")
    print(f"{'clip':<26} {'floor':>5} " + " ".join(f"{n:>9}" for n in REPLACED_AUS))
    cols = [model.au_names.index(n) for n in REPLACED_AUS]
    for name in CALM:
        info = probe(clips / name)
        with tempfile.TemporaryDirectory(prefix="spfem-floor-") as tmp:
            analysis = analyse_video(
                info, model=model, workdir=Path(tmp), reporter=SilentReporter()
            )
        valid = analysis.track.valid
        acts = slow_activations(
            analysis.track, model=model, sigma_frames=EXPRESSION_SMOOTHING_S * float(info.fps)
        )
        for floor in floors:
            present = present_expression(
                acts, au_names=model.au_names, valid=valid, noise_floor=floor
            )[valid][:, cols]
            cells = [
                f"{np.percentile(present[:, j], 50):4.2f}/{np.percentile(present[:, j], 90):4.2f}"
                for j in range(len(cols))
            ]
            print(f"{name:<26} {floor:5.2f} " + " ".join(f"{c:>9}" for c in cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--clips", type=Path, default=root.parent / "shared" / "clips")
    parser.add_argument("--floors", type=float, nargs="+", default=[NOISE_FLOOR, 0.10, 0.05, 0.0])
    args = parser.parse_args()
    model = ExpressionModel.load()
    calming(args.clips, args.floors, model)
    inventing(args.clips, args.floors, model)


if __name__ == "__main__":
    main()
