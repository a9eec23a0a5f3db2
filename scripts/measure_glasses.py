"""Which clips wear glasses, as `spfem edit` finds them; and whether an edit keeps them still.

    python scripts/measure_glasses.py [--clips ../shared/clips] [--sheet rims.png] [--edit]
        [--steadiness SECONDS] [--gaps]

For every clip: the rim score (the weaker eye's lower-arc ridge response over the tile's
median, `spfem_cli.face.glasses`, the median over frames spread over the clip), whether
that makes glasses (RIM_SCORE or more), on what share of those frames both rims could be
traced, and so whether an edit keeps them still. With --sheet, a PNG of a middle frame of
every clip, in the face frame, with the kept rims followed onto it drawn in red.

With --edit, every clip whose rims an edit keeps is edited on eight frames spread over it to
each emotion that moves the brows, with the rims kept (as `spfem edit` does) and without:

- rim kept: along the rims' upper halves traced on the input, the ridge response on the
  output over the input's (1: the rim is where it was, as sharp; a rim moved off its line
  leaves less);
- brows: how far up the brows moved, re-detected by FaceMesh, in IOD (negative: down).

With --steadiness S, the first S seconds of every such clip are edited to surprise frame after
frame, as `spfem edit` does, and the script prints how much the band along the rims' upper
halves (traced on the input, 4 pixels either side) changes from one frame to the next, in RGB
levels: on the input; with the rims kept and traced afresh on each frame (`Rims`); with them
kept and held steady (`SteadyRims`, what an edit does); and with them warped with the skin;
and the median rim kept of the two ways of keeping them.

With --gaps, every frame of every such clip is traced in order, as an edit traces them, and
the script prints the frames on which a rim is left out: with a rim hidden by a blurred frame
carried with the head (`SteadyRims`, what an edit does) and without.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from spfem_cli.evaluate import FrameChange, brow_rise, rim_kept, upper_rims
from spfem_cli.face.glasses import (
    MIN_TRACED_SHARE,
    RIM_SCORE,
    RimFinder,
    Rims,
    SteadyRims,
    face_tile,
)
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.face.tracker import LandmarkTracker
from spfem_cli.generator.expression import ExpressionModel
from spfem_cli.generator.generator import FaceGenerator
from spfem_cli.media import FrameReader, probe
from spfem_cli.pipeline import Analysis, analyse_video
from spfem_cli.progress import SilentReporter


def clip_paths(root: Path) -> list[Path]:
    return sorted(root.glob("*.mp4")) + sorted(root.glob("*/*.mp4"))


def measure(path: Path) -> tuple[RimFinder, np.ndarray | None, tuple[np.ndarray, ...]]:
    """The finder fed as an edit feeds it, a middle frame's face-frame tile (None: no face)
    and the rims followed onto that frame (none when they are not kept)."""
    info = probe(path)
    finder = RimFinder(n_frames=info.n_frames)
    seen = []
    with FrameReader(info) as reader, LandmarkTracker() as tracker:
        for t, frame in enumerate(reader):
            if t % finder.stride:
                continue
            found = tracker.detect(frame)
            if found is None:
                continue
            finder.offer(t, frame, found.landmarks)
            seen.append((frame, FaceFrame.from_landmarks(found.landmarks)))
    if not seen:
        return finder, None, ()
    frame, face = seen[len(seen) // 2]
    rims = finder.rims()
    loops = () if rims is None else rims.locate(frame, face)
    return finder, face_tile(frame, face), loops


def draw(tile: np.ndarray, loops: tuple[np.ndarray, ...]) -> np.ndarray:
    """(h, w, 3) uint8: the grey tile with the loops in red."""
    from spfem_cli.face.glasses import tile_pixels

    img = np.repeat(tile.clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    for loop in loops:
        ends = zip(loop, np.roll(loop, -1, axis=0), strict=True)
        dense = np.concatenate([np.linspace(a, b, 8, endpoint=False) for a, b in ends])
        rows, cols = np.round(tile_pixels(dense[:, 0], dense[:, 1], tile.shape)).astype(int)
        ok = (rows >= 0) & (rows < tile.shape[0]) & (cols >= 0) & (cols < tile.shape[1])
        img[rows[ok], cols[ok]] = (255, 0, 0)
    return img


@contextmanager
def glasses_analysis(
    path: Path, *, expression: ExpressionModel
) -> Iterator[tuple[Analysis, Rims] | None]:
    """The clip analysed as an edit analyses it (its track lasts until the block ends) and
    the rims the edit keeps, or None, said so, when it finds none to keep."""
    with tempfile.TemporaryDirectory(prefix="spfem-") as tmp:
        analysis = analyse_video(
            probe(path), model=expression, workdir=Path(tmp), reporter=SilentReporter()
        )
        if analysis.rims is None:
            print(f"{path.name}: no glasses found by the edit's analysis")
            yield None
        else:
            yield analysis, analysis.rims


def measure_edits(path: Path, *, emotions: tuple[str, ...], n_frames: int = 8) -> None:
    """Print rim kept and brow rise per emotion, with and without the rims kept."""
    expression = ExpressionModel.load()
    gen = FaceGenerator(model=expression, device=torch.device("cpu"))
    with glasses_analysis(path, expression=expression) as found:
        if found is None:
            return
        analysis, rims = found
        info, track = analysis.info, analysis.track
        faces = np.flatnonzero(track.valid)
        picks = set(faces[np.linspace(0, faces.size - 1, n_frames + 2)[1:-1].astype(int)])
        weights = np.ones(track.n_frames)
        deltas = {
            emotion: analysis.deltas(
                target=expression.emotion_vector(emotion).double().numpy(), weights=weights
            )
            for emotion in emotions
        }
        rows: dict[tuple[str, bool], list[tuple[float, float]]] = {}
        with FrameReader(info) as reader, LandmarkTracker(video_mode=False) as tracker:
            for t, frame in enumerate(reader):
                if t not in picks:
                    continue
                face, points = track.frame(t), np.asarray(track.norm[t], np.float64)
                traced = rims.trace(frame, face)
                if not traced.lines:
                    continue
                for emotion in emotions:
                    for kept in (False, True):
                        out = gen.edit_frame(
                            frame,
                            face=face,
                            points=points,
                            delta=deltas[emotion][t],
                            rims=traced if kept else None,
                        )
                        rows.setdefault((emotion, kept), []).append(
                            (
                                rim_kept(traced, before=frame, after=out),
                                brow_rise(tracker, before=frame, after=out),
                            )
                        )
    print(f"{path.name} (median over {len(rows.get((emotions[0], True), []))} frames)")
    print(f"  {'emotion':10s} {'rims':>6s} {'rim kept':>9s} {'brows up (IOD)':>15s}")
    for (emotion, kept), values in rows.items():
        rim, rise = np.nanmedian(np.asarray(values), axis=0)
        print(f"  {emotion:10s} {'kept' if kept else 'moved':>6s} {rim:9.2f} {rise:15.3f}")


def measure_steadiness(path: Path, *, seconds: float) -> None:
    """Print the frame-to-frame change along the upper rims of the clip's first seconds
    edited to surprise, and the median rim kept, per way of editing them."""
    expression = ExpressionModel.load()
    gen = FaceGenerator(model=expression, device=torch.device("cpu"))
    target = expression.emotion_vector("surprised").double().numpy()
    with glasses_analysis(path, expression=expression) as found:
        if found is None:
            return
        analysis, rims = found
        info, track = analysis.info, analysis.track
        n_frames = int(round(seconds * float(info.fps)))
        deltas = analysis.deltas(target=target, weights=np.ones(track.n_frames))
        ways: dict[str, Rims | SteadyRims | None] = {
            "traced afresh": rims,
            "held steady": SteadyRims(rims, fps=float(info.fps)),
            "warped": None,
        }
        change = {name: FrameChange() for name in ("input", *ways)}
        kept: dict[str, list[float]] = {"traced afresh": [], "held steady": []}
        with FrameReader(info) as reader:
            for t, frame in enumerate(reader):
                if t >= n_frames:
                    break
                if not track.valid[t]:
                    continue
                face, points = track.frame(t), np.asarray(track.norm[t], np.float64)
                traced = rims.trace(frame, face)
                band = upper_rims(traced, frame.shape[:2])
                change["input"].add(frame, band)
                for name, way in ways.items():
                    out = gen.edit_frame(frame, face=face, points=points, delta=deltas[t], rims=way)
                    change[name].add(out, band)
                    if name in kept and traced.lines:
                        kept[name].append(rim_kept(traced, before=frame, after=out))
    print(f"{path.name}, surprised, first {n_frames} frames")
    print("  change along the upper rims, levels a frame: " + ", ".join(
        f"{name} {c.mean():.2f}" for name, c in change.items()
    ))  # fmt: skip
    print("  rim kept, median: " + ", ".join(
        f"{name} {np.median(v):.2f}" for name, v in kept.items()
    ))  # fmt: skip


def measure_gaps(path: Path) -> None:
    """Print the frames of the clip on which a rim is left out, traced in order with rims
    carried over a short gap (`SteadyRims`) and without."""
    with glasses_analysis(path, expression=ExpressionModel.load()) as found:
        if found is None:
            return
        analysis, rims = found
        info, track = analysis.info, analysis.track
        ways = {"carried": SteadyRims(rims, fps=float(info.fps))}
        ways["not carried"] = SteadyRims(rims, fps=float(info.fps))
        ways["not carried"].max_gap = 0
        left: dict[str, list[int]] = {name: [] for name in ways}
        with FrameReader(info) as reader:
            for t, frame in enumerate(reader):
                for name, steady in ways.items():
                    if not track.valid[t]:
                        steady.skip()
                    elif len(steady.trace(frame, track.frame(t)).lines) < 2:
                        left[name].append(t)
    print(f"{path.name}, {track.n_valid} frames with a face: a rim left out on")
    for name, frames in left.items():
        print(f"  {name:12s} {len(frames):4d} frames {frames}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=Path("../shared/clips"))
    parser.add_argument("--sheet", type=Path, default=None)
    parser.add_argument("--edit", action="store_true", help="measure edits of glasses clips")
    parser.add_argument(
        "--steadiness", type=float, default=None, metavar="SECONDS",
        help="measure how steady the kept rims are over the first SECONDS of glasses clips",
    )  # fmt: skip
    parser.add_argument(
        "--gaps", action="store_true",
        help="count the frames of glasses clips on which a rim is left out",
    )  # fmt: skip
    args = parser.parse_args()
    drawn, worn = [], []
    print(
        f"{'clip':36s} {'score':>6s}  glasses (at {RIM_SCORE} or more)  "
        f"{'traced':>7s}  kept (traced on {MIN_TRACED_SHARE:.0%} of frames or more)"
    )
    for path in clip_paths(args.clips):
        finder, tile, loops = measure(path)
        glasses = finder.score() >= RIM_SCORE
        kept = finder.rims() is not None
        print(
            f"{str(path.relative_to(args.clips)):36s} {finder.score():6.2f}  "
            f"{'yes' if glasses else 'no':28s} {finder.traced_share():7.0%}  "
            f"{'yes' if kept else 'no'}"
        )
        if tile is not None:
            drawn.append(draw(tile, loops))
        if kept:
            worn.append(path)
    if args.sheet is not None and drawn:
        import imageio.v3 as iio

        per_row = 4
        blank = np.zeros_like(drawn[0])
        drawn += [blank] * (-len(drawn) % per_row)
        rows = [np.concatenate(drawn[i : i + per_row], 1) for i in range(0, len(drawn), per_row)]
        iio.imwrite(args.sheet, np.concatenate(rows, 0))
        print(f"sheet: {args.sheet}")
    if args.edit:
        for path in worn:
            measure_edits(path, emotions=("surprised", "fear", "angry", "sad"))
    if args.steadiness is not None:
        for path in worn:
            measure_steadiness(path, seconds=args.steadiness)
    if args.gaps:
        for path in worn:
            measure_gaps(path)


if __name__ == "__main__":
    main()
