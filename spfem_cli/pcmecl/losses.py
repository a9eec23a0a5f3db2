"""The PCMECL direction loss and the STCCL coherence loss.

Both are plain functions of tensors, with no model inside, so they can be tested on hand-made
inputs and reused on CLIP features, generator feature maps, or pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DIRECTION_EPS = 1e-6
"""Directions shorter than this are treated as this long by `direction_loss`."""


def direction_loss(
    img_src: Tensor,
    img_edit: Tensor,
    txt_src: Tensor,
    txt_tgt: Tensor,
    *,
    eps: float = DIRECTION_EPS,
) -> Tensor:
    """PCMECL's feature differencing: the image should change the way the text changes.

    `img_src`, `img_edit` are (B, D) image features of the input and edited frames; `txt_src`,
    `txt_tgt` are (D,) or (B, D) text features of the source and target emotion (a (D,) one is
    shared by the batch). Returns a scalar: the batch mean of
    1 - cos(img_edit - img_src, txt_tgt - txt_src), so 0 when the directions agree, 1 when they
    are orthogonal and 2 when they are opposite.

    A direction shorter than `eps` has its length clamped to `eps` in the cosine's denominator, so
    the cosine tends to 0 and the loss to 1 as it vanishes; when the edited frame still equals the
    input (a generator that starts as the identity), the loss is exactly 1 and its gradient with
    respect to `img_edit` is -unit(txt_tgt - txt_src) / (B * eps): the right way, but large, so
    clip gradients or use an optimizer that normalises them (Adam).
    """
    if img_src.ndim != 2 or img_src.shape != img_edit.shape:
        raise ValueError(
            f"img_src and img_edit must both be (B, D), got {tuple(img_src.shape)} "
            f"and {tuple(img_edit.shape)}"
        )
    txt_dir = txt_tgt - txt_src
    if txt_dir.ndim == 1:
        txt_dir = txt_dir.unsqueeze(0)
    if txt_dir.ndim != 2 or txt_dir.shape[-1] != img_src.shape[-1]:
        raise ValueError(
            f"text features must be (D,) or (B, D) with D = {img_src.shape[-1]}, "
            f"got {tuple(txt_tgt.shape)}"
        )
    img_dir = img_edit - img_src
    txt_dir = txt_dir.to(img_dir.dtype).expand_as(img_dir)
    # Each norm is clamped separately (not their product) so the value at a vanished direction is
    # the documented 1 whatever the other direction's length.
    img_unit = img_dir / img_dir.norm(dim=-1, keepdim=True).clamp_min(eps)
    txt_unit = txt_dir / txt_dir.norm(dim=-1, keepdim=True).clamp_min(eps)
    cos = (img_unit * txt_unit).sum(dim=-1)
    return (1.0 - cos).mean()


def stccl_loss(
    src: Tensor,
    out: Tensor,
    *,
    patch: int = 8,
    hard_weight: float = 1.0,
    eps: float = 1e-8,
) -> Tensor:
    """Spatial-temporal coherent correlation: keep how patches relate to each other.

    `src` and `out` are (T, C, H, W): T frames of images or feature maps, input and edited. Each
    frame is cut into non-overlapping `patch` x `patch` patches (rows and columns that do not fill
    a whole patch are dropped), each patch flattened to a vector of C * patch**2 values.

    Spatial term: the cosine similarity of each patch with its right and lower neighbours, for src
    and for out; the penalty is |sim_src - sim_out|. Temporal term: the cosine similarity of a
    patch with the same patch in the next frame, penalised the same way (needs T >= 2).

    Hard regions count more: each penalty d gets the weight 1 + hard_weight * d / max(d) (max over
    its term, weights detached), and each term is the weighted mean sum(w d) / sum(w). Returns the
    mean of the terms that exist: a scalar, exactly 0 when out equals src.
    """
    if src.ndim != 4 or src.shape != out.shape:
        raise ValueError(
            f"src and out must both be (T, C, H, W), got {tuple(src.shape)} and {tuple(out.shape)}"
        )
    if patch < 1:
        raise ValueError(f"patch must be >= 1, got {patch}")
    if hard_weight < 0:
        raise ValueError(f"hard_weight must be >= 0, got {hard_weight}")
    p_src = _patches(src, patch=patch)
    p_out = _patches(out, patch=patch)
    frames, rows, cols = p_src.shape[:3]

    diffs: list[Tensor] = []
    if cols > 1:
        diffs.append(
            _sim_diff(p_src[:, :, :-1], p_src[:, :, 1:], p_out[:, :, :-1], p_out[:, :, 1:], eps)
        )
    if rows > 1:
        diffs.append(_sim_diff(p_src[:, :-1], p_src[:, 1:], p_out[:, :-1], p_out[:, 1:], eps))
    spatial = (
        _weighted_mean(torch.cat([d.flatten() for d in diffs]), hard_weight) if diffs else None
    )
    temporal = None
    if frames > 1:
        temporal = _weighted_mean(
            _sim_diff(p_src[:-1], p_src[1:], p_out[:-1], p_out[1:], eps).flatten(), hard_weight
        )
    terms = [term for term in (spatial, temporal) if term is not None]
    if not terms:
        raise ValueError(
            f"stccl_loss needs two patches in a frame or two frames; got {frames} frame(s) of "
            f"{rows}x{cols} patches of {patch} pixels"
        )
    return torch.stack(terms).mean()


def _patches(x: Tensor, *, patch: int) -> Tensor:
    """(T, C, H, W) -> (T, H // patch, W // patch, C * patch**2)."""
    frames, channels, height, width = x.shape
    rows, cols = height // patch, width // patch
    x = x[:, :, : rows * patch, : cols * patch]
    x = x.reshape(frames, channels, rows, patch, cols, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(frames, rows, cols, channels * patch * patch)


def _sim_diff(a_src: Tensor, b_src: Tensor, a_out: Tensor, b_out: Tensor, eps: float) -> Tensor:
    """|cos(a_src, b_src) - cos(a_out, b_out)| over the last dimension."""
    sim_src = F.cosine_similarity(a_src, b_src, dim=-1, eps=eps)
    sim_out = F.cosine_similarity(a_out, b_out, dim=-1, eps=eps)
    return (sim_src - sim_out).abs()


def _weighted_mean(diff: Tensor, hard_weight: float) -> Tensor:
    """sum(w d) / sum(w) with w = 1 + hard_weight * d / max(d), w detached; d is (N,)."""
    # Detached: the weights pick where to look, they must not become a way to lower the loss.
    scaled = diff.detach() / diff.detach().max().clamp_min(torch.finfo(diff.dtype).tiny)
    weights = 1.0 + hard_weight * scaled
    return (weights * diff).sum() / weights.sum()
