"""Sunglasses: dark lenses over the eyes, kept still while the face around them is edited.

FaceMesh places eyes behind dark lenses all the same, so an edit moved the lids it guessed
there: the lenses' top edges were stretched up with the brows, and the eyeball drawn between
the moved lids (`generator.warp.Warper.show_eyeballs`) painted lid lines onto the lenses. A
lens is found as what the eye's outline encloses when no eye shows there: a flat patch, where
an eye always shows the white, the iris and the lashes.

- Found over the clip (`LensFinder`): on frames spread over it, the spread of the grey
  levels inside each eye's outline; the clip wears dark lenses when the median over those
  frames, for both eyes, is under LENS_SPREAD. One frame is not enough: a blink shows a
  flat lid.
- Cut out on each frame (`lens_layer`): the pixels darker than halfway from the lens's grey
  to the cheek's, rid of what is thinner than a lens, joined to each eye; the lens's outline
  is where rays from the eye's centre leave them, less the rays that run on into dark hair
  beside it (`_star_shape`); with its rim and the bridge between the two (`_bridge`), it is
  painted out, edited behind and put back like glasses' rims (`face.glasses.RimLayer`).

Still weak: a brow resting on a lens's top, as dark as the lens, is joined to it over a few
pixels, which stay with the lens while the rest of the brow moves.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_fill_holes, binary_opening, distance_transform_edt, label
from skimage.draw import polygon

from spfem_cli.face import mesh
from spfem_cli.face.glasses import RimLayer, inside_outlines
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.face.sampling import FrameSampler
from spfem_cli.media.pixels import luma

# Grey levels (0-255): the 10th to 90th percentile spread inside an eye's outline under which
# no eye shows there. On the 22 clips of ../shared/clips, the larger of a clip's two eyes'
# medians over its sampled frames is 46 at least (expr_d3, who squints and frowns hard; 47-153
# on the others); with sunglasses painted on, letting 8% of the eye through, 10
# (`scripts/measure_lenses.py`).
LENS_SPREAD = 16.0
# Frames spread over a clip are sampled: from MAX_SAMPLES to twice as many (`FrameSampler`).
MAX_SAMPLES = 12
# Faces with fewer pixels than this between the eyes show too little of an eye to tell.
MIN_IOD_PX = 30.0
# An eye outline enclosing fewer pixels than this is not measured (a blink, a tiny face).
MIN_OPENING_PX = 12
# The frame's window searched for lenses (face frame, IOD): both eyes, brow to cheek.
WINDOW_X = (-1.25, 1.25)
WINDOW_Y = (-0.55, 0.5)
# Where the cheek's grey is read (face frame, IOD): under each eye, below large lenses, in a
# square twice CHEEK_HALF wide.
CHEEK_Y = 0.55
CHEEK_HALF = 0.08
# A lens is not told from the skin when it is fewer grey levels darker than this.
MIN_CONTRAST = 12.0
# What is thinner than twice this (IOD) is not lens (a strand of hair, the bridge, an arm).
LENS_OPENING = 0.05
# How far outside its outline (IOD) a lens's rim may reach, where it is as dark as the lens;
# hair at the temple that meets the lens is kept with it as far.
RIM_REACH = 0.025
# A lens's outline is where RAYS rays from the eye's centre, stepped RAY_STEP (IOD) up to
# LENS_REACH, leave it. A ray ran on into something dark beside the lens (hair at the temple,
# a brow's tail) when it reaches BUMP times past the median of the BUMP_RAYS around it (cut
# back to that), or ends beyond TRIM times the ellipse fitted to the others (left out). A
# rectangular lens's corners lie about 1.2 times out.
RAYS = 72
BUMP = 1.1
BUMP_RAYS = 9
RAY_STEP = 0.01
LENS_REACH = 0.8
TRIM = 1.35
# The spread (IOD) of the skin that paints the lenses out. Where an edit raises a brow resting
# on a lens, the paint shows under it: at 0.1 it was the forehead's, a pale line under the
# raised brow; at this it is nearer the brow's own edge.
FILL = 0.04
# The matte's edge fades over this many pixels.
EDGE_PX = 1.5


def _window(face: FaceFrame, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixels of the frame covering WINDOW_X by WINDOW_Y, clipped."""
    corners = face.to_image(
        np.array([[x, y] for x in WINDOW_X for y in WINDOW_Y], dtype=np.float64)
    )
    height, width = shape[:2]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def _eyes(
    points: np.ndarray, *, face: FaceFrame, origin: tuple[int, int], shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels inside each eye's outline (right, left), (h, w) bool each, of a window at
    `origin` (x, y) pixels; points: (478, 2) landmarks, face frame."""
    right, left = (
        inside_outlines((points[list(ring)],), face=face, origin=origin, shape=shape[:2])
        for ring in (mesh.RIGHT_EYE, mesh.LEFT_EYE)
    )
    return right, left


def eye_spreads(frame: np.ndarray, *, face: FaceFrame, points: np.ndarray) -> list[float]:
    """The 10th-to-90th percentile spread of grey levels inside each eye's outline (right,
    left), NaN where the outline holds fewer than MIN_OPENING_PX pixels. frame: (H, W, 3)
    uint8 RGB; points: (478, 2) landmarks, face frame."""
    x0, y0, x1, y1 = _window(face, frame.shape)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return [float("nan"), float("nan")]
    grey = luma(frame[y0:y1, x0:x1])
    spreads = []
    for inside in _eyes(points, face=face, origin=(x0, y0), shape=grey.shape):
        values = grey[inside]
        if values.size < MIN_OPENING_PX:
            spreads.append(float("nan"))
            continue
        low, high = np.percentile(values, [10, 90])
        spreads.append(float(high - low))
    return spreads


class LensFinder(FrameSampler[list[float]]):
    """Measures the eyes' outlines (`eye_spreads`) on frames spread over a clip (MAX_SAMPLES
    to twice as many, `FrameSampler`), and decides whether dark lenses hide them."""

    def __init__(self, *, n_frames: int) -> None:
        super().__init__(n_frames=n_frames, samples=MAX_SAMPLES, min_iod_px=MIN_IOD_PX)

    def measure(self, frame: np.ndarray, *, face: FaceFrame, landmarks: np.ndarray) -> list[float]:
        return eye_spreads(frame, face=face, points=face.to_face(landmarks))

    def spread(self) -> float:
        """The larger of the two eyes' median spread over the frames used (NaN: none)."""
        spreads = np.array(self.results(), dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(spreads).any(axis=0).all():
            return float("nan")
        return float(np.nanmedian(spreads, axis=0).max())

    def found(self) -> bool:
        """Whether the clip's face wears dark lenses over both eyes."""
        spread = self.spread()
        return bool(np.isfinite(spread) and spread < LENS_SPREAD)


def lens_layer(frame: np.ndarray, *, face: FaceFrame, points: np.ndarray) -> RimLayer | None:
    """The dark lenses over the eyes of a frame (H, W, 3) uint8 RGB, with its face frame and
    (478, 2) face-frame landmarks, as a layer to paint out, edit behind and put back. None
    where this frame shows no lens over the eyes (an eye shows, or the lens is not darker
    than the cheek by MIN_CONTRAST)."""
    x0, y0, x1, y1 = _window(face, frame.shape)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    grey = luma(frame[y0:y1, x0:x1])
    insides = _eyes(points, face=face, origin=(x0, y0), shape=grey.shape)
    eyes = insides[0] | insides[1]
    if eyes.sum() < 2 * MIN_OPENING_PX:
        return None
    low, lens, high = np.percentile(grey[eyes], [10, 50, 90])
    if high - low >= 2 * LENS_SPREAD:
        return None
    cheeks = np.array(
        [
            [x + dx, CHEEK_Y + dy]
            for x in (-0.5, 0.5)
            for dx in np.linspace(-CHEEK_HALF, CHEEK_HALF, 5)
            for dy in np.linspace(-CHEEK_HALF, CHEEK_HALF, 5)
        ]
    )
    at = np.round(face.to_image(cheeks)).astype(int)
    height, width = frame.shape[:2]
    at = at[(at[:, 0] >= 0) & (at[:, 0] < width) & (at[:, 1] >= 0) & (at[:, 1] < height)]
    if not len(at):
        return None
    skin = float(np.median(luma(frame[at[:, 1], at[:, 0]])))
    if skin - lens < MIN_CONTRAST:
        return None
    dark = grey < 0.5 * (lens + skin)
    radius = LENS_OPENING * face.iod
    size = 2 * int(np.ceil(radius)) + 1
    yy, xx = np.mgrid[:size, :size] - size // 2
    labels, _ = label(binary_opening(dark, structure=np.hypot(yy, xx) <= radius))
    shapes = []
    for ring, inside in zip((mesh.RIGHT_EYE, mesh.LEFT_EYE), insides, strict=True):
        eye = points[list(ring)]
        found = np.unique(labels[inside])
        blob = binary_fill_holes(np.isin(labels, found[found > 0]))
        shapes.append(
            _star_shape(blob, centre=eye.mean(axis=0), face=face, origin=(x0, y0))
            if blob.any()
            else blob
        )
    if not any(shape.any() for shape in shapes):
        return None
    # Each with the edge of its rim: what is as dark as the lens just outside its shape.
    rim = RIM_REACH * face.iod
    shapes = [
        binary_fill_holes(shape | (dark & (distance_transform_edt(~shape) <= rim)))
        if shape.any()
        else shape
        for shape in shapes
    ]
    lenses = shapes[0] | shapes[1] | _bridge(dark, shapes=shapes, face=face, origin=(x0, y0))
    away = distance_transform_edt(~lenses)
    matte = away <= EDGE_PX
    alpha = np.clip(EDGE_PX + 0.5 - away, 0.0, 1.0).astype(np.float32)
    return RimLayer(
        window=(x0, y0, x1, y1),
        matte=matte,
        fill_sigma=max(2.0, FILL * face.iod),
        alpha=np.where(matte, alpha, 0.0).astype(np.float32),
    )


def _star_shape(
    blob: np.ndarray, *, centre: np.ndarray, face: FaceFrame, origin: tuple[int, int]
) -> np.ndarray:
    """The part of `blob` ((h, w) bool, a window at `origin` (x, y) pixels) that is one lens
    around an eye's `centre` (face frame): the outline where RAYS rays from the centre leave
    the blob, rid of the rays that run on into something dark beside the lens (hair at the
    temple): those that run out of the window, those that reach BUMP times past the median of
    the BUMP_RAYS around them, and those that end beyond TRIM times an ellipse fitted to the
    rest; filled, and what of the blob lies within the lens's rim of it."""
    angles = np.linspace(0.0, 2 * np.pi, RAYS, endpoint=False)
    steps = np.arange(1, round(LENS_REACH / RAY_STEP) + 1) * RAY_STEP
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    along = centre + steps[None, :, None] * dirs[:, None, :]
    px = np.round(face.to_image(along.reshape(-1, 2)) - origin).astype(int)
    h, w = blob.shape
    ok = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    on = np.zeros(len(px), dtype=bool)
    on[ok] = blob[px[ok, 1], px[ok, 0]]
    on = on.reshape(RAYS, len(steps))
    # Each ray's reach: the steps it stays on the blob from the centre. A ray that runs out of
    # the window or its length on the blob says nothing of where the lens ends.
    off = np.argmin(np.concatenate([on, np.zeros((RAYS, 1), bool)], axis=1), axis=1)
    reach = steps[off - 1]
    inside = np.concatenate([ok.reshape(RAYS, len(steps)), np.zeros((RAYS, 1), bool)], axis=1)
    ended = on[:, 0] & inside[np.arange(RAYS), off]
    around = (np.arange(RAYS)[:, None] + np.arange(BUMP_RAYS) - BUMP_RAYS // 2) % RAYS
    kept = np.where(ended, reach, np.nan)[around]
    seen = np.isfinite(kept).any(axis=1)
    usual = np.full(RAYS, np.inf)
    usual[seen] = np.nanmedian(kept[seen], axis=1)
    reach = np.minimum(reach, BUMP * usual)
    ends = centre + reach[:, None] * dirs
    keep = ended
    for _ in range(4):
        if keep.sum() < 6:
            return np.zeros_like(blob)
        keep = ended & (_ellipse_radius(ends, fit=ends[keep]) <= TRIM)
    outline = face.to_image(ends[keep]) - origin
    shape = np.zeros_like(blob)
    shape[polygon(outline[:, 1], outline[:, 0], shape=blob.shape)] = True
    return shape | (blob & (distance_transform_edt(~shape) <= RAY_STEP * face.iod * 2))


def _bridge(
    dark: np.ndarray, *, shapes: list[np.ndarray], face: FaceFrame, origin: tuple[int, int]
) -> np.ndarray:
    """The bridge between two lenses (`shapes`, (h, w) bool each, a window at `origin` (x, y)
    pixels): the dark pixels ((h, w) bool) between them, across from both, joined to both.
    Left to the warp, it bent with the skin between the brows."""
    if not (shapes[0].any() and shapes[1].any()):
        return np.zeros_like(dark)
    h, w = dark.shape
    yy, xx = np.mgrid[:h, :w]
    q = face.to_face(np.stack([xx + origin[0], yy + origin[1]], axis=-1).reshape(-1, 2))
    qx, qy = q[:, 0].reshape(h, w), q[:, 1].reshape(h, w)
    right, left = shapes
    top = min(qy[right].min(), qy[left].min())
    bottom = max(qy[right].max(), qy[left].max())
    between = (qx > qx[right].max()) & (qx < qx[left].min()) & (qy >= top) & (qy <= bottom)
    labels, _ = label(dark & between)
    near = [np.unique(labels[distance_transform_edt(~shape) <= 2.0]) for shape in (right, left)]
    joined = np.intersect1d(*near)
    return np.isin(labels, joined[joined > 0])


def _ellipse_radius(points: np.ndarray, *, fit: np.ndarray) -> np.ndarray:
    """(n,) where each of points (n, 2) lies against the axis-aligned ellipse fitted to `fit`
    (m, 2) by least squares: 1 on it, below 1 inside."""
    x, y = fit[:, 0], fit[:, 1]
    coef, *_ = np.linalg.lstsq(
        np.stack([x * x, y * y, x, y], axis=1), np.ones(len(fit)), rcond=None
    )
    a, b, c, d = coef
    if a <= 0 or b <= 0:
        return np.ones(len(points))
    cx, cy = -c / (2 * a), -d / (2 * b)
    scale = 1 + a * cx * cx + b * cy * cy
    value = (a * (points[:, 0] - cx) ** 2 + b * (points[:, 1] - cy) ** 2) / scale
    return np.sqrt(np.maximum(value, 0.0))
