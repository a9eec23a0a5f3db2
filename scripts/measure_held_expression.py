"""Can an expression held through a whole clip be told from the person's face by its landmarks?

    python scripts/measure_held_expression.py [--clips ../shared/clips] [--cache DIR]

`spfem edit` reads the expression already on a face relative to the person's calmest moments
in the clip, so an expression held from the first frame to the last (a speaker crying all
through) is that person's rest and is not replaced. The only way to see it from landmarks
alone is to compare the person's usual face with other people's calm faces. This script
measures whether that can work: the upper-face AU activations (`REPLACED_AUS`) of each
clip's median face (frontalised and de-blinked as `calibrate_expressions.py` does) against
the population neutral face:

- each calm clip of `calibrate_expressions.NEUTRAL_CLIPS` against the mean of the *other*
  calm people (leave one out): how far calm faces differ from one another, which is identity;
- the clips that hold an expression (the crying speaker, the smiling ones, the MEAD actors,
  who hold their emotion all through) against the mean of all calm people.

A held expression can be read this way only where it stands clear of the calm people's spread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import calibrate_expressions as ce
import numpy as np
import torch

from spfem_cli.generator.expression import REPLACED_AUS, ExpressionModel
from spfem_cli.pipeline import signed_activations

HELD_CLIPS = (
    "talk_mead_sad_1920x1080.mp4",
    "talk_s32_1280x720.mp4",
    "portrait_s29_720x1364.mp4",
    *(f"mead_emotions/{e}.mp4" for e in ce.MEAD_EMOTIONS),
)


def upper_face_activations(model: ExpressionModel, offset: np.ndarray) -> np.ndarray:
    """REPLACED_AUS activations (len,) of one face's offset (478, 2) from a neutral face."""
    cols = [model.au_names.index(name) for name in REPLACED_AUS]
    with torch.no_grad():
        acts = signed_activations(model, torch.from_numpy(offset[None]).float())
    return acts.numpy()[0, cols]


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=here.parent / "shared" / "clips")
    parser.add_argument("--cache", type=Path, default=None, help="landmark cache folder")
    args = parser.parse_args()

    mirror = ce.load_mirror()
    reference, neutral, _ = ce.reference_face(args.clips, mirror, cache_dir=args.cache)
    model = ExpressionModel.load()
    medians = {
        clip: np.median(
            ce.load_faces(
                args.clips, clip, reference=reference, cache_dir=args.cache, max_frames=n
            ).faces,
            axis=0,
        )
        for clip, n in ce.NEUTRAL_CLIPS
        if (args.clips / clip).is_file()
    }

    def row(label: str, values: np.ndarray) -> None:
        print(f"{label:34s} " + " ".join(f"{v:+6.2f}" for v in values))

    print(f"{'':34s} " + " ".join(f"{name:>6s}" for name in REPLACED_AUS))
    print("calm faces against the other calm people")
    calm = []
    for clip, median in medians.items():
        others = np.mean([m for c, m in medians.items() if c != clip], axis=0)
        calm.append(upper_face_activations(model, median - ce.symmetrise(others, mirror)))
        row(clip, calm[-1])
    spread = np.array(calm)
    row("  standard deviation", spread.std(axis=0))
    row("  largest size", np.abs(spread).max(axis=0))
    print("held expressions against all calm people")
    for clip in HELD_CLIPS:
        if (args.clips / clip).is_file():
            faces = ce.load_faces(args.clips, clip, reference=reference, cache_dir=args.cache)
            row(clip, upper_face_activations(model, np.median(faces.faces, axis=0) - neutral))


if __name__ == "__main__":
    main()
