"""Frames per second of the generator alone, warp and warp + refiner, and the refiner network's
cost in milliseconds per frame, on any torch device.

    python scripts/benchmark_generator.py [--device cpu|cuda] [--frames 60]
    python scripts/benchmark_generator.py --save-landmarks lm.npz      # where MediaPipe is
    python scripts/benchmark_generator.py --landmarks lm.npz --device cuda   # where it is not

The generator edits a frame from its landmarks, so it can be timed on a machine without
MediaPipe (a rented GPU box): track the clips' first frames where MediaPipe is, save their
landmarks, and time the generator there from the file. `scripts/benchmark.py` times the whole
edit, tracking and encoding included, where everything is installed.

Frames are the clips' own decoded frames when the clips are at hand, else frames of random
texture of the clips' size (said in the output): the generator's cost follows the face's size
in the frame, which the landmarks give, not the pixels. The refiner is an untrained one of the
default architecture (none ships yet), or `--refiner FILE`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.device import resolve_device
from spfem_cli.generator.expression import ExpressionModel
from spfem_cli.generator.generator import FaceGenerator
from spfem_cli.generator.refiner import Refiner, RefinerConfig

CLIPS_DIR = Path(__file__).resolve().parents[2] / "shared" / "clips"
DEFAULT_CLIPS = ("talk_s32_1280x720.mp4", "talk_mead_sad_1920x1080.mp4")


def track_clip(path: Path, n_frames: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Landmarks (T, 478, 2) in pixels of the first frames with a face (up to n_frames), and
    the frame size (height, width). Needs MediaPipe."""
    from spfem_cli.face.tracker import LandmarkTracker
    from spfem_cli.media import FrameReader, probe

    info = probe(path)
    marks = []
    with FrameReader(info) as reader, LandmarkTracker() as tracker:
        for i, frame in enumerate(reader):
            if i >= n_frames:
                break
            det = tracker.detect(frame)
            if det is not None:
                marks.append(det.landmarks[:, :2])
    return np.asarray(marks, np.float32), (info.height, info.width)


def clip_frames(name: str, size: tuple[int, int], n_frames: int) -> tuple[list[np.ndarray], bool]:
    """The clip's first frames (H, W, 3) uint8 when the clip and a decoder are at hand, else
    four frames of random texture of its size; and whether they are the clip's own."""
    path = CLIPS_DIR / name
    try:
        from spfem_cli.media import FrameReader, probe

        if path.is_file():
            frames = []
            with FrameReader(probe(path)) as reader:
                for i, frame in enumerate(reader):
                    if i >= n_frames:
                        break
                    frames.append(frame)
            return frames, True
    except ImportError:  # no imageio-ffmpeg on this machine
        pass
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(*size, 3), dtype=np.uint8) for _ in range(4)], False


def generator_fps(
    gen: FaceGenerator, frames: list[np.ndarray], marks: np.ndarray, delta: np.ndarray
) -> float:
    """Frames per second of `gen.edit_frame` over the landmarks (after three warm-up frames)."""

    def edit(k: int) -> None:
        pts = marks[k].astype(np.float64)
        face = FaceFrame.from_landmarks(pts)
        gen.edit_frame(frames[k % len(frames)], face=face, points=face.to_face(pts), delta=delta)

    for k in range(min(3, len(marks))):
        edit(k)
    sync(gen.warper.device)
    t0 = time.perf_counter()
    for k in range(len(marks)):
        edit(k)
    sync(gen.warper.device)
    return len(marks) / (time.perf_counter() - t0)


def network_ms(net: Refiner, device: torch.device, batch: int, repeats: int) -> float:
    """Milliseconds per frame of the refiner network alone on a batch of crops."""
    size = net.config.crop.size
    x = torch.zeros(batch, 10, size, size, device=device)
    aus = torch.zeros(batch, net.config.n_aus, device=device)
    with torch.no_grad():
        for _ in range(3):
            net(x, aus)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            net(x, aus)
        sync(device)
    return 1000 * (time.perf_counter() - t0) / repeats / batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS), help="clip names")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--landmarks", type=Path, help="landmarks saved by --save-landmarks")
    parser.add_argument("--save-landmarks", type=Path, help="track the clips, save, and go on")
    parser.add_argument("--refiner", type=Path, help="refiner checkpoint (default: untrained)")
    args = parser.parse_args(argv)

    if args.landmarks:
        with np.load(args.landmarks) as saved:
            tracked = {
                name: (saved[f"{name}/landmarks"][: args.frames], tuple(saved[f"{name}/size"]))
                for name in args.clips
            }
    else:
        tracked = {name: track_clip(CLIPS_DIR / name, args.frames) for name in args.clips}
    if args.save_landmarks:
        np.savez(
            args.save_landmarks,
            **{f"{n}/landmarks": m for n, (m, _) in tracked.items()},
            **{f"{n}/size": np.array(s) for n, (_, s) in tracked.items()},
        )
        print(f"saved the landmarks of {len(tracked)} clips to {args.save_landmarks}")

    device = resolve_device(args.device)
    model = ExpressionModel.load()
    delta = model.emotion_vector("happy", intensity=1.0).double().numpy()
    net = (Refiner.load(args.refiner) if args.refiner else Refiner(RefinerConfig())).to(device)
    generators = {
        "warp": FaceGenerator(model=model, device=device),
        "refiner": FaceGenerator(model=model, device=device, refiner=net),
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}, {torch.get_num_threads()} torch threads")
    for clip, (marks, size) in tracked.items():
        frames, own = clip_frames(clip, size, args.frames)
        what = "its own frames" if own else "frames of random texture"
        fps = {kind: generator_fps(g, frames, marks, delta) for kind, g in generators.items()}
        print(
            f"{clip} ({size[1]}x{size[0]}, {len(marks)} frames, {what}): "
            f"generate/warp {fps['warp']:.1f} fps, generate/refiner {fps['refiner']:.1f} fps"
        )
    repeats = 50 if device.type == "cuda" else 5
    for batch in (1, 32):
        print(
            f"refiner network {net.config.channels}, batch {batch}: "
            f"{network_ms(net, device, batch, repeats):.2f} ms a frame"
        )


if __name__ == "__main__":
    main()
