"""The speech-preserving warp: sparse landmark displacements -> a smooth dense flow -> pixels.

The flow is built in the normalised face frame (IOD units) on a coarse grid over the face box,
upsampled, and applied to the original frame with one `grid_sample`, so the image is resampled
once (no crop-and-paste blur). Pixels outside the face box are never touched, and pixels where
the flow is negligible keep their exact source values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from spfem_cli.face.mesh import FaceFrame


@dataclass(frozen=True)
class WarpConfig:
    """sigma: spatial spread of a landmark's displacement (IOD units); background: weight of
    the implicit zero displacement far from every landmark (relative to one landmark at
    distance 0); grid: flow samples per box side; margin: the face box's extra border as a
    fraction of the landmarks' extent; max_gradient: bound on the flow's Jacobian norm
    (pixels per pixel), below 1 so the warp never folds."""

    sigma: float = 0.12
    background: float = 0.25
    grid: int = 48
    margin: float = 0.25
    max_gradient: float = 0.6
    still_px: float = 0.02


def face_box(
    landmarks_px: np.ndarray, *, width: int, height: int, margin: float
) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1), end-exclusive, of landmarks (N, 2) pixels, grown by
    `margin` times its size on each side and clipped to the image."""
    lo = landmarks_px.min(axis=0)
    hi = landmarks_px.max(axis=0)
    pad = (hi - lo) * margin
    x0, y0 = np.floor(lo - pad).astype(int)
    x1, y1 = np.ceil(hi + pad).astype(int) + 1
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def shepard_flow(
    points: torch.Tensor, values: torch.Tensor, query: torch.Tensor, *, sigma: float,
    background: float,
) -> torch.Tensor:
    """Gaussian-weighted interpolation of sparse displacements.

    points: (N, 2), values: (N, 2), query: (M, 2), all in IOD units. Returns (M, 2): at each
    query point the Gaussian-weighted mean of `values`, pulled toward 0 where few points are
    near (the `background` weight), so the flow fades out beyond the face.
    """
    d2 = torch.cdist(query, points).square_()
    w = torch.exp_(d2.mul_(-0.5 / sigma**2))
    return (w @ values) / (w.sum(dim=1, keepdim=True) + background)


def flow_jacobian(flow_px: torch.Tensor, *, step_x: float, step_y: float) -> torch.Tensor:
    """Finite-difference Jacobian of a flow field.

    flow_px: (G, G, 2) displacement in pixels sampled every step_x, step_y pixels.
    Returns (G-1, G-1, 2, 2): d(flow_i)/d(x_j).
    """
    dx = (flow_px[:-1, 1:] - flow_px[:-1, :-1]) / step_x
    dy = (flow_px[1:, :-1] - flow_px[:-1, :-1]) / step_y
    return torch.stack([dx, dy], dim=-1)


def min_jacobian_det(flow_px: torch.Tensor, *, step_x: float, step_y: float) -> float:
    """Smallest determinant of the backward map x -> x - flow(x); > 0 means no folding."""
    jac = flow_jacobian(flow_px, step_x=step_x, step_y=step_y)
    eye = torch.eye(2, dtype=jac.dtype, device=jac.device)
    return float(torch.linalg.det(eye - jac).min())


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
        flow = shepard_flow(pts, vals, query, sigma=cfg.sigma, background=cfg.background)
        # Face-frame displacement (IOD) -> image pixels: rotate and scale.
        lin = torch.from_numpy(face.rotation.T * face.iod).float().to(self.device)
        flow_px = (flow @ lin).reshape(cfg.grid, cfg.grid, 2)
        step_x = max((x1 - 1 - x0) / (cfg.grid - 1), 1e-6)
        step_y = max((y1 - 1 - y0) / (cfg.grid - 1), 1e-6)
        jac = flow_jacobian(flow_px, step_x=step_x, step_y=step_y)
        norm = float(jac.flatten(-2).norm(dim=-1).max()) if jac.numel() else 0.0
        if norm > cfg.max_gradient:
            # The Frobenius norm bounds the spectral norm: below 1, I - J stays invertible.
            flow_px = flow_px * (cfg.max_gradient / norm)
        return flow_px

    def apply(
        self,
        frame: np.ndarray,
        *,
        face: FaceFrame,
        points: np.ndarray,
        values: np.ndarray,
        landmarks_px: np.ndarray,
    ) -> np.ndarray:
        """Warp one frame.

        frame: (H, W, 3) uint8 RGB; face: the frame's face frame; points, values: (N, 2)
        sparse positions and forward displacements in the face frame (IOD units);
        landmarks_px: (478, 2) pixels, to place the face box. Returns a new (H, W, 3) uint8
        frame; pixels outside the face box are the input's.
        """
        height, width = frame.shape[:2]
        box = face_box(landmarks_px, width=width, height=height, margin=self.config.margin)
        x0, y0, x1, y1 = box
        out = frame.copy()
        if x1 - x0 < 4 or y1 - y0 < 4 or not np.any(values):
            return out
        flow_px = self.box_flow(face=face, points=points, values=values, box=box)
        h, w = y1 - y0, x1 - x0
        dense = F.interpolate(
            flow_px.permute(2, 0, 1)[None], size=(h, w), mode="bilinear", align_corners=True
        )[0]  # (2, h, w)
        still = dense.square().sum(dim=0).sqrt() < self.config.still_px
        ys = torch.arange(h, device=self.device, dtype=torch.float32)[:, None]
        xs = torch.arange(w, device=self.device, dtype=torch.float32)[None, :]
        # Backward map, first order: the output pixel x shows the source at x - flow(x).
        sx = (xs - dense[0]) * (2.0 / max(w - 1, 1)) - 1.0
        sy = (ys - dense[1]) * (2.0 / max(h - 1, 1)) - 1.0
        grid = torch.stack([sx, sy], dim=-1)[None]
        src = torch.from_numpy(frame[y0:y1, x0:x1]).to(self.device)
        img = src.permute(2, 0, 1)[None].float()
        warped = F.grid_sample(img, grid, mode="bilinear", padding_mode="border",
                               align_corners=True)[0]
        warped = warped.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
        warped = torch.where(still[..., None], src, warped)
        out[y0:y1, x0:x1] = warped.cpu().numpy()
        return out
