"""How much the picture changes from frame to frame within a shot, against at a cut.

    python scripts/measure_cuts.py [--clips ../shared/clips] [--cut A.mp4 B.mp4]

Decodes every clip as the tracking pass does (`pipeline.analysis_size`) and prints, per clip,
the change of each frame's thumbnail from the one before (`face.shots.cut_score`): the median,
the 99th percentile and the largest, with its frame. None of these clips has a cut, so the
largest is what a shot's own motion reaches; `face.shots.CUT` must stay above it. Then the
change at a cut: the first four seconds of each pair of clips (``--cut``, by default Obama and
talk_s18's speaker, then talk_s20 and talk_s32), scaled into one 640x360 frame, joined.
About a minute on two cores.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from spfem_cli.face.shots import CUT, cut_score, thumbnail
from spfem_cli.media import FrameReader, probe
from spfem_cli.pipeline import analysis_size

DEFAULT_CUTS = (
    ("speech_obama_450x450.mp4", "talk_s18_1280x720.mp4"),
    ("talk_s20_480x908.mp4", "talk_s32_1280x720.mp4"),
)
SIZE = (640, 360)
SECONDS = 4.0


def frames(path: Path, *, fit: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """The clip's frames as the tracking pass decodes them, or fitted into `fit` (width,
    height) with black bars, as an editor joins clips of different shapes."""
    info = probe(path)
    if fit is None:
        with FrameReader(info, size=analysis_size(info.width, info.height)) as reader:
            yield from reader
        return
    scale = min(fit[0] / info.width, fit[1] / info.height)
    size = (max(2, round(info.width * scale)), max(2, round(info.height * scale)))
    x0, y0 = (fit[0] - size[0]) // 2, (fit[1] - size[1]) // 2
    with FrameReader(info, size=size) as reader:
        for t, frame in enumerate(reader):
            if t >= SECONDS * float(info.fps):
                break
            out = np.zeros((fit[1], fit[0], 3), dtype=np.uint8)
            out[y0 : y0 + size[1], x0 : x0 + size[0]] = frame
            yield out


def scores(stream: Iterator[np.ndarray]) -> np.ndarray:
    """(T - 1,) each frame's change from the one before."""
    out, before = [], None
    for frame in stream:
        thumb = thumbnail(frame)
        if before is not None:
            out.append(cut_score(before, thumb))
        before = thumb
    return np.asarray(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=Path("../shared/clips"))
    parser.add_argument("--cut", nargs=2, action="append", metavar=("A", "B"))
    args = parser.parse_args()
    paths = sorted(args.clips.glob("*.mp4")) + sorted(args.clips.glob("mead_emotions/*.mp4"))
    largest = 0.0
    print(f"within shots (a cut is a change above {CUT}):")
    for path in paths:
        s = scores(frames(path))
        largest = max(largest, float(s.max()))
        print(
            f"  {path.name:32s} median {np.median(s):.3f}  99th {np.percentile(s, 99):.3f}  "
            f"largest {s.max():.3f} at frame {int(s.argmax()) + 1}"
        )
    print(f"  largest of all: {largest:.3f}")
    print("at a cut:")
    for a, b in args.cut or DEFAULT_CUTS:
        first = list(frames(args.clips / a, fit=SIZE))
        second = frames(args.clips / b, fit=SIZE)
        s = scores(iter([*first, *second]))
        at = len(first) - 1
        inside = np.delete(s, at)
        print(f"  {a} | {b}: {s[at]:.3f} (elsewhere at most {inside.max():.3f})")


if __name__ == "__main__":
    main()
