"""How much of a warped action-unit change FaceMesh reports, per AU, on real faces.

    python scripts/measure_detector_gain.py [--clips ../shared/clips] [--frames 3]
        [--names speech_obama_450x450.mp4 ...] [--step 1.0] [--brow-clips expr_d10.mp4 ...]

For each clip it takes ``--frames`` frames spread over the clip, warps each by one AU at a time
(``+step`` and ``-step`` activation units) and re-estimates the AU on the edited frame
(`spfem_cli.evaluate.detector_gain`). It prints the gain per clip and the mean and standard
deviation over all frames (1 means FaceMesh reports all of the motion), then the whole matrix:
how much of each AU is read when one is warped. `spfem edit` turns the expression it reads off
a face back through the ``-step`` matrix of the brow and lid-tightener AUs
(`spfem_cli.generator.expression.DETECTOR_GAIN`, `undo_detector_gain`).

Then, on clips where real people raise and lower their brows (``--brow-clips``), it compares
how far FaceMesh's brow points move with how far the brow moves in the image (the darkest row
near each brow point, searched 0.15 IOD up and down): the slope of the image's brow height on
FaceMesh's, over every frame (1: FaceMesh follows real brows in full).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from spfem_cli.evaluate import detector_gain
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.face.tracker import LandmarkTracker
from spfem_cli.generator.expression import (
    DETECTOR_GAIN,
    DETECTOR_GAIN_AUS,
    REPLACED_AUS,
    ExpressionModel,
)
from spfem_cli.generator.generator import FaceGenerator
from spfem_cli.generator.warp import sample_flow
from spfem_cli.media import FrameReader, probe

BROW_CLIPS = ("expr_d0.mp4", "expr_d3.mp4", "expr_d9.mp4", "expr_d10.mp4", "expr_d14.mp4")
# The middle of each brow's upper edge (subject's right, left).
BROW_POINTS = (105, 334)
DEFAULT_NAMES = (
    "speech_obama_450x450.mp4",
    "speech_man_256x256.mp4",
    "talk_mead_sad_1920x1080.mp4",
    "talk_s18_1280x720.mp4",
    "talk_s32_1280x720.mp4",
    "talk_s20_480x908.mp4",
    "mead_emotions/happy.mp4",
    "mead_emotions/surprised.mp4",
    "expr_d12.mp4",
)


def sample_frames(path: Path, count: int) -> list[np.ndarray]:
    """`count` frames spread evenly over the video (RGB uint8)."""
    info = probe(path)
    wanted = set(np.linspace(0, info.n_frames - 1, count + 2)[1:-1].round().astype(int))
    with FrameReader(info) as reader:
        return [f for t, f in enumerate(itertools.islice(reader, max(wanted) + 1)) if t in wanted]


def image_brow_height(frame: np.ndarray, face: FaceFrame, points: np.ndarray) -> float:
    """Mean face-frame y (IOD) of the darkest row near each of BROW_POINTS in the image, over
    three columns per brow; points: (478, 2) face-frame landmarks of the frame."""
    image = torch.from_numpy(frame).permute(2, 0, 1).float()
    offsets = np.linspace(-0.15, 0.15, 61)
    found = []
    for idx in BROW_POINTS:
        for dx in (-0.04, 0.0, 0.04):
            column = np.stack(
                [np.full_like(offsets, points[idx, 0] + dx), points[idx, 1] + offsets], axis=1
            )
            px = torch.from_numpy(face.to_image(column)).float()
            values = sample_flow(image, px).mean(dim=1).numpy()
            values = np.convolve(values, np.ones(5) / 5, mode="same")[3:-3]
            found.append(points[idx, 1] + offsets[3 + int(np.argmin(values))])
    return float(np.mean(found))


def real_brow_slope(path: Path) -> tuple[float, float, float]:
    """FaceMesh's brow range, the image's (5th to 95th percentile, IOD) and the slope of the
    image's brow height on FaceMesh's over the frames of a real clip."""
    mesh_y, image_y = [], []
    with FrameReader(probe(path)) as reader, LandmarkTracker() as tracker:
        for frame in reader:
            det = tracker.detect(frame)
            if det is None:
                continue
            face = FaceFrame.from_landmarks(det.landmarks)
            points = face.to_face(det.landmarks.astype(np.float64))
            mesh_y.append(points[list(BROW_POINTS), 1].mean())
            image_y.append(image_brow_height(frame, face, points))
    m, i = np.array(mesh_y), np.array(image_y)
    spread = np.subtract(*np.percentile(np.stack([m, i]), [95, 5], axis=1))
    return float(spread[0]), float(spread[1]), float(np.polyfit(m - m.mean(), i - i.mean(), 1)[0])


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=here.parent / "shared" / "clips")
    parser.add_argument("--names", nargs="+", default=list(DEFAULT_NAMES))
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--step", type=float, default=1.0)
    parser.add_argument("--brow-clips", nargs="*", default=list(BROW_CLIPS))
    args = parser.parse_args()

    model = ExpressionModel.load()
    generator = FaceGenerator(model=model, device=torch.device("cpu"))
    aus = REPLACED_AUS
    rows: dict[float, list[np.ndarray]] = {args.step: [], -args.step: []}
    print(f"{'clip':32s} {'step':>5s} " + " ".join(f"{a:>6s}" for a in aus))
    for name in args.names:
        for step in rows:
            gains = [
                g
                for frame in sample_frames(args.clips / name, args.frames)
                if (g := detector_gain(frame, generator=generator, aus=aus, step=step)) is not None
            ]
            if not gains:
                print(f"{name[:32]:32s} {step:+5.1f} no face")
                continue
            rows[step].extend(gains)
            mean = np.mean(gains, axis=0)
            print(f"{name[:32]:32s} {step:+5.1f} " + " ".join(f"{v:6.2f}" for v in mean.diagonal()))

    def row(label: str, step: str, values: Iterable[float]) -> None:
        print(f"{label:32s} {step:>5s} " + " ".join(f"{v:6.2f}" for v in values))

    for step, gains in rows.items():
        g = np.array(gains)
        row(f"mean over {len(g)} frames", f"{step:+.1f}", g.mean(axis=0).diagonal())
        row("  standard deviation", "", g.std(axis=0).diagonal())
    for step, gains in rows.items():
        print(f"\nstep {step:+.1f}, mean over all frames: row = AU applied, column = AU read")
        for name, values in zip(aus, np.mean(gains, axis=0), strict=True):
            row(name, "", values)
    print("\nDETECTOR_GAIN in spfem edit: row = AU applied, column = AU read")
    for name, values in zip(DETECTOR_GAIN_AUS, DETECTOR_GAIN, strict=True):
        print(f"{name:32s} {'':>5s} " + " ".join(f"{v:6.2f}" for v in values))

    if args.brow_clips:
        print("\nreal brows: FaceMesh's brow points against the brow in the image (IOD)")
        print(f"{'clip':32s} {'FaceMesh range':>15s} {'image range':>12s} {'slope':>6s}")
        for name in args.brow_clips:
            mesh_range, image_range, slope = real_brow_slope(args.clips / name)
            print(f"{name[:32]:32s} {mesh_range:15.3f} {image_range:12.3f} {slope:6.2f}")


if __name__ == "__main__":
    main()
