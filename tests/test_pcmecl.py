"""Fast tests of the PCMECL foundations: CLIP loading (tiny model, no network) and the losses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spfem_cli.errors import SpfemError
from spfem_cli.pcmecl.clip import TINY_CONFIG, ClipBundle, encode_images, encode_texts, load_clip
from spfem_cli.pcmecl.losses import direction_loss, stccl_loss

TINY = "spfem-tiny-clip"


@pytest.fixture(scope="module")
def tiny() -> ClipBundle:
    torch.manual_seed(0)
    return load_clip(arch=TINY, config=TINY_CONFIG)


# --- CLIP loading ---------------------------------------------------------------------------


def test_tiny_model_loads_from_json_config(tiny: ClipBundle) -> None:
    assert tiny.embed_dim == 32
    assert tiny.image_size == (32, 32)
    assert not any(p.requires_grad for p in tiny.model.parameters())
    assert not tiny.model.training
    # The standard tokenizer has to honour the tiny context length.
    assert tiny.tokenizer(["a photo of a happy face"]).shape == (1, 16)


def test_local_checkpoint_round_trip(tiny: ClipBundle, tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    torch.manual_seed(1)  # a different random init, so equality proves the weights were loaded
    loaded = load_clip(arch=TINY, pretrained=path, config=TINY_CONFIG)
    images = torch.rand(2, 3, 40, 48)
    texts = ["a photo of a happy face", "a photo of a sad face"]
    assert torch.equal(encode_images(loaded, images), encode_images(tiny, images))
    assert torch.equal(encode_texts(loaded, texts), encode_texts(tiny, texts))


def test_missing_weights_file_is_exit_3(tmp_path: Path) -> None:
    with pytest.raises(SpfemError, match="not found") as info:
        load_clip(arch=TINY, pretrained=tmp_path / "nope.pt", config=TINY_CONFIG)
    assert info.value.exit_code == 3


def test_unknown_arch_is_exit_3() -> None:
    with pytest.raises(SpfemError, match="unknown CLIP architecture 'ViT-Q-99'.*ViT-B-32") as info:
        load_clip(arch="ViT-Q-99")
    assert info.value.exit_code == 3


def test_config_name_must_match_arch() -> None:
    with pytest.raises(SpfemError, match="defines architecture") as info:
        load_clip(config=TINY_CONFIG)
    assert info.value.exit_code == 2


def test_failed_download_is_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    import open_clip.factory

    def offline(*args: object, **kwargs: object) -> str:
        raise OSError("network is unreachable")

    # Patched where the factory looks it up, so nothing touches the network or the cache.
    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(SpfemError, match="'openai' for ViT-B-32.*no internet") as info:
        load_clip(arch="ViT-B-32", pretrained="openai")
    assert info.value.exit_code == 3


def test_encode_images_unit_vectors_and_gradients(tiny: ClipBundle) -> None:
    images = torch.rand(3, 3, 50, 40, requires_grad=True)
    features = encode_images(tiny, images)
    assert features.shape == (3, 32)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(3))
    features[:, 0].sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_encode_texts_unit_vectors(tiny: ClipBundle) -> None:
    features = encode_texts(tiny, ["a photo of a happy face", "a photo of an angry face"])
    assert features.shape == (2, 32)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(2))


# --- direction loss -------------------------------------------------------------------------


def _unit(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_direction_loss_values() -> None:
    img_src = torch.zeros(1, 3)
    txt_src, txt_tgt = _unit(0, 0, 0), _unit(1, 0, 0)

    def loss_for(img_edit: torch.Tensor) -> float:
        return direction_loss(img_src, img_edit.reshape(1, 3), txt_src, txt_tgt).item()

    assert loss_for(_unit(2, 0, 0)) == pytest.approx(0)
    assert loss_for(_unit(-1, 0, 0)) == pytest.approx(2)
    assert loss_for(_unit(0, 3, 0)) == pytest.approx(1)
    # A vanished image direction is the documented 1, not NaN.
    assert loss_for(img_src) == pytest.approx(1)


def test_direction_loss_batched_text_and_gradient() -> None:
    img_src = torch.randn(4, 8)
    txt_src, txt_tgt = torch.randn(4, 8), torch.randn(4, 8)
    img_edit = (img_src + (txt_tgt - txt_src)).requires_grad_(True)
    loss = direction_loss(img_src, img_edit, txt_src, txt_tgt)
    assert loss.item() == pytest.approx(0, abs=1e-6)
    shifted = (img_edit.detach() + torch.randn(4, 8)).requires_grad_(True)
    direction_loss(img_src, shifted, txt_src, txt_tgt).backward()
    assert shifted.grad is not None and shifted.grad.abs().sum() > 0


# --- STCCL ------------------------------------------------------------------------------------


def _video(frames: int = 4, size: int = 32) -> torch.Tensor:
    torch.manual_seed(3)
    return torch.rand(frames, 3, size, size)


def test_stccl_zero_for_identical() -> None:
    video = _video()
    assert stccl_loss(video, video.clone()).item() == 0.0


def test_stccl_positive_for_shuffled_or_reversed() -> None:
    video = _video()
    # Swap whole 8x8 patches around, which keeps each patch but breaks who neighbours whom.
    patches = video.reshape(4, 3, 4, 8, 4, 8)
    shuffled = patches[:, :, torch.randperm(4, generator=torch.Generator().manual_seed(0))]
    shuffled = shuffled[:, :, :, :, torch.tensor([3, 0, 2, 1])].reshape(video.shape)
    assert stccl_loss(video, shuffled).item() > 1e-3
    assert stccl_loss(video, video.flip(0)).item() > 1e-3


def test_stccl_gradient_reaches_out() -> None:
    video = _video()
    out = (video + 0.1 * torch.randn_like(video)).requires_grad_(True)
    stccl_loss(video, out).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0


def test_stccl_weights_the_hard_patch() -> None:
    video = _video(frames=2, size=32)
    out = video.clone()
    out[:, :, 8:16, 8:16] = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    plain = stccl_loss(video, out, hard_weight=0.0)
    hard = stccl_loss(video, out, hard_weight=1.0)
    assert plain.item() > 0
    # Only the pairs touching one patch differ; weighting them up raises the mean.
    assert hard.item() > plain.item() * 1.2


def test_stccl_uniform_difference_is_not_reweighted() -> None:
    # Two frames of 1x2 patches: one spatial pair and two temporal pairs that differ equally,
    # so the weights are all alike and hard_weight changes nothing.
    src = torch.zeros(2, 1, 1, 2)
    src[:, 0, 0, 0] = 1.0
    src[:, 0, 0, 1] = 1.0
    out = src.clone()
    out[:, 0, 0, 1] = -1.0
    out[1] = -out[1]
    plain = stccl_loss(src, out, patch=1, hard_weight=0.0)
    hard = stccl_loss(src, out, patch=1, hard_weight=3.0)
    torch.testing.assert_close(plain, hard)
