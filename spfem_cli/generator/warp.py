"""The speech-preserving warp: sparse landmark displacements -> a smooth dense flow -> pixels.

The flow is built in the normalised face frame (IOD units) on a coarse grid over the face box,
upsampled, and applied to the original frame with one `grid_sample`, so the image is resampled
once (no crop-and-paste blur). Pixels outside the face box are never touched, and pixels where
the flow is negligible keep their exact source values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame, face_box


@dataclass(frozen=True)
class WarpConfig:
    """sigma: spatial spread of a landmark's displacement (IOD units); background: weight of
    the implicit zero displacement far from every landmark (relative to one landmark at
    distance 0); grid: flow samples per box side; margin: the face box's extra border as a
    fraction of the landmarks' extent; max_gradient: bound on the flow's Jacobian norm
    (pixels per pixel), below 1 so the warp never folds; refinements: residual corrections
    that make the flow where each landmark lands approach its displacement (Gaussian smoothing
    alone averages each landmark with its still neighbours and moves it too little);
    eye_sigma: spread (IOD) of the finer correction around each eye (0 turns it off);
    eyeballs: show the eyeball between the moved lids as it is, not stretched with them
    (`Warper.show_eyeballs`)."""

    sigma: float = 0.12
    background: float = 0.25
    grid: int = 48
    margin: float = 0.1
    # 0.8 rather than a safer-looking 0.6: at 0.6 the bound cut surprise's brow raise by a
    # sixth and let only half of a smile's corner lift through (scripts/measure_expressions.py
    # measures the warp's minimum Jacobian determinant on real clips; it stays positive).
    max_gradient: float = 0.8
    still_px: float = 0.02
    refinements: int = 3
    eye_sigma: float = 0.035
    eyeballs: bool = True


def shepard_flow(
    points: torch.Tensor,
    values: torch.Tensor,
    query: torch.Tensor,
    *,
    sigma: float,
    background: float,
) -> torch.Tensor:
    """Gaussian-weighted interpolation of sparse displacements.

    points: (N, 2), values: (N, 2), query: (M, 2), all in IOD units. Returns (M, 2): at each
    query point the Gaussian-weighted mean of `values`, pulled toward 0 where few points are
    near (the `background` weight), so the flow fades out beyond the face.
    """
    w = shepard_weights(points, query, sigma=sigma)
    return (w @ values) / (w.sum(dim=1, keepdim=True) + background)


def shepard_weights(points: torch.Tensor, query: torch.Tensor, *, sigma: float) -> torch.Tensor:
    """(M, N) the Gaussian weight of each of points (N, 2) at each of query (M, 2), IOD."""
    d2 = torch.cdist(query, points).square_()
    # Clamped so far-away weights stay normal floats: subnormal results make exp ~10x slower.
    return torch.exp_(d2.mul_(-0.5 / sigma**2).clamp_(min=-80.0))


def fitted_values(
    points: torch.Tensor,
    values: torch.Tensor,
    *,
    sigma: float,
    background: float,
    refinements: int,
) -> torch.Tensor:
    """Values to interpolate so that the smoothed flow at `points` (N, 2) comes close to the
    wanted `values` (N, 2): a few Jacobi steps of residual correction. Returns (N, 2)."""
    if refinements <= 0:
        return values
    # The points do not move between the steps, so their weights are found once.
    w = shepard_weights(points, points, sigma=sigma)
    norm = w.sum(dim=1, keepdim=True) + background
    fitted = values
    for _ in range(refinements):
        fitted = fitted + (values - (w @ fitted) / norm)
    return fitted


def landmark_flow(
    points: torch.Tensor, values: torch.Tensor, query: torch.Tensor, *, config: WarpConfig
) -> torch.Tensor:
    """The smooth flow at query (M, 2) from landmarks at points (N, 2) moved by values (N, 2),
    all face frame (IOD), as `config` spreads and fits them. Returns (M, 2); differentiable in
    `values` (through the values, not through where they are pinned).

    The flow is a backward map (the output at x shows the source at x - flow(x)), so each
    displacement is pinned where its landmark lands, not where it starts: pinned at the start,
    a landmark moved v landed off by about v times the flow's gradient (under surprise's lifted
    brows, the upper lids rose 2.5 times as far as asked)."""
    at = points + values.detach()
    fitted = fitted_values(
        at, values, sigma=config.sigma, background=config.background,
        refinements=config.refinements,
    )  # fmt: skip
    return shepard_flow(at, fitted, query, sigma=config.sigma, background=config.background)


def flow_jacobian(flow_px: torch.Tensor, *, step_x: float, step_y: float) -> torch.Tensor:
    """Finite-difference Jacobian of a flow field.

    flow_px: (G, G, 2) displacement in pixels sampled every step_x, step_y pixels.
    Returns (G-1, G-1, 2, 2): d(flow_i)/d(x_j).
    """
    dx = (flow_px[:-1, 1:] - flow_px[:-1, :-1]) / step_x
    dy = (flow_px[1:, :-1] - flow_px[:-1, :-1]) / step_y
    return torch.stack([dx, dy], dim=-1)


def dense_min_jacobian_det(dense: torch.Tensor) -> float:
    """Smallest determinant of x -> x - flow(x) over a dense flow (2, h, w) in pixels, by
    finite differences between neighbouring pixels; > 0 means the warp never folds."""
    if dense.shape[1] < 2 or dense.shape[2] < 2:
        return 1.0
    flow = dense.permute(1, 2, 0)  # (h, w, 2)
    return min_jacobian_det(flow, step_x=1.0, step_y=1.0)


def min_jacobian_det(flow_px: torch.Tensor, *, step_x: float, step_y: float) -> float:
    """Smallest determinant of the backward map x -> x - flow(x); > 0 means no folding."""
    jac = flow_jacobian(flow_px, step_x=step_x, step_y=step_y)
    eye = torch.eye(2, dtype=jac.dtype, device=jac.device)
    return float(torch.linalg.det(eye - jac).min())


@dataclass(frozen=True)
class HoldRegion:
    """A region of the face whose pixels must not move: the mouth, which the speech owns.

    polygon: (M, 2) closed contour in the face frame (IOD units); inside it and within `band`
    of it the flow is zero, fading back to full over `feather` (IOD). Near each of
    `release` (R, 2) points, within about `release_radius` (one for all, or (R,) one each),
    the hold lets go (lip corners that may follow the emotion).
    """

    polygon: np.ndarray
    band: float
    feather: float
    release: np.ndarray | None = None
    release_radius: float | np.ndarray = 0.06

    def release_radii(self) -> np.ndarray:
        """(R,) the release radius of each release point (IOD)."""
        count = 0 if self.release is None else len(self.release)
        return np.broadcast_to(np.asarray(self.release_radius, np.float64), (count,)).copy()


def contour_distance(points: torch.Tensor, polygon: torch.Tensor) -> torch.Tensor:
    """Distance from each point (P, 2) to the outline of a closed polygon (M, 2), inside or
    outside it. Returns (P,)."""
    a = polygon
    ab = torch.roll(polygon, -1, dims=0) - a  # (M, 2)
    inv_length2 = 1.0 / ab.square().sum(-1).clamp_min(1e-12)
    # x and y as (P, M) planes, squared distances to the nearest point of each edge, one root
    # per point: sums over a trailing axis of 2 and a root per pair took 4x as long.
    apx = points[:, 0, None] - a[:, 0]
    apy = points[:, 1, None] - a[:, 1]
    t = ((apx * ab[:, 0] + apy * ab[:, 1]) * inv_length2).clamp_(0, 1)
    dx, dy = apx.sub_(t * ab[:, 0]), apy.sub_(t * ab[:, 1])
    return (dx.square_() + dy.square_()).min(dim=1).values.sqrt_()


def polygon_distance(points: torch.Tensor, polygon: torch.Tensor) -> torch.Tensor:
    """Distance from each point (P, 2) to a closed polygon (M, 2); 0 inside it. Returns (P,)."""
    dist = contour_distance(points, polygon)
    a = polygon
    b = torch.roll(polygon, -1, dims=0)
    ab = b - a
    # Even-odd rule: a ray to the right crosses the contour an odd number of times inside.
    py = points[:, None, 1]
    crosses = (a[None, :, 1] > py) != (b[None, :, 1] > py)
    x_at = a[None, :, 0] + (py - a[None, :, 1]) * ab[None, :, 0] / torch.where(
        ab[None, :, 1] == 0, torch.full_like(ab[None, :, 1], 1e-12), ab[None, :, 1]
    )
    inside = (crosses & (points[:, None, 0] < x_at)).sum(dim=1) % 2 == 1
    return torch.where(inside, torch.zeros_like(dist), dist)


def hold_weight(points: torch.Tensor, hold: HoldRegion) -> torch.Tensor:
    """How firmly each point (P, 2), face frame, is held: 1 held still, 0 free. Returns (P,)."""
    poly = torch.as_tensor(hold.polygon, dtype=points.dtype, device=points.device)
    d = polygon_distance(points, poly)
    x = ((d - hold.band) / hold.feather).clamp(0, 1)
    weight = 1 - x * x * (3 - 2 * x)  # smoothstep: no crease where the hold ends
    if hold.release is not None and len(hold.release):
        rel = torch.as_tensor(hold.release, dtype=points.dtype, device=points.device)
        radii = torch.as_tensor(hold.release_radii(), dtype=points.dtype, device=points.device)
        near = torch.exp(-0.5 * (torch.cdist(points, rel) / radii) ** 2).max(dim=1).values
        weight = weight * (1 - near)
    return weight


def _max_jacobian_norm(dense: torch.Tensor) -> float:
    """Largest Frobenius norm of the Jacobian of a dense flow (2, h, w), pixels per pixel."""
    jac = flow_jacobian(dense.detach().permute(1, 2, 0), step_x=1.0, step_y=1.0)
    return float(jac.flatten(-2).norm(dim=-1).max()) if jac.numel() else 0.0


# How far beyond the held mouth the motion is toned down when it would fold (IOD units).
NEAR_HOLD_FADE = 0.3
# Each eye's lid contour: the points the eye correction fits. The irises neither pull nor
# anchor it (pinning them against a lifting lid makes the flow too steep to keep).
EYES = (mesh.RIGHT_EYE, mesh.LEFT_EYE)
_IRISES = np.array(mesh.RIGHT_IRIS + mesh.LEFT_IRIS)
# How far (in eye_sigma) around an eye's points the correction reaches before it is faded out.
EYE_REACH = 3.0
# Positions of each lid in an eye's ring (mesh.RIGHT_EYE, mesh.LEFT_EYE), for indexing arrays.
_LOWER_LID = list(mesh.EYE_RING_LOWER_LID)
_UPPER_LID = list(mesh.EYE_RING_UPPER_LID)
# How far inside the source's lids the eyeball is read (IOD): the lashes and the lid's shadow
# lie along the lid line. The eyeball's edge is drawn soft over `EYEBALL_FEATHER` (IOD, or
# one pixel if that is more).
EYEBALL_MARGIN = 0.02
EYEBALL_FEATHER = 0.006
# The band along the upper lid's edge that moves as one piece with it (IOD: lashes and lid
# margin), and the width over which it gives way to the flow above it.
LASH_BAND = 0.03
LASH_FADE = 0.02
# How far (IOD) from the landmarks' upper lid the lashes are looked for (`_lash_offset`).
LASH_SEARCH = 0.03
# How far below the lashes' darkest line the lid's dark margin is looked for (IOD,
# `_lid_margin`), in steps this fine: on the real clips it ends 0.014-0.034 below it.
MARGIN_SEARCH = 0.045
MARGIN_STEP = 0.0025
# The ring positions the lash offset moves: the upper lid between the corners.
_UPPER_EDGE = np.isin(np.arange(16), _UPPER_LID[1:-1]).astype(np.float64)
# An eye open less than EYE_OPEN_MIN (IOD, lid to lid at the iris; open eyes measure 0.10 to
# 0.18 on the real clips) shows too little eyeball to reuse: a blink, or the squint of a
# crying face, where the copies drew rings of the iris's few visible pixels. Above
# EYE_OPEN_FULL the eyeball is shown in full; in between the two drawings are blended.
EYE_OPEN_MIN = 0.07
EYE_OPEN_FULL = 0.1
# Faces with fewer pixels than this between the eyes keep the flow's eyes: there an iris is a
# few pixels across, the lash search and the iris's circle are off by as much, and the
# drawing put white streaks over the iris (smallface_s13, 35 pixels). At 56 (the MEAD clips)
# the drawing still opens the eyes cleanly.
EYEBALL_MIN_IOD_PX = 45.0
# A lid that moves less than this (IOD, about a pixel) away from the eyeball has uncovered
# nothing: the eyeball along it is read in place (a thin band read elsewhere drew the lower
# lid's line as dashes).
LID_STILL = 0.01
# Toward the eye's corners, where the slit is narrower than the second share of its widest, a
# rising upper lid uncovers less and less, none where it is narrower than the first: what it
# uncovers there is the corner's shadow and pink, not the white (filled with white, a smile's
# lifted outer corner kept a short grey streak along the lashes, expr_d14, where the slit is a
# third of its widest 0.02 IOD from the corner).
CORNER_OPEN = (0.35, 0.5)
# Where the warp shows each lid point (`Warper._lid_motion`): fixed-point steps on the backward
# map, at most this many, stopping when no point moves by more than the tolerance (pixels).
LID_MOTION_STEPS = 20
LID_MOTION_TOL = 0.02
# The white a raised lid uncovers (`_sclera_colour`): sampled this share of the opening clear
# of each lid, where the eye is open at least SCLERA_OPEN of its opening at the iris, and this
# many iris radii from its centre, keeping the samples between these quantiles of brightness
# (below: lashes and shadow; above: reflections of the light), from at least this many samples.
# It takes over from the copied iris between 1 and SCLERA_CLEAR radii.
SCLERA_INSET = 0.25
SCLERA_OPEN = 0.5
SCLERA_CLEAR = 1.15
SCLERA_KEPT = (0.4, 0.9)
SCLERA_MIN_SAMPLES = 6
# Each side of the iris keeps the quantiles of its own samples where it has this many.
SCLERA_SIDE_SAMPLES = 3
# Copies of the iris this far out from its centre (iris radii) or more may read the white
# beside it where the iris is smaller than its landmarks' circle (`_copies_of_the_white`):
# where the source stays light this far (iris radii) outward along the row from where they
# were read, on a side of the iris where this share of its copies toward the rim do so.
IRIS_RIM = 0.55
WHITE_RUN = (0.15, 0.3, 0.45)
WHITE_SIDE_SHARE = 0.6
# The upper lid's shadow on the uncovered white is the source's own (`_lid_shade`), measured
# down to LID_SHADE_SEARCH (IOD) below the lashes and no further than LID_SHADE_REACH of each
# column's opening, from columns reaching at least LID_SHADE_MIN_STEPS steps; never darker than
# LID_SHADE of the white's light. Where it cannot be measured, LID_SHADE at the lid's line
# rising to all of the light LID_SHADE_DEPTH (IOD) inside. Shaded by that fixed ramp, the
# white under talk_s32's raised lids was lighter than the source's white 0.03 IOD below its
# lashes by half, a pale crescent over a darker band (the source's shadow, read in place).
LID_SHADE = 0.6
LID_SHADE_DEPTH = 0.05
LID_SHADE_SEARCH = 0.08
LID_SHADE_REACH = 0.6
LID_SHADE_MIN_STEPS = 8
# A column keeps a shadow of its own, and counts for the white's lightest (`WhiteCeiling`),
# only where it is read this deep (IOD; the fixed ramp's depth): shallower, toward the eye's
# corners, its brightest is still in the shadow, and the shadow read against it too light.
LID_SHADE_OWN = 0.05
# Inside a lid that moved away, the smooth white gives way to the white read in place over
# this distance (IOD).
WHITE_BLEND = 0.02
# The smooth white is never lighter than the lightest the source's own white is in its column
# (`WhiteCeiling`), down to where the lid's shadow is measured: toward an eye's corner the
# white dims, and the smooth white, a blend of samples from the lit middle, was painted there
# as a pale arc over the column's own dimmer white (expr_d14 frame 40). Never darkened below
# this share of its light.
WHITE_CEILING_FLOOR = 0.6


def edge_fade(n: int, *, steps: float, device: torch.device) -> torch.Tensor:
    """(n,) weights rising linearly from 0 at both ends to 1 at `steps` samples in."""
    i = torch.arange(n, device=device, dtype=torch.float32)
    return (torch.minimum(i, i.flip(0)) / max(steps, 1e-6)).clamp(max=1)


def pixel_window(
    face: FaceFrame, *, lo: np.ndarray, hi: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[int, int, int, int]:
    """The pixels (x0, y0, x1, y1), end-exclusive and relative to `box`'s corner, covering
    the face-frame rectangle from lo (2,) to hi (2,) (IOD), clipped to `box`; empty when
    x1 <= x0 or y1 <= y0."""
    bx0, by0, bx1, by1 = box
    corners = face.to_image(
        np.array([[lo[0], lo[1]], [hi[0], lo[1]], [lo[0], hi[1]], [hi[0], hi[1]]])
    )
    x0 = int(np.clip(np.floor(corners[:, 0].min()), bx0, bx1)) - bx0
    x1 = int(np.clip(np.ceil(corners[:, 0].max()) + 1, bx0, bx1)) - bx0
    y0 = int(np.clip(np.floor(corners[:, 1].min()), by0, by1)) - by0
    y1 = int(np.clip(np.ceil(corners[:, 1].max()) + 1, by0, by1)) - by0
    return x0, y0, x1, y1


def lid_lines(ring: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The upper and lower lid's y at face-frame x (n,) for one eye's ring (16, 2) of face-frame
    points (y down), and whether each x lies between the eye's corners. Returns three (n,)."""

    def line(points: np.ndarray) -> np.ndarray:
        order = np.argsort(points[:, 0])
        return np.interp(x, points[order, 0], points[order, 1])

    within = (x > ring[:, 0].min()) & (x < ring[:, 0].max())
    return line(ring[_UPPER_LID]), line(ring[_LOWER_LID]), within


def iris_radius(iris: np.ndarray) -> float:
    """The iris's radius from its five landmarks (5, 2): centre, then four on the rim."""
    return float(np.linalg.norm(iris[1:] - iris[0], axis=1).mean())


@dataclass(frozen=True)
class LidsAt:
    """One eye's lids at some face-frame x (n,): the source's upper lid y, whether each x lies
    between the corners, how far (IOD) the edit moves both lids up together (`shift`), and how
    far beyond that and beyond `LID_STILL` it moves the upper lid up (`rise`), away from the
    eyeball. All (n,).

    Where both lids rise together the eye's slit moves up with the skin (a smile's cheeks
    lift the eye's corners and the lids beside them by 0.014-0.022 IOD): the slit is read
    from where the source shows it, as the flow would move it, and only a further rise of the
    upper lid uncovers eyeball, less and less toward the corners (`CORNER_OPEN`). Counted as
    uncovered, the corners' band between the source's lid and the moved one (lashes in the
    source) was filled with the white of the eye and showed as a grey streak along the lashes
    near each corner (expr_d14, portrait_s29).

    Only the upper lid uncovers eyeball. A lower lid drops when the edit takes off a squint
    (half of talk_s32's frames, `scripts/measure_lid_drop.py`), but FaceMesh's lower lid
    points can lie a few pixels below the visible lid, on the skin: the band between them and
    the dropped outline, filled with eyeball, showed as a grey crescent under her eyes. The
    eye is read in place down to the dropped outline, and the warp moves the skin below it.
    """

    upper: np.ndarray
    within: np.ndarray
    rise: np.ndarray
    shift: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, *, ring: np.ndarray, ring_out: np.ndarray) -> LidsAt:
        """ring, ring_out: (16, 2) the eye's lid points in the source and moved, face frame."""
        upper, lower, within = lid_lines(ring, x)
        up_out, low_out, _ = lid_lines(ring_out, x)
        shift = np.clip(np.minimum(upper - up_out, lower - low_out), 0.0, None)
        # A lid that moves less than LID_STILL has uncovered nothing.
        rise = np.clip(upper - up_out - shift - LID_STILL, 0.0, None)
        top, bottom, _ = lid_lines(ring, np.linspace(ring[:, 0].min(), ring[:, 0].max(), 33))
        widest = max(float((bottom - top).max()), 1e-9)
        shut, full = CORNER_OPEN
        rise = rise * np.clip(((lower - upper) / widest - shut) / (full - shut), 0.0, 1.0)
        return cls(upper=upper, within=within, rise=rise, shift=shift)

    def read_in_place(self, margin: float) -> np.ndarray:
        """The y (n,) below which the source's eyeball is read in place: the source's upper
        lid, and up to `margin` (IOD) further down where it rose (its lashes and shadow are
        not what the output shows there)."""
        return self.upper + np.minimum(self.rise, margin)


def eyeball_source(
    query: np.ndarray, *, lids: LidsAt, ring: np.ndarray, iris: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Where the source shows the eyeball seen at face-frame points query (n, 2).

    The eyeball does not move with the face's expression: a point the source's lids leave
    visible is read where it is (lower by as much as both lids rose together, `LidsAt.shift`:
    the slit moved with the skin), and so is all below the upper lid (the lower lid uncovers
    nothing). A point the upper lid hides (raised, it uncovers it), or that lies
    within `margin` (IOD) of an upper lid that rose (the lashes and the lid's shadow), is read
    at the same distance from the iris's centre, turned towards the horizontal until the
    source shows it `margin` inside its lids: iris looks alike all round the centre, so this
    fills the top of an iris with iris, where a mirror across the lid would have copied the
    iris upwards (the white is smoothed afterwards, `_sclera_colour`). What no turn reaches is
    mirrored across the lid that hides it. lids: the lids at query's x; ring: (16, 2) the
    eye's lid points in the source, iris: (5, 2) its iris centre then rim, both face frame.
    Returns (n, 2) face frame, and (n,) bool: the points read somewhere else.
    """

    def visible(points: np.ndarray, inset: float) -> np.ndarray:
        upper, lower, within = lid_lines(ring, points[:, 0])
        return within & (points[:, 1] >= upper + inset) & (points[:, 1] <= lower - inset)

    # Along an upper lid that stays (`LID_STILL`), the band inside it is what the output shows
    # there (lashes, the lid's shadow): read in place. Reading it elsewhere drew a jagged rim
    # along the lid.
    top = lids.read_in_place(margin)
    src = query.copy()
    src[:, 1] += lids.shift
    # A still lid uncovers nothing either beyond its line: the few pixels between the source's
    # line and the moved outline are the lid's edge, read in place (read elsewhere, single
    # pixels showed the iris or lashes as dark spots along the lower lid of talk_s18).
    # Beyond the source's corners (a moved corner) the skin there is read in place too: filled
    # from the eye, a smile's lifted outer corner ended in a grey tip.
    todo = lids.within & (src[:, 1] < top) & (lids.rise > 0)
    hidden = src[todo]
    offset = hidden - iris[0]
    radius = np.linalg.norm(offset, axis=1)
    side = np.where(offset[:, 0] < 0, -1.0, 1.0)
    found = np.zeros(len(hidden), dtype=bool)
    for keep in np.linspace(0.875, 0.0, 8):
        dy = offset[:, 1] * keep
        turned = np.stack([side * np.sqrt(np.maximum(radius**2 - dy**2, 0.0)), dy], axis=1)
        take = ~found & visible(turned + iris[0], margin)
        hidden[take] = turned[take] + iris[0]
        found |= take
    if not found.all():
        upper, lower, _ = lid_lines(ring, hidden[~found, 0])
        top, bottom = upper + margin, np.maximum(lower - margin, upper + margin)
        y = hidden[~found, 1]
        y = np.where(y < top, 2 * top - y, y)
        y = np.where(y > bottom, 2 * bottom - y, y)
        hidden[~found, 1] = np.clip(y, top, bottom)
    src[todo] = hidden
    return src, todo


def _profile_columns(ring: np.ndarray, iris: np.ndarray) -> np.ndarray:
    """(8,) face-frame x of eight columns of white, four on either side of the iris, clear of
    the iris and of the eye's corners. ring: (16, 2), iris: (5, 2) face frame."""
    radius = iris_radius(iris)
    left, right = ring[:, 0].min(), ring[:, 0].max()
    return np.concatenate(
        [
            np.linspace(left + 0.25 * (iris[0, 0] - radius - left), iris[0, 0] - radius, 4),
            np.linspace(iris[0, 0] + radius, right - 0.25 * (right - iris[0, 0] - radius), 4),
        ]
    )


def _lid_profiles(
    source: torch.Tensor,
    face: FaceFrame,
    ring: np.ndarray,
    iris: np.ndarray,
    region: tuple[int, int, int, int],
    *,
    steps: np.ndarray,
) -> np.ndarray:
    """(8, n) brightness (0-255) across the upper lid: in the eight columns of white
    (`_profile_columns`), at steps (n,) IOD below the ring's upper lid (y down).
    source: (1, 3, h, w) image of `region`; ring: (16, 2), iris: (5, 2) face frame."""
    xs = _profile_columns(ring, iris)
    upper, _, _ = lid_lines(ring, xs)
    query = np.stack(np.broadcast_arrays(xs[:, None], upper[:, None] + steps[None, :]), axis=-1)
    px = face.to_image(query.reshape(-1, 2)) - region[:2]
    values = sample_flow(source[0], torch.from_numpy(px).float().to(source.device)).mean(dim=1)
    return values.reshape(len(xs), len(steps)).cpu().numpy().astype(np.float64)


def _lash_offset(
    source: torch.Tensor,
    face: FaceFrame,
    ring: np.ndarray,
    iris: np.ndarray,
    region: tuple[int, int, int, int],
) -> float:
    """How far below the landmarks' upper lid (IOD, y down; negative: above) the lid's edge
    lies in the image: FaceMesh puts its lid points a pixel or two off the lashes, enough for
    the eyeball to be read from the lid or the lid from the eyeball. The edge is the darkest
    line near the landmarks' lid in the columns of white on either side of the iris (the lashes
    are darker than skin and white; the iris would be darker still). Arguments as for
    `_lid_profiles`."""
    steps = np.linspace(-LASH_SEARCH, LASH_SEARCH / 2, 13)
    v = _lid_profiles(source, face, ring, iris, region, steps=steps)
    # The minimum of each column to a fraction of a step (a parabola through the darkest
    # sample and its neighbours), so the edge moves smoothly from frame to frame.
    k = np.clip(v.argmin(axis=1), 1, len(steps) - 2)
    rows = np.arange(len(v))
    left, mid, right = v[rows, k - 1], v[rows, k], v[rows, k + 1]
    curve = left - 2 * mid + right
    frac = np.where(curve > 1e-6, 0.5 * (left - right) / np.maximum(curve, 1e-6), 0.0)
    step = steps[1] - steps[0]
    return float(np.median(steps[k] + np.clip(frac, -1.0, 1.0) * step))


def _off_the_iris(points: np.ndarray, *, ring: np.ndarray, iris: np.ndarray) -> np.ndarray:
    """Keep the lid's edge from reading the iris: each face-frame point (n, 2) below the
    source's upper lid (ring (16, 2)) and inside the iris's circle (iris (5, 2)) is moved up to
    the iris's rim, or to the lid line where the lid covers the rim. Returns (n, 2).

    The dark margin under the lashes moves up with a raised lid (`Warper.show_eyeballs`);
    over the iris the source shows iris there, and moved up it drew the iris taller (a blue
    cap on a painted eye, a jagged top on expr_d14's)."""
    radius = iris_radius(iris)
    dx = points[:, 0] - iris[0, 0]
    rim = iris[0, 1] - np.sqrt(np.maximum(radius**2 - dx**2, 0.0))
    upper, _, _ = lid_lines(ring, points[:, 0])
    over = (np.abs(dx) < radius) & (points[:, 1] > np.maximum(upper, rim))
    out = points.copy()
    out[over, 1] = np.maximum(upper, rim)[over]
    return out


def _lid_margin(profile: np.ndarray, steps: np.ndarray) -> float:
    """How far below the lashes' darkest line (IOD) the upper lid's dark margin ends: where,
    in each column of white, the image is first halfway from the darkest line's value to the
    brightest within MARGIN_SEARCH below it (the median over the columns, to a fraction of a
    step). profile: (8, n) `_lid_profiles` at steps (n,) from 0 down by MARGIN_STEP, at least
    to MARGIN_SEARCH, the ring's upper lid on the darkest line."""
    v = profile[:, steps <= MARGIN_SEARCH + MARGIN_STEP / 2]
    half = 0.5 * (v[:, 0] + v.max(axis=1))
    ends = []
    for row, level in zip(v, half, strict=True):
        k = int(np.argmax(row >= level))
        if k == 0:
            ends.append(0.0)
            continue
        # Between the two steps around the crossing, linearly, so the edge moves smoothly.
        frac = (level - row[k - 1]) / max(row[k] - row[k - 1], 1e-6)
        ends.append(steps[k - 1] + float(np.clip(frac, 0.0, 1.0)) * MARGIN_STEP)
    return float(np.median(ends))


@dataclass(frozen=True)
class LidShade:
    """The upper lid's shadow on the white, column by column: light (m, n) the share of the
    white's light left at depths (n,) IOD below the lid's line, rising to 1, in the columns of
    white at face-frame x (m,), increasing."""

    depth: np.ndarray
    light: np.ndarray
    x: np.ndarray

    @classmethod
    def flat(cls) -> LidShade:
        """A shadow for eyes whose own cannot be measured: LID_SHADE at the line, none from
        LID_SHADE_DEPTH in, in every column."""
        return cls(
            depth=np.array([0.0, LID_SHADE_DEPTH]),
            light=np.array([[LID_SHADE, 1.0]]),
            x=np.zeros(1),
        )

    def at(self, depth: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        """The light left at depths (q,) IOD below the line, at face-frame x (q,): linear
        between the columns, held beyond the outermost; the columns' median where x is None."""
        depth = np.asarray(depth, np.float64)
        curves = np.stack([np.interp(depth, self.depth, row) for row in self.light])
        if x is None:
            return np.median(curves, axis=0)
        pos = np.interp(x, self.x, np.arange(len(self.x), dtype=np.float64))
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, len(self.x) - 1)
        frac = pos - lo
        cols = np.arange(len(depth))
        return curves[lo, cols] * (1 - frac) + curves[hi, cols] * frac


def _lid_shade(
    profile: np.ndarray,
    steps: np.ndarray,
    *,
    reach: np.ndarray,
    deep: np.ndarray,
    xs: np.ndarray,
) -> LidShade:
    """The source's own shadow under its upper lid, to shade the white a raised lid uncovers
    as the source shades its white. In each column of white, down to LID_SHADE_REACH of the
    column's opening (below, the lower lid's shadow begins), the brightness at each depth over
    the column's brightest, made to rise with depth, never below LID_SHADE; a column not read
    LID_SHADE_OWN deep takes the median of those read LID_SHADE_MIN_STEPS deep.
    `LidShade.flat` where none does. The shadow deepens toward an eye's corners, and the
    median of the columns left the dimmer white there darker under a raised lid than the
    white painted above it, a pale arc over a dark line (expr_d14 frame 40).
    profile: (8, n) `_lid_profiles` at steps (n,) from 0 down, the ring's upper lid on the
    lashes' darkest line; reach, deep: which steps of each column are read and which columns
    are read LID_SHADE_OWN deep (`_read_depths`); xs: (8,) the columns' face-frame x
    (`_profile_columns`)."""
    curves = np.full(profile.shape, np.nan)
    for k, (row, read) in enumerate(zip(profile, reach, strict=True)):
        if read.sum() < LID_SHADE_MIN_STEPS:
            continue
        rising = np.maximum.accumulate(row[read]) / max(float(row[read].max()), 1.0)
        curves[k] = np.concatenate([rising, np.ones(len(steps) - read.sum())])
    measured = ~np.isnan(curves[:, 0])
    if not measured.any():
        return LidShade.flat()
    own = measured & deep
    curves[~own] = np.median(curves[measured], axis=0)
    order = np.argsort(xs)
    return LidShade(depth=steps, light=np.clip(curves[order], LID_SHADE, 1.0), x=xs[order])


@dataclass(frozen=True)
class WhiteCeiling:
    """The lightest the source's white is in each column of white (`_profile_columns`): at
    face-frame x (m,), brightness (m,) 0-255, down to where the lid's shadow is measured."""

    x: np.ndarray
    level: np.ndarray

    @classmethod
    def of(
        cls, profile: np.ndarray, *, reach: np.ndarray, deep: np.ndarray, xs: np.ndarray
    ) -> WhiteCeiling | None:
        """From `_lid_profiles` (8, n), over the steps `reach` (8, n) of each column, in the
        columns at xs (8,) read LID_SHADE_OWN deep (`deep` (8,), as `_lid_shade`); None where
        fewer than two columns are."""
        deep = deep.copy()
        # The two columns at the iris's rim cross its edge: their lightest is the iris's.
        deep[len(xs) // 2 - 1 : len(xs) // 2 + 1] = False
        if deep.sum() < 2:
            return None
        level = np.where(reach, profile, -np.inf).max(axis=1)
        order = np.argsort(xs[deep])
        return cls(x=xs[deep][order], level=level[deep][order])

    def limit(self, white: torch.Tensor, x: np.ndarray) -> torch.Tensor:
        """The smooth white (3, n) at face-frame x (n,), darkened where it is lighter than
        its column's own lightest (interpolated between the columns, held beyond them), by
        no more than WHITE_CEILING_FLOOR."""
        ceiling = torch.from_numpy(np.interp(x, self.x, self.level)).to(white)
        lum = white.mean(dim=0).clamp(min=1.0)
        return white * (ceiling / lum).clamp(WHITE_CEILING_FLOOR, 1.0)


def _under_the_lid(
    source: torch.Tensor,
    face: FaceFrame,
    ring: np.ndarray,
    iris: np.ndarray,
    region: tuple[int, int, int, int],
) -> tuple[float, LidShade, WhiteCeiling | None]:
    """The upper lid's dark margin (`_lid_margin`), its shadow on the white (`_lid_shade`)
    and the white's lightest in each column (`WhiteCeiling`), from one profile of the columns
    of white, down to LID_SHADE_SEARCH below the lashes. Arguments as for `_lid_profiles`, the
    ring's upper lid on the lashes' darkest line."""
    steps = np.arange(0.0, LID_SHADE_SEARCH + MARGIN_STEP / 2, MARGIN_STEP)
    profile = _lid_profiles(source, face, ring, iris, region, steps=steps)
    xs = _profile_columns(ring, iris)
    reach, deep = _read_depths(ring, xs, steps)
    return (
        _lid_margin(profile, steps),
        _lid_shade(profile, steps, reach=reach, deep=deep, xs=xs),
        WhiteCeiling.of(profile, reach=reach, deep=deep, xs=xs),
    )


def _read_depths(
    ring: np.ndarray, xs: np.ndarray, steps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """How deep under the upper lid each column of white at face-frame x (8,) is read: (8, n)
    the steps (n,) within LID_SHADE_REACH of the column's opening (below, the lower lid's
    shadow begins), and (8,) whether that reaches LID_SHADE_OWN. ring: (16, 2) face frame."""
    upper, lower, _ = lid_lines(ring, xs)
    openings = lower - upper
    reach = steps[None, :] <= LID_SHADE_REACH * openings[:, None]
    return reach, LID_SHADE_REACH * openings >= LID_SHADE_OWN


def _sclera_colour(
    source: torch.Tensor,
    face: FaceFrame,
    ring: np.ndarray,
    iris: np.ndarray,
    region: tuple[int, int, int, int],
    query: np.ndarray,
    *,
    openness: float,
) -> torch.Tensor | None:
    """(3, n) the white of the eye for face-frame points query (n, 2), as a smooth blend of
    the white the source shows (None where it shows too little).

    The white a raised lid uncovers cannot be copied from the same distance around the iris
    as the iris is: there the copies carry the iris's dark rim and the lashes' shadow into arcs
    and streaks. It is sampled clear of both lids (`SCLERA_INSET` of the opening, where the
    opening is at least `SCLERA_OPEN` of its height at the iris) and of the iris
    (`SCLERA_CLEAR` radii from its centre), the darkest and the brightest dropped
    (`SCLERA_KEPT`: lashes and shadow, reflections), and each point gets the samples' mean
    weighted by a Gaussian of one iris radius on the distance, so the white shades from one
    side of the iris to the other.
    source: (1, 3, h, w) image of `region`; ring: (16, 2), iris: (5, 2) face frame; openness:
    lid to lid at the iris (IOD).
    """
    radius = iris_radius(iris)
    xs = np.linspace(ring[:, 0].min(), ring[:, 0].max(), 12)
    upper, lower, within = lid_lines(ring, xs)
    # Not the corners, where the opening narrows to the lids' pink and shadow.
    within &= lower - upper >= SCLERA_OPEN * openness
    share = np.linspace(SCLERA_INSET, 1.0 - SCLERA_INSET, 5)
    ys = upper[:, None] + (lower - upper)[:, None] * share[None, :]
    samples = np.stack(np.broadcast_arrays(xs[:, None], ys), axis=-1).reshape(-1, 2)
    keep = np.repeat(within, len(share)) & (
        np.linalg.norm(samples - iris[0], axis=1) > SCLERA_CLEAR * radius
    )
    if keep.sum() < SCLERA_MIN_SAMPLES:
        return None
    samples = samples[keep]
    px = torch.from_numpy(face.to_image(samples) - region[:2]).float().to(source.device)
    colours = sample_flow(source[0], px).cpu().numpy()  # (m, 3)
    luma = colours.mean(axis=1)
    # Each side of the iris keeps its own light: one side of an eye is often in shadow (the
    # nose's side of a face lit from the other), and quantiles over both dropped all of the
    # dark side's samples, which painted it with the lit side's white.
    inner = samples[:, 0] < iris[0, 0]
    kept = np.zeros(len(luma), dtype=bool)
    for side in (inner, ~inner):
        group = side if side.sum() >= SCLERA_SIDE_SAMPLES else np.ones_like(side)
        lo, hi = np.quantile(luma[group], SCLERA_KEPT)
        kept |= side & (luma >= lo) & (luma <= hi)
    samples, colours = samples[kept].astype(np.float32), colours[kept]
    d2 = ((query[:, None, :].astype(np.float32) - samples[None]) ** 2).sum(axis=-1)
    w = np.exp((d2.min(axis=1, keepdims=True) - d2) / np.float32(2.0 * radius**2))
    white = (w @ colours) / w.sum(axis=1, keepdims=True)
    return torch.from_numpy(white.T.copy()).to(source.device)


def _white_weight(
    query: np.ndarray, *, lids: LidsAt, iris: np.ndarray, margin: float, copied: np.ndarray
) -> np.ndarray:
    """(n,) how much of the smooth white (`_sclera_colour`) each eyeball point at face-frame
    query (n, 2) takes: none inside the iris, all of it from SCLERA_CLEAR radii out, on the
    points read elsewhere (`copied`, (n,) bool) and fading out over WHITE_BLEND (IOD) inside an
    upper lid that rose. A hard edge there between the smooth white and the white read in
    place (darker along the source's lid) showed as a saw-toothed line. lids: the lids at
    query's x; iris: (5, 2); margin as in `eyeball_source`."""
    below = query[:, 1] + lids.shift - lids.read_in_place(margin)
    near_top = np.clip(1 - below / WHITE_BLEND, 0, 1)
    uncovered = np.where(copied, 1.0, near_top * np.clip(lids.rise / margin, 0, 1))
    return uncovered * _beyond_the_iris(query, iris)


def _beyond_the_iris(points: np.ndarray, iris: np.ndarray) -> np.ndarray:
    """(n,) how much of the white each face-frame point (n, 2) is, by its distance from the
    iris (5, 2): none inside it, all of it from SCLERA_CLEAR radii out."""
    r = np.linalg.norm(points - iris[0], axis=1) / iris_radius(iris)
    return np.clip((r - 1.0) / (SCLERA_CLEAR - 1.0), 0.0, 1.0)


def _lift_old_shadow(
    drawn: torch.Tensor,
    *,
    query: np.ndarray,
    source_y: np.ndarray,
    lids: LidsAt,
    iris: np.ndarray,
    copied: np.ndarray,
    shade: LidShade,
) -> None:
    """Move the upper lid's shadow up with a raised lid on the white read in place: each
    pixel of drawn (3, n) is lit by the shadow the moved lid casts at its depth over the one
    the source's lid cast where it was read. Left in the white under a raised lid, the
    source's shadow showed as a dark band under the uncovered white. query: (n, 2) face-frame
    points, source_y: (n,) where their pixels were read (`eyeball_source`), lids: `LidsAt`
    query's x, iris: (5, 2), copied: (n,) the points read elsewhere (left, they are painted
    white), shade: the source's shadow."""
    take = (lids.rise > 0) & ~copied
    if not take.any():
        return
    # Deeper by as much as the lid rose beyond the slit's own motion, which the eye's corners
    # share less and less of (`LidsAt.rise`): there the source shows the corner's pink and
    # shadow, not the white.
    depth = source_y[take] - lids.upper[take]
    x = query[take, 0]
    gain = shade.at(depth + lids.rise[take], x) / shade.at(depth, x)
    gain = 1.0 + (np.clip(gain, 1.0, 1.0 / LID_SHADE) - 1.0) * _beyond_the_iris(query[take], iris)
    idx = torch.from_numpy(np.flatnonzero(take)).to(drawn.device)
    drawn[:, idx] = (drawn[:, idx] * torch.from_numpy(gain).float().to(drawn.device)).clamp(
        max=255.0
    )


def _paint_white(
    drawn: torch.Tensor,
    white: torch.Tensor,
    *,
    weight: np.ndarray,
    inside: np.ndarray,
    x: np.ndarray,
    shade: LidShade,
) -> None:
    """Blend the smooth white (3, c) into the eyeball pixels drawn (3, n) by weight (n,), c of
    them above 0 (`_white_weight`), in the shadow of the lids: inside (n,) is how far (IOD) each
    point lies inside the moved lids, from the nearer one, shade the source's shadow at that
    depth (`_lid_shade`). Without the shadow the uncovered white read as a flat pale crescent
    cut out of the eye."""
    take = weight > 0
    light = shade.at(inside[take], x[take])
    idx = torch.from_numpy(np.flatnonzero(take)).to(drawn.device)
    t = torch.from_numpy(weight[take]).float().to(drawn.device)
    lit = white * torch.from_numpy(light).float().to(drawn.device)
    drawn[:, idx] = drawn[:, idx] * (1 - t) + lit * t


def _copies_of_the_white(
    lum: np.ndarray,
    *,
    query: np.ndarray,
    ring: np.ndarray,
    iris: np.ndarray,
    candidates: np.ndarray,
    read_from: np.ndarray,
    brightness: Callable[[np.ndarray], np.ndarray],
    halfway: float,
    margin: float,
) -> np.ndarray:
    """(n,) bool: which copies of the iris read the white beside it. The iris can be smaller
    than its landmarks' circle on one side (by 10-40% on expr_d0 looking aside), and there a
    copy toward the rim reads the white. A candidate copy (`IRIS_RIM` radii out or more,
    lighter than halfway from the iris to the white: candidates (n,) bool) is the white where
    the source stays lighter than halfway outward along its row for `WHITE_RUN` radii (or
    until the run leaves the lids), on a side of the iris where `WHITE_SIDE_SHARE` of the
    copies toward the rim do so; a highlight is a spot inside the iris, darker around it, and
    a highlight here and there near the rim is not the iris ending early.
    lum: (n,) brightness of the copies drawn at face-frame points query (n, 2), read from
    read_from (n, 2); ring: (16, 2), iris: (5, 2) in the source; brightness: the source's
    brightness (0-255) at face-frame points (m, 2), (m,); margin: how far inside the lids the
    white is read (IOD, as `eyeball_source` reads it)."""
    radius = iris_radius(iris)
    maybe = np.flatnonzero(candidates & (lum > halfway))
    points = read_from[maybe]
    outward = np.where(points[:, 0] < iris[0, 0], -1.0, 1.0) * radius
    light = np.ones(len(maybe), dtype=bool)
    for step in WHITE_RUN:
        further = points + np.stack([outward * step, np.zeros(len(maybe))], axis=1)
        upper, lower, within = lid_lines(ring, further[:, 0])
        # Past the lids and their lashes (the slit narrows toward the corners) the run has
        # left the white.
        shown = within & (further[:, 1] > upper + margin) & (further[:, 1] < lower - margin)
        light &= ~shown | (brightness(further) > halfway)
    white = np.zeros(len(lum), dtype=bool)
    side_of = np.sign(query[:, 0] - iris[0, 0])
    for side in (-1.0, 1.0):
        found = maybe[light & (side_of[maybe] == side)]
        if len(found) >= WHITE_SIDE_SHARE * (candidates & (side_of == side)).sum():
            white[found] = True
    return white


def _no_copied_highlights(
    drawn: torch.Tensor,
    *,
    query: np.ndarray,
    ring: np.ndarray,
    iris: np.ndarray,
    copied: np.ndarray,
    read_from: np.ndarray,
    brightness: Callable[[np.ndarray], np.ndarray],
    margin: float,
) -> None:
    """Keep a copied piece of iris no brighter than the iris the source shows, in place.

    Reading a hidden piece of iris from elsewhere on its ring copies the corneal reflections
    on that ring too (a crescent of highlights); each channel is capped at the median of the
    iris's own pixels. Copies that read the white beside an iris smaller than its landmarks'
    circle are left as read (`_copies_of_the_white`): capped, they drew a dark tab off the
    top of the iris. drawn: (3, n) eyeball pixels at face-frame points query (n, 2); copied:
    (n,) the pixels read elsewhere, read_from (n, 2) where (`eyeball_source`); the rest as
    `_copies_of_the_white` takes them."""
    r = np.linalg.norm(query - iris[0], axis=1) / iris_radius(iris)
    own, filled = (r < 1.0) & ~copied, (r < 1.0) & copied
    if not filled.any() or own.sum() < 4:
        return
    flat = drawn.reshape(3, -1)
    cap = torch.quantile(flat[:, torch.from_numpy(own).to(flat.device)], 0.5, dim=1)
    beside = (r > SCLERA_CLEAR) & ~copied
    if beside.sum() >= 4:
        white = torch.quantile(flat[:, torch.from_numpy(beside).to(flat.device)], 0.5, dim=1)
        filled &= ~_copies_of_the_white(
            flat.mean(dim=0).cpu().numpy(),
            query=query,
            ring=ring,
            iris=iris,
            candidates=filled & (r > IRIS_RIM),
            read_from=read_from,
            brightness=brightness,
            halfway=0.5 * float(cap.mean() + white.mean()),
            margin=margin,
        )
    take = torch.from_numpy(filled).to(flat.device)
    flat[:, take] = torch.minimum(flat[:, take], cap[:, None])


def sample_flow(dense: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of a dense field (C, h, w), a flow or an image, at pixel positions xy
    (P, 2) relative to its top-left corner (clamped to the edge). Returns (P, C)."""
    h, w = dense.shape[1:]
    grid = torch.stack(
        [xy[:, 0] * (2.0 / max(w - 1, 1)) - 1.0, xy[:, 1] * (2.0 / max(h - 1, 1)) - 1.0], dim=-1
    )
    out = F.grid_sample(
        dense[None], grid[None, None], mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[0, :, 0].T


class Warper:
    """Applies sparse face-frame displacements to a frame as a dense, smooth warp."""

    def __init__(self, *, device: torch.device, config: WarpConfig | None = None) -> None:
        self.device = device
        self.config = config or WarpConfig()

    def box_flow(
        self,
        *,
        face: FaceFrame,
        points: np.ndarray,
        values: np.ndarray,
        box: tuple[int, int, int, int],
    ) -> torch.Tensor:
        """The flow on a coarse grid over `box`.

        points: (N, 2) positions, values: (N, 2) displacements, both in the face frame (IOD).
        Returns (G, G, 2) float32 displacements in image pixels, at grid nodes spanning the
        box corners, bounded so the map never folds.
        """
        cfg = self.config
        x0, y0, x1, y1 = box
        gx = np.linspace(x0, x1 - 1, cfg.grid)
        gy = np.linspace(y0, y1 - 1, cfg.grid)
        nodes = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
        query = torch.from_numpy(face.to_face(nodes)).float().to(self.device)
        pts = torch.from_numpy(np.asarray(points, dtype=np.float32)).to(self.device)
        vals = torch.from_numpy(np.asarray(values, dtype=np.float32)).to(self.device)
        flow = landmark_flow(pts, vals, query, config=cfg)
        # Face-frame displacement (IOD) -> image pixels: rotate and scale.
        lin = torch.from_numpy(face.rotation.T * face.iod).float().to(self.device)
        flow_px = (flow @ lin).reshape(cfg.grid, cfg.grid, 2)
        # The flow is ~0 at the box edge already (the face outline is held); the fade makes
        # sure no seam can appear there whatever the displacement.
        edge = edge_fade(cfg.grid, steps=3, device=self.device)
        flow_px = flow_px * (edge[:, None] * edge[None, :])[..., None]
        step_x = max((x1 - 1 - x0) / (cfg.grid - 1), 1e-6)
        step_y = max((y1 - 1 - y0) / (cfg.grid - 1), 1e-6)
        jac = flow_jacobian(flow_px, step_x=step_x, step_y=step_y)
        norm = float(jac.flatten(-2).norm(dim=-1).max()) if jac.numel() else 0.0
        if norm > cfg.max_gradient:
            # The Frobenius norm bounds the spectral norm: below 1, I - J stays invertible.
            flow_px = flow_px * (cfg.max_gradient / norm)
        return flow_px

    def dense_flow(
        self,
        *,
        face: FaceFrame,
        points: np.ndarray,
        values: np.ndarray,
        box: tuple[int, int, int, int],
        hold: HoldRegion | None = None,
    ) -> torch.Tensor:
        """The flow at every pixel of `box`: (2, h, w) forward displacement in pixels, with
        the held region brought to rest. Arguments as in `apply`."""
        x0, y0, x1, y1 = box
        flow_px = self.box_flow(face=face, points=points, values=values, box=box)
        dense = F.interpolate(
            flow_px.permute(2, 0, 1)[None],
            size=(y1 - y0, x1 - x0),
            mode="bilinear",
            align_corners=True,
        )[0]
        if hold is not None:
            region = self._hold(dense, face=face, box=box, hold=hold)
            if region is not None:
                dense = self._unfold_near(dense, face=face, box=box, hold=hold, region=region)
        if self.config.eye_sigma > 0:
            for eye in EYES:
                dense = self.sharpen_eye(
                    dense, face=face, points=points, values=values, box=box, eye=eye
                )
        return dense

    def sharpen_eye(
        self,
        dense: torch.Tensor,
        *,
        face: FaceFrame,
        points: np.ndarray,
        values: np.ndarray | torch.Tensor,
        box: tuple[int, int, int, int],
        eye: tuple[int, ...],
    ) -> torch.Tensor:
        """The flow (2, h, w) over `box`, pixels, made to follow one eye's lids: differentiable
        in `dense` and in `values` when that is a tensor (the bound's scale is held constant),
        so training on crops can go through it; `dense` is changed in place when neither
        needs a gradient.

        The face-wide flow spreads each landmark over `sigma` (0.12 IOD), more than the 0.1
        IOD between the upper and lower lid, which often move apart (surprise lifts the upper
        lid, a smile the lower): it blurs the two together and each gets a fraction of its
        motion. What the flow misses at the eye's points is added, spread over the much
        smaller `eye_sigma`; every other landmark near the eye anchors the correction at 0,
        so it stays on the eye and fades out within `EYE_REACH` of it. The correction is
        scaled down if it would take the warp past `max_gradient`.
        """
        cfg = self.config
        if len(points) != mesh.N_LANDMARKS:  # not a face mesh: no eyes to find
            return dense
        x0, y0, x1, y1 = box
        reach = EYE_REACH * cfg.eye_sigma
        idx = list(eye)
        lo, hi = points[idx].min(axis=0) - reach, points[idx].max(axis=0) + reach
        ex0, ey0, ex1, ey1 = pixel_window(face, lo=lo, hi=hi, box=box)
        if ex1 - ex0 < 4 or ey1 - ey0 < 4:
            return dense
        inside = np.all((points >= lo) & (points <= hi), axis=1)
        inside[_IRISES] = False
        is_eye = np.zeros(len(points), dtype=bool)
        is_eye[idx] = True
        used = np.flatnonzero(inside | is_eye)
        # The warp is a backward map: a point p shows at q = p + m where flow(q) = m. So the
        # flow is matched at the points' targets; matched at p, a flow that grows toward a
        # lifted brow showed the upper lids raised up to 2.6 times as far as asked.
        moved = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
        target = points[used] + np.asarray(moved, dtype=np.float64)[used]
        got = sample_flow(dense, torch.from_numpy(face.to_image(target) - [x0, y0]).to(dense))
        lin = torch.from_numpy(face.rotation.T * face.iod).to(got)
        want = torch.as_tensor(values, device=got.device)[torch.from_numpy(used)].to(got) @ lin
        resid = (want - got) * torch.from_numpy(is_eye[used]).to(got)[:, None]
        if float(resid.detach().abs().max()) < cfg.still_px:
            return dense
        pts = torch.from_numpy(target).to(resid)
        fitted = fitted_values(
            pts, resid, sigma=cfg.eye_sigma, background=cfg.background, refinements=cfg.refinements
        )
        h, w = ey1 - ey0, ex1 - ex0
        gx, gy = np.meshgrid(np.arange(ex0, ex1) + x0, np.arange(ey0, ey1) + y0)
        query = torch.from_numpy(face.to_face(np.stack([gx, gy], axis=-1).reshape(-1, 2)))
        corr = shepard_flow(
            pts, fitted, query.to(pts), sigma=cfg.eye_sigma, background=cfg.background
        )
        corr = corr.T.reshape(2, h, w).float()
        # Anchors already pin the correction near 0 at the window's edge; the ramp makes sure.
        corr = corr * (
            edge_fade(h, steps=h / 6, device=self.device)[:, None]
            * edge_fade(w, steps=w / 6, device=self.device)[None, :]
        )
        base = dense[:, ey0:ey1, ex0:ex1]
        bound = cfg.max_gradient
        scale = 1.0
        if _max_jacobian_norm(base + corr) > bound:
            # The norm is convex in the scale, so the scales that keep the bound are [0, s*]
            # (empty when the flow alone breaks it: then the scale found is 0).
            fits, fails = 0.0, 1.0
            for _ in range(5):
                mid = 0.5 * (fits + fails)
                if _max_jacobian_norm(base + mid * corr) <= bound:
                    fits = mid
                else:
                    fails = mid
            scale = fits
        corr = scale * corr
        if torch.is_grad_enabled() and (dense.requires_grad or corr.requires_grad):
            _, h_all, w_all = dense.shape
            return dense + F.pad(corr, (ex0, w_all - ex1, ey0, h_all - ey1))
        # Editing: no copy of a whole frame's flow for a correction the size of an eye.
        dense[:, ey0:ey1, ex0:ex1] += corr
        return dense

    def _lid_motion(self, dense: torch.Tensor, ring_px: np.ndarray) -> np.ndarray:
        """Where the warp shows each lid point (P, 2) pixels of the flow's region: the output
        pixel x that reads it, x - flow(x) = the point (the backward map `apply` uses), found
        by fixed-point iteration. Returns the (P, 2) motion in pixels; dense: (2, h, w).

        Iterated until no point moves by LID_MOTION_TOL: under surprise's lifted brows the flow
        grows steeply above the lids, and a fixed three steps left them up to 1.9 px short of
        where the warp shows them (talk_s32 at intensity 1.5), so the eyeball drawn between
        the lids missed the lid's edge; it converges within about ten steps."""
        moved = np.zeros_like(ring_px)
        for _ in range(LID_MOTION_STEPS):
            at = torch.from_numpy(ring_px + moved).float().to(self.device)
            step = sample_flow(dense, at).cpu().numpy().astype(np.float64)
            done = np.abs(step - moved).max(initial=0.0) < LID_MOTION_TOL
            moved = step
            if done:
                break
        return moved

    def show_eyeballs(
        self,
        warped: torch.Tensor,
        *,
        source: torch.Tensor,
        dense: torch.Tensor,
        face: FaceFrame,
        points: np.ndarray,
        region: tuple[int, int, int, int],
    ) -> None:
        """Between each eye's moved lids, show the eyeball as the source shows it, in place.

        Moving a lid moves the skin and lashes with it, but not the eyeball: a flow that is
        smooth across the lid drags the lashes over the eye and stretches the iris (surprise
        drew a dark band under the raised lid, and a tall iris). Within the lids' new outline
        the eyeball is read where the source shows it (`eyeball_source`: unmoved where the source
        shows that spot, the same distance from the iris's centre where a raised lid uncovers
        more), and a band along the upper lid's edge moves with the lid as one piece, down to
        the end of its dark margin under the lashes; the rest keeps the flow's pixels. The
        lid's edge is taken from the lashes in the image (`_lash_offset`, `_lid_margin`). An
        eye that is nearly shut in the source, or on a face too small (`EYEBALL_MIN_IOD_PX`),
        is left to the flow.

        warped, source: (1, 3, h, w) float images of `region` (x0, y0, x1, y1 pixels in the
        frame); dense: (2, h, w) forward flow in pixels over the same region; points: (478, 2)
        face-frame landmarks of the source.
        """
        if (
            len(points) != mesh.N_LANDMARKS
            or not self.config.eyeballs
            or face.iod < EYEBALL_MIN_IOD_PX
        ):
            return
        x0, y0 = region[:2]
        for ring_idx, iris_idx in (
            (mesh.RIGHT_EYE, mesh.RIGHT_IRIS),
            (mesh.LEFT_EYE, mesh.LEFT_IRIS),
        ):
            ring = points[list(ring_idx)]
            iris = points[list(iris_idx)]
            # Lids the edit leaves where they are need nothing (checked before the lashes are
            # looked for: the flow is smooth, a pixel or two off the lashes does not change it).
            if np.abs(self._lid_motion(dense, face.to_image(ring) - [x0, y0])).max() < (
                self.config.still_px
            ):
                continue
            ring = ring + np.outer(
                _UPPER_EDGE, [0.0, _lash_offset(source, face, ring, iris, region)]
            )
            upper, lower, _ = lid_lines(ring, iris[:1, 0])
            openness = float(lower[0] - upper[0])
            weight = float(
                np.clip((openness - EYE_OPEN_MIN) / (EYE_OPEN_FULL - EYE_OPEN_MIN), 0, 1)
            )
            if weight <= 0:
                continue
            ring_px = face.to_image(ring) - [x0, y0]
            moved = self._lid_motion(dense, ring_px)
            ring_out = face.to_face(ring_px + moved + [x0, y0])
            lo = np.minimum(ring.min(axis=0), ring_out.min(axis=0)) - [0, LASH_BAND + LASH_FADE]
            hi = np.maximum(ring.max(axis=0), ring_out.max(axis=0))
            ex0, ey0, ex1, ey1 = pixel_window(face, lo=lo, hi=hi, box=region)
            if ex1 - ex0 < 2 or ey1 - ey0 < 2:
                continue
            below, shade, ceiling = _under_the_lid(source, face, ring, iris, region)
            gx, gy = np.meshgrid(np.arange(ex0, ex1) + x0, np.arange(ey0, ey1) + y0)
            query = face.to_face(np.stack([gx, gy], axis=-1).reshape(-1, 2).astype(np.float64))
            up_out, low_out, within = lid_lines(ring_out, query[:, 0])
            feather = max(EYEBALL_FEATHER, 1.0 / face.iod)
            # The lid's edge, lashes and all, moves as one piece with the lid line instead of
            # being stretched by the flow (a raised lid drew its lashes out into a dark band),
            # and so does its dark margin below the lashes' darkest line (drawn as eyeball, a
            # raised lid kept half its edge: a thin grey line over a tall pale crescent).
            edge = up_out + np.clip(np.minimum(below, 0.5 * (low_out - up_out)), 0.0, None)
            depth = np.minimum(query[:, 1] - edge, low_out - query[:, 1])
            # The lid's shadow on the white is measured from its lashes: the margin moved
            # with it is the top of that shadow, as the source shows it.
            shade_depth = np.minimum(query[:, 1] - up_out, low_out - query[:, 1])
            eye_alpha = np.clip(depth / feather + 0.5, 0.0, 1.0) * within * weight
            above = up_out - query[:, 1]
            lash_alpha = (
                np.clip((edge - query[:, 1]) / feather + 0.5, 0.0, 1.0)
                * np.clip((LASH_BAND + LASH_FADE - above) / LASH_FADE, 0.0, 1.0)
                * within
                * weight
            )
            if not (eye_alpha.any() or lash_alpha.any()):
                continue
            on_eye, on_lash = np.flatnonzero(eye_alpha > 0), np.flatnonzero(lash_alpha > 0)
            lid_out, lid_shift = ring_out[_UPPER_LID], ring_out[_UPPER_LID] - ring[_UPPER_LID]
            order = np.argsort(lid_out[:, 0])
            shift = np.stack(
                [
                    np.interp(query[on_lash, 0], lid_out[order, 0], lid_shift[order, k])
                    for k in (0, 1)
                ],
                axis=1,
            )
            lids = LidsAt.of(query[on_eye, 0], ring=ring, ring_out=ring_out)
            margin = min(EYEBALL_MARGIN, openness / 5)
            eyeball, copied = eyeball_source(
                query[on_eye], lids=lids, ring=ring, iris=iris, margin=margin
            )
            paint = _white_weight(query[on_eye], lids=lids, iris=iris, margin=margin, copied=copied)
            white = (
                _sclera_colour(
                    source, face, ring, iris, region, query[on_eye][paint > 0], openness=openness
                )
                if paint.any()
                else None
            )
            if white is not None and ceiling is not None:
                white = ceiling.limit(white, query[on_eye][paint > 0, 0])

            def read(points: np.ndarray) -> torch.Tensor:
                """(n, 3) the source at face-frame points (n, 2)."""
                px = torch.from_numpy(face.to_image(points) - [x0, y0]).float().to(self.device)
                return sample_flow(source[0], px)

            patch = warped[0, :, ey0:ey1, ex0:ex1].reshape(3, -1)
            change = torch.zeros_like(patch)
            # The two alphas add up to 1 across the lid line and never overlap elsewhere.
            for src, alpha, at in (
                (eyeball, eye_alpha, on_eye),
                (_off_the_iris(query[on_lash] - shift, ring=ring, iris=iris), lash_alpha, on_lash),
            ):
                drawn = read(src).T
                if src is eyeball:
                    _no_copied_highlights(
                        drawn,
                        query=query[on_eye],
                        ring=ring,
                        iris=iris,
                        copied=copied,
                        read_from=eyeball,
                        brightness=lambda points: read(points).mean(dim=1).cpu().numpy(),
                        margin=margin,
                    )
                    _lift_old_shadow(
                        drawn,
                        query=query[on_eye],
                        source_y=eyeball[:, 1],
                        lids=lids,
                        iris=iris,
                        copied=copied,
                        shade=shade,
                    )
                    if white is not None:
                        _paint_white(
                            drawn,
                            white,
                            weight=paint,
                            inside=shade_depth[on_eye],
                            x=query[on_eye, 0],
                            shade=shade,
                        )
                idx = torch.from_numpy(at).to(self.device)
                a = torch.from_numpy(alpha[at]).float().to(self.device)
                change[:, idx] += a * (drawn - patch[:, idx])
            warped[0, :, ey0:ey1, ex0:ex1] = (patch + change).reshape(3, ey1 - ey0, ex1 - ex0)

    def _unfold_near(
        self,
        dense: torch.Tensor,
        *,
        face: FaceFrame,
        box: tuple[int, int, int, int],
        hold: HoldRegion,
        region: tuple[slice, slice],
    ) -> torch.Tensor:
        """Fading the flow out over the hold's feather steepens it there (the lip corners move,
        the lips between them do not). Where that would fold the warp, the motion is toned down
        around the held region only, smoothly, so the rest of the face keeps its full edit;
        a uniform scale is the last resort. dense: (2, h, w) pixels; region: the rows and
        columns the hold changed (elsewhere the coarse flow's bound already holds)."""
        bound = self.config.max_gradient
        rows, cols = region
        norm = _max_jacobian_norm(dense[:, rows, cols])
        if norm <= bound:
            return dense
        x0, y0, x1, y1 = box
        g = self.config.grid
        nodes = np.stack(
            np.meshgrid(np.linspace(x0, x1 - 1, g), np.linspace(y0, y1 - 1, g)), axis=-1
        ).reshape(-1, 2)
        near = HoldRegion(
            polygon=hold.polygon, band=hold.band + hold.feather, feather=NEAR_HOLD_FADE
        )
        bump = hold_weight(torch.from_numpy(face.to_face(nodes)).float().to(self.device), near)
        bump = F.interpolate(
            bump.reshape(1, 1, g, g), size=dense.shape[1:], mode="bilinear", align_corners=True
        )[0]
        dense = dense * (1 - (1 - bound / norm) * bump)
        norm = _max_jacobian_norm(dense)  # the toned-down zone reaches beyond the region
        return dense if norm <= bound else dense * (bound / norm)

    def apply(
        self,
        frame: np.ndarray,
        *,
        face: FaceFrame,
        points: np.ndarray,
        values: np.ndarray,
        landmarks_px: np.ndarray,
        hold: HoldRegion | None = None,
    ) -> np.ndarray:
        """Warp one frame.

        frame: (H, W, 3) uint8 RGB; face: the frame's face frame; points, values: (N, 2)
        sparse positions and forward displacements in the face frame (IOD units);
        landmarks_px: (478, 2) pixels, to place the face box; hold: a region kept still.
        Returns a new (H, W, 3) uint8 frame; pixels outside the face box are the input's.
        """
        height, width = frame.shape[:2]
        box = face_box(landmarks_px, width=width, height=height, margin=self.config.margin)
        x0, y0, x1, y1 = box
        out = frame.copy()
        if x1 - x0 < 4 or y1 - y0 < 4 or not np.any(values):
            return out
        dense = self.dense_flow(face=face, points=points, values=values, box=box, hold=hold)
        h, w = y1 - y0, x1 - x0
        still = dense.square().sum(dim=0).sqrt() < self.config.still_px
        ys = torch.arange(h, device=self.device, dtype=torch.float32)[:, None]
        xs = torch.arange(w, device=self.device, dtype=torch.float32)[None, :]
        # Backward map, first order: the output pixel x shows the source at x - flow(x).
        sx = (xs - dense[0]) * (2.0 / max(w - 1, 1)) - 1.0
        sy = (ys - dense[1]) * (2.0 / max(h - 1, 1)) - 1.0
        grid = torch.stack([sx, sy], dim=-1)[None]
        src = torch.from_numpy(frame[y0:y1, x0:x1]).to(self.device)
        img = src.permute(2, 0, 1)[None].float()
        warped = F.grid_sample(
            img, grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        self.show_eyeballs(warped, source=img, dense=dense, face=face, points=points, region=box)
        warped = warped[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
        warped = torch.where(still[..., None], src, warped)
        out[y0:y1, x0:x1] = warped.cpu().numpy()
        return out

    def _hold(
        self,
        dense: torch.Tensor,
        *,
        face: FaceFrame,
        box: tuple[int, int, int, int],
        hold: HoldRegion,
    ) -> tuple[slice, slice] | None:
        """Scale the dense flow (2, h, w) over `box` down to zero in the held region, in place;
        returns the rows and columns it touched (None: none).
        Only the held region's bounding box (plus its fade) is visited, for speed."""
        x0, y0, x1, y1 = box
        reach = hold.band + hold.feather
        hx0, hy0, hx1, hy1 = pixel_window(
            face,
            lo=hold.polygon.min(axis=0) - reach,
            hi=hold.polygon.max(axis=0) + reach,
            box=box,
        )
        if hx1 <= hx0 or hy1 <= hy0:
            return None
        h, w = hy1 - hy0, hx1 - hx0
        # The hold fades over `feather`, so a grid a few times finer than that is enough;
        # it is then interpolated to every pixel (a large face has tens of thousands).
        step = max(1.0, face.iod * hold.feather / 6)
        gh, gw = max(2, min(h, round(h / step) + 1)), max(2, min(w, round(w / step) + 1))
        gx = np.linspace(hx0 + x0, hx1 - 1 + x0, gw)
        gy = np.linspace(hy0 + y0, hy1 - 1 + y0, gh)
        pix = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
        pts = torch.from_numpy(face.to_face(pix)).float().to(self.device)
        keep = 1 - hold_weight(pts, hold).reshape(1, 1, gh, gw)
        if (gh, gw) != (h, w):
            keep = F.interpolate(keep, size=(h, w), mode="bilinear", align_corners=True)
        dense[:, hy0:hy1, hx0:hx1] *= keep[0]
        return slice(hy0, hy1), slice(hx0, hx1)
