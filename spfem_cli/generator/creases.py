"""Creases an edit takes off with the expression that pressed them: the frown's furrows, the
lines a squint or a smile's raised cheeks press under and beside the eyes, and the lines
raised brows press across the forehead.

A warp that takes a frown off lifts the brows and draws them apart, but the furrows the frown
pressed into the skin between them are texture, and they stay: a face edited to neutral still
reads as frowning. The same holds for the eyes: taking a squint or a smile's raised cheeks off
opens the lids and lowers the cheeks, but the lines under the lower lids and the crow's feet
stay, and the eyes still smile; and for the forehead, whose lines stay when raised brows are
lowered. Where an edit takes off part of an expression that presses creases (`Crease`: the
brow lowerer AU4 for the furrows; the cheek raiser AU6 and the lid tightener AU7 for the eyes'
lines, which FaceMesh reads a smile's eyes as; the brow raisers AU1 and AU2 for the forehead's
lines), the creases are lifted in the edited frame itself: over their region, the detail
between the crease's scale and the skin's broad shading that is darker than its surroundings
is taken out of each colour channel, in proportion to the share of the expression taken off.
Nothing is carried from another face or frame, so nothing has to line up with the creases; the
eyes, the brows, anything far darker than a crease (lashes, a rim of glasses), hair hanging
over the forehead and dark spots (a freckle, a mole: `spots`) are left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import binary_dilation, gaussian_filter, label

from spfem_cli.face import mesh
from spfem_cli.face.glasses import inside_outlines
from spfem_cli.face.mesh import FaceFrame, face_box
from spfem_cli.generator.expression import NOISE_FLOOR
from spfem_cli.media.pixels import luma

# Below what present level (activation units) an expression is landmark noise.
MIN_PRESENT = NOISE_FLOOR
# Finer than this (Gaussian scale, IOD) is the skin's grain, which stays.
CREASE_SCALE = 0.004
# A crease darkens the skin by a tenth or two; detail this much darker (log luminance) or more
# is something in front of the skin, and is left, fading in from half of it.
MAX_CREASE = 0.35
# A crease is a line; a freckle or a mole is a spot, as dark, and part of the person: a patch
# of detail darker than SPOT_LEVEL times the crease's grain, of SPOT_MIN_PIXELS or more, no
# more than SPOT_ELONGATION times as long as it is wide (from its second moments) is left, and
# the pixel around it. Painted round spots 14-30% darker kept a third to two thirds of their
# darkness without this; real lines lose a little of their lift to it (expr_d3's furrows, over
# the frames with a frown taken off: 47% of the excess above calm lifted, 53% without; the
# eyes' lines, 3-11% less lifted). At 2 instead of 1.6, expr_d3's furrows, short and broad,
# lost 40%.
SPOT_LEVEL = 2.0
SPOT_MIN_PIXELS = 4
SPOT_ELONGATION = 1.6
# Hair falling over the skin (a fringe over the forehead) is darker than the skin at the
# shading's scale by more than this (log luminance). Its loose strands are lines too: those
# that cross the forehead's lines are left by the blur along them (`Crease.along`).
HAIR_DARKER = 0.3
# How strong the fine detail (`texture`, finer than HAIR_GRAIN IOD, over half the forehead
# lines' shading scale) of hair is, fading in from the first to the second (log luminance,
# root mean square): skin 0.004-0.02 (talk_s18's far side in shadow 0.013), a light brown
# fringe 0.03-0.05 (the demo's astronaut).
HAIR_TEXTURE = (0.015, 0.03)
HAIR_GRAIN = 0.012
# The forehead's skin is up to this much darker than the nose's bridge (log luminance, at the
# forehead's shading scale): 0.29 under expr_d9's fringe, 0.20 on talk_mead_sad, within 0.2 on
# eleven other clips' frames.
BRIDGE_TO_FOREHEAD = 0.35
NOSE_BRIDGE = 168

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

# The lines a squint or a smile's raised cheeks press under and beside the eyes (the lower
# lids' lines and the crow's feet): a band under each lower lid, this far below it (IOD),
# and a line from each outer eye corner outward (from EYE_LINE_START to EYE_LINE_END beyond
# the corner), falling EYE_LINE_SLOPE for each unit outward, as a smile's lines fan down
# toward the cheek; a pixel belongs to them by its distance from those lines, faded out from
# EYE_LINE_CORE to EYE_LINE_HALF_WIDTH (the brows lie above its reach). The eyes are left
# out, fading in over EYE_FADE around their outline, and so is what lies outside the face's
# outline (the background or the hair behind a turned head's far cheek), fading in over
# OVAL_FADE inside it.
UNDER_LID = 0.12
EYE_LINE_START = 0.05
EYE_LINE_END = 0.3
EYE_LINE_SLOPE = 0.35
EYE_LINE_CORE = 0.03
EYE_LINE_HALF_WIDTH = 0.1
EYE_FADE = 0.03
OVAL_FADE = 0.05

# The lines raised brows press across the forehead: the skin above the brows' upper edges
# (faded in over FOREHEAD_FLOOR_FADE above them), up to the face's outline raised by
# FOREHEAD_RAISE above the brows (faded in over OVAL_FADE inside it), no further out than the
# brows' outer ends and FOREHEAD_SIDE beyond them. Hair over it is left (`not_hair`).
FOREHEAD_FLOOR_FADE = 0.06
FOREHEAD_SIDE = 0.05
FOREHEAD_RAISE = 0.2


def glabella_corners(points: np.ndarray) -> np.ndarray:
    """(4, 2) the corners of the glabella's box (`glabella_weight`), face frame (IOD), for the
    face whose landmarks are points (478, 2)."""
    cx, cy, rx, ry, _ = _glabella_ellipse(points)
    return np.array([[cx + sx * rx, cy + sy * ry] for sx in (-1, 1) for sy in (-1, 1)])


def _glabella_ellipse(points: np.ndarray) -> tuple[float, float, float, float, float]:
    """(cx, cy, rx, ry, floor): the glabella's ellipse in the face frame (IOD) of the face
    whose landmarks are points (478, 2), and the height below which nothing is lifted."""
    right, left = points[list(INNER_BROW_HEADS)]
    cx = 0.5 * (right[0] + left[0])
    cy = 0.5 * (right[1] + left[1]) - GLABELLA_RAISE
    rx = 0.5 * abs(left[0] - right[0]) + GLABELLA_MARGIN
    return cx, cy, rx, GLABELLA_HALF_HEIGHT, max(right[1], left[1])


def _eye_lines(points: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The segments (start, end) the eyes' lines lie along (`eye_line_weight`), face frame
    (IOD), for the face whose landmarks are points (478, 2)."""
    segments = []
    eyes = (
        (mesh.RIGHT_EYE, mesh.RIGHT_EYE_CORNERS[0], -1.0),
        (mesh.LEFT_EYE, mesh.LEFT_EYE_CORNERS[0], 1.0),
    )
    for ring, outer, outward in eyes:
        under = points[list(ring)][list(mesh.EYE_RING_LOWER_LID)] + np.array([0.0, UNDER_LID])
        segments += list(zip(under[:-1], under[1:], strict=True))
        step = np.array([outward, EYE_LINE_SLOPE])
        corner = points[outer]
        segments.append((corner + EYE_LINE_START * step, corner + EYE_LINE_END * step))
    return segments


def eye_line_corners(points: np.ndarray) -> np.ndarray:
    """(4, 2) the corners of the box of the lines under and beside the eyes
    (`eye_line_weight`), face frame (IOD), for the face whose landmarks are points (478, 2)."""
    ends = np.array([end for segment in _eye_lines(points) for end in segment])
    lo = ends.min(axis=0) - EYE_LINE_HALF_WIDTH
    hi = ends.max(axis=0) + EYE_LINE_HALF_WIDTH
    return np.array([[x, y] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])])


def eye_line_weight(
    *, face: FaceFrame, points: np.ndarray, origin: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    """(h, w) in [0, 1]: how much each pixel of the window of `shape` at `origin` (x, y) in
    the frame belongs to the lines under and beside the eyes of the face (face frame `face`,
    landmarks points (478, 2) in it, IOD).

    Drawn in pixels, with distance transforms: the same sums done point by point over the
    window (every segment, the eyes' and the face's outlines) took 34 ms a 720p frame."""
    lines = np.zeros(shape, dtype=bool)
    for a, b in _eye_lines(points):
        count = 2 * int(np.ceil(np.linalg.norm(b - a) * face.iod)) + 2
        along = face.to_image(a + np.linspace(0.0, 1.0, count)[:, None] * (b - a)) - origin
        cols, rows = np.round(along).astype(int).T
        on = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
        lines[rows[on], cols[on]] = True
    if not lines.any():
        return np.zeros(shape)
    distance = _distance_inside(~lines) / face.iod
    w = _smoothstep((EYE_LINE_HALF_WIDTH - distance) / (EYE_LINE_HALF_WIDTH - EYE_LINE_CORE))
    w *= _away_from(
        (points[list(mesh.RIGHT_EYE)], points[list(mesh.LEFT_EYE)]),
        face=face,
        origin=origin,
        shape=shape,
        fade=EYE_FADE,
    )
    return w * _inside_face(points, face=face, origin=origin, shape=shape)


def _window_points(
    *, face: FaceFrame, origin: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    """(h * w, 2) the face-frame point (IOD) of each pixel of the window of `shape` at `origin`
    (x, y) in the frame, row by row."""
    ys, xs = np.mgrid[origin[1] : origin[1] + shape[0], origin[0] : origin[0] + shape[1]]
    return face.to_face(np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64))


def _inside_face(
    points: np.ndarray, *, face: FaceFrame, origin: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    """(h, w) in [0, 1]: 1 inside the face's outline (landmarks points (478, 2), face frame),
    fading out over OVAL_FADE (IOD) to 0 on it and outside, over the window of `shape` at
    `origin` (x, y) in the frame."""
    on_face = inside_outlines(
        (points[list(mesh.FACE_OVAL)],), face=face, origin=origin, shape=shape
    )
    if on_face.all():
        return np.ones(shape)
    # The fill takes in the pixels the outline crosses: one pixel in is still its edge.
    inward = _distance_inside(on_face) - 1.0
    return _smoothstep(inward / face.iod / OVAL_FADE)


def _forehead_floor(points: np.ndarray) -> np.ndarray:
    """(10, 2) the brows' upper edges as one line from the subject's right outer end to the
    left one, face frame (IOD), for the face whose landmarks are points (478, 2)."""
    return points[[*mesh.RIGHT_EYEBROW_UPPER, *mesh.LEFT_EYEBROW_UPPER[::-1]]]


def forehead_corners(points: np.ndarray) -> np.ndarray:
    """(4, 2) the corners of the forehead's box (`forehead_weight`), face frame (IOD), for the
    face whose landmarks are points (478, 2)."""
    floor = _forehead_floor(points)
    top = points[list(mesh.FACE_OVAL)][:, 1].min() - FOREHEAD_RAISE
    x0, x1 = floor[:, 0].min() - FOREHEAD_SIDE, floor[:, 0].max() + FOREHEAD_SIDE
    y1 = floor[:, 1].max()
    return np.array([[x, y] for x in (x0, x1) for y in (top, y1)])


def forehead_weight(
    *, face: FaceFrame, points: np.ndarray, origin: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    """(h, w) in [0, 1]: how much each pixel of the window of `shape` at `origin` (x, y) in
    the frame belongs to the forehead of the face (face frame `face`, landmarks points
    (478, 2) in it, IOD): above the brows, inside the face's outline."""
    query = _window_points(face=face, origin=origin, shape=shape)
    floor = _forehead_floor(points)
    order = np.argsort(floor[:, 0])
    above = np.interp(query[:, 0], floor[order, 0], floor[order, 1]) - query[:, 1]
    w = _smoothstep(above / FOREHEAD_FLOOR_FADE)
    beyond = np.maximum(floor[:, 0].min() - query[:, 0], query[:, 0] - floor[:, 0].max())
    w *= _smoothstep(1.0 - beyond / FOREHEAD_SIDE)
    w = w.reshape(shape)
    return w * _inside_face(_raised_outline(points), face=face, origin=origin, shape=shape)


def _raised_outline(points: np.ndarray) -> np.ndarray:
    """points (478, 2) with the face outline's points above the brows raised by
    FOREHEAD_RAISE (IOD): FaceMesh puts the outline's top well below the hairline, where
    the upper forehead's lines are."""
    raised = points.copy()
    oval = np.array(mesh.FACE_OVAL)
    brows_top = points[[*mesh.RIGHT_EYEBROW, *mesh.LEFT_EYEBROW], 1].min()
    over = oval[points[oval, 1] < brows_top]
    raised[over, 1] -= FOREHEAD_RAISE
    return raised


def glabella_weight(
    *, face: FaceFrame, points: np.ndarray, origin: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    """(h, w) in [0, 1]: how much each pixel of the window of `shape` at `origin` (x, y) in
    the frame belongs to the glabella of the face (face frame `face`, landmarks points
    (478, 2) in it, IOD). The brows are left out in pixels, with a distance transform: measured
    point by point to their outlines, they took 15 ms a 720p frame."""
    query = _window_points(face=face, origin=origin, shape=shape)
    cx, cy, rx, ry, floor = _glabella_ellipse(points)
    radius = np.hypot((query[:, 0] - cx) / rx, (query[:, 1] - cy) / ry)
    w = _smoothstep((1.0 - radius) / GLABELLA_FADE)
    w[query[:, 1] > floor] = 0.0
    w = w.reshape(shape)
    return w * _away_from(
        (points[list(mesh.RIGHT_EYEBROW)], points[list(mesh.LEFT_EYEBROW)]),
        face=face,
        origin=origin,
        shape=shape,
        fade=BROW_FADE,
    )


@dataclass(frozen=True)
class Crease:
    """A kind of crease an expression presses into the skin, lifted when the edit takes that
    expression off.

    aus: the action units that press it (the share of their sum taken off lifts it);
    shading_scale: broader than this (Gaussian scale, IOD) is light and the face's shape,
    which stays; grain: the skin's own darkening at rest in that band (log luminance): detail
    darker than its surroundings by up to this much is left, and a deeper crease is lifted to
    this depth, so that smooth skin is not smoothed further; weight: the region, (h, w) in
    [0, 1] over a window of the frame (keywords face, points, origin, shape as
    `eye_line_weight` takes them); corners: points (478, 2) -> (4, 2), the corners of the
    region's box in the face frame (IOD); along: the crease's scale along the frame's rows
    (Gaussian, IOD): longer than CREASE_SCALE for lines that run across the face, so that
    what crosses them (a strand of hair) is left; under_hair: whether hair may hang over the
    region (a fringe over the forehead), to be left out (`not_hair`)."""

    name: str
    aus: tuple[str, ...]
    shading_scale: float
    grain: float
    weight: Callable[..., np.ndarray]
    corners: Callable[[np.ndarray], np.ndarray]
    along: float = CREASE_SCALE
    under_hair: bool = False


FURROWS = Crease(
    name="furrows",
    aus=("AU4",),
    shading_scale=0.04,
    grain=0.01,
    weight=glabella_weight,
    corners=glabella_corners,
)
EYE_LINES = Crease(
    name="eye lines",
    aus=("AU6", "AU7"),
    shading_scale=0.04,
    grain=0.01,
    weight=eye_line_weight,
    corners=eye_line_corners,
)
FOREHEAD_LINES = Crease(
    name="forehead lines",
    aus=("AU1", "AU2"),
    shading_scale=0.06,
    grain=0.01,
    weight=forehead_weight,
    corners=forehead_corners,
    along=0.02,
    under_hair=True,
)
CREASES = (FURROWS, EYE_LINES, FOREHEAD_LINES)


def share_taken_off(
    delta: np.ndarray, *, present: np.ndarray, au_names: tuple[str, ...], aus: tuple[str, ...]
) -> float:
    """How much of the action units aus on the face (their sum) an edit takes off, in [0, 1]:
    delta (K,) the edit's AU change, present (K,) the AU activations the face shows now,
    relative to its rest."""
    idx = [au_names.index(name) for name in aus]
    on, change = float(np.sum(present[idx])), float(np.sum(delta[idx]))
    if on < MIN_PRESENT or change >= 0:
        return 0.0
    return min(1.0, -change / on)


def lift_creases(
    frame: np.ndarray,
    *,
    face: FaceFrame,
    points: np.ndarray,
    delta: np.ndarray,
    present: np.ndarray,
    au_names: tuple[str, ...],
) -> np.ndarray:
    """The frame (H, W, 3) uint8 RGB with each kind of crease (`CREASES`) lifted by the share
    of its expression that the AU change delta (K,) takes off the AU activations present
    (K,); face: its face frame; points: (478, 2) its landmarks in the face frame (IOD), where
    the edit put them. Returns frame itself when nothing is taken off."""
    out = frame
    for crease in CREASES:
        share = share_taken_off(delta, present=present, au_names=au_names, aus=crease.aus)
        lifted = _lifted_window(out, crease=crease, face=face, points=points, share=share)
        if lifted is not None:
            # One copy of the frame for all the kinds: at 1080p a copy is a few milliseconds.
            out = frame.copy() if out is frame else out
            window, pixels = lifted
            out[window] = pixels
    return out


def lift(
    frame: np.ndarray, *, crease: Crease, face: FaceFrame, points: np.ndarray, share: float
) -> np.ndarray:
    """The frame (H, W, 3) uint8 RGB with the crease lifted by share in [0, 1] (1: lifted to
    the skin's grain); face: its face frame; points: (478, 2) its landmarks in the face frame
    (IOD), where the edit put them. Returns frame itself when share is 0 or the region is off
    the frame."""
    lifted = _lifted_window(frame, crease=crease, face=face, points=points, share=share)
    if lifted is None:
        return frame
    out = frame.copy()
    window, pixels = lifted
    out[window] = pixels
    return out


def _lifted_window(
    frame: np.ndarray, *, crease: Crease, face: FaceFrame, points: np.ndarray, share: float
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """`lift`'s work: the window (rows, columns) of the frame it changes and the window's
    new pixels (h, w, 3) uint8, or None where it changes nothing."""
    if share <= 0:
        return None
    height, width = frame.shape[:2]
    # The region's box and the blur's reach around it.
    corners = crease.corners(points)
    centre = corners.mean(axis=0)
    corners = corners + 3.0 * crease.shading_scale * np.sign(corners - centre)
    x0, y0, x1, y1 = face_box(face.to_image(corners), width=width, height=height, margin=0.0)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    crop = frame[y0:y1, x0:x1].astype(np.float32)
    weight = crease.weight(face=face, points=points, origin=(x0, y0), shape=crop.shape[:2])
    if not np.any(weight > 0):
        return None
    weight = weight.astype(np.float32)
    fine, broad = CREASE_SCALE * face.iod, crease.shading_scale * face.iod
    logs = np.log(crop + 1.0)
    shading = blur(logs, rows=broad, cols=broad)
    bands = blur(logs, rows=fine, cols=crease.along * face.iod) - shading
    luminance = luma(bands)
    if crease.under_hair or crease.along != CREASE_SCALE:
        skin_shading = luma(shading)
    if crease.under_hair:
        bridge = shading_at(frame, face.to_image(points[[NOSE_BRIDGE]])[0], scale=broad)
        weight = weight * not_hair(skin_shading, weight=weight, reach=broad, bridge=bridge)
    # Only what is darker than its surroundings by more than the grain, and not far darker
    # (not skin); of that, what lies below the grain's depth.
    depth = np.maximum(-luminance, 0.0)
    skin = np.clip(2.0 - 2.0 * depth / MAX_CREASE, 0.0, 1.0)
    below = np.clip(1.0 - crease.grain / np.maximum(depth, 1e-9), 0.0, 1.0)
    if crease.along != CREASE_SCALE:
        # A spot is told by its shape, which the blur along the rows would draw out.
        depth = np.maximum(skin_shading - blur(luma(logs), rows=fine, cols=fine), 0.0)
    line = ~spots(np.where(weight > 0, depth, 0.0), level=SPOT_LEVEL * crease.grain)
    gain = -share * (weight * skin * below * line)[..., None] * bands
    pixels = np.clip(np.rint(crop * np.exp(gain)), 0, 255).astype(np.uint8)
    return (slice(y0, y1), slice(x0, x1)), pixels


def shading_at(frame: np.ndarray, point: np.ndarray, *, scale: float) -> float | None:
    """The skin's shading (log luminance blurred at scale pixels, Gaussian) of frame (H, W, 3)
    uint8 at point (2,) (x, y, pixels), or None where the point is off the frame."""
    height, width = frame.shape[:2]
    x, y = np.round(point).astype(int)
    if not (0 <= x < width and 0 <= y < height):
        return None
    reach = int(np.ceil(3 * scale))
    y0, x0 = max(y - reach, 0), max(x - reach, 0)
    patch = np.log(frame[y0 : y + reach + 1, x0 : x + reach + 1].astype(np.float32) + 1.0)
    rows, cols = np.mgrid[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]]
    kernel = np.exp(-0.5 * ((rows - y) ** 2 + (cols - x) ** 2) / scale**2)
    return float(np.sum(luma(patch) * kernel) / np.sum(kernel))


def blur(image: np.ndarray, *, rows: float, cols: float) -> np.ndarray:
    """image (h, w) or (h, w, C) float32 blurred by a Gaussian of scale rows down the columns
    and cols along the rows (pixels), each channel apart, reflected at the edges as scipy's
    gaussian_filter does. OpenCV's blur: the blurs are most of a lift's cost, and scipy's
    took four times as long (on two cores)."""
    return cv2.GaussianBlur(image, (0, 0), sigmaX=cols, sigmaY=rows, borderType=cv2.BORDER_REFLECT)


def not_hair(
    shading: np.ndarray,
    *,
    weight: np.ndarray,
    reach: float,
    bridge: float | None = None,
    detail: np.ndarray | None = None,
) -> np.ndarray:
    """(h, w) in [0, 1]: 0 where the skin's shading (h, w, log luminance at the crease's broad
    scale) is darker than the region's skin by HAIR_DARKER or more, fading in from half of
    it: hair falling over the skin. The region's skin is the 75th percentile of its shading
    over weight (h, w) above one half or, where given, the nose bridge's shading bridge less
    BRIDGE_TO_FOREHEAD, whichever is lighter (where a fringe covers most of the region, that
    percentile is hair). detail: (h, w) where given, the fine detail's strength (`texture`):
    skin in shadow (the far side of a turned head) is as dark as a light fringe, but smooth,
    so hair is what is darker by twice HAIR_DARKER (fading in from HAIR_DARKER) or textured
    (HAIR_TEXTURE) and darker by half of it (fading in from a quarter). The hair is grown by
    reach (pixels: the shading's scale)."""
    inside = weight > 0.5
    if not inside.any():
        return np.ones(shading.shape)
    skin = np.percentile(shading[inside], 75)
    if bridge is not None:
        skin = max(skin, bridge - BRIDGE_TO_FOREHEAD)
    darker = (skin - shading) / HAIR_DARKER
    if detail is None:
        clear = _smoothstep(2.0 - 2.0 * darker)
    else:
        lo, hi = HAIR_TEXTURE
        textured = _smoothstep((detail - lo) / (hi - lo))
        deep = 1.0 - _smoothstep(2.0 - darker)
        clear = 1.0 - np.maximum(deep, textured * (1.0 - _smoothstep(2.0 - 4.0 * darker)))
    # Along the hair's edge the shading is half skin, and the hair there looks like a deep
    # crease: the hair is grown by the shading's scale (a square: an ellipse took 12 times as
    # long).
    size = 2 * int(np.ceil(reach)) + 1
    return cv2.erode(clear.astype(np.float32), np.ones((size, size), np.uint8))


def texture(luminance: np.ndarray, *, fine: float, broad: float) -> np.ndarray:
    """(h, w) the strength of the detail finer than fine (pixels, Gaussian) in a log
    luminance image (h, w): its root mean square over broad (pixels)."""
    detail = luminance - blur(luminance, rows=fine, cols=fine)
    return np.sqrt(blur(detail * detail, rows=broad, cols=broad))


def crease_region(
    shape: tuple[int, ...], *, crease: Crease, face: FaceFrame, points: np.ndarray
) -> tuple[tuple[slice, slice], np.ndarray]:
    """Where the crease lies in a frame of shape (H, W, ...), for measuring it
    (`crease_depth`): the window around the face's landmarks points (478, 2, face frame) as
    (rows, columns), and the mask (h, w) of its pixels where the crease's weight is over
    one half."""
    x0, y0, x1, y1 = face_box(face.to_image(points), width=shape[1], height=shape[0], margin=0.0)
    weight = crease.weight(face=face, points=points, origin=(x0, y0), shape=(y1 - y0, x1 - x0))
    return (slice(y0, y1), slice(x0, x1)), weight > 0.5


def crease_depth(
    frame: np.ndarray,
    *,
    crease: Crease,
    window: tuple[slice, slice],
    inside: np.ndarray,
    iod: float,
) -> float:
    """How deep the crease is on frame (H, W, 3) uint8: the mean darkness (log luminance,
    >= 0) of the detail in its band (between CREASE_SCALE, or `Crease.along` along the rows,
    and its shading scale, times iod pixels) over its pixels (`crease_region`: window and
    mask inside), hair over them left out as the lift leaves it (`Crease.under_hair`), but
    against the region's own skin level alone: the lift also takes the nose bridge's."""
    lum = np.log(luma(frame[window].astype(np.float64)) + 1.0)
    fine, broad = CREASE_SCALE * iod, crease.shading_scale * iod
    shading = gaussian_filter(lum, broad)
    band = gaussian_filter(lum, (fine, crease.along * iod)) - shading
    skin = np.ones(np.count_nonzero(inside))
    if crease.under_hair:
        weight = inside.astype(np.float32)
        clear = not_hair(shading.astype(np.float32), weight=weight, reach=broad)
        skin = clear[inside].astype(np.float64)
    return float(np.sum(np.maximum(-band[inside], 0.0) * skin) / max(np.sum(skin), 1e-9))


def spots(depth: np.ndarray, *, level: float) -> np.ndarray:
    """(h, w) bool: the spots among the patches of depth (h, w) (how much darker than its
    surroundings each pixel is, log luminance) above level: those of SPOT_MIN_PIXELS or more
    no more than SPOT_ELONGATION times as long as wide, grown by a pixel."""
    labels, count = label(depth > level, structure=np.ones((3, 3)))
    if count == 0:
        return np.zeros(depth.shape, dtype=bool)
    rows, cols = np.nonzero(labels)
    which = labels[rows, cols]
    pixels = np.bincount(which, minlength=count + 1).astype(np.float64)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(which, weights=values, minlength=count + 1) / np.maximum(pixels, 1)

    # Each patch's second moments (a pixel is a unit square: 1/12 of spread on each axis).
    mx, my = mean(cols), mean(rows)
    sxx = mean(cols * cols) - mx**2 + 1 / 12
    syy = mean(rows * rows) - my**2 + 1 / 12
    sxy = mean(cols * rows) - mx * my
    half_sum, half_gap = 0.5 * (sxx + syy), np.hypot(0.5 * (sxx - syy), sxy)
    elongation = np.sqrt((half_sum + half_gap) / np.maximum(half_sum - half_gap, 1e-9))
    spot = (elongation <= SPOT_ELONGATION) & (pixels >= SPOT_MIN_PIXELS)
    spot[0] = False
    return binary_dilation(spot[labels])


def _away_from(
    outlines: tuple[np.ndarray, ...],
    *,
    face: FaceFrame,
    origin: tuple[int, int],
    shape: tuple[int, int],
    fade: float,
) -> np.ndarray:
    """(h, w) in [0, 1]: 0 inside the outlines (M, 2) (face frame), rising to 1 over fade
    (IOD) outside them, over the window of `shape` at `origin` (x, y) in the frame."""
    inside = inside_outlines(outlines, face=face, origin=origin, shape=shape)
    if not inside.any():
        return np.ones(shape)
    return _smoothstep(_distance_inside(~inside) / face.iod / fade)


def _distance_inside(mask: np.ndarray) -> np.ndarray:
    """(h, w) float32: each pixel's distance (pixels) to the nearest pixel outside mask (h, w)
    bool, 0 outside it; mask must leave some pixel out. OpenCV's exact transform, a fifth of
    scipy's time."""
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """3x^2 - 2x^3 of x clipped to [0, 1]: a fade with no edge where it starts or ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)
