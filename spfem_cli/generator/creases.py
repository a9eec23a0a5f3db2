"""Creases an edit takes off with the expression that pressed them: the frown's furrows.

A warp that takes a frown off lifts the brows and draws them apart, but the furrows the frown
pressed into the skin between them are texture, and they stay: a face edited to neutral still
reads as frowning. Where an edit takes off part of a brow lowering (AU4), the furrows are lifted
in the edited frame itself: over the glabella, the detail between the crease's scale and the
skin's broad shading that is darker than its surroundings is taken out of each colour channel,
in proportion to the share of the frown taken off. Nothing is carried from another face or
frame, so nothing has to line up with the furrows; the lips, the eyes and anything far darker
than a crease (a brow's hairs, hair falling over the forehead, a rim of glasses) are left.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.expression import NOISE_FLOOR
from spfem_cli.generator.warp import HoldRegion, face_box, hold_weight

# The action unit whose creases are lifted, and below what present level (activation units)
# a frown is landmark noise.
FROWN_AU = "AU4"
MIN_PRESENT = NOISE_FLOOR
# The glabella, in the face frame (IOD): an ellipse centred this far above the midpoint of the
# brows' inner heads, as wide as the gap between them plus the margin on each side, with this
# half-height; faded out over the outer share of its radius. The brows themselves are left out
# (faded in over BROW_FADE around their outline), and so is everything below the inner heads'
# level, where the bridge of a pair of glasses sits.
GLABELLA_RAISE = 0.12
GLABELLA_MARGIN = 0.05
GLABELLA_HALF_HEIGHT = 0.32
GLABELLA_FADE = 0.35
BROW_FADE = 0.03
INNER_BROW_HEADS = (55, 285)  # the subject's right and left brows' lower inner points
# The band of detail a furrow lies in (Gaussian scales, IOD): finer than CREASE_SCALE is the
# skin's grain, which stays; broader than SHADING_SCALE is light and the face's shape.
CREASE_SCALE = 0.004
SHADING_SCALE = 0.04
# A furrow darkens the skin by a tenth or two; detail this much darker (log luminance) or more
# is something in front of the skin, and is left, fading in from half of it.
MAX_CREASE = 0.35
# The skin's own grain and fine lines, at rest too, darken it by about a hundredth: detail
# darker than its surroundings by up to this much (log luminance) is left, and a deeper furrow
# is lifted to this depth, so that a glabella without furrows is not smoothed.
GRAIN = 0.01


def frown_share(delta: np.ndarray, *, present: np.ndarray, au_names: tuple[str, ...]) -> float:
    """How much of the frown on the face an edit takes off, in [0, 1]: delta (K,) the edit's
    AU change, present (K,) the AU activations the face shows now, relative to its rest."""
    k = au_names.index(FROWN_AU)
    if present[k] < MIN_PRESENT or delta[k] >= 0:
        return 0.0
    return float(min(1.0, -delta[k] / present[k]))


def _glabella_ellipse(points: np.ndarray) -> tuple[float, float, float, float, float]:
    """(cx, cy, rx, ry, floor): the glabella's ellipse in the face frame (IOD) of the face
    whose landmarks are points (478, 2), and the height below which nothing is lifted."""
    right, left = points[list(INNER_BROW_HEADS)]
    cx = 0.5 * (right[0] + left[0])
    cy = 0.5 * (right[1] + left[1]) - GLABELLA_RAISE
    rx = 0.5 * abs(left[0] - right[0]) + GLABELLA_MARGIN
    return cx, cy, rx, GLABELLA_HALF_HEIGHT, max(right[1], left[1])


def glabella_weight(query: np.ndarray, *, points: np.ndarray) -> np.ndarray:
    """(M,) in [0, 1]: how much each face-frame point query (M, 2) belongs to the glabella of
    the face whose landmarks are points (478, 2), both IOD."""
    cx, cy, rx, ry, floor = _glabella_ellipse(points)
    radius = np.hypot((query[:, 0] - cx) / rx, (query[:, 1] - cy) / ry)
    w = np.clip((1.0 - radius) / GLABELLA_FADE, 0.0, 1.0)
    w = w * w * (3 - 2 * w)
    w[query[:, 1] > floor] = 0.0
    inside = np.flatnonzero(w > 0)
    near = torch.from_numpy(query[inside].astype(np.float32))
    for brow in (mesh.RIGHT_EYEBROW, mesh.LEFT_EYEBROW):
        region = HoldRegion(polygon=points[list(brow)], band=0.0, feather=BROW_FADE)
        w[inside] *= 1.0 - hold_weight(near, region).numpy()
    return w


def lift_furrows(
    frame: np.ndarray, *, face: FaceFrame, points: np.ndarray, share: float
) -> np.ndarray:
    """The frame (H, W, 3) uint8 RGB with the furrows between the brows lifted by share in
    [0, 1] (1: lifted to the skin's grain); face: its face frame; points: (478, 2) its
    landmarks in the face frame (IOD), where the edit put them. Returns frame itself when
    share is 0 or the glabella is off the frame."""
    if share <= 0:
        return frame
    height, width = frame.shape[:2]
    # The ellipse's box and the blur's reach around it.
    cx, cy, rx, ry, _ = _glabella_ellipse(points)
    reach = 3.0 * SHADING_SCALE
    corners = np.array(
        [[cx + sx * (rx + reach), cy + sy * (ry + reach)] for sx in (-1, 1) for sy in (-1, 1)]
    )
    x0, y0, x1, y1 = face_box(face.to_image(corners), width=width, height=height, margin=0.0)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return frame
    crop = frame[y0:y1, x0:x1].astype(np.float64)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    query = face.to_face(np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64))
    weight = glabella_weight(query, points=points).reshape(crop.shape[:2])
    if not np.any(weight > 0):
        return frame
    fine, broad = CREASE_SCALE * face.iod, SHADING_SCALE * face.iod
    logs = np.log(crop + 1.0)
    bands = gaussian_filter(logs, (fine, fine, 0)) - gaussian_filter(logs, (broad, broad, 0))
    luminance = bands @ np.array([0.299, 0.587, 0.114])
    # Only what is darker than its surroundings by more than the grain, and not far darker
    # (not skin); of that, what lies below the grain's depth.
    depth = np.maximum(-luminance, 0.0)
    crease = np.clip(2.0 - 2.0 * depth / MAX_CREASE, 0.0, 1.0)
    below = np.clip(1.0 - GRAIN / np.maximum(depth, 1e-9), 0.0, 1.0)
    gain = -share * (weight * crease * below)[..., None] * bands
    out = frame.copy()
    out[y0:y1, x0:x1] = np.clip(np.rint(crop * np.exp(gain)), 0, 255).astype(np.uint8)
    return out
