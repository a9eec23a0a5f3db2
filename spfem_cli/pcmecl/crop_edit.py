"""The generator's edit of aligned face crops, differentiable in the AU change and the refiner.

This is the path `spfem edit` takes for one frame (`generator.refiner.refine_frame`), redone on
the refiner's aligned crop (`CropGeometry`) with torch all the way, so that a loss on the edited
crop (a CLIP feature, a coherence term) reaches the AU activations and the refiner's weights:

    AU change (B, K) -> expression model -> landmark displacements (B, 478, 2), IOD
    -> face rules (`face_rules`: skin above the eyes evenly stretched; jaw, outline, inner
    lips still) -> smooth crop flow
    -> flow * (1 - held mouth) -> each eye's correction -> warp the crop (at twice its size)
    -> the eyeballs shown between the moved lids (gradient passed straight through) -> pooled
    to the crop's size -> refiner residual and mask -> compose.

Only the mouth rule's region maps (`regions`) are computed without gradients: they depend on
the landmarks and on where the AU change asks the lip corners and the upper lip to go (the hold
lets go wider around a corner that moves alone, a smirk, and around a rising upper lip:
`generator.hold_for`), never on the gradient. They are cut once per frame for both corners
moving alike and nothing rising, which is most edits, and cut again for a frame whose edit
asks otherwise (`held_maps`), so the crop path holds what `spfem edit` holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from spfem_cli.generator.expression import ExpressionModel, Side
from spfem_cli.generator.generator import MouthMode, face_rules, hold_for, mouth_gain, mouth_hold
from spfem_cli.generator.refiner import (
    CropGeometry,
    Refiner,
    compose,
    generator_warp_crops,
    network_inputs,
    regions,
)
from spfem_cli.generator.warp import WarpConfig


@dataclass(frozen=True)
class CropBatch:
    """Frames ready for the differentiable edit, all on one device.

    fine: (B, 3, 2S, 2S) float crops in [-1, 1] at twice the crop's size
    (`CropGeometry.fine`), which the edit warps before pooling, as an edit warps the frame
    before the crop is sampled; source: (B, 3, S, S) the same pooled; points: (B, 478, 2)
    float32 landmarks in the face frame (IOD); maps: (B, 2, S, S) from `regions`: channel 0 the
    held mouth (1 = held), channel 1 where the refiner may act; held_fine: (B, 1, 2S, 2S) the
    held mouth at twice the size.
    """

    fine: Tensor
    source: Tensor
    points: Tensor
    maps: Tensor
    held_fine: Tensor

    def __len__(self) -> int:
        return int(self.source.shape[0])

    def index(self, idx: Tensor | list[int]) -> CropBatch:
        """The frames at `idx` (a list or a (N,) long tensor), in that order."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.source.device)
        return CropBatch(
            fine=self.fine[idx],
            source=self.source[idx],
            points=self.points[idx],
            maps=self.maps[idx],
            held_fine=self.held_fine[idx],
        )


@dataclass(frozen=True)
class CropEdit:
    """One pass of the edit: out (B, 3, S, S) the edited crops in [-1, 1]; warped (B, 3, S, S)
    the warp alone; flow (B, 2, S, S) the forward flow in IOD (already zero on the held
    mouth); mask (B, 1, S, S) the refiner's blending mask (zeros without a refiner); maps
    (B, 2, S, S) the held mouth and the refiner's region this edit used (`held_maps`)."""

    out: Tensor
    warped: Tensor
    flow: Tensor
    mask: Tensor
    maps: Tensor


def prepare_crops(
    crops: np.ndarray,
    points: np.ndarray,
    *,
    crop: CropGeometry,
    mouth: MouthMode,
    device: torch.device | str = "cpu",
) -> CropBatch:
    """Turn uint8 crops at twice the crop's size (B, 3, 2S, 2S) (`ClipFrames.crops`) and their
    landmarks (B, 478, 2), face frame, into a `CropBatch` on `device`, with the mouth rule's
    maps cut for `mouth` (one of `MOUTH_MODES`). S must be `crop.size`."""
    crops = np.asarray(crops)
    n = 2 * crop.size
    if crops.ndim != 4 or crops.shape[1:] != (3, n, n):
        raise ValueError(f"crops must be (B, 3, {n}, {n}), got {tuple(crops.shape)}")
    pts = np.asarray(points, dtype=np.float64)
    holds = [mouth_hold(p, mode=mouth) for p in pts]
    maps = torch.stack([regions(p, h, crop=crop) for p, h in zip(pts, holds, strict=True)])
    held_fine = torch.stack(
        [regions(p, h, crop=crop.fine)[0:1] for p, h in zip(pts, holds, strict=True)]
    )
    # A copy: cached crops are a read-only memory map, which torch warns about sharing.
    fine = torch.from_numpy(np.array(crops)).float() / 127.5 - 1.0
    return CropBatch(
        fine=fine.to(device),
        source=F.avg_pool2d(fine, 2).to(device),
        points=torch.from_numpy(pts.astype(np.float32)).to(device),
        maps=maps.to(device),
        held_fine=held_fine.to(device),
    )


def held_maps(
    batch: CropBatch, disp: Tensor, *, mouth: MouthMode, crop: CropGeometry
) -> tuple[Tensor, Tensor]:
    """The held mouth as `spfem edit` holds it for the displacements disp (B, 478, 2), IOD
    (`generator.hold_for`): the batch's maps (B, 2, S, S) and held_fine (B, 1, 2S, 2S), cut
    again for the frames whose hold lets go otherwise than the one they were cut for (a
    corner that moves alone, a rising upper lip). New tensors where any frame changes; the
    batch's own are never written to (a batch is reused from step to step)."""
    if mouth == "strict":
        return batch.maps, batch.held_fine
    pts = batch.points.detach().cpu().double().numpy()
    moved = disp.detach().cpu().double().numpy()
    maps, held_fine = batch.maps, batch.held_fine
    for k, (p, d) in enumerate(zip(pts, moved, strict=True)):
        hold, cut = hold_for(p, d, mode=mouth), mouth_hold(p, mode=mouth)
        radii, cut_radii = hold.release_radii(), cut.release_radii()
        if radii.shape == cut_radii.shape and np.allclose(radii, cut_radii, atol=1e-6):
            continue
        if maps is batch.maps:
            maps, held_fine = maps.clone(), held_fine.clone()
        maps[k] = regions(p, hold, crop=crop).to(maps)
        held_fine[k] = regions(p, hold, crop=crop.fine)[0:1].to(held_fine)
    return maps, held_fine


def edit_crops(
    batch: CropBatch,
    delta: Tensor,
    *,
    expression: ExpressionModel,
    refiner: Refiner | None,
    mouth: MouthMode,
    crop: CropGeometry,
    warp: WarpConfig | None = None,
    side: Side = "right",
) -> CropEdit:
    """Edit crops by an AU change, as `spfem edit` would edit their frames.

    delta: (B, K) AU activation change per frame (the target minus what the face shows);
    side: the subject's side that plays the one-sided units (`Analysis.side`).
    `refiner` None is the warp alone (`--generator warp`). Differentiable in `delta` and in the
    refiner's parameters; the expression model's buffers must be on the batch's device.
    """
    warp = warp or WarpConfig()
    gain = torch.from_numpy(mouth_gain(expression.au_names, mode=mouth)).to(delta)
    disp = expression.displacement(delta * gain, side=side)  # (B, 478, 2), IOD
    disp = face_rules(disp, points=batch.points, mode=mouth)
    maps, held_fine = held_maps(batch, disp, mouth=mouth, crop=crop)
    # The edit zeroes the flow on the held mouth after interpolation (`Warper._hold`): the
    # lips never move whatever the smooth flow around them does.
    warped, flow = generator_warp_crops(
        batch.fine,
        points=batch.points,
        values=disp,
        crop=crop,
        warp=warp,
        held_fine=held_fine,
    )
    allow = maps[:, 1:2]
    if refiner is None:
        return CropEdit(
            out=warped, warped=warped, flow=flow, mask=torch.zeros_like(allow), maps=maps
        )
    inputs = network_inputs(warped=warped, source=batch.source, flow=flow, maps=maps)
    # As `FaceGenerator`: the refiner knows the one-sided units on the right only.
    told = delta if side == "right" else delta * (~expression.one_sided).to(delta)
    residual, mask = refiner(inputs, told.to(inputs.dtype))
    out = compose(warped, residual, mask, allow)
    return CropEdit(out=out, warped=warped, flow=flow, mask=mask, maps=maps)


def to_unit_range(images: Tensor) -> Tensor:
    """Crops in [-1, 1] -> [0, 1], what `encode_images` takes."""
    return (images + 1.0) * 0.5


def dilate(maps: Tensor, *, radius_px: int) -> Tensor:
    """Grey-level dilation of (B, 1, S, S) maps by a square of side 2 * radius_px + 1."""
    if radius_px <= 0:
        return maps
    return F.max_pool2d(maps, kernel_size=2 * radius_px + 1, stride=1, padding=radius_px)


def masked_l1(a: Tensor, b: Tensor, weight: Tensor) -> Tensor:
    """Mean |a - b| over the pixels of `weight` (B, 1, S, S); a, b: (B, C, S, S). 0 when
    the weight is empty."""
    total = weight.sum() * a.shape[1]
    return ((a - b).abs() * weight).sum() / total.clamp_min(1e-6)
