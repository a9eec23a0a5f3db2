"""How much of each lid AU (wide eyes, a squint) an edit reads as already on the face.

    python scripts/measure_lids.py [--clips ../shared/clips] [--names expr_d14.mp4 ...]
        [--frames expr_d14.mp4:73,75 ...]

An edit takes off the expression it reads on the face (`present_expression`). The lid AUs
(`LID_READINGS`: the upper lid raiser AU5, the lid tightener AU7) are read off the lids'
clearance from the irises (`lid_heights`, as `pipeline.slow_activations` reads them); they
used to be read off the fit of all the landmarks, like the other AUs, the lid tightener's
undone through FaceMesh's small gain on warped lids. For each clip this prints each lid AU
present (activation units) at the median frame, on one frame in ten (90th percentile) and at
its largest, both ways. For each clip:frames given, the frames are edited to neutral and
FaceMesh, finding the face afresh on the input and on the output, reads how far the upper lids
stand above the irises (IOD): the drop is what the edit took off as FaceMesh sees it. About
ten seconds a clip on two cores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from spfem_cli.evaluate import lid_clearance_seen
from spfem_cli.face.track import chunks, smooth_valid
from spfem_cli.face.tracker import LandmarkTracker
from spfem_cli.generator.expression import (
    GAIN_RIDGE,
    LID_READINGS,
    MAX_PRESENT,
    MIN_GAIN,
    NOISE_FLOOR,
    REST_PERCENTILE,
    ExpressionModel,
    present_expression,
)
from spfem_cli.generator.generator import FaceGenerator
from spfem_cli.media import FrameReader, probe
from spfem_cli.pipeline import EXPRESSION_SMOOTHING_S, Analysis, analyse_video, signed_activations
from spfem_cli.progress import SilentReporter

NAMES = (
    "expr_d14.mp4",
    "expr_d10.mp4",
    "expr_d9.mp4",
    "expr_d3.mp4",
    "expr_d12.mp4",
    "talk_s32_1280x720.mp4",
    "talk_s20_480x908.mp4",
    "talk_s18_1280x720.mp4",
    "speech_obama_450x450.mp4",
    "speech_man_256x256.mp4",
)
FRAMES = ("expr_d14.mp4:73,75", "expr_d9.mp4:510", "expr_d10.mp4:347")


def fitted(analysis: Analysis, model: ExpressionModel) -> np.ndarray:
    """(T, K) the present expression with the lids read off the fit of all the landmarks, and
    the lid tightener undone through FaceMesh's gain on warped lids, as before."""
    track = analysis.track
    acts = np.zeros((track.n_frames, model.num_aus))
    median = torch.from_numpy(track.median_frontal()).float()
    for start, end in chunks(track.n_frames):
        offsets = torch.from_numpy(np.asarray(track.frontal[start:end], np.float32)) - median
        with torch.no_grad():
            acts[start:end] = signed_activations(model, offsets).numpy()
    acts = smooth_valid(acts, track.valid, EXPRESSION_SMOOTHING_S * float(analysis.info.fps))
    present = present_expression(acts, au_names=model.au_names, valid=track.valid)
    tight = model.au_names.index("AU7")
    rest = np.percentile(acts[track.valid, tight], REST_PERCENTILE)
    excess = np.clip(acts[:, tight] - rest - NOISE_FLOOR, 0.0, None)
    # Its gain was solved alone, by ridge least squares at MIN_GAIN.
    undone = excess / (MIN_GAIN * (1.0 + GAIN_RIDGE))
    present[:, tight] = np.clip(undone, 0.0, MAX_PRESENT) * track.valid
    return present


def redetect(analysis: Analysis, model: ExpressionModel, frames: list[int]) -> None:
    gen = FaceGenerator(model=model, device=torch.device("cpu"))
    track = analysis.track
    target = model.emotion_vector("neutral").double().numpy()
    deltas = analysis.deltas(target=target, weights=np.ones(track.n_frames))
    lid = model.au_names.index("AU5")
    with FrameReader(analysis.info) as reader, LandmarkTracker(video_mode=False) as tracker:
        for t, frame in enumerate(reader):
            if t in frames:
                out = analysis.edit_frame(frame, t, generator=gen, delta=deltas[t])
                before, after = lid_clearance_seen(tracker, frame), lid_clearance_seen(tracker, out)
                print(
                    f"  frame {t}: lid raise taken off {-deltas[t, lid]:.2f}; FaceMesh reads "
                    f"the lids {before:+.4f} IOD above the irises on the input, "
                    f"{after:+.4f} on the output (drop {before - after:.4f})"
                )
            if t >= max(frames):
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=Path("../shared/clips"))
    parser.add_argument("--names", nargs="+", default=list(NAMES))
    parser.add_argument("--frames", nargs="*", default=list(FRAMES))
    args = parser.parse_args()
    picks: dict[str, list[int]] = {}
    for spec in args.frames:
        name, _, frames = spec.partition(":")
        picks[name] = [int(f) for f in frames.split(",")]
    model = ExpressionModel.load()
    lids = {au: model.au_names.index(au) for au in LID_READINGS}
    head = "  ".join(f"{au + ' lids':>16s} {au + ' fit':>16s}" for au in lids)
    print(f"{'clip':28s} {head}    (median / p90 / max)")
    for name in dict.fromkeys([*args.names, *picks]):
        with tempfile.TemporaryDirectory(prefix="spfem-") as tmp:
            analysis = analyse_video(
                probe(args.clips / name),
                model=model,
                workdir=Path(tmp),
                reporter=SilentReporter(),
            )
            valid = analysis.track.valid
            old = fitted(analysis, model)
            cells = []
            for k in lids.values():
                for read in (analysis.current[valid, k], old[valid, k]):
                    cells.append(
                        f"{np.median(read):.2f}/{np.percentile(read, 90):.2f}/{read.max():.2f}"
                    )
            print(f"{name:28s} " + "  ".join(f"{c:>16s}" for c in cells))
            if name in picks:
                redetect(analysis, model, picks[name])


if __name__ == "__main__":
    main()
