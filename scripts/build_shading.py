"""Measure the shading of a smile on real faces: checkpoint ``shading-v8``.

    python scripts/build_shading.py [--clips DIR] [--out FILE] [--no-manifest] [--look DIR]

The expr_d clips where a person goes from a calm face to a smile (expr_d0, expr_d9,
expr_d19: picked by looking at every clip's frames; the others smile little or only while
talking). On each clip:

- every frame's smile is scored from its landmarks in the face frame: the lip corners' height
  against the nose tip, plus half the mouth's width (IOD). The frames at or above three
  quarters of the clip's range of scores (2nd to 98th percentile) are the smile; the calm
  frames are those in its bottom quarter, and of those the half nearest their own median face
  (a pout or a surprise scores low too);
- each chosen frame's log luminance is resampled onto the template face through its own
  landmarks (piecewise linear over the template's triangulation), so what differs between
  the two means is shading, not shape;
- the clip's ratio image is the smile's mean minus the calm mean; what varies over more than
  `HIGH_PASS` IOD (light on a turned head, exposure) is taken off;
- it is scaled to the clips' mean smile (their mean corner rise over its own: creases deepen
  with the smile), so a unit's strength 1, reached at the expression model's happy, is the
  average of these three real smiles.

The clips' maps are averaged, mirrored (the two sides averaged, so one side's light does not
decide), smoothed a little and kept to the lower face (`LOWER_FACE`): faded out over the
lips, the nostrils, the upper lip's skin and off the face. On the two
clips with glasses the rims' band around the eyes is left out (a rim that stays while the face
moves would show as a crease).

The folds' colour: where the map darkens by `FOLD_LEVEL` or more, each clip's change of log
R, G and B over its change of log luminance, averaged over the clips (`fold_colour`).

Three units come of the one measured map: `smile` (AU12), `smile_right` (contempt's smirk,
AU12R and, half as much, AU14R: the subject's right side) and `furrow` (disgust's upper lip
raiser, AU10: the map's darkening above the lip corners, the nasolabial furrow that FACS
describes it deepening). No clip here shows a person going from calm to disgust, so the
furrow's depth is not measured: at disgust's prototype it is the smile's own depth there.

A fourth unit is drawn, not measured: `nose`, the nose wrinkler's wrinkles across the root and
down the sides of the nose (`NOSE_ACROSS`, `NOSE_SIDES`), which disgust shows most and a warp
cannot make; driven, like the furrow, by the upper lip raiser (AU10) that comes with it in
disgust. A fifth, `nose_right`, is the same on the subject's right side alone: contempt's
sneer (AU14R). A sixth, `crows_feet`, is drawn too: the lines fanning out from each eye's
outer corner that the cheek raiser (AU6) bunches up in a smile (`CROWS_FEET`), driven like the
smile's folds by the lip corner puller (AU12). The seventh and eighth, `forehead_inner` and
`forehead_outer`, are drawn as well: the lines across the forehead that the inner and the
outer brow raisers (AU1, AU2) bunch up (`FOREHEAD_LINES`), from a threshold on; the ninth,
`frown`, the furrows between the brows that the brow lowerer (AU4) bunches up (`FROWN_LINES`);
the tenth, `dimple_right`, the crease around the bulge that contempt's one-sided lip corner
tightener (AU14R) pushes up beyond its corner (`DIMPLE`), which also deepens the smirk's fold.
The eleventh, `under_eyes`, the groove under each lower lid that a smile's raised cheeks
deepen, is drawn along the lid where and as deep as the one smiling face without glasses
shows it (`UNDER_EYE_CLIP`), driven like the crow's feet.

Prints each clip's frames and corner rise, the depth of the fold beside the mouth and its
colour, where each clip's fold from the nose to the mouth runs against the shipped map's
(`fold_line`: a mean of folds in different places would be a wide, faint band);
deterministic given the clips, about half a minute on two cores.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from measure_shading import Raster
from PIL import Image
from scipy.ndimage import gaussian_filter, gaussian_filter1d, map_coordinates

from spfem_cli.errors import SpfemError
from spfem_cli.face import mesh
from spfem_cli.generator.checkpoint import (
    default_weights_dir,
    manifest_file_name,
    save_checkpoint,
    update_manifest,
)
from spfem_cli.generator.expression import DEFAULT_MODEL, ExpressionModel
from spfem_cli.generator.shading import CHECKPOINT_KIND, CHECKPOINT_VERSION, DEFAULT_SHADING
from spfem_cli.generator.warp import HoldRegion, contour_distance, hold_weight, lid_lines
from spfem_cli.media import FrameReader, probe
from spfem_cli.media.pixels import REC601_LUMA
from spfem_cli.pipeline import analyse_video
from spfem_cli.progress import SilentReporter

# clip -> whether the person wears glasses
SMILE_CLIPS = {"expr_d0": False, "expr_d9": True, "expr_d19": True}
ORIGIN = (-1.1, -0.95)
STEP = 0.0125
SHAPE = (221, 177)  # rows (y from -0.95 to 1.80), columns (x from -1.1 to 1.1)
NOSE_TIP = 1
# Of the score's range over the clip (2nd to 98th percentile), the smile's top and calm's bottom.
SMILE_SHARE = 0.75
CALM_SHARE = 0.25
LUMA = np.array(REC601_LUMA)
# The folds, for their colour: where the smile's map darkens by this much or more.
FOLD_LEVEL = -0.03
HIGH_PASS = 0.2
SMOOTH = 0.015
# Where each clip's fold from the nose to the mouth is compared with the shipped map's
# (`fold_line`): the rows from the nose wings' height to just above the lip corners', and the
# columns out from the face's middle that the fold crosses there (IOD, template face).
FOLD_ROWS = (0.65, 0.95)
FOLD_COLUMNS = (0.3, 0.75)
# On faces with glasses, the band from this far above to this far below the eyes' centres
# (IOD) holds the rims.
GLASSES_BAND = (-0.45, 0.45)
# The map shades the face from this far below the eyes' centres (IOD), fading in over the
# second distance: above it the three clips differ (only one face without glasses, its brows
# and lids moving against their landmarks read as stripes), and the warp carries the smile's
# lower lids and brows.
LOWER_FACE = (0.35, 0.15)
# The nostrils: dark holes whose shape a smile changes against the landmarks around them (they
# read as bright spots: the nostril's dark moved away), left out with this band and fade (IOD).
NOSTRILS = ((79, 237, 239, 60, 20, 75), (309, 457, 459, 290, 250, 305))
NOSTRIL_FADE = (0.02, 0.04)
# The skin of the upper lip, between the folds: one clip's stubble darkens as it stretches, and
# the smile's fold lies outside it.
UPPER_LIP = (98, 97, 2, 326, 327, 291, 267, 0, 37, 61)
UPPER_LIP_FADE = (0.0, 0.03)
# Faded out over this distance (IOD): around the eyes (they blink and look about), the lips
# (the speech's) and inside the face's outline.
EYE_FADE = (0.03, 0.05)
LIP_FADE = (0.02, 0.05)
OVAL_FADE = 0.12
# Disgust's furrow is the smile's fold from the nose wing down to the lip corners' height: it
# fades out from this far above the corners to this far below them (IOD). Below, the smile's
# fold curves out around the corners, which the upper lip raiser does not pull.
FURROW_END = (0.1, 0.1)
# What drives the furrow: the upper lip raiser, which of the eight emotions only disgust has
# (1.0 in its prototype: 0.95 of the smile's depth). FACS has the nose wrinkler (AU9) deepen
# the furrow too, but the calibrated surprise and fear carry a little of it (0.12 and 0.09,
# fitted to the nose wings' motion), and driven by it, surprise shaded a faint furrow.
FURROW_DRIVERS = {"AU10": 0.95}
# The nose wrinkler's (AU9's) wrinkles are drawn, not measured: no clip here shows a face going
# from calm to a wrinkled nose at a size that shows the wrinkles (the MEAD clips, disgust and
# contempt held throughout, are 256 pixels; their nose roots' maps between the frames with the
# most and the least raised nose wings showed no lines). Each wrinkle is a dark valley with a
# lit ridge above it (skin bunched up, lit from above), in the template face frame (IOD, y
# down; the inner eye corners at y 0.04, the bridge's landmarks 6 and 197 at 0.10 and 0.23):
# - across the root of the nose, below the inner eye corners: (height at the middle, half
#   length), the ends NOSE_ACROSS_BEND lower than the middle;
NOSE_ACROSS = ((0.07, 0.075), (0.12, 0.085), (0.17, 0.08))
NOSE_ACROSS_BEND = 0.02
# - down and out along the sides of the nose from the bridge, (x, y) to (x, y), on the
#   subject's left side and mirrored.
NOSE_SIDES = (((0.06, 0.17), (0.15, 0.27)), ((0.07, 0.23), (0.15, 0.33)))
# A valley's half-width (Gaussian sigma, IOD) and depth (log luminance at strength 1: about a
# tenth darker at its bottom, the smile's fold's depth); the ridge's height (share of the
# depth) and its offset above the valley (IOD); each wrinkle fades in and out over this share
# of its length.
WRINKLE_WIDTH = 0.010
WRINKLE_DEPTH = 0.10
WRINKLE_RIDGE = (0.35, 0.018)
WRINKLE_ENDS = 0.3
# What drives the wrinkles: as for the furrow, the upper lip raiser, which comes with the nose
# wrinkler in disgust and, of the eight emotions, only there (AU9 itself is carried a little by
# the calibrated surprise and fear).
NOSE_DRIVERS = {"AU10": 1.0}
# Contempt's sneer wrinkles the nose on its own side: the MEAD contempt clip, the one its
# prototype is fitted to, shows it on every frame (the wrinkle down the side of the nose from
# the narrowed eye). Its own unit is the wrinkles' map on the subject's right side (faded out
# across the middle as the smirk is), driven by contempt's one-sided lip corner tightener,
# which no other emotion has: as deep on its side as disgust's (the actor's is deeper still).
NOSE_SNEER_DRIVERS = {"AU14R": 1.0}
# The cheek raiser (AU6) bunches the skin beside the eyes' outer corners into lines that fan
# out toward the temples: the crow's feet, the smile's sign in the eyes that FACS names first
# for AU6 and that a warp cannot make either. The three clips do not measure them (two of the
# three faces wear glasses whose rims cover the band, `GLASSES_BAND`; the lift of the eyes'
# lines, `spfem_cli.generator.creases`, reads them on expr_d0's smile), so they are drawn as
# the nose's wrinkles are: on the subject's left side, (x, y) to (x, y) in the template face
# frame (the outer eye corner at (0.72, -0.04), the brow's outer end 0.27 above it), and
# mirrored. One rising and one falling: a third line level with the corner, even started 0.14
# out from it, carried on the lash line of made-up eyes like an eyeliner's wing (portrait_s29,
# talk_s20).
CROWS_FEET = (
    ((0.80, -0.09), (0.93, -0.16)),
    ((0.80, 0.02), (0.92, 0.09)),
)
# What drives them: the lip corner puller (AU12), as it drives the smile's folds (strength 1 at
# happy). Not the cheek raiser itself: the calibrated surprise carries a little of it (0.018),
# which drew faint lines beside a surprised face's eyes.
CROWS_FEET_DRIVERS = {"AU12": 1.0}
# Their valleys' half-width (IOD) and depth (a share of WRINKLE_DEPTH): softer and wider than
# the nose's wrinkles. Drawn as those are (0.010 and all of it, until `shading-v8`), they came
# out as thin dark strokes on smooth young skin (talk_s18, portrait_s29: like a pen line or
# an eyeliner's wing beside the eye); at 0.016 and 0.7 they read as soft creases there and
# still show on expr_d0, at 0.022 and 0.6 they were all but gone (looked at on frames of
# talk_s18, expr_d0, portrait_s29 and speech_obama edited to happy, 3-4x).
CROWS_FEET_WIDTH = 0.016
CROWS_FEET_DEPTH = 0.7
# Raised brows bunch the forehead's skin into lines across it: FACS names them first for the
# inner and the outer brow raisers (AU1 across the middle of the forehead, AU2 over the brows'
# outer parts, both across all of it), and a warp that lifts the brows stretches smooth skin.
# No clip here goes from a calm forehead to a raised one at a size that shows the lines (the
# MEAD clips, 256 pixels, hold their emotion throughout), so they are drawn: FOREHEAD_LINES
# (share of the way from the brows' top edge to the forehead's top landmarks, half length in
# IOD), each a valley with a lit ridge above it, following the brows' arch as real forehead
# lines do.
FOREHEAD_LINES = ((0.28, 0.82), (0.46, 0.78), (0.64, 0.66))
# The brows' top edge and the forehead's top on the subject's left side (landmarks, from the
# middle out; mirrored).
BROW_TOP = (9, 336, 296, 334, 293, 300)
FOREHEAD_TOP = (10, 338, 297, 332, 284)
FOREHEAD_SMOOTH = 0.15
# The lines' half-width (IOD; the forehead's skin folds wider than the nose's) and how much
# shallower they get in places along their length.
FOREHEAD_WIDTH = 0.014
FOREHEAD_VARY = 0.4
# The lines fade in and out over this length at their ends (IOD), not over a share of it as
# the shorter wrinkles do: so, the outer brows' part of the forehead kept a third of the depth.
FOREHEAD_ENDS = 0.2
# The middle of the forehead, which the inner brow raiser wrinkles (sadness's lines) and the
# outer parts, the outer one's: the inner unit is the lines within FOREHEAD_MIDDLE[0] of the
# middle, fading out by FOREHEAD_MIDDLE[1] (IOD); the outer unit is the rest.
FOREHEAD_MIDDLE = (0.25, 0.45)
# What drives them, and from how far: skin lines up only once the brows have risen some way, so
# a unit's strength is its drivers' sum less a threshold. The calibrated happy carries a little
# of both brow raisers (AU1 0.16, AU2 0.20, fitted to the brows' motion in real smiles), which
# without the threshold drew faint lines on a smiling forehead. Surprise: 0.96 in the middle,
# 0.98 outside; fear: 0.83 and 0.44; sadness: 1.22 in the middle alone.
FOREHEAD_INNER_DRIVERS = {"AU1": 1.2}
FOREHEAD_OUTER_DRIVERS = {"AU2": 1.25}
FOREHEAD_THRESHOLD = 0.3
# The brow lowerer (AU4) pulls the brows down and together and bunches the skin between them
# into the frown's vertical furrows: anger's sign between the brows, which a warp that draws
# the brows together cannot make on smooth skin. Drawn like the others (`FROWN_LINES`, on the
# subject's left side and mirrored: from beside the nose's root up between the brows' inner
# heads, a little apart at the top), as wide as the forehead's lines; their ridges face the
# middle, where the skin between them bulges. Driven by AU4 from a threshold: anger 1.0,
# sadness 1.44 (its brows are drawn together too); fear and disgust, which carry 0.30 and
# 0.32 of it, none at their prototypes.
FROWN_LINES = (((0.06, -0.17), (0.085, -0.44)),)
FROWN_DRIVERS = {"AU4": 1.5}
FROWN_THRESHOLD = 0.5
# Contempt's lip corner tightener (AU14, on one side) pulls its corner in and bunches the skin
# beyond it into a bulge with a crease around it: the dimple FACS names first for AU14, which
# the MEAD contempt clip shows beside the sneer's corner whenever its lips close. With the lips
# held for the speech the corner cannot move far, and the sneer, drawn by the smirk's fold and
# the nose's wrinkles alone, read faintly (talk_s18). Drawn as an arc around the subject's
# right lip corner: DIMPLE is its radius (IOD) and how far it reaches above and below the line
# out from the corner (degrees; further below, as the bulge sags around the corner). Its lit
# ridge lies inside the arc, on the bulge; it is wider and deeper than the nose's wrinkles, as
# the crease around a bulge is (DIMPLE_DEPTH: times WRINKLE_DEPTH).
DIMPLE = (0.08, 50.0, 70.0)
DIMPLE_WIDTH = 0.016
DIMPLE_DEPTH = 1.4
DIMPLE_DRIVERS = {"AU14R": 1.0}
# A smile's cheeks push the skin under the lower lids up into a roll, and the groove below it
# deepens: in every real smile here the eyes narrow over it, and a warp that lifts smooth skin
# shows neither. It is measured on the one smiling face without glasses over the band
# (expr_d0; `GLASSES_BAND` leaves the others out there): in its map, mirrored, the darkest
# point between UNDER_EYE_SEARCH below the lower lid, in each column across UNDER_EYE_SPAN of
# the eye's width (shares from the inner corner). The groove is drawn at the median of those
# points' depths below the lid, following the lid's line, as deep as their median darkening
# (scaled to the clips' mean smile, as the measured map is); a valley with no lit ridge, as
# the map shows none, its half-width UNDER_EYE_WIDTH (IOD; the map's own is printed), fading
# out over WRINKLE_ENDS at both ends.
UNDER_EYE_CLIP = "expr_d0"
UNDER_EYE_SEARCH = (0.04, 0.16)
UNDER_EYE_SPAN = (0.2, 0.9)
UNDER_EYE_WIDTH = 0.018
# What drives it: the lip corner puller, as for the crow's feet.
UNDER_EYE_DRIVERS = {"AU12": 1.0}
# FACS has AU14 deepen the nasolabial furrow too, and the actor's is deep on the sneer's side:
# the smirk's fold is driven by the tightener as well as by the one-sided smile (contempt: 0.7
# of AU12R, 1.0 of AU14R, so 1.2 where 0.7 read faintly).
SMIRK_DRIVERS = {"AU12R": 1.0, "AU14R": 0.5}


def grid_axes() -> tuple[np.ndarray, np.ndarray]:
    """The maps' columns (Gw,) and rows (Gh,) in the template face frame (IOD)."""
    return ORIGIN[0] + STEP * np.arange(SHAPE[1]), ORIGIN[1] + STEP * np.arange(SHAPE[0])


def grid_points() -> np.ndarray:
    """(Gh * Gw, 2) the maps' sample points in the template face frame (IOD)."""
    return np.stack(np.meshgrid(*grid_axes()), axis=-1).reshape(-1, 2)


def smile_scores(norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """norm: (T, 478, 2) face-frame landmarks. Returns the smile score (T,) and the corners'
    height against the nose tip (T,), IOD, up > 0 (a grin that bares the teeth lifts the upper
    lip with the corners, so the lip is no reference)."""
    corners = norm[:, list(mesh.LIP_CORNERS)]
    rise = norm[:, NOSE_TIP, 1] - corners[:, :, 1].mean(axis=1)
    width = np.linalg.norm(corners[:, 1] - corners[:, 0], axis=1)
    return rise + 0.5 * width, rise


def pick_frames(norm: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smile frames and the calm frames of a clip (indices)."""
    score, _ = smile_scores(norm)
    idx = np.flatnonzero(valid)
    lo, hi = np.percentile(score[idx], [2, 98])
    smile = idx[score[idx] >= lo + SMILE_SHARE * (hi - lo)]
    low = idx[score[idx] <= lo + CALM_SHARE * (hi - lo)]
    centre = np.median(norm[low], axis=0)
    dist = np.linalg.norm(norm[low] - centre, axis=-1).mean(axis=-1)
    calm = low[dist <= np.median(dist)]
    return smile, calm


def mirrored(values: np.ndarray) -> np.ndarray:
    """(Gh, Gw) a map's mean with its mirror image across the face's middle (the two sides
    averaged, so one side's light does not decide); NaN where both are."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: off the face on both sides
        return np.nanmean(np.stack([values, values[:, ::-1]]), axis=0)


def blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (sigma in IOD) of a map with NaN holes, by normalised convolution."""
    ok = np.isfinite(values)
    num = gaussian_filter(np.where(ok, values, 0.0), sigma / STEP)
    den = gaussian_filter(ok.astype(np.float64), sigma / STEP)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-3, num / den, np.nan)


def clip_ratio(
    path: Path, *, model: ExpressionModel, glasses: bool
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """(Gh, Gw) the clip's log-luminance change from calm to smile and (3, Gh, Gw) each of R,
    G and B's (NaN where not measured), and what was measured (its corner rise, IOD)."""
    info = probe(path)
    template = model.template.double().numpy()
    grid = grid_points()
    columns, rows = grid_axes()
    raster = Raster(template, xs=columns, ys=rows)
    with tempfile.TemporaryDirectory() as tmp:
        analysis = analyse_video(info, model=model, workdir=Path(tmp), reporter=SilentReporter())
        track = analysis.track
        norm = np.asarray(track.norm, np.float64)
        smile, calm = pick_frames(norm, track.valid)
        chosen = {int(t): "smile" for t in smile} | {int(t): "calm" for t in calm}
        # Per frame set: log luminance, then log R, G and B.
        sums = {k: np.zeros((4, len(grid))) for k in ("smile", "calm")}
        counts = {k: np.zeros(len(grid)) for k in ("smile", "calm")}
        with FrameReader(info) as reader:
            for t, frame in enumerate(reader):
                if t not in chosen:
                    continue
                rgb = frame.astype(np.float64)
                planes = [rgb @ LUMA, rgb[..., 0], rgb[..., 1], rgb[..., 2]]
                # The template face -> this frame's pixels, piecewise linear.
                px = raster.positions(track.landmarks_px(t))
                vals = np.full((4, len(grid)), np.nan)
                vals[:, raster.inside] = [
                    map_coordinates(np.log(plane + 1.0), [px[:, 1], px[:, 0]], order=1, cval=np.nan)
                    for plane in planes
                ]
                ok = np.all(np.isfinite(vals), axis=0)
                sums[chosen[t]][:, ok] += vals[:, ok]
                counts[chosen[t]][ok] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        means = {k: sums[k] / counts[k] for k in sums}
    enough = (counts["smile"] >= 0.5 * len(smile)) & (counts["calm"] >= 0.5 * len(calm))
    changes = np.where(enough, means["smile"] - means["calm"], np.nan).reshape(4, *SHAPE)
    changes = np.stack([plane - blur(plane, HIGH_PASS) for plane in changes])
    _, rise = smile_scores(norm)
    clip_lift = float(rise[smile].mean() - rise[calm].mean())
    if glasses:
        ys = grid[:, 1].reshape(SHAPE)
        eye_y = float(template[list(mesh.RIGHT_EYE_CORNERS + mesh.LEFT_EYE_CORNERS), 1].mean())
        changes[:, (ys > eye_y + GLASSES_BAND[0]) & (ys < eye_y + GLASSES_BAND[1])] = np.nan
    facts = {
        "smile frames": len(smile),
        "calm frames": len(calm),
        "corner rise": clip_lift,
    }
    return changes[0], changes[1:], facts


def face_mask(template: np.ndarray) -> np.ndarray:
    """(Gh, Gw) in [0, 1]: 1 on the skin the maps may shade, fading out toward the eyes,
    the lips and the face's outline."""
    pts = torch.from_numpy(grid_points())
    keep = torch.ones(len(pts), dtype=torch.float64)
    for ring, (band, fade) in (
        (mesh.RIGHT_EYE, EYE_FADE),
        (mesh.LEFT_EYE, EYE_FADE),
        (mesh.LIPS_OUTER, LIP_FADE),
        (NOSTRILS[0], NOSTRIL_FADE),
        (NOSTRILS[1], NOSTRIL_FADE),
        (UPPER_LIP, UPPER_LIP_FADE),
    ):
        region = HoldRegion(polygon=template[list(ring)], band=band, feather=fade)
        keep = keep * (1 - hold_weight(pts, region))
    # Inside the outline: 1 - (held by the region outside it), by the distance to it inside.
    oval = HoldRegion(polygon=template[list(mesh.FACE_OVAL)], band=0.0, feather=OVAL_FADE)
    inside = hold_weight(pts, oval) >= 1.0
    edge = contour_distance(pts, torch.from_numpy(template[list(mesh.FACE_OVAL)]))
    x = (edge / OVAL_FADE).clamp(0, 1)
    keep = keep * torch.where(inside, x * x * (3 - 2 * x), torch.zeros_like(x))
    eye_y = float(template[list(mesh.RIGHT_EYE_CORNERS + mesh.LEFT_EYE_CORNERS), 1].mean())
    y = ((pts[:, 1] - eye_y - LOWER_FACE[0]) / LOWER_FACE[1]).clamp(0, 1)
    keep = keep * y * y * (3 - 2 * y)
    return keep.numpy().reshape(SHAPE)


def furrow(smile_map: np.ndarray, template: np.ndarray) -> np.ndarray:
    """(Gh, Gw) the nasolabial furrow: the smile map's darkening (< 0) above the lip corners,
    faded out over FURROW_END around their height; its lightening (the smile's raised cheeks)
    is left out."""
    corner_y = float(template[list(mesh.LIP_CORNERS), 1].mean())
    ys = grid_axes()[1]
    above, below = FURROW_END
    keep = np.clip((corner_y + below - ys) / (above + below), 0.0, 1.0)
    keep = keep * keep * (3 - 2 * keep)
    return np.minimum(smile_map, 0.0) * keep[:, None]


def _wrinkle(
    up: np.ndarray,
    along: np.ndarray,
    *,
    width: float = WRINKLE_WIDTH,
    ends: float = WRINKLE_ENDS,
    ridge: float = WRINKLE_RIDGE[0],
) -> np.ndarray:
    """One wrinkle's change of log luminance at strength 1: up (Gh, Gw), each grid point's
    distance above the wrinkle's line (IOD), along (Gh, Gw) its place along it (0 to 1,
    outside: none); width: the valley's half-width (IOD), the ridge's offset growing with it;
    ends: the share of its length over which it fades in and out; ridge: the lit ridge's
    height, a share of the valley's depth."""
    ends = np.clip(np.minimum(along, 1.0 - along) / ends, 0.0, 1.0)
    fade = np.where((along < 0) | (along > 1), 0.0, np.sin(0.5 * np.pi * ends) ** 2)
    offset = WRINKLE_RIDGE[1]
    offset *= width / WRINKLE_WIDTH
    valley = -np.exp(-0.5 * (up / width) ** 2)
    lit = ridge * np.exp(-0.5 * ((up - offset) / (1.3 * width)) ** 2)
    return WRINKLE_DEPTH * fade * (valley + lit)


def straight_wrinkles(
    lines: tuple[tuple[tuple[float, float], ...], ...], *, width: float = WRINKLE_WIDTH
) -> np.ndarray:
    """(Gh, Gw) straight wrinkles at strength 1, each from (x, y) to (x, y) in the template
    face frame (IOD) on the subject's left side and mirrored onto the right; width: their
    valleys' half-width (IOD)."""
    xs, ys = np.meshgrid(*grid_axes())
    total = np.zeros(SHAPE)
    for start, end in lines:
        for mirror in (1.0, -1.0):
            a = np.array([mirror * start[0], start[1]])
            b = np.array([mirror * end[0], end[1]])
            length = float(np.linalg.norm(b - a))
            u = (b - a) / length
            normal = np.array([-u[1], u[0]])
            normal = -normal if normal[1] > 0 else normal  # pointing up the face
            rel_x, rel_y = xs - a[0], ys - a[1]
            total += _wrinkle(
                rel_x * normal[0] + rel_y * normal[1],
                (rel_x * u[0] + rel_y * u[1]) / length,
                width=width,
            )
    return total


def forehead_lines(template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Gh, Gw) twice: the forehead's lines at strength 1 in its middle and in its outer parts
    (drawn: see FOREHEAD_LINES), on the template face (478, 2)."""
    columns, rows = grid_axes()
    side = np.abs(columns)
    brow = np.interp(side, template[list(BROW_TOP), 0], template[list(BROW_TOP), 1])
    top = np.interp(side, template[list(FOREHEAD_TOP), 0], template[list(FOREHEAD_TOP), 1])
    total = np.zeros(SHAPE)
    for k, (share, half) in enumerate(FOREHEAD_LINES):
        # Smoothed along the face: the brows' edge bends sharply between them, the lines do not.
        line = gaussian_filter1d(brow + share * (top - brow), FOREHEAD_SMOOTH / STEP)
        up = line[None, :] - rows[:, None]
        along = (columns[None, :] + half) / (2 * half)
        # Deeper in some places than others, differently on each line, as skin folds.
        depth = 1.0 - FOREHEAD_VARY * (0.5 + 0.5 * np.cos(2 * np.pi * side / 0.55 + 2.1 * k))
        wrinkle = _wrinkle(up, along, width=FOREHEAD_WIDTH, ends=FOREHEAD_ENDS / (2 * half))
        total += depth[None, :] * wrinkle
    inner, outer = FOREHEAD_MIDDLE
    middle = np.clip((outer - side[None, :]) / (outer - inner), 0.0, 1.0)
    middle = middle * middle * (3 - 2 * middle)
    return total * middle, total * (1.0 - middle)


def dimple(template: np.ndarray) -> np.ndarray:
    """(Gh, Gw) the lip corner tightener's crease at strength 1 around the subject's right lip
    corner on the template face (478, 2) (drawn: see DIMPLE)."""
    xs, ys = np.meshgrid(*grid_axes())
    corner = template[mesh.LIP_CORNERS[0]]
    radius, above, below = DIMPLE
    rel_x, rel_y = xs - corner[0], ys - corner[1]
    # Degrees from the line out from the corner (toward -x on the subject's right), down > 0.
    angle = np.degrees(np.arctan2(rel_y, -rel_x))
    along = (angle + above) / (above + below)
    return DIMPLE_DEPTH * _wrinkle(radius - np.hypot(rel_x, rel_y), along, width=DIMPLE_WIDTH)


def under_eye_groove(
    measured: np.ndarray, template: np.ndarray, *, scale: float
) -> tuple[np.ndarray, dict[str, float]]:
    """(Gh, Gw) the groove under the lower lids at strength 1 (see UNDER_EYE_CLIP), drawn from
    one clip's map `measured` (Gh, Gw) on the template face (478, 2), its depth times `scale`
    (the clips' mean smile over this clip's); and what was measured: the groove's distance
    below the lower lid and its darkening (IOD, log luminance, before scaling) and the map's
    half-width there (IOD)."""
    columns, rows = grid_axes()
    both = mirrored(measured)
    ring = template[list(mesh.LEFT_EYE)]
    inner, outer = ring[:, 0].min(), ring[:, 0].max()
    offsets, depths, widths = [], [], []
    lo, hi = UNDER_EYE_SPAN
    for col in np.flatnonzero(
        (columns > inner + lo * (outer - inner)) & (columns < inner + hi * (outer - inner))
    ):
        lid = float(lid_lines(ring, columns[col : col + 1])[1][0])
        below = rows - lid
        band = np.flatnonzero((below > UNDER_EYE_SEARCH[0]) & (below < UNDER_EYE_SEARCH[1]))
        profile = both[band, col]
        if not np.isfinite(profile).all():
            continue
        darkest = band[int(np.argmin(profile))]
        offsets.append(float(below[darkest]))
        depths.append(float(both[darkest, col]))
        # Half-width from the fall-off two grid steps either side (a Gaussian valley).
        side = np.array([both[darkest - 2, col], both[darkest + 2, col]]) / both[darkest, col]
        if np.all((side > 0) & (side < 1)):
            widths.append(float(2 * STEP / np.sqrt(-2 * np.log(side.mean()))))
    offset, depth = float(np.median(offsets)), float(np.median(depths))
    xs, ys = np.meshgrid(columns, rows)
    total = np.zeros(SHAPE)
    for mirror in (1.0, -1.0):
        side_x = mirror * xs
        lid = lid_lines(ring, side_x.ravel())[1].reshape(SHAPE)
        total += _wrinkle(
            lid + offset - ys,
            (side_x - inner) / (outer - inner),
            width=UNDER_EYE_WIDTH,
            ridge=0.0,
        )
    drawn = total * (depth * scale / -WRINKLE_DEPTH)
    facts = {
        "groove below the lower lid": offset,
        "its darkening": depth,
        "its half-width": float(np.median(widths)),
    }
    return drawn, facts


def nose_wrinkles() -> np.ndarray:
    """(Gh, Gw) the nose wrinkler's wrinkles at strength 1 (drawn: see NOSE_ACROSS)."""
    xs, ys = np.meshgrid(*grid_axes())
    total = np.zeros(SHAPE)
    for middle, half in NOSE_ACROSS:
        line = middle + NOSE_ACROSS_BEND * (xs / half) ** 2
        total += _wrinkle(line - ys, (xs + half) / (2 * half))
    return total + straight_wrinkles(NOSE_SIDES)


def furrow_depth(furrow_map: np.ndarray, template: np.ndarray) -> float:
    """The darkest change of the furrow between the nose wings' and the lip corners' heights
    (log luminance; < 0 darker), mean over the two sides."""
    grid = grid_points().reshape(*SHAPE, 2)
    corner_y = float(template[list(mesh.LIP_CORNERS), 1].mean())
    band = (grid[..., 1] > template[NOSE_TIP, 1]) & (grid[..., 1] < corner_y)
    sides = [band & (grid[..., 0] < 0), band & (grid[..., 0] > 0)]
    return float(np.mean([furrow_map[side].min() for side in sides]))


def fold_depth(smile_map: np.ndarray, template: np.ndarray) -> float:
    """The darkest change within 0.2 IOD outside each lip corner (log luminance; < 0 darker),
    mean over the two sides: where the fold from the nose to the mouth deepens."""
    grid = grid_points().reshape(*SHAPE, 2)
    depths = []
    for corner in mesh.LIP_CORNERS:
        c = template[corner]
        d = np.linalg.norm(grid - c, axis=-1)
        side = np.sign(c[0]) * (grid[..., 0] - c[0]) > 0
        depths.append(float(smile_map[(d < 0.2) & side].min()))
    return float(np.mean(depths))


def fold_line(values: np.ndarray) -> dict[str, float]:
    """Where and how deep a map's fold from the nose to the mouth runs: in each row of
    FOLD_ROWS, the darkest point of the mirrored map (`mirrored`) across FOLD_COLUMNS; the
    medians over the rows of its distance out from the face's middle (IOD), its change of log
    luminance and its full width where it is half as dark (IOD)."""
    columns, rows = grid_axes()
    both = mirrored(values)
    cols = np.flatnonzero((columns > FOLD_COLUMNS[0]) & (columns < FOLD_COLUMNS[1]))
    places, depths, widths = [], [], []
    for row in np.flatnonzero((rows >= FOLD_ROWS[0]) & (rows <= FOLD_ROWS[1])):
        profile = both[row, cols]
        if not np.isfinite(profile).all():
            continue
        j = int(np.argmin(profile))
        dark = profile < 0.5 * profile[j]
        lo = j - int(np.argmin(dark[j::-1])) if not dark[: j + 1].all() else 0
        hi = j + int(np.argmin(dark[j:])) if not dark[j:].all() else len(profile)
        places.append(float(columns[cols[j]]))
        depths.append(float(profile[j]))
        widths.append(float((hi - lo) * STEP))
    return {
        "out from the middle": float(np.median(places)),
        "darkening": float(np.median(depths)),
        "width": float(np.median(widths)),
    }


def fold_colour(
    smile_map: np.ndarray, *, maps: list[np.ndarray], colours: list[np.ndarray]
) -> np.ndarray:
    """(3,) how much R, G and B each change in the folds for a change of luminance of 1: per
    clip, the mean change of each where the smile's map darkens by FOLD_LEVEL or more over
    the mean change of luminance there, then the mean over the clips, scaled so that their
    luminance (Rec. 601 weights) is 1 again. A shadow in skin is warmer than grey."""
    fold = smile_map <= FOLD_LEVEL
    per_clip = []
    for ratio, colour in zip(maps, colours, strict=True):
        both = fold & np.isfinite(ratio) & np.all(np.isfinite(colour), axis=0)
        per_clip.append(colour[:, both].mean(axis=1) / ratio[both].mean())
    weights = np.mean(per_clip, axis=0)
    return weights / float(LUMA @ weights)


def save_look(path: Path, values: np.ndarray, *, scale: float = 0.15) -> None:
    """A grey PNG of a map: mid grey is no change, darker is darker, at +-scale full range."""
    img = np.clip(127.5 + 127.5 * np.nan_to_num(values) / scale, 0, 255).astype(np.uint8)
    Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=Path("../shared/clips"))
    parser.add_argument(
        "--out", type=Path, default=default_weights_dir() / "shading_v8.safetensors"
    )
    parser.add_argument("--no-manifest", action="store_true")
    parser.add_argument("--look", type=Path, default=None, help="write each map as a PNG here")
    args = parser.parse_args()
    if not args.no_manifest:
        try:
            manifest_file_name(args.out)
        except SpfemError as exc:
            parser.error(str(exc))
    model = ExpressionModel.load(DEFAULT_MODEL)
    template = model.template.double().numpy()
    maps, colours, lifts = [], [], []
    for name, glasses in SMILE_CLIPS.items():
        ratio, colour, facts = clip_ratio(args.clips / f"{name}.mp4", model=model, glasses=glasses)
        maps.append(ratio)
        colours.append(colour)
        lifts.append(facts["corner rise"])
        text = ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in facts.items()
        )
        print(f"{name}: {text}")
    # Each clip's change, scaled to the clips' mean smile: creases deepen with the smile.
    stack = np.stack(maps) * (np.mean(lifts) / np.array(lifts))[:, None, None]
    if args.look:
        args.look.mkdir(parents=True, exist_ok=True)
        for name, values in zip(SMILE_CLIPS, stack, strict=True):
            save_look(args.look / f"{name}.png", values)
    count = np.isfinite(stack).sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.where(count > 0, np.nansum(stack, axis=0) / np.maximum(count, 1), np.nan)
    both = np.nan_to_num(mirrored(mean))  # all-NaN columns: left at 0
    smile = blur(both, SMOOTH) * face_mask(template)
    smile = np.nan_to_num(smile)
    # Contempt's smirk (AU12R) is the smile on the subject's right side alone.
    xs = grid_points()[:, 0].reshape(SHAPE)
    right = np.clip(0.5 - xs / 0.3, 0.0, 1.0)
    smirk = smile * right
    nasolabial = furrow(smile, template)
    print(
        f"fold beside the lip corners, log luminance at AU12 = 1: {fold_depth(smile, template):.3f}"
    )
    # Averaging three people's folds could blur them into a wide, faint band if each fold lay
    # elsewhere on the template face; printed to show whether the shipped map keeps their depth.
    for name, values in [*zip(SMILE_CLIPS, stack, strict=True), ("smile unit", smile)]:
        line = fold_line(values)
        print(
            f"the fold from the nose to the mouth, {name}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in line.items())
        )
    print(
        "disgust's furrow above the lip corners, log luminance at strength 1: "
        f"{furrow_depth(nasolabial, template):.3f}"
    )
    channels = fold_colour(smile, maps=maps, colours=colours)
    print(
        "in the folds R, G and B change "
        + ", ".join(f"{w:.3f}" for w in channels)
        + " times the luminance"
    )
    groove_clip = list(SMILE_CLIPS).index(UNDER_EYE_CLIP)
    groove, groove_facts = under_eye_groove(
        maps[groove_clip], template, scale=float(np.mean(lifts) / lifts[groove_clip])
    )
    print(
        f"the groove under the lower lids on {UNDER_EYE_CLIP}: "
        + ", ".join(f"{k} {v:.3f}" for k, v in groove_facts.items())
        + f"; drawn at strength 1 down to {groove.min():.3f}"
    )
    wrinkles = nose_wrinkles()
    sneer = wrinkles * right
    crows = CROWS_FEET_DEPTH * straight_wrinkles(CROWS_FEET, width=CROWS_FEET_WIDTH)
    brows_inner, brows_outer = forehead_lines(template)
    frown = straight_wrinkles(FROWN_LINES, width=FOREHEAD_WIDTH)
    dimple_map = dimple(template)
    print(
        "the nose's wrinkles, log luminance at strength 1: "
        f"{wrinkles.min():.3f} to {wrinkles.max():.3f}"
    )
    if args.look:
        save_look(args.look / "smile.png", smile)
        save_look(args.look / "furrow.png", nasolabial)
        save_look(args.look / "nose.png", wrinkles)
        save_look(args.look / "nose_right.png", sneer)
        save_look(args.look / "crows_feet.png", crows)
        save_look(args.look / "forehead.png", brows_inner + brows_outer)
        save_look(args.look / "frown.png", frown)
        save_look(args.look / "dimple_right.png", dimple_map)
        save_look(args.look / "under_eyes.png", groove)
    # Each unit: its map at strength 1, what drives it, and from how far (`ShadingModel`).
    units = {
        "smile": (smile, {"AU12": 1.0}, 0.0),
        "smile_right": (smirk, SMIRK_DRIVERS, 0.0),
        "furrow": (nasolabial, FURROW_DRIVERS, 0.0),
        "nose": (wrinkles, NOSE_DRIVERS, 0.0),
        "nose_right": (sneer, NOSE_SNEER_DRIVERS, 0.0),
        "crows_feet": (crows, CROWS_FEET_DRIVERS, 0.0),
        "forehead_inner": (brows_inner, FOREHEAD_INNER_DRIVERS, FOREHEAD_THRESHOLD),
        "forehead_outer": (brows_outer, FOREHEAD_OUTER_DRIVERS, FOREHEAD_THRESHOLD),
        "frown": (frown, FROWN_DRIVERS, FROWN_THRESHOLD),
        "dimple_right": (dimple_map, DIMPLE_DRIVERS, 0.0),
        "under_eyes": (groove, UNDER_EYE_DRIVERS, 0.0),
    }
    drivers = np.zeros((len(units), model.num_aus))
    for row, (_, driven_by, _) in enumerate(units.values()):
        for au, weight in driven_by.items():
            drivers[row, model.au_names.index(au)] = weight
    config = {
        "kind": CHECKPOINT_KIND,
        "version": CHECKPOINT_VERSION,
        "origin": list(ORIGIN),
        "step": STEP,
        "au_names": list(model.au_names),
        "unit_names": list(units),
        "clips": list(SMILE_CLIPS),
        # Drawn where a fringe may hang: they shade only the skin.
        "under_hair": ["forehead_inner", "forehead_outer"],
    }
    tensors = {
        "maps": torch.from_numpy(np.stack([m for m, _, _ in units.values()]).astype(np.float32)),
        "thresholds": torch.tensor([t for _, _, t in units.values()]),
        "template": model.template.float(),
        "drivers": torch.from_numpy(drivers.astype(np.float32)),
        "channels": torch.from_numpy(channels.astype(np.float32)),
    }
    digest = save_checkpoint(args.out, tensors=tensors, config=config)
    print(f"wrote {args.out} (sha256 {digest[:12]})")
    if not args.no_manifest:
        update_manifest(
            name=DEFAULT_SHADING,
            path=args.out,
            description="smile shading (expression ratio images) measured on expr_d0, expr_d9 "
            "and expr_d19 by scripts/build_shading.py; disgust's furrow drawn from it, the "
            "nose's wrinkles drawn (both sides for disgust, one for contempt), the crow's feet "
            "drawn (happy), the forehead's lines drawn (raised brows), the frown's furrows drawn "
            "(lowered brows), contempt's dimple drawn, the groove under the lower lids drawn as "
            "measured on expr_d0 (happy)",
        )


if __name__ == "__main__":
    main()
