"""Glasses: their rims found, followed and kept still while the face behind them is edited.

The warp moves skin; a rim lying over the skin that the brows and lids move would be bent with
it. So an edit paints the rims out, warps the face, and puts the rims back where they were
(`RimLayer`).

- Found over the clip (`RimFinder`): rims are thin lines in a loop around each eye, passing
  well below the lower lid, where a face without glasses shows only smooth cheek. Frames
  spread over the clip are resampled into the normalised face frame (`mesh.FaceFrame`) at
  TILE_SCALE pixels per inter-ocular distance (IOD); thin lines are found there as a ridge
  response (the Hessian's larger eigenvalue in size), and under each eye the ellipse arc
  with the strongest line is fitted (`fit_loop`). The arc must clear the lower lid: a loop
  allowed to hug the eye scores as high on bare faces (the lid's own edge).
- Followed on each frame (`Rims.locate`): glasses sit in front of the eyes, so a head turn
  shifts them against the eye corners the face frame follows.
- Traced on each frame (`trace_rims`), at the frame's own resolution, as the smooth path of
  strongest ridge response near each loop; widened into a matte (`rim_layer`).

`python scripts/measure_glasses.py` prints every clip's score, and with --edit how much of
the rims an edit keeps in place.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import (
    binary_closing,
    distance_transform_edt,
    gaussian_filter,
    map_coordinates,
    maximum_filter,
    median_filter,
)
from scipy.spatial import cKDTree

from spfem_cli.face.mesh import FaceFrame
from spfem_cli.face.sampling import FrameSampler

# Pixels per IOD of the face-frame tile, and the tile's extent (face frame, IOD).
TILE_SCALE = 100
TILE_X = (-1.2, 1.2)
TILE_Y = (-0.75, 0.75)
# Scale (tile pixels) of the ridge filter: a rim is one to three tile pixels wide.
RIDGE_SIGMA = 1.2
# Faces with fewer pixels than this between the eyes are too small to show a rim.
MIN_IOD_PX = 40.0
# The search over each eye's loop: centre offsets from the eye centre (x, y), horizontal
# radius and the radius below the centre (IOD). The bottom must lie RIM_CLEARANCE below the
# eye centre (the lower lid lies about 0.1 below it).
RIM_DX = np.arange(-0.1, 0.101, 0.025)
RIM_DY = np.arange(-0.05, 0.101, 0.025)
RIM_RX = np.arange(0.3, 0.551, 0.025)
RIM_RY = np.arange(0.25, 0.451, 0.025)
RIM_RY_TOP = np.arange(0.2, 0.451, 0.025)
RIM_CLEARANCE = 0.33
# The top must lie this far above the eye centre, over the upper lid's crease.
RIM_TOP_CLEARANCE = 0.25
LOWER_ARC_DEG = np.arange(15.0, 166.0, 5.0)
UPPER_ARC_DEG = np.arange(200.0, 341.0, 5.0)
# A clip wears glasses when the weaker eye's loop, fitted on each sampled frame, has a lower
# arc whose median ridge response is this many times the tile's median, in the median over
# the frames. Measured on the 22 clips of ../shared/clips: glasses 2.2 (the clear plastic
# frames of expr_d12), 5.3 and 6.7; bare faces 0.7-1.4.
RIM_SCORE = 1.8
# Frames spread over a clip are sampled: from MAX_SAMPLES to twice as many (`FrameSampler`).
MAX_SAMPLES = 12
# Rims are kept still only if both can be traced on this share of the sampled frames.
MIN_TRACED_SHARE = 0.75
EYE_X = (-0.5, 0.5)


def face_tile(frame: np.ndarray, face: FaceFrame) -> np.ndarray:
    """The frame's grey levels resampled into the face frame: (150, 240) float32 for TILE_X by
    TILE_Y at TILE_SCALE pixels per IOD. frame: (H, W, 3) uint8 RGB."""
    xs = np.linspace(*TILE_X, round((TILE_X[1] - TILE_X[0]) * TILE_SCALE))
    ys = np.linspace(*TILE_Y, round((TILE_Y[1] - TILE_Y[0]) * TILE_SCALE))
    pix = face.to_image(np.stack(np.meshgrid(xs, ys), axis=-1))
    # Only the pixels under the tile are turned grey (a large frame has millions).
    h, w = frame.shape[:2]
    x0 = int(np.clip(np.floor(pix[..., 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(pix[..., 0].max()) + 1, x0 + 1, w))
    y0 = int(np.clip(np.floor(pix[..., 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(pix[..., 1].max()) + 1, y0 + 1, h))
    grey = frame[y0:y1, x0:x1].astype(np.float32).mean(axis=-1)
    coords = [pix[..., 1] - y0, pix[..., 0] - x0]
    return map_coordinates(grey, coords, order=1, mode="nearest").astype(np.float32)


def ridge_response(tile: np.ndarray, *, sigma: float = RIDGE_SIGMA) -> np.ndarray:
    """Thin lines, dark or bright, of a grey image (h, w): the larger eigenvalue in size of
    the scale-normalised Hessian at `sigma` pixels. Returns (h, w) float32, grey levels."""
    t = tile.astype(np.float32)
    gxx = gaussian_filter(t, sigma, order=(0, 2))
    gyy = gaussian_filter(t, sigma, order=(2, 0))
    gxy = gaussian_filter(t, sigma, order=(1, 1))
    half_trace = (gxx + gyy) / 2
    spread = np.sqrt(((gxx - gyy) / 2) ** 2 + gxy**2)
    return (np.abs(half_trace) + spread) * sigma**2


def tile_pixels(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Face-frame points (...,) x and y -> (2, ...) tile rows and columns."""
    h, w = shape
    col = (x - TILE_X[0]) * (w - 1) / (TILE_X[1] - TILE_X[0])
    row = (y - TILE_Y[0]) * (h - 1) / (TILE_Y[1] - TILE_Y[0])
    return np.stack([row, col])


def _arc_scores(
    response: np.ndarray,
    *,
    cx: np.ndarray,
    cy: np.ndarray,
    rx: np.ndarray,
    ry: np.ndarray,
    degrees: np.ndarray,
    ry_top: np.ndarray | None = None,
) -> np.ndarray:
    """Median response along each of C arcs given by centre and radii (C,), IOD, over the
    angles `degrees` (0 along x, 90 down the face); `ry_top` (C,), when given, is the radius
    above the centre (`ry` below it)."""
    ang = np.deg2rad(degrees)
    x = cx[:, None] + rx[:, None] * np.cos(ang)
    up = ry if ry_top is None else ry_top
    y = cy[:, None] + np.where(np.sin(ang) >= 0, ry[:, None], up[:, None]) * np.sin(ang)
    values = map_coordinates(response, tile_pixels(x, y, response.shape), order=1)
    return np.median(values, axis=1)


@dataclass(frozen=True)
class RimLoop:
    """One rim's loop: centre (IOD, face frame), horizontal radius, radii below and above
    the centre (IOD), and the lower arc's score (median ridge response over the tile's)."""

    cx: float
    cy: float
    rx: float
    ry_bottom: float
    ry_top: float
    score: float

    def polygon(self) -> np.ndarray:
        """(72, 2) points of the loop, two half-ellipses (face frame, y down)."""
        ang = np.deg2rad(np.arange(0.0, 360.0, 5.0))
        ry = np.where(np.sin(ang) >= 0, self.ry_bottom, self.ry_top)
        return np.stack([self.cx + self.rx * np.cos(ang), self.cy + ry * np.sin(ang)], axis=-1)


def fit_loop(response: np.ndarray, *, eye_x: float) -> RimLoop:
    """The best rim loop around the eye at (eye_x, 0) in a face-frame ridge response (h, w)
    (`ridge_response`): the lower arc that clears the lower lid and follows the strongest
    thin line, then the upper arc over it that clears the upper lid's crease."""
    base = max(float(np.median(response)), 1e-6)
    grid = np.stack(np.meshgrid(RIM_DX, RIM_DY, RIM_RX, RIM_RY, indexing="ij"), -1).reshape(-1, 4)
    grid = grid[grid[:, 1] + grid[:, 3] >= RIM_CLEARANCE]
    cx, cy, rx, ry = eye_x + grid[:, 0], grid[:, 1], grid[:, 2], grid[:, 3]
    scores = _arc_scores(response, cx=cx, cy=cy, rx=rx, ry=ry, degrees=LOWER_ARC_DEG) / base
    best = int(np.argmax(scores))
    tops = RIM_RY_TOP[cy[best] - RIM_RY_TOP <= -RIM_TOP_CLEARANCE]
    top_scores = _arc_scores(
        response,
        cx=np.full(len(tops), cx[best]),
        cy=np.full(len(tops), cy[best]),
        rx=np.full(len(tops), rx[best]),
        ry=tops,
        degrees=UPPER_ARC_DEG,
    )
    return RimLoop(
        cx=float(cx[best]),
        cy=float(cy[best]),
        rx=float(rx[best]),
        ry_bottom=float(ry[best]),
        ry_top=float(tops[int(np.argmax(top_scores))]),
        score=float(scores[best]),
    )


def fit_rims(response: np.ndarray) -> tuple[RimLoop, RimLoop]:
    """The rim loops of both eyes (subject's right, then left) in a ridge response (h, w)."""
    return fit_loop(response, eye_x=EYE_X[0]), fit_loop(response, eye_x=EYE_X[1])


@dataclass(frozen=True)
class Rims:
    """The rims of a pair of glasses over a clip: each eye's loop (subject's right, then
    left), the median of the loops fitted on the sampled frames; score: the median over those
    frames of the weaker eye's score (RIM_SCORE or more)."""

    right: RimLoop
    left: RimLoop
    score: float

    def polygons(self) -> tuple[np.ndarray, np.ndarray]:
        """Each rim's (72, 2) closed polygon, face frame (IOD)."""
        return self.right.polygon(), self.left.polygon()

    def locate(self, frame: np.ndarray, face: FaceFrame) -> tuple[np.ndarray, np.ndarray]:
        """Each rim's (72, 2) polygon on one frame (H, W, 3) uint8 RGB with its face frame:
        the clip's loops moved and scaled to the frame's rims. Glasses sit in front of the
        eyes, so a turn of the head shifts them against the eye corners the face frame
        follows."""
        right, left = self.follow(frame, face)
        return right.polygon(), left.polygon()

    def follow(
        self,
        frame: np.ndarray,
        face: FaceFrame,
        *,
        near: tuple[RimLoop, RimLoop] | None = None,
    ) -> tuple[RimLoop, RimLoop]:
        """The clip's loops moved and scaled to the rims of one frame (`locate`); with `near`,
        the loops followed on a frame shortly before, within FOLLOW_STEP of them."""
        response = ridge_response(face_tile(frame, face))
        before = (None, None) if near is None else near
        return (
            _follow(self.right, response, near=before[0]),
            _follow(self.left, response, near=before[1]),
        )

    def trace(self, frame: np.ndarray, face: FaceFrame) -> Traced:
        """The rims traced on one frame (H, W, 3) uint8 RGB with its face frame, on their own
        (`trace_rims`; frames in order: `SteadyRims`)."""
        return trace_rims(frame, face=face, loops=self.locate(frame, face))


# How far (IOD) and by what factors a clip's loop is moved and scaled to follow the rim on
# one frame, and the angles it is matched over: all but the top, where the brows are.
FOLLOW_SHIFT = np.arange(-0.1, 0.1001, 0.02)
FOLLOW_SCALE = np.arange(0.85, 1.1501, 0.05)
FOLLOW_ARC_DEG = np.arange(-40.0, 221.0, 5.0)
# Frames in order (`SteadyRims`): how far (IOD) and by how much of its scale a loop may move
# from where it was followed on the frame before. On expr_d19 (frame 154) the left loop,
# followed afresh, shrank 0.1 onto the brow and the lid crease seen through the lens, the
# rim was traced along them, and that line was held for over a second.
FOLLOW_STEP = (0.04, 0.05)


def _follow(loop: RimLoop, response: np.ndarray, *, near: RimLoop | None = None) -> RimLoop:
    """The loop moved and scaled (FOLLOW_SHIFT, FOLLOW_SCALE) to where its arc, all but the
    top, follows the strongest thin line of a frame's ridge response (h, w); with `near`
    (the loop followed shortly before), only within FOLLOW_STEP of it."""
    dx, dy, k = (g.ravel() for g in np.meshgrid(FOLLOW_SHIFT, FOLLOW_SHIFT, FOLLOW_SCALE))
    if near is not None:
        keep = (
            (np.abs(loop.cx + dx - near.cx) <= FOLLOW_STEP[0] + 1e-9)
            & (np.abs(loop.cy + dy - near.cy) <= FOLLOW_STEP[0] + 1e-9)
            & (np.abs(k - near.rx / loop.rx) <= FOLLOW_STEP[1] + 1e-9)
        )
        dx, dy, k = dx[keep], dy[keep], k[keep]
    scores = _arc_scores(
        response,
        cx=loop.cx + dx,
        cy=loop.cy + dy,
        rx=loop.rx * k,
        ry=loop.ry_bottom * k,
        degrees=FOLLOW_ARC_DEG,
        ry_top=loop.ry_top * k,
    )
    best = int(np.argmax(scores))
    return RimLoop(
        cx=loop.cx + float(dx[best]),
        cy=loop.cy + float(dy[best]),
        rx=loop.rx * float(k[best]),
        ry_bottom=loop.ry_bottom * float(k[best]),
        ry_top=loop.ry_top * float(k[best]),
        score=loop.score,
    )


def median_loop(loops: list[RimLoop]) -> RimLoop:
    """The per-parameter median of loops fitted on several frames."""
    names = [f.name for f in fields(RimLoop)]
    values = np.median([[getattr(loop, n) for n in names] for loop in loops], axis=0)
    return RimLoop(**{n: float(v) for n, v in zip(names, values, strict=True)})


class RimFinder(FrameSampler[tuple[tuple[RimLoop, RimLoop], bool]]):
    """Fits the rims on frames spread over a clip (MAX_SAMPLES to twice as many,
    `FrameSampler`), and decides whether they are there. Per frame used: the two loops
    fitted, and whether both rims could be traced along them (`trace_rims`)."""

    def __init__(self, *, n_frames: int) -> None:
        super().__init__(n_frames=n_frames, samples=MAX_SAMPLES, min_iod_px=MIN_IOD_PX)

    def measure(
        self, frame: np.ndarray, *, face: FaceFrame, landmarks: np.ndarray
    ) -> tuple[tuple[RimLoop, RimLoop], bool]:
        fit = fit_rims(ridge_response(face_tile(frame, face)))
        traced = trace_rims(frame, face=face, loops=(fit[0].polygon(), fit[1].polygon()))
        return fit, len(traced.lines) == len(fit)

    def score(self) -> float:
        """The median over the frames used of the weaker eye's score (0: none used)."""
        fits = [fit for fit, _ in self.results()]
        if not fits:
            return 0.0
        return float(np.median([min(right.score, left.score) for right, left in fits]))

    def traced_share(self) -> float:
        """The share of the frames used on which both rims could be traced (0: none used)."""
        traced = [ok for _, ok in self.results()]
        return float(np.mean(traced)) if traced else 0.0

    def rims(self) -> Rims | None:
        """The rims to keep still, or None: no glasses seen, no frame large enough offered,
        or rims too faint to trace on most frames (MIN_TRACED_SHARE), which are left to the
        warp: kept on some frames and bent on the next, they would flicker."""
        fits = [fit for fit, _ in self.results()]
        score = self.score()
        if score < RIM_SCORE or self.traced_share() < MIN_TRACED_SHARE:
            return None
        return Rims(
            right=median_loop([right for right, _ in fits]),
            left=median_loop([left for _, left in fits]),
            score=score,
        )


# The rim's pixels on a frame. Along each fitted loop, every TRACE_STEP_DEG, the rim is
# looked for within TRACE_REACH (IOD) across the loop (`_trace`); where the response on the
# traced line is TRACE_CONTRAST times the window's median or more, the pixels near the line
# are rim. Where the rim does not show (behind a dark brow, or rimless glasses), nothing is
# marked: skin put back unmoved there would show as a still copy of the brow.
TRACE_STEP_DEG = 2.0
TRACE_REACH = 0.08
TRACE_CONTRAST = 3.0
# Offsets across the loop are tried every TRACE_OFFSET_STEP pixels; the traced rim moves at
# most TRACE_SLOPE pixels across from one loop point to the next.
TRACE_OFFSET_STEP = 0.5
TRACE_SLOPE = 1.0
# A loop whose rim shows along less than this share of it is left out on that frame.
TRACE_MIN_SHARE = 0.6
# Nothing this near an eye's outline (IOD) is rim.
EYE_CLEARANCE = 0.04
# What is put back unmoved: the pixels within RIM_CORE_SIGMAS ridge scales plus RIM_CORE_PAD
# pixels of the traced line's middle, in full, fading to nothing over the next pixel. The
# rest of the matte shows the edit of the skin painted over it. Put back wherever it looked
# like the rim's colour instead, the edge of a brow lying along the rim stayed behind when
# the brow rose, as a dark band with a jagged edge (expr_d19, surprise).
RIM_CORE_SIGMAS = 1.0
RIM_CORE_PAD = 1.0
# The matte is put back whole where the edit changed nothing this near (pixels).
UNMOVED_REACH = 4
# Traced lines are resampled this finely (pixels) to measure each pixel's distance to them.
LINE_STEP = 0.25


@dataclass(frozen=True)
class RimLayer:
    """The pixels of a frame that are rim, so that the face can be edited behind them.

    window: (x0, y0, x1, y1) pixels of the frame the matte covers; matte: (y1 - y0, x1 - x0)
    bool, what is painted out, the rim and a margin; fill_sigma: spread (pixels) of the skin
    that paints a rim out; alpha: (y1 - y0, x1 - x0) float32 in [0, 1], how much of each
    pixel is put back unmoved (the rim itself, 0 off the matte).
    """

    window: tuple[int, int, int, int]
    matte: np.ndarray
    fill_sigma: float
    alpha: np.ndarray

    def paint_out(self, frame: np.ndarray) -> np.ndarray:
        """A copy of the frame (H, W, 3) uint8 with the rims replaced by the colours around
        them (a normalised Gaussian average of the pixels that are not rim). The average is
        smooth, so on a large face it is taken on a grid coarser by up to a third of its
        spread and read back at the rim's pixels."""
        x0, y0, x1, y1 = self.window
        region = frame[y0:y1, x0:x1].astype(np.float32)
        skin = (~self.matte).astype(np.float32)
        step = max(1, int(self.fill_sigma // 3))
        h, w = self.matte.shape
        hc, wc = -(-h // step), -(-w // step)

        def coarse(image: np.ndarray) -> np.ndarray:
            """Block sums of an (h, w) image on the coarse grid, zero-padded."""
            padded = np.zeros((hc * step, wc * step), dtype=np.float32)
            padded[:h, :w] = image
            return padded.reshape(hc, step, wc, step).sum(axis=(1, 3))

        weight = gaussian_filter(coarse(skin), self.fill_sigma / step)
        rows, cols = np.nonzero(self.matte)
        # Block centres sit at (step - 1) / 2 of a pixel into each block.
        at = [(rows - (step - 1) / 2) / step, (cols - (step - 1) / 2) / step]
        near = np.maximum(map_coordinates(weight, at, order=1, mode="nearest"), 1e-6)
        out = frame.copy()
        for c in range(3):
            total = gaussian_filter(coarse(region[..., c] * skin), self.fill_sigma / step)
            fill = map_coordinates(total, at, order=1, mode="nearest") / near
            out[rows + y0, cols + x0, c] = fill.round().clip(0, 255).astype(np.uint8)
        return out

    def put_back(
        self, edited: np.ndarray, *, original: np.ndarray, painted: np.ndarray
    ) -> np.ndarray:
        """`edited` (H, W, 3) uint8, the edit of `painted` (`paint_out` of `original`), with
        the rims of `original` put back where they were: the rim itself (`alpha`), and the
        whole matte exactly where the edit left everything within UNMOVED_REACH pixels as it
        was painted. (Not pixel by pixel: the smooth skin painted over the rim, moved a
        little, can be left as it was by chance, and the brow's edge would be put back there.)
        """
        x0, y0, x1, y1 = self.window
        change = np.abs(
            edited[y0:y1, x0:x1].astype(np.int16) - painted[y0:y1, x0:x1].astype(np.int16)
        ).max(axis=-1)
        unmoved = maximum_filter(change, size=2 * UNMOVED_REACH + 1) == 0
        alpha = np.where(unmoved, 1.0, self.alpha)[self.matte]
        rows, cols = np.nonzero(self.matte)
        rows, cols = rows + y0, cols + x0
        orig = original[rows, cols].astype(np.float32)
        moved = edited[rows, cols].astype(np.float32)
        out = edited.copy()
        blended = alpha[:, None] * orig + (1 - alpha[:, None]) * moved
        out[rows, cols] = blended.round().clip(0, 255).astype(np.uint8)
        return out


def _trace(
    loop_px: np.ndarray, response: np.ndarray, *, reach: float, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """The rim traced near a loop (L, 2) in window pixels (x, y), evenly spaced round it:
    (L, 2) points on it, and (L,) bool, where the response (h, w) there is `floor` or more.

    Across the loop, within `reach` pixels, the path of strongest response is found that
    moves at most TRACE_SLOPE pixels from one loop point to the next (a rim is smooth; a
    lash, a brow hair or a crease it passes is not followed), by dynamic programming from
    the strongest point round the loop.
    """
    ahead = np.roll(loop_px, -1, axis=0) - np.roll(loop_px, 1, axis=0)
    normal = np.stack([ahead[:, 1], -ahead[:, 0]], axis=-1)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
    offsets = np.arange(-reach, reach + 1e-9, TRACE_OFFSET_STEP)
    pts = loop_px[:, None, :] + offsets[None, :, None] * normal[:, None, :]  # (L, O, 2)
    values = map_coordinates(response, [pts[..., 1], pts[..., 0]], order=1, mode="nearest")
    start = int(np.argmax(values.max(axis=1)))
    order = np.roll(np.arange(len(loop_px)), -start)
    jump = int(round(TRACE_SLOPE / TRACE_OFFSET_STEP))
    n_off = len(offsets)
    # buffer[jump + k] holds offset k's best score so far; the rest stays -inf, so that
    # window[k] lists offset k's possible predecessors k - jump .. k + jump.
    buffer = np.full(n_off + 2 * jump, -np.inf)
    window = np.arange(n_off)[:, None] + np.arange(2 * jump + 1)[None, :]
    rows = np.arange(n_off)
    buffer[jump : jump + n_off] = values[order[0]]
    came = np.zeros((len(order), n_off), dtype=np.int64)
    for i, a in enumerate(order[1:], start=1):
        candidates = buffer[window]
        pick = np.argmax(candidates, axis=1)
        came[i] = rows + pick - jump
        buffer[jump : jump + n_off] = candidates[rows, pick] + values[a]
    score = buffer[jump : jump + n_off]
    path = np.zeros(len(order), dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for i in range(len(order) - 1, 0, -1):
        path[i - 1] = came[i, path[i]]
    chosen = np.empty(len(loop_px), dtype=np.int64)
    chosen[order] = path
    strength = values[np.arange(len(loop_px)), chosen]
    traced = loop_px + offsets[chosen][:, None] * normal
    return traced, median_filter(strength, size=5, mode="wrap") >= floor


@dataclass(frozen=True)
class Traced:
    """Rims traced on one frame: window (x0, y0, x1, y1) pixels of the frame searched; lines:
    per loop whose rim showed, (P, 2) points on the rim's middle, pixels of the frame (x, y);
    sigma: the ridge filter's scale there, pixels; arms: per rim whose arm showed, (Q, 2)
    points along the arm from where it leaves the rim (`_arm`)."""

    window: tuple[int, int, int, int]
    lines: tuple[np.ndarray, ...]
    sigma: float
    arms: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class _Search:
    """Where one frame's rims are looked for: window (x0, y0, x1, y1) pixels of the frame;
    response (y1 - y0, x1 - x0), the ridge response there at scale sigma (pixels); floor,
    the response a rim shows with (TRACE_CONTRAST times the window's median)."""

    window: tuple[int, int, int, int]
    response: np.ndarray
    sigma: float
    floor: float

    def along(self, line: np.ndarray) -> float:
        """The mean response along a line (P, 2), pixels of the frame (x, y); 0 outside."""
        x0, y0 = self.window[:2]
        at = [line[:, 1] - y0, line[:, 0] - x0]
        return float(map_coordinates(self.response, at, order=1, mode="constant").mean())


def _search(frame: np.ndarray, *, face: FaceFrame, around: np.ndarray) -> _Search:
    """The window of a frame (H, W, 3) uint8 RGB that holds the points `around` (M, 2),
    pixels (x, y), with room to trace rims near them, and its ridge response."""
    h, w = frame.shape[:2]
    sigma = max(0.7, RIDGE_SIGMA * face.iod / TILE_SCALE)
    pad = TRACE_REACH * face.iod + 3 * sigma
    x0 = int(np.clip(np.floor(around[:, 0].min() - pad), 0, w))
    x1 = int(np.clip(np.ceil(around[:, 0].max() + pad) + 1, 0, w))
    y0 = int(np.clip(np.floor(around[:, 1].min() - pad), 0, h))
    y1 = int(np.clip(np.ceil(around[:, 1].max() + pad) + 1, 0, h))
    if x1 - x0 < 3 or y1 - y0 < 3:
        return _Search(window=(x0, y0, x1, y1), response=np.zeros((0, 0)), sigma=sigma, floor=0)
    response = ridge_response(frame[y0:y1, x0:x1].astype(np.float32).mean(axis=-1), sigma=sigma)
    floor = TRACE_CONTRAST * max(float(np.median(response)), 1e-6)
    return _Search(window=(x0, y0, x1, y1), response=response, sigma=sigma, floor=floor)


def _loop_lines(
    search: _Search, *, face: FaceFrame, loops: tuple[np.ndarray, ...]
) -> list[np.ndarray | None]:
    """Per loop (M, 2), face frame, the rim traced near it: (P, 2) points where it shows,
    pixels of the frame (x, y); None where it shows along less than TRACE_MIN_SHARE of the
    loop (on that frame the rim is blurred, or it was not found)."""
    if search.response.size == 0:
        return [None for _ in loops]
    origin = np.asarray(search.window[:2], np.float64)
    ang = np.deg2rad(np.arange(0.0, 360.0, TRACE_STEP_DEG))
    lines: list[np.ndarray | None] = []
    for loop in loops:
        # The loop resampled evenly in angle about its centre, in window pixels.
        centre = loop.mean(axis=0)
        rel = loop - centre
        theta = np.unwrap(np.arctan2(rel[:, 1], rel[:, 0]))
        order = np.argsort(theta)
        radius = np.linalg.norm(rel, axis=-1)[order]
        r = np.interp(ang, theta[order] % (2 * np.pi), radius, period=2 * np.pi)
        even = centre + r[:, None] * np.stack([np.cos(ang), np.sin(ang)], axis=-1)
        traced, shows = _trace(
            face.to_image(even) - origin,
            search.response,
            reach=TRACE_REACH * face.iod,
            floor=search.floor,
        )
        lines.append(traced[shows] + origin if shows.mean() >= TRACE_MIN_SHARE else None)
    return lines


# The arms of the glasses where they leave the rims. Their hinges lie where the brows' outer
# ends move: warped with the skin, they broke off the rims kept still (expr_d19 in surprise).
# From ARM_STARTS points of the rim's outer side (its outer fifth, above the middle or a
# little below), the straight line ARM_LENGTH (IOD) long, leaving outward within ARM_DEG of
# the face's horizontal, with the strongest median ridge response past its first ARM_START
# (the rim itself); an arm where that is the window's rim floor or more (`_arm`).
ARM_LENGTH = 0.25
ARM_START = 0.03
ARM_DEG = np.arange(-30.0, 30.1, 3.0)
ARM_STARTS = 12
# Each loop's outward side along the face frame's x: subject's right, then left.
OUTWARD = (-1.0, 1.0)


def _reach(loops: tuple[np.ndarray, ...], face: FaceFrame) -> np.ndarray:
    """(M, 2) pixels of the frame a search window must hold: the loops (face frame) and
    ARM_LENGTH beyond the outer side of each."""
    ends = [
        loop[np.argmax(out * loop[:, 0])] + (out * (ARM_START + ARM_LENGTH), 0.0)
        for loop, out in zip(loops, OUTWARD, strict=True)
    ]
    return face.to_image(np.concatenate([*loops, np.array(ends)]))


def _arm(
    search: _Search, *, face: FaceFrame, line: np.ndarray, outward: float
) -> np.ndarray | None:
    """The arm leaving a rim traced on a frame, line (P, 2) pixels of the frame, on the side
    `outward` (-1 or 1 along the face frame's x): (Q, 2) pixels of the frame along it from
    the rim, about a pixel apart; None where no line leaving the rim shows (ARM_*)."""
    q = face.to_face(line)
    centre = q.mean(axis=0)
    out = outward * (q[:, 0] - centre[0])
    if out.max() <= 0:
        return None  # the rim showed only on its inner side
    starts = q[(out >= 0.8 * out.max()) & (q[:, 1] < centre[1] + 0.1)]
    starts = starts[:: max(1, len(starts) // ARM_STARTS)]
    if len(starts) == 0:
        return None
    step = 1.0 / face.iod
    ang = (0.0 if outward > 0 else np.pi) + np.deg2rad(ARM_DEG)
    heading = np.stack([np.cos(ang), np.sin(ang)], axis=-1)  # (A, 2)
    dist = np.arange(ARM_START, ARM_LENGTH, step)
    pts = starts[:, None, None] + dist[None, None, :, None] * heading[None, :, None]  # (S, A, D, 2)
    pix = face.to_image(pts.reshape(-1, 2)).reshape(pts.shape)
    x0, y0 = search.window[:2]
    at = [pix[..., 1] - y0, pix[..., 0] - x0]
    values = map_coordinates(search.response, at, order=1, mode="constant")
    score = np.median(values, axis=-1)  # (S, A)
    s, a = np.unravel_index(int(np.argmax(score)), score.shape)
    if score[s, a] < search.floor:
        return None
    return face.to_image(starts[s] + np.arange(0.0, ARM_LENGTH, step)[:, None] * heading[a])


def _arms(
    search: _Search, *, face: FaceFrame, lines: list[np.ndarray | None]
) -> list[np.ndarray | None]:
    """Per traced rim (None: not traced), its arm (`_arm`) or None."""
    return [
        None if line is None else _arm(search, face=face, line=line, outward=out)
        for line, out in zip(lines, OUTWARD, strict=True)
    ]


def _traced(
    search: _Search, lines: list[np.ndarray | None], arms: list[np.ndarray | None]
) -> Traced:
    return Traced(
        window=search.window,
        lines=tuple(line for line in lines if line is not None),
        sigma=search.sigma,
        arms=tuple(arm for arm in arms if arm is not None),
    )


def trace_rims(frame: np.ndarray, *, face: FaceFrame, loops: tuple[np.ndarray, ...]) -> Traced:
    """The rims of a frame (H, W, 3) uint8 RGB traced near the loops (M, 2), face frame (IOD),
    fitted to it (`Rims.locate`). A loop whose rim shows along less than TRACE_MIN_SHARE of
    it is left out (on that frame the rim is blurred, or it was not found)."""
    search = _search(frame, face=face, around=_reach(loops, face))
    lines = _loop_lines(search, face=face, loops=loops)
    return _traced(search, lines, _arms(search, face=face, lines=lines))


# A rim's line traced on the frame before is kept, where it was or moved with the head, while
# the ridge response along it is STEADY_SHARE or more of that along the line traced anew.
# Traced afresh on every frame, stretches of the line showed on one frame and not on the next
# and its points moved by about a pixel (expr_d19, a still head), and the matte's edge with
# them: a pixel beside the rim was put back unmoved on one frame and moved with the skin on
# the next, and the band along the rims changed from frame to frame over twice as much as the
# input's (scripts/measure_glasses.py --steadiness). Moving each point to the line before
# where within a pixel or two of it barely helped: it is the stretches that came and went.
STEADY_SHARE = 0.8
# How long (seconds) a rim that a blurred frame hides from the trace is carried with the head
# instead of left out: on expr_d9, 7 of 587 frames, in runs of one to three, left a rim out,
# and it bent with the brow for those frames and sprang back.
RIM_GAP_SECONDS = 0.15


class SteadyRims:
    """The rims of a clip (`Rims`) traced on its frames one after another, in order
    (`trace`), each rim's line kept from the frame before while it still lies on the rim
    (STEADY_SHARE), and carried with the head over a short gap (RIM_GAP_SECONDS at `fps`
    frames a second) where a blurred frame hides it; traced anew, the loops are followed
    near where they were the last time (`Rims.follow`, FOLLOW_STEP). One per pass over a
    clip: it remembers the last frame traced (`skip` when the next does not follow it)."""

    def __init__(self, rims: Rims, *, fps: float = 30.0) -> None:
        self.rims = rims
        self.max_gap = max(1, round(fps * RIM_GAP_SECONDS))
        # The last frame's face frame; per loop its line and its arm (None: not traced
        # there), and the response along the line where it was last traced anew.
        self._last: (
            tuple[FaceFrame, list[np.ndarray | None], list[np.ndarray | None], list[float]] | None
        ) = None
        # Per loop, how many frames in a row its line has been carried over a gap.
        self._gap: list[int] = []
        # The loops followed when the rims were last traced anew (face frame).
        self._loops: tuple[RimLoop, RimLoop] | None = None

    def skip(self) -> None:
        """The next frame traced does not follow the last: nothing is carried over to it."""
        self._last, self._gap, self._loops = None, [], None

    def trace(self, frame: np.ndarray, face: FaceFrame) -> Traced:
        """The rims traced on the next frame (H, W, 3) uint8 RGB, with its face frame."""
        if self._last is not None and all(line is not None for line in self._last[1]):
            # Most frames: both lines still lie on their rims, so the rims need not be
            # followed and traced anew (four fifths of the rims' cost), nor their arms.
            _, kept, arms, strength = self._last
            lines = [line for line in kept if line is not None]
            around = np.concatenate(lines + [arm for arm in arms if arm is not None])
            search = _search(frame, face=face, around=around)
            if all(
                search.along(line) >= STEADY_SHARE * s
                for line, s in zip(lines, strength, strict=True)
            ):
                self._gap = [0 for _ in lines]
                return _traced(search, kept, arms)
        self._loops = self.rims.follow(frame, face, near=self._loops)
        loops = tuple(loop.polygon() for loop in self._loops)
        search = _search(frame, face=face, around=_reach(loops, face))
        lines = _loop_lines(search, face=face, loops=loops)
        strength = [0.0 if line is None else search.along(line) for line in lines]
        arms = _arms(search, face=face, lines=lines)
        gap = [0 for _ in lines]
        if self._last is not None:
            before, kept, kept_arms, kept_strength = self._last
            for i, (fresh, old) in enumerate(zip(lines, kept, strict=True)):
                if fresh is None and old is not None and self._gap[i] < self.max_gap:
                    # Glasses do not leave the face for a frame or two: a rim blurred out of
                    # the trace is where the head took it, and is checked against its last
                    # clear strength once it shows again.
                    lines[i] = _with_head(old, before=before, face=face)
                    if kept_arms[i] is not None:
                        arms[i] = _with_head(kept_arms[i], before=before, face=face)
                    strength[i] = kept_strength[i]
                    gap[i] = self._gap[i] + 1
                else:
                    lines[i] = _held(search, fresh, old, before=before, face=face)
                    arms[i] = _held(search, arms[i], kept_arms[i], before=before, face=face)
        self._last = (face, lines, arms, strength)
        self._gap = gap
        return _traced(search, lines, arms)


def _with_head(line: np.ndarray, *, before: FaceFrame, face: FaceFrame) -> np.ndarray:
    """A line (P, 2), pixels of the frame whose face frame was `before`, moved as the head
    moved to `face`."""
    return face.to_image(before.to_face(line))


def _held(
    search: _Search,
    fresh: np.ndarray | None,
    old: np.ndarray | None,
    *,
    before: FaceFrame,
    face: FaceFrame,
) -> np.ndarray | None:
    """A line traced anew on a frame, or the one the frame before traced (face frame
    `before`), where it was or moved with the head, while the response along it is
    STEADY_SHARE of that along the fresh one or more. Pixels of the frame, (P, 2)."""
    if fresh is None or old is None:
        return fresh
    goal = STEADY_SHARE * search.along(fresh)
    for candidate in (old, _with_head(old, before=before, face=face)):
        if search.along(candidate) >= goal:
            return candidate
    return fresh


def rim_layer(
    *,
    face: FaceFrame,
    traced: Traced,
    eyes: tuple[np.ndarray, ...] = (),
) -> RimLayer | None:
    """The rims of a frame with its face frame, traced on it (`Rims.trace`,
    `SteadyRims.trace`), widened into a matte. Nothing
    within EYE_CLEARANCE of the eyes' outlines `eyes` ((16, 2) each, face frame) is rim: a
    lid line taken for a rim would be put back unmoved. None when no pixel is rim.

    Only the rim's core is put back unmoved (RIM_CORE_SIGMAS, RIM_CORE_PAD): a brow lying
    along the rim or crossing it moves with the skin up to the rim's edge."""
    if not traced.lines:
        return None
    x0, y0, x1, y1 = traced.window
    drawn = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    parts = traced.lines + traced.arms
    points = np.round(np.concatenate(parts)).astype(int)
    cols = np.clip(points[:, 0] - x0, 0, x1 - x0 - 1)
    rows = np.clip(points[:, 1] - y0, 0, y1 - y0 - 1)
    drawn[rows, cols] = True
    # Traced points are a couple of pixels apart on a large face: close the gaps first.
    # The matte is wider than the rim, so that none of it (a dark edge beside the traced
    # line) is left to move with the skin as a second rim. Grown by where the ridge response
    # was strong instead, it took in the edge of a brow lying along the rim.
    half_width = max(2.5, 2.5 * traced.sigma + 1.5)
    matte = distance_transform_edt(~binary_closing(drawn, iterations=2)) <= half_width
    if eyes:
        inside_eyes = inside_outlines(eyes, face=face, origin=(x0, y0), shape=matte.shape)
        matte &= distance_transform_edt(~inside_eyes) > EYE_CLEARANCE * face.iod
    if not matte.any():
        return None
    core = RIM_CORE_SIGMAS * traced.sigma + RIM_CORE_PAD
    alpha = np.zeros(matte.shape, dtype=np.float32)
    at = np.nonzero(matte)
    away = _line_distance(parts, np.stack([at[1] + x0, at[0] + y0], axis=-1))
    alpha[at] = np.clip(core + 0.5 - away, 0.0, 1.0)
    return RimLayer(
        window=traced.window,
        matte=matte,
        fill_sigma=max(1.5, 2.5 * traced.sigma),
        alpha=alpha,
    )


def _line_distance(lines: tuple[np.ndarray, ...], pixels: np.ndarray) -> np.ndarray:
    """(N,) the distance (pixels) from each of N pixels (N, 2) (x, y) to the nearest of the
    lines ((P, 2) points in order along each, pixels of the frame), measured to the lines
    resampled every LINE_STEP pixels, so that the rim's core is as smooth as its traced line.
    Points more than twice their usual spacing apart are not joined: the rim did not show
    between them."""
    dense = [np.concatenate(lines)]
    for line in lines:
        seg = np.diff(line, axis=0)
        length = np.linalg.norm(seg, axis=-1)
        if not length.size:
            continue
        joined = np.flatnonzero(length <= 2.0 * max(float(np.median(length)), 1.0))
        steps = np.ceil(length[joined] / LINE_STEP).astype(int)
        which = np.repeat(joined, steps)
        # Each joined segment's points at 0, 1/n, ... (n - 1)/n of the way along it.
        start = np.cumsum(steps) - steps
        share = (np.arange(which.size) - np.repeat(start, steps)) / np.repeat(steps, steps)
        dense.append(line[which] + share[:, None] * seg[which])
    distance, _ = cKDTree(np.concatenate(dense)).query(pixels.astype(np.float64))
    return np.asarray(distance, dtype=np.float32)


def inside_outlines(
    outlines: tuple[np.ndarray, ...],
    *,
    face: FaceFrame,
    origin: tuple[int, int],
    shape: tuple[int, int],
) -> np.ndarray:
    """(h, w) bool: the pixels of a window at `origin` (x, y) inside any of the outlines
    (M, 2), face frame.

    Filled by PIL, which scans only the rows an outline spans: skimage's `polygon` tests every
    pixel of the outline's box against every edge, 35 ms for a face's outline over a window
    of 430 by 230 pixels, against 0.3 ms."""
    image = Image.new("1", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(image)
    for outline in outlines:
        # PIL truncates vertex coordinates to whole pixels: +0.5 makes that a rounding.
        ring = face.to_image(outline) - origin + 0.5
        draw.polygon([tuple(p) for p in ring.tolist()], fill=1)
    return np.asarray(image, dtype=bool)
