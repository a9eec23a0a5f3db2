"""PCMECL stage one: personalised emotion prompts (a CoCoOp-style prompt learner on frozen CLIP).

A prompt is ``[SOT] v_1 .. v_M  <class words>  face. [EOT]`` where the M context vectors v_i live
in the text transformer's token-embedding space. They are shared by all classes, and a small
meta-network maps the CLIP image feature of the person to a shift added to every v_i, so the text
feature of "happy" is the text feature of "happy *for this face*". The frozen open_clip text
transformer then runs on these embeddings instead of on token ids.

Any text can take the place of the class words (open vocabulary: "smug", "mildly amused"), so the
later edit can aim at emotions the learner was never trained on.

A trained learner is saved as an spfem checkpoint (safetensors; config as JSON metadata): the
architecture and text-tower sizes it was trained against, a fingerprint of the CLIP text-tower
weights, the class names and the prompt template. `load_prompt_learner` refuses a file that does
not fit the CLIP it is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spfem_cli.errors import SpfemError
from spfem_cli.pcmecl.clip import ClipBundle

CHECKPOINT_KIND = "pcmecl-prompts"
CHECKPOINT_VERSION = 1

DEFAULT_N_CTX = 4
DEFAULT_CTX_INIT = "a photo of a"
"""Context words the context vectors start from when their count matches (4 tokens in CLIP's
tokenizer), so an untrained learner is zero-shot CLIP with "a photo of a {word} face."."""
DEFAULT_SUFFIX = "face."

# Emotion labels as adjectives, so that prompts read "a photo of a fearful face." and not
# "a photo of a fear face."; labels not listed are used as they are.
EMOTION_WORDS = {"fear": "fearful", "contempt": "contemptuous"}

# Placeholders used to find where the context tokens sit in a tokenised prompt: two prompts that
# differ only there are tokenised and compared, which works whatever the tokenizer adds in front.
_PLACEHOLDERS = ("X", "Y")


def emotion_word(label: str) -> str:
    """The word put in the prompt for an emotion label ("fear" -> "fearful")."""
    return EMOTION_WORDS.get(label, label)


@dataclass(frozen=True)
class _TextTower:
    """References to the frozen parts of an open_clip text tower (not registered as submodules,
    so they stay out of the learner's parameters and state_dict)."""

    token_embedding: nn.Embedding
    positional_embedding: Tensor
    transformer: nn.Module
    ln_final: nn.Module
    text_projection: Tensor | nn.Module | None
    attn_mask: Tensor | None
    pool_type: str
    eos_id: int | None
    context_length: int
    width: int


def _text_tower(bundle: ClipBundle) -> _TextTower:
    """The text tower of `bundle.model`: open_clip's `CLIP` (tower parts on the model) or a
    `CustomTextCLIP` whose `.text` is a plain causal `TextTransformer`.

    Raises SpfemError (exit 3) for text towers that cannot take prompt embeddings this way
    (Hugging Face text models, CoCa's class token, padding masks).
    """
    model = bundle.model
    owner: Any = model
    if not hasattr(model, "token_embedding"):
        owner = getattr(model, "text", None)
        if owner is None or not hasattr(owner, "token_embedding"):
            raise SpfemError(
                f"the text tower of CLIP '{bundle.arch or type(model).__name__}' cannot take "
                "learned prompts (it has no token embedding; Hugging Face text towers are not "
                "supported)",
                exit_code=3,
            )
        if getattr(owner, "cls_emb", None) is not None or getattr(owner, "use_pad_mask", False):
            raise SpfemError(
                f"the text tower of CLIP '{bundle.arch}' uses a class token or padding mask, "
                "which the prompt learner does not support",
                exit_code=3,
            )
    pool_type = getattr(owner, "text_pool_type", None) or getattr(owner, "pool_type", "argmax")
    if pool_type not in ("argmax", "eos", "first", "last"):
        raise SpfemError(
            f"the text tower of CLIP '{bundle.arch}' pools with '{pool_type}', which the prompt "
            "learner does not support",
            exit_code=3,
        )
    eos_id = getattr(owner, "text_eos_id", None)
    if eos_id is None:
        eos_id = getattr(owner, "eos_id", None)
    positional = owner.positional_embedding
    return _TextTower(
        token_embedding=owner.token_embedding,
        positional_embedding=positional,
        transformer=owner.transformer,
        ln_final=owner.ln_final,
        text_projection=owner.text_projection,
        attn_mask=getattr(owner, "attn_mask", None),
        pool_type=pool_type,
        eos_id=eos_id,
        context_length=int(positional.shape[0]),
        width=int(owner.token_embedding.weight.shape[1]),
    )


def text_tower_fingerprint(bundle: ClipBundle) -> str:
    """A short hex digest of the CLIP text tower's weights (positional embedding, final layer
    norm and projection): prompts learned against one set of weights mean nothing to another,
    even of the same architecture."""
    tower = _text_tower(bundle)
    parts: list[Tensor] = [tower.positional_embedding, tower.ln_final.weight, tower.ln_final.bias]
    projection = tower.text_projection
    if isinstance(projection, nn.Linear):
        parts.append(projection.weight)
    elif isinstance(projection, Tensor):
        parts.append(projection)
    digest = hashlib.sha256()
    for tensor in parts:
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _pool(x: Tensor, tokens: Tensor, *, pool_type: str, eos_id: int | None) -> Tensor:
    """Pick each sequence's feature from (N, L, W) as open_clip's `text_global_pool` does."""
    rows = torch.arange(x.shape[0], device=x.device)
    if pool_type == "argmax":
        # CLIP's end-of-text token has the largest id in the vocabulary.
        return x[rows, tokens.argmax(dim=-1)]
    if pool_type == "eos":
        return x[rows, (tokens == eos_id).int().argmax(dim=-1)]
    if pool_type == "first":
        return x[:, 0]
    return x[:, -1]


class PromptLearner(nn.Module):
    """Learnable, person-conditioned prompt context for a frozen CLIP (CoCoOp).

    Parameters (the only trainable ones; CLIP stays frozen and is not a submodule):
        ctx: (M, W) context vectors, W = width of the text transformer's token embedding.
        meta_net: Linear(D, H) - ReLU - Linear(H, W), D = CLIP embedding dim; maps an image
            feature to a shift added to every context vector.

    `class_names` are the emotion labels this learner was trained to tell apart (the logits of
    `logits` follow their order); `class_texts` the words put into the prompt for each.
    """

    def __init__(
        self,
        *,
        bundle: ClipBundle,
        class_names: Sequence[str],
        class_texts: Sequence[str] | None = None,
        n_ctx: int = DEFAULT_N_CTX,
        ctx_init: str | None = DEFAULT_CTX_INIT,
        suffix: str = DEFAULT_SUFFIX,
        meta_hidden: int | None = None,
        seed: int | None = 0,
    ) -> None:
        """Build a fresh learner; `seed` makes the initialisation reproducible without touching
        torch's global random state (None: draw from it).

        The context starts from the token embeddings of `ctx_init` when it tokenises to exactly
        `n_ctx` tokens, else from N(0, 0.02). The meta-net's last layer starts near zero, so an
        untrained learner gives (almost) the hand-written prompt "{ctx_init} {word} {suffix}".
        """
        super().__init__()
        if n_ctx < 1:
            raise ValueError(f"n_ctx must be at least 1, got {n_ctx}")
        if not class_names:
            raise ValueError("class_names is empty")
        texts = list(class_texts) if class_texts is not None else list(class_names)
        if len(texts) != len(class_names):
            raise ValueError("class_texts must have one text per class name")
        # Held in a tuple so nn.Module does not adopt the frozen CLIP as a submodule.
        self._clip: tuple[ClipBundle, _TextTower] = (bundle, _text_tower(bundle))
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.class_texts: tuple[str, ...] = tuple(texts)
        self.n_ctx = n_ctx
        self.ctx_init = ctx_init
        self.suffix = suffix
        tower = self._clip[1]
        self.meta_hidden = meta_hidden or max(bundle.embed_dim // 16, 32)
        self.ctx_start = self._find_ctx_start()

        rng = torch.random.fork_rng(devices=[]) if seed is not None else nullcontext()
        with rng:
            if seed is not None:
                torch.manual_seed(seed)
            ctx = torch.randn(n_ctx, tower.width) * 0.02
            init_ids = self._init_token_ids(ctx_init) if ctx_init else None
            if init_ids is not None:
                with torch.no_grad():
                    ctx = tower.token_embedding(init_ids.to(bundle.device)).float().cpu()
            else:
                # Recorded as what the context really started from.
                self.ctx_init = None
            self.ctx = nn.Parameter(ctx.clone())
            self.meta_net = nn.Sequential(
                nn.Linear(bundle.embed_dim, self.meta_hidden),
                nn.ReLU(inplace=True),
                nn.Linear(self.meta_hidden, tower.width),
            )
            # Small rather than zero: a zero last layer would stop gradients reaching the first
            # layer on the first step, while a default-sized one would swamp the context
            # vectors (token embeddings are ~0.02 per element) and lose the zero-shot start.
            last = self.meta_net[2]
            with torch.no_grad():
                last.weight.mul_(0.01)
                last.bias.zero_()
        self.to(bundle.device)

    # --- construction helpers ----------------------------------------------------------------

    @property
    def bundle(self) -> ClipBundle:
        """The frozen CLIP this learner runs on."""
        return self._clip[0]

    def _tokenize(self, texts: Sequence[str]) -> Tensor:
        return self.bundle.tokenizer(list(texts)).to(self.bundle.device)

    def _find_ctx_start(self) -> int:
        """Index of the first context token in a tokenised prompt."""
        a, b = (
            self._tokenize([self._prompt_text("neutral", placeholder=p)])[0] for p in _PLACEHOLDERS
        )
        differ = (a != b).nonzero().flatten().tolist()
        start = differ[0] if differ else -1
        if differ != list(range(start, start + self.n_ctx)):
            raise SpfemError(
                f"the tokenizer of CLIP '{self.bundle.arch}' does not give one token per "
                "prompt context word; the prompt learner cannot use it",
                exit_code=3,
            )
        return start

    def _init_token_ids(self, ctx_init: str) -> Tensor | None:
        """Token ids of `ctx_init` when it is exactly `n_ctx` tokens, else None."""
        with_init = self._tokenize([f"{ctx_init} neutral {self.suffix}"])[0]
        with_ctx = self._tokenize([self._prompt_text("neutral")])[0]
        # Same length and the same tokens after the context: ctx_init is n_ctx tokens long.
        if (with_init != 0).sum() != (with_ctx != 0).sum():
            return None
        ids = with_init[self.ctx_start : self.ctx_start + self.n_ctx]
        tail = slice(self.ctx_start + self.n_ctx, None)
        if not torch.equal(with_init[tail], with_ctx[tail]):
            return None
        return ids

    def _prompt_text(self, text: str, *, placeholder: str = _PLACEHOLDERS[0]) -> str:
        return " ".join([placeholder] * self.n_ctx + [text, self.suffix])

    @property
    def template(self) -> str:
        """The prompt with placeholders for the context ("X X X X {} face.")."""
        return self._prompt_text("{}")

    # --- forward ------------------------------------------------------------------------------

    def _class_tokens(self, texts: Sequence[str]) -> Tensor:
        """Token ids (C, L) of the prompts for `texts`; SpfemError when one does not fit."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        if not texts:
            raise ValueError("texts is empty")
        empty = [t for t in texts if not t.strip()]
        if empty:
            raise SpfemError("an emotion text is empty")
        tokens = self._tokenize([self._prompt_text(t.strip()) for t in texts])
        # A prompt that fills the whole context was probably cut short (and lost its end
        # token, whose feature is the text feature), so refuse rather than guess.
        full = (tokens[:, -1] != 0).nonzero().flatten().tolist()
        if full:
            longest = max(len(texts[i]) for i in full)
            raise SpfemError(
                f"emotion text too long for CLIP's context of {self._clip[1].context_length} "
                f"tokens: {texts[full[0]]!r} ({longest} characters); use a few words",
            )
        return tokens

    def context(self, image_features: Tensor) -> Tensor:
        """Personalised context vectors (B, M, W) for image features (B, D)."""
        shift = self.meta_net(image_features.to(self.ctx.dtype))
        return self.ctx.unsqueeze(0) + shift.unsqueeze(1)

    def text_features(self, image_features: Tensor, texts: Sequence[str] | None = None) -> Tensor:
        """L2-normalised personalised text features (B, C, D).

        `image_features` (B, D) are CLIP image features (normalised, as `encode_images` gives),
        one per person or frame; `texts` the C words to put in the prompt (default:
        `class_texts`); any short text works. Differentiable with respect to the context
        vectors and the meta-net (and the image features).
        """
        if image_features.ndim != 2 or image_features.shape[1] != self.bundle.embed_dim:
            raise ValueError(
                f"image_features must be (B, {self.bundle.embed_dim}), "
                f"got {tuple(image_features.shape)}"
            )
        texts = list(self.class_texts if texts is None else texts)
        tokens = self._class_tokens(texts)  # (C, L)
        tower = self._clip[1]
        n_img, n_cls = image_features.shape[0], len(texts)
        start, stop = self.ctx_start, self.ctx_start + self.n_ctx

        causal = tower.attn_mask is not None and tower.pool_type in ("argmax", "eos")
        if causal:
            # With a causal mask the pooled token never sees what comes after it, so the
            # padding beyond the longest prompt can be dropped: ~8 positions instead of 77.
            if tower.pool_type == "argmax":
                ends = tokens.argmax(dim=-1)
            else:
                ends = (tokens == tower.eos_id).int().argmax(dim=-1)
            tokens = tokens[:, : int(ends.max()) + 1]
        length = tokens.shape[1]

        with torch.no_grad():
            words = tower.token_embedding(tokens)  # (C, L, W)
        ctx = self.context(image_features.to(self.ctx.device))  # (B, M, W)
        x = torch.cat(
            [
                words[:, :start].unsqueeze(0).expand(n_img, -1, -1, -1),
                ctx.unsqueeze(1).expand(-1, n_cls, -1, -1).to(words.dtype),
                words[:, stop:].unsqueeze(0).expand(n_img, -1, -1, -1),
            ],
            dim=2,
        ).reshape(n_img * n_cls, length, tower.width)

        cast_dtype = getattr(tower.transformer, "get_cast_dtype", lambda: x.dtype)()
        x = x.to(cast_dtype) + tower.positional_embedding[:length].to(cast_dtype)
        mask = tower.attn_mask[:length, :length] if tower.attn_mask is not None else None
        x = tower.transformer(x, attn_mask=mask)
        x = tower.ln_final(x)
        x = _pool(
            x,
            tokens.repeat(n_img, 1),
            pool_type=tower.pool_type,
            eos_id=tower.eos_id,
        )
        projection = tower.text_projection
        if isinstance(projection, nn.Module):
            x = projection(x)
        elif projection is not None:
            x = x @ projection
        return F.normalize(x.float(), dim=-1).reshape(n_img, n_cls, -1)

    def text_feature(self, image_features: Tensor, text: str) -> Tensor:
        """The personalised feature of one text (open vocabulary: "smug", "quietly proud").

        `image_features` is (D,) for one person, giving (D,), or (B, D), giving (B, D).
        """
        single = image_features.ndim == 1
        batch = image_features.unsqueeze(0) if single else image_features
        features = self.text_features(batch, [text])[:, 0]
        return features[0] if single else features

    def logit_scale(self) -> Tensor:
        """CLIP's learned temperature as a multiplier (scalar, frozen)."""
        return self.bundle.model.logit_scale.detach().exp().float().reshape(())

    def logits(self, image_features: Tensor, texts: Sequence[str] | None = None) -> Tensor:
        """CLIP logits (B, C): logit scale times the cosine between each image feature (B, D)
        and its own personalised text features."""
        text = self.text_features(image_features, texts)
        image = F.normalize(image_features.float().to(text.device), dim=-1)
        return self.logit_scale() * torch.einsum("bd,bcd->bc", image, text)

    # --- description --------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild this learner and to check its CLIP."""
        tower = self._clip[1]
        return {
            "kind": CHECKPOINT_KIND,
            "version": CHECKPOINT_VERSION,
            "arch": self.bundle.arch,
            "clip_weights": self.bundle.pretrained,
            "clip_text_fingerprint": text_tower_fingerprint(self.bundle),
            "embed_dim": self.bundle.embed_dim,
            "text_width": tower.width,
            "context_length": tower.context_length,
            "n_ctx": self.n_ctx,
            "ctx_init": self.ctx_init,
            "suffix": self.suffix,
            "template": self.template,
            "meta_hidden": self.meta_hidden,
            "class_names": list(self.class_names),
            "class_texts": list(self.class_texts),
        }


def person_feature(bundle: ClipBundle, frames: Tensor, *, batch_size: int = 32) -> Tensor:
    """One CLIP image feature (D,) for a person: the normalised mean of the features of
    `frames` (N, 3, H, W) in [0, 1], e.g. a few frames of the clip to edit. No gradient."""
    from spfem_cli.pcmecl.clip import encode_images

    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (N, 3, H, W) with N >= 1, got {tuple(frames.shape)}")
    with torch.no_grad():
        features = torch.cat(
            [encode_images(bundle, chunk) for chunk in frames.split(batch_size)], dim=0
        )
    return F.normalize(features.mean(dim=0), dim=-1)


def save_prompt_learner(
    learner: PromptLearner, path: str | Path, *, extra: dict[str, Any] | None = None
) -> str:
    """Write `learner` as an spfem checkpoint; returns its SHA-256.

    Tensors: ``ctx`` (M, W) and ``meta_net.*``. `extra` is kept in the config under
    ``"training"`` (data, people, accuracies: for the record, not needed to load).
    """
    from spfem_cli.generator.checkpoint import save_checkpoint

    config = learner.config()
    if extra:
        config["training"] = extra
    tensors = {name: t.detach() for name, t in learner.state_dict().items()}
    return save_checkpoint(path, tensors=tensors, config=config)


def load_prompt_learner(
    path: str | Path, *, bundle: ClipBundle, check_weights: bool = True
) -> PromptLearner:
    """Rebuild a saved learner on `bundle` (the CLIP it runs on).

    Refuses with SpfemError (exit 2) a file that is not a prompt-learner checkpoint, or that was
    trained against another CLIP: other sizes (embed dim, text width, context length), another
    architecture name, or (with `check_weights`) other text-tower weights.
    """
    from spfem_cli.generator.checkpoint import load_checkpoint

    path = Path(path)
    ckpt = load_checkpoint(path)
    cfg = ckpt.config
    if cfg.get("kind") != CHECKPOINT_KIND:
        raise SpfemError(f"{path} is not a prompt-learner file (it holds '{cfg.get('kind')}')")
    if cfg.get("version") != CHECKPOINT_VERSION:
        raise SpfemError(
            f"{path} is prompt-learner format version {cfg.get('version')}; this spfem reads "
            f"version {CHECKPOINT_VERSION}"
        )
    tower = _text_tower(bundle)
    have = {
        "embed_dim": bundle.embed_dim,
        "text_width": tower.width,
        "context_length": tower.context_length,
    }
    trained_on = f"CLIP '{cfg.get('arch')}'"
    given = f"CLIP '{bundle.arch or '?'}'"
    for key, value in have.items():
        if cfg.get(key) != value:
            raise SpfemError(
                f"{path} was trained on {trained_on} with {key} {cfg.get(key)}, but the "
                f"{given} it is loaded with has {key} {value}; load it with the same CLIP "
                "(--arch, --clip-weights, --clip-config)"
            )
    if bundle.arch and cfg.get("arch") and cfg["arch"] != bundle.arch:
        raise SpfemError(
            f"{path} was trained on {trained_on}, but it is loaded with {given}; "
            "load it with the same --arch"
        )
    if check_weights and cfg.get("clip_text_fingerprint") != text_tower_fingerprint(bundle):
        raise SpfemError(
            f"{path} was trained on {trained_on} with weights "
            f"{cfg.get('clip_weights') or 'random (none)'}, but the weights loaded now "
            f"({bundle.pretrained or 'random (none)'}) differ; prompts only work with the "
            "CLIP weights they were trained with"
        )
    try:
        learner = PromptLearner(
            bundle=bundle,
            class_names=cfg["class_names"],
            class_texts=cfg.get("class_texts"),
            n_ctx=int(cfg["n_ctx"]),
            ctx_init=cfg.get("ctx_init"),
            suffix=cfg["suffix"],
            meta_hidden=int(cfg["meta_hidden"]),
            seed=0,
        )
        learner.load_state_dict(ckpt.tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise SpfemError(f"{path} is a damaged prompt-learner file: {exc}") from exc
    learner.eval()
    return learner
