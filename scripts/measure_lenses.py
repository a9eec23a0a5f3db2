"""How much of an eye shows inside the eyes' outlines: what tells dark glasses from eyes.

    python scripts/measure_lenses.py [--clips ../shared/clips] [VIDEO ...]

For every clip (and every VIDEO given), decoded as the tracking pass decodes it
(`pipeline.analysis_size`), the frames `face.lenses.LensFinder` samples are read: on each, the
spread of grey levels inside each eye's outline (10th to 90th percentile, levels 0-255); the
clip's spread is the larger of the two eyes' medians over those frames, and the clip wears
dark lenses when it is under `face.lenses.LENS_SPREAD`. None of the clips shows dark
glasses, so their smallest spread is the margin the threshold keeps. About a minute on two
cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spfem_cli.face.lenses import LENS_SPREAD, LensFinder
from spfem_cli.media import FrameReader, probe
from spfem_cli.pipeline import analysis_size


def clip_spread(path: Path) -> float:
    """`LensFinder.spread` of a clip, on the frames the tracking pass would offer it."""
    info = probe(path)
    finder = LensFinder(n_frames=info.n_frames)
    with FrameReader(info, size=analysis_size(info.width, info.height)) as reader:
        finder.offer_frames(reader)
    return finder.spread()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--clips", type=Path, default=Path("../shared/clips"))
    args = parser.parse_args()
    clips = sorted(args.clips.glob("*.mp4")) + sorted(args.clips.glob("*/*.mp4"))
    print(f"dark lenses below a spread of {LENS_SPREAD:.0f} levels")
    for path in [*clips, *args.videos]:
        spread = clip_spread(path)
        verdict = "dark lenses" if spread < LENS_SPREAD else "eyes show"
        print(f"{path.name:32s} spread {spread:6.1f}  {verdict}", flush=True)


if __name__ == "__main__":
    main()
