"""Loading a frozen CLIP teacher through open_clip, and encoding images and texts with it.

open_clip is imported inside the functions: importing it costs about a second and it is only
needed by the commands that tune with PCMECL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spfem_cli.errors import SpfemError

CONFIG_DIR = Path(__file__).parent / "configs"
"""Architecture configs shipped with spfem (JSON files in open_clip's model-config format)."""

TINY_CONFIG = CONFIG_DIR / "spfem-tiny-clip.json"
"""A tiny CLIP (32x32 images, embed_dim 32) that builds in milliseconds: for tests only."""

_REQUIRED_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")


@dataclass(frozen=True)
class ClipBundle:
    """A frozen open_clip model with what is needed to feed it.

    `preprocess` is open_clip's PIL transform (for inspecting single frames); the training code
    should use `encode_images`, which does the same resize and normalisation in torch so that
    gradients reach the pixels.
    """

    model: nn.Module
    preprocess: Callable[[Any], Tensor]
    tokenizer: Callable[..., Tensor]
    embed_dim: int
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: torch.device
    arch: str = ""
    """The open_clip architecture name ("ViT-B-32"), so files trained against it can check it."""
    pretrained: str | None = None
    """The weights loaded (a tag or a file path as given), None for random weights."""


def load_clip(
    *,
    arch: str = "ViT-B-32",
    pretrained: str | Path | None = None,
    config: Path | None = None,
    device: str | torch.device = "cpu",
) -> ClipBundle:
    """Build an open_clip model, load its weights, and freeze it.

    `pretrained` is an open_clip tag (such as "openai", downloaded and cached by open_clip), a
    local checkpoint file (a state_dict as written by `torch.save(model.state_dict(), path)` or
    an open_clip training checkpoint), or None for random weights. `config` is a JSON model config
    for an architecture open_clip does not ship; its file name (without .json) must equal `arch`.

    Raises SpfemError: exit 2 for a bad config file or an arch that does not match it, exit 3 for
    an unknown arch, a missing weights file, or weights that cannot be downloaded or loaded.
    """
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - it is a dependency, but installs break
        raise SpfemError(
            f"open_clip is not installed ({exc}); install open_clip_torch", exit_code=3
        ) from exc

    # open_clip itself spells "ViT-B/32" as "ViT-B-32" when it looks up configs.
    arch = arch.replace("/", "-")
    if config is not None:
        _register_config(open_clip, config=Path(config), arch=arch)

    available = open_clip.list_models()
    if arch not in available:
        examples = ", ".join(
            name for name in ("ViT-B-32", "ViT-B-16", "ViT-L-14", "RN50") if name in available
        )
        raise SpfemError(
            f"unknown CLIP architecture '{arch}' (available include {examples}; "
            f"{len(available)} in all)",
            exit_code=3,
        )

    checkpoint, is_tag = _resolve_pretrained(open_clip, arch=arch, pretrained=pretrained)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=checkpoint, device=device
        )
    except Exception as exc:
        if is_tag:
            message = (
                f"could not load CLIP weights '{pretrained}' for {arch}: {exc} "
                "(no internet? pass a local file with --clip-weights)"
            )
        else:
            message = f"could not load CLIP weights from {checkpoint} for {arch}: {exc}"
        raise SpfemError(message, exit_code=3) from exc

    model.eval()
    model.requires_grad_(False)
    cfg = model.visual.preprocess_cfg
    size = cfg["size"]
    image_size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    embed_dim = int(open_clip.get_model_config(arch)["embed_dim"])
    return ClipBundle(
        model=model,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(arch),
        embed_dim=embed_dim,
        image_size=image_size,
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        device=torch.device(device),
        arch=arch,
        pretrained=None if pretrained is None else str(pretrained),
    )


def _register_config(open_clip: Any, *, config: Path, arch: str) -> None:
    """Make `config` known to open_clip under its file stem, which must equal `arch`."""
    if not config.is_file():
        raise SpfemError(f"CLIP config file not found: {config}", exit_code=2)
    if config.suffix != ".json":
        raise SpfemError(f"CLIP config must be a .json file: {config}", exit_code=2)
    try:
        cfg = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SpfemError(f"cannot read CLIP config {config}: {exc}", exit_code=2) from exc
    missing = [key for key in _REQUIRED_CONFIG_KEYS if not isinstance(cfg, dict) or key not in cfg]
    if missing:
        raise SpfemError(
            f"CLIP config {config} lacks {', '.join(missing)} (open_clip model-config format)",
            exit_code=2,
        )
    if config.stem != arch:
        raise SpfemError(
            f"CLIP config {config.name} defines architecture '{config.stem}', but the "
            f"architecture asked for is '{arch}'",
            exit_code=2,
        )
    # open_clip's registry is process-wide and every add_model_config appends a search path;
    # skip the call when this exact config is already registered so repeated loads don't grow it.
    if open_clip.get_model_config(arch) != cfg:
        open_clip.add_model_config(config)


def _resolve_pretrained(
    open_clip: Any, *, arch: str, pretrained: str | Path | None
) -> tuple[str | None, bool]:
    """What open_clip accepts as `pretrained` (a known tag, a checked file path, or None), and
    whether it is a tag (so a failure is most likely a failed download)."""
    if pretrained is None:
        return None, False
    if isinstance(pretrained, str) and pretrained in open_clip.list_pretrained_tags_by_model(arch):
        return pretrained, True
    path = Path(pretrained).expanduser()
    if not path.is_file():
        tags = open_clip.list_pretrained_tags_by_model(arch)
        hint = f"; known tags for {arch}: {', '.join(tags[:5])}" if tags else ""
        raise SpfemError(f"CLIP weights file not found: {path}{hint}", exit_code=3)
    return str(path), False


def encode_images(bundle: ClipBundle, images: Tensor) -> Tensor:
    """L2-normalised CLIP image features, differentiable with respect to `images`.

    `images` is (B, 3, H, W), float RGB in [0, 1]. The resize (shortest side to the model's size,
    bicubic, then a centre crop) and the mean/std normalisation follow open_clip's transform but
    run in torch, so gradients flow back to the pixels. Returns (B, D), D = `bundle.embed_dim`.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    x = images.to(device=bundle.device, dtype=torch.float32)
    out_h, out_w = bundle.image_size
    height, width = x.shape[-2:]
    scale = max(out_h / height, out_w / width)
    new_h, new_w = max(out_h, round(height * scale)), max(out_w, round(width * scale))
    if (new_h, new_w) != (height, width):
        x = F.interpolate(
            x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True
        )
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    x = x[:, :, top : top + out_h, left : left + out_w]
    mean = x.new_tensor(bundle.mean).view(1, 3, 1, 1)
    std = x.new_tensor(bundle.std).view(1, 3, 1, 1)
    features = bundle.model.encode_image((x - mean) / std)
    return F.normalize(features, dim=-1)


def encode_texts(bundle: ClipBundle, texts: Sequence[str]) -> Tensor:
    """L2-normalised CLIP text features (N, D) for N texts; no gradient (tokens are discrete).

    Texts longer than the model's context length are truncated by the tokenizer.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    if not texts:
        raise ValueError("texts is empty")
    tokens = bundle.tokenizer(list(texts)).to(bundle.device)
    # no_grad rather than inference_mode: these features are later used as constants inside
    # losses that are backpropagated, and inference tensors cannot be saved for backward.
    with torch.no_grad():
        features = bundle.model.encode_text(tokens)
    return F.normalize(features.float(), dim=-1)
