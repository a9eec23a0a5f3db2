"""How far natural mode can move the lip corners before the inner lips read as changed.

    python scripts/measure_corner_budget.py [--clips ../shared/clips]
        [--name speech_obama_450x450.mp4] [--emotion happy]

Edits one clip with one emotion under several shapes of the mouth hold (the pixels the
speech keeps still), finds the landmarks again with only the output's mouth pasted into the
input (`spfem_cli.evaluate.window_landmarks`) and prints, per hold: how far the lip corners
rose against the middle of the lips (IOD), the inner-lip error (fraction of the IOD; the
pipeline's limit is 1.5%) and the mouth opening's correlation with the input's, and the
error at the inner lip corners and at the middle of the lips. The holds:

- natural: what `spfem edit --mouth natural` does (the outer lips and a band around them
  held, let go within 0.05 IOD of each lip corner; the corners move only up and down,
  `generator.RISE_ONLY`);
- sideways kept, release 0.04: natural mode until 2026-12-06 (the corners also pulled
  sideways as the model asks, let go within 0.04);
- sideways kept, release 0.05 / rise only, release 0.04: one change of the two at a time;
- release 0.06 / 0.08: natural, let go wider around each corner (0.08 was expressive mode
  before it also asked the mouth AUs for more: `EXPRESSIVE_HOLD`);
- inner lips only: the hold drawn around the inner lip contour instead of the outer one;
- release beyond the corners: the let-go centred 0.04 IOD outside each corner;
- inner corners 0.9: the inner lip corners asked to follow the outer ones by 0.9 of their
  motion instead of 0.6.

Each edit renders the whole clip: about half a minute per hold for the Obama clip on two cores.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from spfem_cli.evaluate import compare_speech, corner_lift, video_landmarks, window_landmarks
from spfem_cli.face import mesh
from spfem_cli.generator.expression import DEFAULT_MODEL, ExpressionModel, Side
from spfem_cli.generator.generator import NATURAL_HOLD, FaceGenerator, mouth_gain, mouth_hold
from spfem_cli.generator.warp import HoldRegion
from spfem_cli.media import probe
from spfem_cli.pipeline import analyse_video, render_video
from spfem_cli.progress import SilentReporter

# The inner lip corners and the middle points of the inner lips, for the per-point columns.
INNER_CORNERS = (78, 308)
INNER_MIDDLE = (13, 14, 82, 312, 87, 317)
# How far the inner lip corners follow the outer ones in `hold_mouth` (its corner taper).
TAPER = 0.6


def _released(points: np.ndarray, *, radius: float, beyond: float = 0.0) -> HoldRegion:
    """Natural mode's hold with another release radius, centred `beyond` IOD outside each
    lip corner along the line between them."""
    hold = mouth_hold(points, mode="natural")
    corners = points[list(mesh.LIP_CORNERS)].copy()
    axis = (corners[1] - corners[0]) / np.linalg.norm(corners[1] - corners[0])
    corners[0] -= beyond * axis
    corners[1] += beyond * axis
    return HoldRegion(
        polygon=hold.polygon,
        band=hold.band,
        feather=hold.feather,
        release=corners,
        release_radius=radius,
    )


def _inner_only(points: np.ndarray) -> HoldRegion:
    """A hold around the inner lip contour, let go around the lip corners as natural mode."""
    return HoldRegion(
        polygon=points[list(mesh.LIPS_INNER)],
        band=0.02,
        feather=NATURAL_HOLD["feather"],
        release=points[list(mesh.LIP_CORNERS)],
        release_radius=NATURAL_HOLD["release_radius"],
    )


HoldFn = Callable[[np.ndarray], HoldRegion]
NATURAL_RADIUS = NATURAL_HOLD["release_radius"]
# name -> (hold, inner-corner taper, whether the corners keep their sideways motion)
HOLDS: dict[str, tuple[HoldFn, float, bool]] = {
    "natural": (lambda p: _released(p, radius=NATURAL_RADIUS), TAPER, False),
    "sideways kept, release 0.04": (lambda p: _released(p, radius=0.04), TAPER, True),
    "sideways kept, release 0.05": (lambda p: _released(p, radius=0.05), TAPER, True),
    "rise only, release 0.04": (lambda p: _released(p, radius=0.04), TAPER, False),
    "release 0.06": (lambda p: _released(p, radius=0.06), TAPER, False),
    "release 0.08": (lambda p: _released(p, radius=0.08), TAPER, False),
    "inner lips only": (_inner_only, TAPER, False),
    "release beyond the corners": (
        lambda p: _released(p, radius=0.08, beyond=0.04),
        TAPER,
        False,
    ),
    "inner corners 0.9": (lambda p: _released(p, radius=NATURAL_RADIUS), 0.9, False),
}


class HoldVariant(FaceGenerator):
    """Natural mode's generator with another mouth hold and inner-corner taper, and with the
    lip corners' sideways motion kept (`sideways`) or dropped as natural mode drops it."""

    def __init__(
        self,
        *,
        hold: HoldFn,
        taper: float,
        sideways: bool,
        model: ExpressionModel,
        device: torch.device,
    ) -> None:
        # Expressive mode's rules keep the sideways motion; its gain is natural mode's here.
        super().__init__(model=model, device=device, mouth="expressive" if sideways else "natural")
        self.gain = mouth_gain(model.au_names, mode="natural")
        self.hold, self.taper = hold, taper

    def sparse(
        self, *, points: np.ndarray, delta: np.ndarray, side: Side = "right"
    ) -> tuple[np.ndarray, HoldRegion]:
        disp = self.displacement(delta, points=points, side=side)
        # hold_mouth moved the inner lips by TAPER of the outer corners' motion: rescale.
        inner = [i for i in mesh.LIPS_INNER if np.any(disp[i])]
        disp[inner] *= self.taper / TAPER
        return disp, self.hold(points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clips", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "clips"
    )
    parser.add_argument("--name", default="speech_obama_450x450.mp4")
    parser.add_argument("--emotion", default="happy")
    args = parser.parse_args()
    clip = args.clips / args.name
    model = ExpressionModel.load(DEFAULT_MODEL)
    lm_in = video_landmarks(clip)
    ok = ~np.isnan(lm_in).any(axis=(1, 2))
    right, left = mesh.eye_centres(lm_in[ok])
    iod = np.linalg.norm(left - right, axis=-1)[:, None]
    print(f"{args.name}, {args.emotion}, natural mouth; re-detected with only the mouth pasted")
    print(f"{'hold':<28} {'lift':>7} {'err':>7} {'r':>6} {'inner corners':>14} {'middle':>7}")
    with tempfile.TemporaryDirectory(prefix="spfem-corners-") as tmp:
        work = Path(tmp)
        analysis = analyse_video(probe(clip), model=model, workdir=work, reporter=SilentReporter())
        target = model.emotion_vector(args.emotion).double().numpy()
        deltas = analysis.deltas(target=target, weights=np.ones(analysis.track.n_frames))
        for name, (hold, taper, sideways) in HOLDS.items():
            gen = HoldVariant(
                hold=hold, taper=taper, sideways=sideways, model=model, device=torch.device("cpu")
            )
            out = work / "out.mp4"
            render_video(
                analysis, generator=gen, deltas=deltas, output=out, workdir=work, preset="veryfast"
            )
            lm_out = window_landmarks(clip, out, input_lm=lm_in, window="mouth")
            rep = compare_speech(lm_in, lm_out)
            lift = float(np.nanmean(corner_lift(lm_out) - corner_lift(lm_in)))
            both = ok & ~np.isnan(lm_out).any(axis=(1, 2))
            per = np.linalg.norm(lm_in[both] - lm_out[both], axis=-1) / iod[both[ok]]
            print(
                f"{name:<28} {lift:+7.3f} {rep.inner_lip_error:7.4f} {rep.opening_corr:6.3f} "
                f"{per[:, list(INNER_CORNERS)].mean():14.4f} "
                f"{per[:, list(INNER_MIDDLE)].mean():7.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
