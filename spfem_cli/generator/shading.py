"""The shading of an expression that moving pixels cannot make: creases and bulges.

A smile deepens the folds from the nose to the lip corners and rounds the cheeks; warping
the skin moves its texture, but smooth skin moved looks the same, so a warped smile with the
lips held for the speech barely reads. Each shading unit is an expression ratio image (Liu,
Shan and Zhang, "Expressive expression mapping with ratio images", 2001): the mean change of
log luminance between real people's expressive and calm frames, each resampled onto the
template face through its own landmarks, so that what remains is shading, not geometry
(`scripts/build_shading.py` measures it on the expr_d clips; disgust's nasolabial furrow is the
smile's map above the lip corners, as no clip shows a calm face turning to disgust, and the
nose's wrinkles of disgust and of contempt's sneer are drawn, not measured). An edit
resamples the unit onto the output face through its moved landmarks and multiplies the pixels
by exp(strength * map), on R, G and B in the proportions measured in the same folds (a shadow
in skin is warmer than grey: red darkens less than the luminance, blue more). The maps are
blurred as much as the picture blurs the face's own edges (`face.sharpness`): drawn at the
width set on sharp faces, the nose's wrinkles read as scratches on a soft picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter, map_coordinates

from spfem_cli.errors import SpfemError
from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame, face_box
from spfem_cli.generator.checkpoint import Checkpoint, load_checkpoint
from spfem_cli.generator.creases import (
    FOREHEAD_LINES,
    HAIR_GRAIN,
    NOSE_BRIDGE,
    blur,
    not_hair,
    shading_at,
    texture,
)
from spfem_cli.generator.expression import ONE_SIDED_AUS, Side
from spfem_cli.generator.warp import HoldRegion, hold_weight
from spfem_cli.media.pixels import luma

CHECKPOINT_KIND = "shading"
CHECKPOINT_VERSION = 1
DEFAULT_SHADING = "shading-v8"
# A unit's strength is capped where the expression model's activations are (--intensity 1.5).
MAX_STRENGTH = 1.5
# The map is resampled on a grid this fine (IOD) over the face box, then to every pixel: its
# finest detail, a crease, is about 0.03 IOD across.
APPLY_STEP = 0.012
# The output face is taken to the template by the landmarks' offsets, interpolated smoothly
# (Gaussian-weighted, this spread in IOD) on a grid this coarse: a face's shape differs from
# the template's slowly. Piecewise linear through a triangulation of the output's landmarks
# tore on a turned head, where the far cheek's landmarks crowd and cross.
# Where the landmarks are sparse (the forehead's are 0.15 IOD apart) a landmark's spread is
# wider: MAP_REACH times the distance to its MAP_NEIGHBOURS-th nearest (`template_offsets`).
# Narrower, each landmark's offset held a plateau of its own, and the forehead's lines, drawn
# across several, came out wavy on a turned head (talk_s18).
MAP_SIGMA = 0.05
MAP_NEIGHBOURS = 4
MAP_REACH = 0.7
MAP_STEP = 0.05
# The offsets are carried over the landmarks whose places on the template lie within this
# distance (IOD) of the asked units' maps, and as far again around them on the output face.
SUPPORT_REACH = 0.15
# No grid is finer than this (pixels): on a small face the map's detail is below a pixel...
MIN_STEP_PX = 2.0
# ...unless a map asked for has finer detail: the grid's step is then at most this share of
# its detail's scale (`ShadingModel.detail`), down to a pixel. The nose's wrinkles (0.01 IOD
# wide), sampled every 2 pixels on a face 77 pixels between the eyes, came out as rows of dots.
DETAIL_STEP = 0.9
# Where the grid is still coarser than the maps' own, they are blurred first, for the same
# reason: by this share of the step the grid lacks (the root of the difference of the two
# steps' squares), so the blur grows from nothing as the grid coarsens.
ANTIALIAS = 0.7
# The lips keep their pixels (they belong to the speech), fading in over this distance (IOD)
# outside the outer lip contour.
LIP_FADE = 0.04
# Below this change of log luminance (about a fifth of a level at mid grey) a pixel is left as
# it is, so a frame stays bit-identical wherever the shading adds nothing.
MIN_LOG_CHANGE = 1e-3


@dataclass(frozen=True)
class ShadingModel:
    """Expression ratio images on the template face.

    maps: (S, Gh, Gw) float32, each unit's change of log luminance at strength 1, sampled on
    the template face frame (IOD) from `origin` (x, y) every `step`; template: (478, 2) the
    face they are drawn on, IOD units; drivers: (S, K) how each action unit's change drives
    each unit (strength = clip(drivers @ delta - thresholds, 0, MAX_STRENGTH)); au_names: the
    K units; channels: (3,) how much log R, G and B change for a change of log luminance of
    1; thresholds: (S,) how far the drivers must go before a unit shades at all (the
    forehead's lines form only once the brows have risen some way), 0 where a checkpoint
    gives none; under_hair: (S,) bool, the units drawn where hair may hang (the forehead's
    lines, under a fringe), which shade only the skin (`creases.not_hair`).
    """

    maps: np.ndarray
    template: np.ndarray
    origin: tuple[float, float]
    step: float
    drivers: np.ndarray
    au_names: tuple[str, ...]
    unit_names: tuple[str, ...]
    channels: np.ndarray
    thresholds: np.ndarray
    under_hair: np.ndarray

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> ShadingModel:
        """Build from a checkpoint of kind ``"shading"``."""
        cfg = ckpt.config
        if cfg.get("kind") != CHECKPOINT_KIND or cfg.get("version") != CHECKPOINT_VERSION:
            raise SpfemError(
                f"{ckpt.path} is not a shading checkpoint of version {CHECKPOINT_VERSION} "
                f"(kind {cfg.get('kind')!r}, version {cfg.get('version')!r})"
            )
        missing = [n for n in ("maps", "template", "drivers", "channels") if n not in ckpt.tensors]
        if missing:
            raise SpfemError(f"{ckpt.path}: shading checkpoint lacks {missing}")
        return cls(
            maps=ckpt.tensors["maps"].float().numpy(),
            template=ckpt.tensors["template"].double().numpy(),
            origin=(float(cfg["origin"][0]), float(cfg["origin"][1])),
            step=float(cfg["step"]),
            drivers=ckpt.tensors["drivers"].double().numpy(),
            au_names=tuple(cfg["au_names"]),
            unit_names=tuple(cfg["unit_names"]),
            channels=ckpt.tensors["channels"].float().numpy(),
            thresholds=(
                ckpt.tensors["thresholds"].double().numpy()
                if "thresholds" in ckpt.tensors
                else np.zeros(len(ckpt.tensors["maps"]))
            ),
            under_hair=np.isin(cfg["unit_names"], cfg.get("under_hair", [])),
        )

    @classmethod
    def load(cls, name_or_path: str | Path = DEFAULT_SHADING) -> ShadingModel:
        """Load by manifest name or checkpoint path (see `load_checkpoint`)."""
        return cls.from_checkpoint(load_checkpoint(name_or_path))

    def strengths(self, delta: np.ndarray, *, au_names: tuple[str, ...]) -> np.ndarray:
        """(S,) each unit's strength for an AU change delta (K,) over `au_names`, which must
        name every AU that drives the shading; AUs beyond those drive none of it."""
        missing = [n for n in self.au_names if n not in au_names]
        if missing:
            raise SpfemError(
                f"the shading model is driven by {list(self.au_names)}; "
                f"the expression model lacks {missing}"
            )
        delta = np.asarray(delta, np.float64)[[list(au_names).index(n) for n in self.au_names]]
        return np.clip(self.drivers @ delta - self.thresholds, 0.0, MAX_STRENGTH)

    def log_gain(
        self,
        strengths: np.ndarray,
        *,
        template_xy: np.ndarray,
        side: Side = "right",
        blur: float = 0.0,
    ) -> np.ndarray:
        """(M,) the change of log luminance at template face-frame points (M, 2), IOD; 0
        outside the maps. side: the subject's side where the one-sided units
        (`one_sided_units`) shade; a map drawn on the right is read at the mirror image of
        each point (x -> -x, the template being symmetric) to shade the left. blur: the
        maps are read blurred by a Gaussian of this scale (IOD), for points further apart
        than their detail."""
        total = np.zeros(len(template_xy))
        rows = (template_xy[:, 1] - self.origin[1]) / self.step
        cols = (template_xy[:, 0] - self.origin[0]) / self.step
        mirrored = (-template_xy[:, 0] - self.origin[0]) / self.step
        flip = self.one_sided_units & (side == "left")
        # The units read at the same points are summed first and read once: blurring and
        # reading are linear, and each costs about a millisecond a unit.
        for group, at in ((~flip, cols), (flip, mirrored)):
            weights = np.where(group, np.maximum(strengths, 0.0), 0.0)
            if not np.any(weights > 0):
                continue
            grid = np.tensordot(weights.astype(np.float32), self.maps, axes=1)
            if blur > 0:
                grid = gaussian_filter(grid, blur / self.step, mode="constant")
            total += map_coordinates(grid, [rows, at], order=1, cval=0.0)
        return total

    @cached_property
    def detail(self) -> np.ndarray:
        """(S,) the scale of each map's detail (IOD): the root of its mean square over its
        gradient's (a Gaussian line of width w gives 1.4 w). The smile's folds: 0.05; the
        nose's wrinkles: 0.015."""
        maps = self.maps.astype(np.float64)
        dy, dx = np.gradient(maps, self.step, axis=(1, 2))
        slope = np.maximum(np.sum(dx * dx + dy * dy, axis=(1, 2)), 1e-30)
        return np.sqrt(np.sum(maps * maps, axis=(1, 2)) / slope)

    @cached_property
    def one_sided_units(self) -> np.ndarray:
        """(S,) bool: the units driven by a one-sided action unit (ONE_SIDED_AUS), whose maps
        shade one side of the face."""
        idx = [k for k, name in enumerate(self.au_names) if name in ONE_SIDED_AUS]
        return np.abs(self.drivers[:, idx]).sum(axis=1) > 0

    def support(self, strengths: np.ndarray) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the template face-frame box (IOD) outside which the maps of the
        units with strength (S,) above 0 are all 0, on either side for the one-sided units
        (`log_gain`). Only those: a smile need not be carried over the nose's wrinkles."""
        units = np.asarray(strengths) > 0
        if not units.any():
            return (0.0, 0.0, 0.0, 0.0)
        live = np.abs(self.maps[units]).max(axis=0) * MAX_STRENGTH >= MIN_LOG_CHANGE
        if not live.any():
            return (0.0, 0.0, 0.0, 0.0)
        rows, cols = np.flatnonzero(live.any(axis=1)), np.flatnonzero(live.any(axis=0))
        ox, oy = self.origin
        x0, x1 = ox + self.step * cols[0], ox + self.step * cols[-1]
        if self.one_sided_units[units].any():
            x0, x1 = min(x0, -x1), max(x1, -x0)
        return (x0, oy + self.step * rows[0], x1, oy + self.step * rows[-1])

    def apply(
        self,
        frame: np.ndarray,
        *,
        face: FaceFrame,
        points: np.ndarray,
        strengths: np.ndarray,
        side: Side = "right",
        softness: float = 0.0,
    ) -> np.ndarray:
        """Shade an edited frame.

        frame: (H, W, 3) uint8 RGB, already warped; face: its face frame; points: (478, 2)
        the output's landmarks in the face frame (IOD: where the edit moved them); strengths:
        (S,) from `strengths`; side: where the one-sided units shade (`log_gain`);
        softness: the picture's own blur on the face (a Gaussian's scale, IOD:
        `face.sharpness`), by which the maps are blurred too, as the picture blurs a real
        crease. Returns a new frame; the lips and everything off the face keep their pixels.
        """
        if not np.any(strengths > 0):
            return frame
        height, width = frame.shape[:2]
        grids = self._grids(strengths, iod=face.iod)
        supports = [self.support(part) for _, part, _ in grids]
        near = self._near(supports)
        if not near.any():
            return frame
        # Only around the landmarks the units' maps reach: a surprise's forehead need not pay
        # for carrying the whole face's offsets.
        reach = SUPPORT_REACH * face.iod
        x0, y0, x1, y1 = face_box(face.to_image(points[near]), width=width, height=height, margin=0)
        whole = face_box(face.to_image(points), width=width, height=height, margin=0.05)
        box = (
            max(whole[0], int(x0 - reach)),
            max(whole[1], int(y0 - reach)),
            min(whole[2], int(x1 + reach) + 1),
            min(whole[3], int(y1 + reach) + 1),
        )
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            return frame
        field = self._to_template(box, face=face, points=points, supports=supports)
        if field is None:
            return frame
        offsets, subs = field
        parts = []
        for (step_px, part, hair), sub in zip(grids, subs, strict=True):
            if sub is None:
                continue
            gain = self._gain(
                part,
                sub=sub,
                step_px=step_px,
                face=face,
                points=points,
                offsets=offsets,
                side=side,
                softness=softness,
            )
            if hair:
                gain *= _clear_of_hair(frame, sub=sub, gain=gain, face=face, points=points)
            parts.append((sub, gain))
        x0, y0 = min(sub[0] for sub, _ in parts), min(sub[1] for sub, _ in parts)
        x1, y1 = max(sub[2] for sub, _ in parts), max(sub[3] for sub, _ in parts)
        dense = np.zeros((y1 - y0, x1 - x0), np.float32)
        for (sx0, sy0, sx1, sy1), gain in parts:
            dense[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] += gain
        change = np.abs(dense) >= MIN_LOG_CHANGE
        if not change.any():
            return frame
        out = frame.copy()
        crop = out[y0:y1, x0:x1]
        factor = np.exp(dense[..., None] * self.channels, dtype=np.float32)
        shaded = np.clip(np.rint(crop * factor), 0, 255).astype(np.uint8)
        np.copyto(crop, shaded, where=change[..., None])
        return out

    def _near(self, supports: list[tuple[float, float, float, float]]) -> np.ndarray:
        """(478,) bool: the landmarks whose places on the template lie within SUPPORT_REACH
        of a support (x0, y0, x1, y1, template face-frame IOD)."""
        near = np.zeros(len(self.template), bool)
        for x0, y0, x1, y1 in supports:
            if x1 <= x0 and y1 <= y0:
                continue
            lo = np.array([x0, y0]) - SUPPORT_REACH
            hi = np.array([x1, y1]) + SUPPORT_REACH
            near |= np.all((self.template >= lo) & (self.template <= hi), axis=1)
        return near

    def _grids(self, strengths: np.ndarray, *, iod: float) -> list[tuple[float, np.ndarray, bool]]:
        """The grids the units asked for are carried on: (step, pixels; the strengths (S,) of
        the units on it, 0 for the others; whether they are the units drawn under hair). A
        grid's step is APPLY_STEP of the eye distance (iod, pixels) or MIN_STEP_PX, whichever
        is larger, but a unit with finer detail (`detail`) gets a finer grid of its own, over
        its own box (`support`), so that the others do not pay for it; the units under hair
        get their own too, to be kept off it."""
        coarse = max(MIN_STEP_PX, APPLY_STEP * iod)
        steps = np.round(np.maximum(1.0, np.minimum(coarse, DETAIL_STEP * self.detail * iod)), 2)
        asked = np.asarray(strengths) > 0
        grids = []
        for step in np.unique(steps[asked]):
            for hair in (False, True):
                units = asked & (steps == step) & (self.under_hair == hair)
                if units.any():
                    grids.append((float(step), np.where(units, strengths, 0.0), hair))
        return grids

    def _gain(
        self,
        strengths: np.ndarray,
        *,
        sub: tuple[int, int, int, int],
        step_px: float,
        face: FaceFrame,
        points: np.ndarray,
        offsets: Callable[[np.ndarray], np.ndarray],
        side: Side,
        softness: float = 0.0,
    ) -> np.ndarray:
        """(h, w) float32 the change of log luminance the units' strengths (S,) make over the
        pixel box sub (x0, y0, x1, y1), sampled on a grid step_px apart and carried to every
        pixel bilinearly; the lips' pixels 0. offsets: from `_to_template`."""
        sx0, sy0, sx1, sy1 = sub
        gh, gw = _grid_size(sub, step_px=step_px)
        nodes = _grid_nodes(sub, gh, gw)
        query = face.to_face(nodes)
        step = step_px / face.iod
        antialias = ANTIALIAS * np.sqrt(max(step * step - self.step * self.step, 0.0))
        gain = self.log_gain(
            strengths,
            template_xy=query + offsets(nodes),
            side=side,
            blur=float(np.hypot(antialias, softness)),
        )
        gain *= _off_the_lips(query, points=points)
        return F.interpolate(
            torch.from_numpy(gain.reshape(1, 1, gh, gw).astype(np.float32)),
            size=(sy1 - sy0, sx1 - sx0),
            mode="bilinear",
            align_corners=True,
        )[0, 0].numpy()

    def _to_template(
        self,
        box: tuple[int, int, int, int],
        *,
        face: FaceFrame,
        points: np.ndarray,
        supports: list[tuple[float, float, float, float]],
    ) -> tuple[Callable[[np.ndarray], np.ndarray], list[tuple[int, int, int, int] | None]] | None:
        """How far each point of the output face lies from its place on the template face
        (IOD), as a function of pixel positions (M, 2) -> (M, 2), and the part of `box`
        (pixels) that each support (`support`, template face-frame IOD) covers, None where it
        covers none of it; None when none covers any.

        The offsets of the landmarks from the template, interpolated smoothly on a coarse
        grid over box, then bilinearly."""
        step_px = max(MIN_STEP_PX, MAP_STEP * face.iod)
        ch, cw = _grid_size(box, step_px=step_px)
        nodes = _grid_nodes(box, ch, cw)
        query = face.to_face(nodes)
        offsets = template_offsets(points, self.template - points, query)
        at = query + offsets
        subs = [_covered(box, nodes=nodes, at=at, support=s, step_px=step_px) for s in supports]
        if all(sub is None for sub in subs):
            return None
        grid = offsets.reshape(ch, cw, 2)
        col_step = max((box[2] - 1 - box[0]) / (cw - 1), 1e-9)
        row_step = max((box[3] - 1 - box[1]) / (ch - 1), 1e-9)

        def at_pixels(pixels: np.ndarray) -> np.ndarray:
            coords = [(pixels[:, 1] - box[1]) / row_step, (pixels[:, 0] - box[0]) / col_step]
            return np.stack(
                [map_coordinates(grid[..., k], coords, order=1, mode="nearest") for k in (0, 1)],
                axis=-1,
            )

        return at_pixels, subs


def template_offsets(points: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(M, 2) values (N, 2) given at points (N, 2) interpolated at query (M, 2), all IOD (the
    shading's use: the landmarks' offsets from the template, carried to every point):
    Gaussian-weighted, each landmark's Gaussian MAP_SIGMA wide where the landmarks are dense
    and MAP_REACH times the distance to its MAP_NEIGHBOURS-th nearest where they are sparse,
    and weighted by its area's inverse, so that near dense landmarks a sparse one's wide
    Gaussian does not outweigh theirs."""
    pts = torch.from_numpy(np.asarray(points, np.float32))
    apart = torch.cdist(pts, pts)
    own = torch.topk(apart, MAP_NEIGHBOURS + 1, dim=1, largest=False).values[:, -1]
    sigma = torch.clamp(MAP_REACH * own, min=MAP_SIGMA)
    d2 = torch.cdist(torch.from_numpy(query.astype(np.float32)), pts).square_()
    w = torch.exp_(d2.mul_(-0.5 / sigma.square()).clamp_(min=-80.0)).mul_(
        (MAP_SIGMA / sigma).square()
    )
    vals = torch.from_numpy(values.astype(np.float32))
    return ((w @ vals) / (w.sum(dim=1, keepdim=True) + 1e-30)).numpy().astype(np.float64)


def _covered(
    box: tuple[int, int, int, int],
    *,
    nodes: np.ndarray,
    at: np.ndarray,
    support: tuple[float, float, float, float],
    step_px: float,
) -> tuple[int, int, int, int] | None:
    """The part of box (pixels) whose grid nodes (M, 2), pixels, step_px apart, lie at `at`
    (M, 2) on the template within support (x0, y0, x1, y1, IOD); None when none does."""
    x0, y0, x1, y1 = support
    reach = MAP_STEP  # the coarse grid's own step: a node just outside may shade inside
    inside = (
        (at[:, 0] >= x0 - reach)
        & (at[:, 0] <= x1 + reach)
        & (at[:, 1] >= y0 - reach)
        & (at[:, 1] <= y1 + reach)
    )
    if not inside.any():
        return None
    lo = nodes[inside].min(axis=0) - step_px
    hi = nodes[inside].max(axis=0) + step_px
    sub = (
        max(box[0], int(np.floor(lo[0]))),
        max(box[1], int(np.floor(lo[1]))),
        min(box[2], int(np.ceil(hi[0])) + 1),
        min(box[3], int(np.ceil(hi[1])) + 1),
    )
    if sub[2] - sub[0] < 2 or sub[3] - sub[1] < 2:
        return None
    return sub


def _clear_of_hair(
    frame: np.ndarray,
    *,
    sub: tuple[int, int, int, int],
    gain: np.ndarray,
    face: FaceFrame,
    points: np.ndarray,
) -> np.ndarray:
    """(h, w) float32 in [0, 1] over the pixel box sub (x0, y0, x1, y1) of frame (H, W, 3)
    uint8: 0 where hair hangs over the skin (a fringe), as the forehead's lines are kept off
    it when lifted (`creases.not_hair`: far darker than the skin at the lift's scale, the skin
    being where the units shade, gain (h, w) non-zero, or the nose's bridge), but told from
    skin in shadow by its texture; face, points: the face frame and its landmarks (478, 2,
    IOD)."""
    height, width = frame.shape[:2]
    broad = FOREHEAD_LINES.shading_scale * face.iod
    pad = int(np.ceil(3 * broad))
    sx0, sy0, sx1, sy1 = sub
    x0, y0 = max(sx0 - pad, 0), max(sy0 - pad, 0)
    x1, y1 = min(sx1 + pad, width), min(sy1 + pad, height)
    logs = np.log(frame[y0:y1, x0:x1].astype(np.float32) + 1.0)
    inner = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
    shading = luma(blur(logs, rows=broad, cols=broad))[inner]
    grain = texture(luma(logs), fine=HAIR_GRAIN * face.iod, broad=0.5 * broad)[inner]
    bridge = shading_at(frame, face.to_image(points[[NOSE_BRIDGE]])[0], scale=broad)
    weight = (np.abs(gain) >= MIN_LOG_CHANGE).astype(np.float32)
    return not_hair(shading, weight=weight, reach=broad, bridge=bridge, detail=grain)


def _off_the_lips(query: np.ndarray, *, points: np.ndarray) -> np.ndarray:
    """(M,) in [0, 1]: 0 on the lips (face-frame points query (M, 2); points: the output's
    landmarks), fading to 1 over LIP_FADE outside them. Only the points near the lips are
    measured: a face has tens of thousands of others."""
    lips = points[list(mesh.LIPS_OUTER)]
    near = np.all(
        (query >= lips.min(axis=0) - LIP_FADE) & (query <= lips.max(axis=0) + LIP_FADE), axis=1
    )
    free = np.ones(len(query))
    if near.any():
        region = HoldRegion(polygon=lips, band=0.0, feather=LIP_FADE)
        near_query = torch.from_numpy(query[near].astype(np.float32))
        free[near] = 1.0 - hold_weight(near_query, region).numpy()
    return free


def _grid_size(box: tuple[int, int, int, int], *, step_px: float) -> tuple[int, int]:
    """(rows, columns) of a grid spanning box's first to last pixel about step_px apart."""
    x0, y0, x1, y1 = box
    return max(2, round((y1 - 1 - y0) / step_px) + 1), max(2, round((x1 - 1 - x0) / step_px) + 1)


def _grid_nodes(box: tuple[int, int, int, int], rows: int, cols: int) -> np.ndarray:
    """(rows * cols, 2) pixel positions of a grid spanning box's first to last pixel."""
    x0, y0, x1, y1 = box
    xs, ys = np.linspace(x0, x1 - 1, cols), np.linspace(y0, y1 - 1, rows)
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
