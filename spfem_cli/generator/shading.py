"""The shading of an expression that moving pixels cannot make: creases and bulges.

A smile deepens the folds from the nose to the lip corners and rounds the cheeks; warping
the skin moves its texture, but smooth skin moved looks the same, so a warped smile with the
lips held for the speech barely reads. Each shading unit is an expression ratio image (Liu,
Shan and Zhang, "Expressive expression mapping with ratio images", 2001): the mean change of
log luminance between real people's expressive and calm frames, each resampled onto the
template face through its own landmarks, so that what remains is shading, not geometry
(`scripts/build_shading.py` measures it on the expr_d clips). An edit resamples the unit onto
the output face through its moved landmarks and multiplies the pixels by exp(strength * map),
the same factor on R, G and B, so the skin's colour is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import map_coordinates

from spfem_cli.errors import SpfemError
from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.checkpoint import Checkpoint, load_checkpoint
from spfem_cli.generator.warp import HoldRegion, face_box, hold_weight, shepard_flow

CHECKPOINT_KIND = "shading"
CHECKPOINT_VERSION = 1
DEFAULT_SHADING = "shading-v1"
# A unit's strength is capped where the expression model's activations are (--intensity 1.5).
MAX_STRENGTH = 1.5
# The map is resampled on a grid this fine (IOD) over the face box, then to every pixel: its
# finest detail, a crease, is about 0.03 IOD across.
APPLY_STEP = 0.012
# The output face is taken to the template by the landmarks' offsets, interpolated smoothly
# (Gaussian-weighted, this spread in IOD) on a grid this coarse: a face's shape differs from
# the template's slowly. Piecewise linear through a triangulation of the output's landmarks
# tore on a turned head, where the far cheek's landmarks crowd and cross.
MAP_SIGMA = 0.05
MAP_STEP = 0.03
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
    each unit (strength = clip(drivers @ delta, 0, MAX_STRENGTH)); au_names: the K units.
    """

    maps: np.ndarray
    template: np.ndarray
    origin: tuple[float, float]
    step: float
    drivers: np.ndarray
    au_names: tuple[str, ...]
    unit_names: tuple[str, ...]

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> ShadingModel:
        """Build from a checkpoint of kind ``"shading"``."""
        cfg = ckpt.config
        if cfg.get("kind") != CHECKPOINT_KIND or cfg.get("version") != CHECKPOINT_VERSION:
            raise SpfemError(
                f"{ckpt.path} is not a shading checkpoint of version {CHECKPOINT_VERSION} "
                f"(kind {cfg.get('kind')!r}, version {cfg.get('version')!r})"
            )
        missing = [n for n in ("maps", "template", "drivers") if n not in ckpt.tensors]
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
        )

    @classmethod
    def load(cls, name_or_path: str | Path = DEFAULT_SHADING) -> ShadingModel:
        """Load by manifest name or checkpoint path (see `load_checkpoint`)."""
        return cls.from_checkpoint(load_checkpoint(name_or_path))

    def strengths(self, delta: np.ndarray, *, au_names: tuple[str, ...]) -> np.ndarray:
        """(S,) each unit's strength for an AU change delta (K,) over `au_names`."""
        if tuple(au_names) != self.au_names:
            raise SpfemError(
                f"the shading model is driven by {list(self.au_names)}, "
                f"not by the expression model's {list(au_names)}"
            )
        return np.clip(self.drivers @ np.asarray(delta, np.float64), 0.0, MAX_STRENGTH)

    def log_gain(self, strengths: np.ndarray, *, template_xy: np.ndarray) -> np.ndarray:
        """(M,) the change of log luminance at template face-frame points (M, 2), IOD; 0
        outside the maps and where a point is NaN (off the face)."""
        total = np.zeros(len(template_xy))
        ok = np.all(np.isfinite(template_xy), axis=1)
        if not ok.any():
            return total
        rows = (template_xy[ok, 1] - self.origin[1]) / self.step
        cols = (template_xy[ok, 0] - self.origin[0]) / self.step
        for strength, grid in zip(strengths, self.maps, strict=True):
            if strength > 0:
                total[ok] += strength * map_coordinates(grid, [rows, cols], order=1, cval=0.0)
        return total

    def apply(
        self,
        frame: np.ndarray,
        *,
        face: FaceFrame,
        points: np.ndarray,
        strengths: np.ndarray,
    ) -> np.ndarray:
        """Shade an edited frame.

        frame: (H, W, 3) uint8 RGB, already warped; face: its face frame; points: (478, 2)
        the output's landmarks in the face frame (IOD: where the edit moved them); strengths:
        (S,) from `strengths`. Returns a new frame; the lips and everything off the face keep
        their pixels.
        """
        if not np.any(strengths > 0):
            return frame
        height, width = frame.shape[:2]
        landmarks_px = face.to_image(points)
        x0, y0, x1, y1 = face_box(landmarks_px, width=width, height=height, margin=0.05)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return frame
        gh, gw = _grid_size((x0, y0, x1, y1), step_px=max(1.0, APPLY_STEP * face.iod))
        query = face.to_face(_grid_nodes((x0, y0, x1, y1), gh, gw))
        gain = self.log_gain(
            strengths,
            template_xy=query
            + self._to_template((x0, y0, x1, y1), face=face, points=points, size=(gh, gw)),
        )
        lips = HoldRegion(polygon=points[list(mesh.LIPS_OUTER)], band=0.0, feather=LIP_FADE)
        free = 1.0 - hold_weight(torch.from_numpy(query), lips).numpy()
        gain = torch.from_numpy((gain * free).reshape(1, 1, gh, gw))
        dense = F.interpolate(gain, size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=True)
        dense_np = dense[0, 0].numpy()
        change = np.abs(dense_np) >= MIN_LOG_CHANGE
        if not change.any():
            return frame
        out = frame.copy()
        crop = out[y0:y1, x0:x1]
        shaded = crop.astype(np.float64) * np.exp(dense_np)[..., None]
        crop[change] = np.clip(np.rint(shaded[change]), 0, 255).astype(np.uint8)
        return out

    def _to_template(
        self,
        box: tuple[int, int, int, int],
        *,
        face: FaceFrame,
        points: np.ndarray,
        size: tuple[int, int],
    ) -> np.ndarray:
        """(gh * gw, 2) at the nodes of a gh x gw grid over box (pixels), how far the output
        face's point there lies from its place on the template face (IOD)."""
        step_px = max(1.0, MAP_STEP * face.iod)
        ch, cw = _grid_size(box, step_px=step_px)
        query = torch.from_numpy(face.to_face(_grid_nodes(box, ch, cw)))
        offsets = shepard_flow(
            torch.from_numpy(np.asarray(points, np.float64)),
            torch.from_numpy(self.template - points),
            query,
            sigma=MAP_SIGMA,
            background=1e-12,
        )
        fine = F.interpolate(
            offsets.T.reshape(1, 2, ch, cw), size=size, mode="bilinear", align_corners=True
        )
        return fine[0].reshape(2, -1).T.numpy()


def _grid_size(box: tuple[int, int, int, int], *, step_px: float) -> tuple[int, int]:
    """(rows, columns) of a grid spanning box's first to last pixel about step_px apart."""
    x0, y0, x1, y1 = box
    return max(2, round((y1 - 1 - y0) / step_px) + 1), max(2, round((x1 - 1 - x0) / step_px) + 1)


def _grid_nodes(box: tuple[int, int, int, int], rows: int, cols: int) -> np.ndarray:
    """(rows * cols, 2) pixel positions of a grid spanning box's first to last pixel."""
    x0, y0, x1, y1 = box
    xs, ys = np.linspace(x0, x1 - 1, cols), np.linspace(y0, y1 - 1, rows)
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
