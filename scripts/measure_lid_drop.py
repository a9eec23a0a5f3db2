"""How often an edit drops the lower lids, where the eyeball drawing fills what they uncover.

    python scripts/measure_lid_drop.py [--clips ../shared/clips]
        [--names talk_s32_1280x720.mp4 expr_d14.mp4 ...] [--emotions neutral sad ...]

A lower lid drops when the edit takes off a lower-lid raise the face shows (a squint or a
smile's cheek raise, `estimate_expression`). The eyeball drawing (`Warper.show_eyeballs`)
fills the band such a lid uncovers once it moves more than `LID_STILL`. For every clip and
emotion this prints the largest downward motion asked of the middle of either lower lid
(IOD, y down) and in how many frames it exceeds `LID_STILL`. Tracking only: about a second
per hundred frames of a small clip, plus FaceMesh.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from spfem_cli.face import mesh
from spfem_cli.generator.expression import DEFAULT_MODEL, ExpressionModel
from spfem_cli.generator.generator import FaceGenerator
from spfem_cli.generator.warp import LID_STILL
from spfem_cli.media import probe
from spfem_cli.pipeline import analyse_video
from spfem_cli.progress import SilentReporter

CLIPS = (
    "talk_s32_1280x720.mp4",
    "speech_obama_450x450.mp4",
    "talk_mead_sad_1920x1080.mp4",
    "expr_d14.mp4",
)
EMOTIONS = ("neutral", "sad", "surprised", "fear")
# The middle of each lower lid: ring position 4 of mesh.RIGHT_EYE and mesh.LEFT_EYE.
LOWER_MIDDLE = [mesh.RIGHT_EYE[4], mesh.LEFT_EYE[4]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clips", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "clips"
    )
    parser.add_argument("--names", nargs="*", default=list(CLIPS))
    parser.add_argument("--emotions", nargs="*", default=list(EMOTIONS))
    args = parser.parse_args()
    model = ExpressionModel.load(DEFAULT_MODEL)
    gen = FaceGenerator(model=model, device=torch.device("cpu"), mouth="natural")
    print(f"{'clip':<30} {'emotion':<10} {'largest drop':>13} {'frames over LID_STILL':>22}")
    for name in args.names:
        with tempfile.TemporaryDirectory(prefix="spfem-lids-") as tmp:
            analysis = analyse_video(
                probe(args.clips / name), model=model, workdir=Path(tmp), reporter=SilentReporter()
            )
        track = analysis.track
        ones = np.ones(track.n_frames)
        for emotion in args.emotions:
            target = model.emotion_vector(emotion).double().numpy()
            deltas = analysis.deltas(target=target, weights=ones)
            drops = np.array(
                [
                    gen.displacement(deltas[t], points=np.asarray(track.norm[t], np.float64))[
                        LOWER_MIDDLE, 1
                    ].max()
                    for t in np.flatnonzero(track.valid)
                ]
            )
            print(
                f"{name:<30} {emotion:<10} {drops.max(initial=0.0):13.3f} "
                f"{int((drops > LID_STILL).sum()):>12d} of {len(drops)}"
            )


if __name__ == "__main__":
    main()
