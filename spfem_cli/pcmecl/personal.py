"""The personal checkpoint: what PCMECL fine-tuning learned about one person (`me.spfem`).

One self-describing safetensors file (kind "personal", version 1; see
`generator.checkpoint`). Tensors:

    offsets            (E, K) float32  AU activations added to the base expression model's
                                       emotion prototypes, one row per emotion (how this person
                                       shows each emotion, relative to the FACS prior)
    person_feature     (D,)   float32  the person's CLIP image feature (mean over their frames)
    refiner.<name>     float32         the fine-tuned refiner's weights

Config (JSON metadata): the base expression model (name, sha256, au_names, emotions), the base
refiner (name, sha256, its architecture), the CLIP it was tuned with (arch, weights, a
fingerprint of the weights), the prompt file's sha256, and a training record (steps, losses).

`load_personal` refuses, with one line, a file of another kind or version, and a file that does
not fit the generator it is loaded into: another AU list or emotion list than the expression
model's, or a refiner of another architecture than the one asked for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from spfem_cli.errors import SpfemError
from spfem_cli.generator.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from spfem_cli.generator.expression import ExpressionModel, canonical_emotion
from spfem_cli.generator.kinds import NO_REFINER
from spfem_cli.generator.refiner import Refiner, RefinerConfig
from spfem_cli.targets import MAX_INTENSITY

PERSONAL_KIND = "personal"
PERSONAL_VERSION = 1
# The largest activation an emotion vector may have: the same bound as `--intensity`.
MAX_ACTIVATION = MAX_INTENSITY
_REFINER_PREFIX = "refiner."


def personal_prototypes(prototypes: Tensor, offsets: Tensor) -> Tensor:
    """Emotion vectors (E, K) of a person: the base prototypes (E, K) plus the person's offsets
    (E, K), kept in [0, MAX_ACTIVATION] (activations are non-negative amounts of an AU; the
    bound keeps a runaway offset from asking for an impossible face). Differentiable in the
    offsets inside the bounds."""
    return (prototypes + offsets).clamp(0.0, MAX_ACTIVATION)


def expression_info(name: str | Path, ckpt: Checkpoint) -> dict[str, Any]:
    """The identity of a base expression model, as a personal file records it."""
    return {
        "name": str(name),
        "sha256": ckpt.sha256,
        "au_names": list(ckpt.config.get("au_names", [])),
        "emotions": list(ckpt.config.get("emotions", [])),
    }


def load_expression(name_or_path: str | Path) -> tuple[ExpressionModel, dict[str, Any]]:
    """An expression model and its identity (`expression_info`)."""
    ckpt = load_checkpoint(name_or_path)
    return ExpressionModel.from_checkpoint(ckpt), expression_info(name_or_path, ckpt)


def load_base_refiner(name_or_path: str | Path) -> tuple[Refiner, dict[str, Any]]:
    """A refiner checkpoint (by manifest name or path) and its identity: name, sha256 and
    architecture (`RefinerConfig` as a dict). "none" gives an untrained refiner of the default
    architecture, which is the identity (zero residual) until trained."""
    if str(name_or_path) == NO_REFINER:
        fresh = Refiner(RefinerConfig())
        return fresh, {"name": NO_REFINER, "sha256": None, "model": fresh.config.to_dict()}
    ckpt = load_checkpoint(name_or_path)
    refiner = Refiner.from_checkpoint(ckpt)
    return refiner, {
        "name": str(name_or_path),
        "sha256": ckpt.sha256,
        "model": refiner.config.to_dict(),
    }


def clip_identity(bundle: Any) -> dict[str, Any]:
    """What identifies a CLIP (`pcmecl.clip.ClipBundle`): its arch, the weights as given, and a
    short fingerprint of the image tower's first and last weights (the same arch at other
    weights sees faces differently, so features learned with one mean nothing to the other)."""
    state = bundle.model.visual.state_dict()
    keys = list(state)
    digest = hashlib.sha256()
    for key in (keys[0], keys[-1]) if keys else ():
        digest.update(key.encode())
        digest.update(state[key].detach().float().cpu().contiguous().numpy().tobytes())
    return {
        "arch": bundle.arch,
        "weights": bundle.pretrained,
        "embed_dim": bundle.embed_dim,
        "image_fingerprint": digest.hexdigest()[:16],
    }


@dataclass
class PersonalCheckpoint:
    """A loaded personal file.

    offsets: (E, K) float32; person_feature: (D,) float32; refiner: the person's refiner (eval
    mode, CPU); config: the file's JSON config; path and sha256 of the file (None when built
    in memory).
    """

    offsets: Tensor
    person_feature: Tensor
    refiner: Refiner
    config: dict[str, Any]
    path: Path | None = None
    sha256: str | None = None

    @property
    def au_names(self) -> tuple[str, ...]:
        return tuple(self.config["expression"]["au_names"])

    @property
    def emotions(self) -> tuple[str, ...]:
        return tuple(self.config["expression"]["emotions"])

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "the personal checkpoint"

    def check_fits(
        self, *, expression: ExpressionModel, refiner_config: RefinerConfig | None = None
    ) -> None:
        """Raise SpfemError (exit 2, one line) when this file does not fit a generator built
        on `expression` (same AU names and emotions, in the same order) or, when given, on a
        refiner of architecture `refiner_config`."""
        base = self.config["expression"].get("name", "?")
        sha = str(self.config["expression"].get("sha256") or "?")[:12]
        # A model of the same name may have changed since (facs-v2 gained contempt's one-sided
        # units), so the hint names the file by its hash too.
        remedy = (
            f"fine-tune again, or edit with --model set to the '{base}' file it was tuned on "
            f"(sha256 {sha}...)"
        )
        if self.au_names != tuple(expression.au_names):
            raise SpfemError(
                f"{self.where} was tuned on expression model '{base}' with action units "
                f"{', '.join(self.au_names)}, but the model loaded now has "
                f"{', '.join(expression.au_names)}; {remedy}"
            )
        if self.emotions != tuple(expression.emotions):
            raise SpfemError(
                f"{self.where} was tuned on expression model '{base}' with emotions "
                f"{', '.join(self.emotions)}, but the model loaded now has "
                f"{', '.join(expression.emotions)}; {remedy}"
            )
        if self.refiner.config.n_aus != expression.num_aus:
            raise SpfemError(
                f"{self.where} holds a refiner that takes {self.refiner.config.n_aus} action "
                f"units, but the expression model has {expression.num_aus}"
            )
        if refiner_config is not None and refiner_config != self.refiner.config:
            mine, theirs = self.refiner.config, refiner_config
            raise SpfemError(
                f"{self.where} holds a refiner with channels {list(mine.channels)} on "
                f"{mine.crop.size}-pixel crops, but the generator expects channels "
                f"{list(theirs.channels)} on {theirs.crop.size}-pixel crops; fine-tune again "
                "with that refiner"
            )

    def prototypes(self, expression: ExpressionModel) -> Tensor:
        """The person's emotion vectors (E, K) on `expression` (checked to fit)."""
        self.check_fits(expression=expression)
        return personal_prototypes(expression.prototypes.float().cpu(), self.offsets)

    def emotion_vector(
        self, expression: ExpressionModel, emotion: str, *, intensity: float = 1.0
    ) -> Tensor:
        """AU activations (K,) of `emotion` as this person shows it, at `intensity`."""
        name = canonical_emotion(emotion)
        base = expression.emotion_vector(name, intensity=intensity)  # validates name, intensity
        row = self.prototypes(expression)[expression.emotions.index(name)]
        return (row * float(intensity)).to(base.dtype)


def save_personal(
    path: str | Path,
    *,
    offsets: Tensor,
    refiner: Refiner,
    person_feature: Tensor,
    expression: dict[str, Any],
    base_refiner: dict[str, Any],
    clip: dict[str, Any],
    prompts: dict[str, Any] | None,
    training: dict[str, Any],
    mouth: str = "natural",
) -> str:
    """Write a personal checkpoint (atomically: a temporary file renamed into place); returns
    its SHA-256.

    offsets: (E, K) with E = len(expression["emotions"]), K = len(expression["au_names"]);
    expression: `expression_info`; base_refiner: the identity from `load_base_refiner` (its
    "model" is replaced by the saved refiner's own config); clip: `clip_identity`; prompts:
    {"file": name, "sha256": ...} or None; training: steps, losses, settings (JSON values).
    """
    n_emotions, n_aus = len(expression["emotions"]), len(expression["au_names"])
    if tuple(offsets.shape) != (n_emotions, n_aus):
        raise ValueError(f"offsets must be ({n_emotions}, {n_aus}), got {tuple(offsets.shape)}")
    if refiner.config.n_aus != n_aus:
        raise ValueError(f"the refiner takes {refiner.config.n_aus} AUs, the model has {n_aus}")
    tensors = {
        "offsets": offsets.detach().float().cpu(),
        "person_feature": person_feature.detach().float().cpu().reshape(-1),
    }
    for name, value in refiner.state_dict().items():
        # float32, unlike the shipped fp16 refiner: a fine-tune's small weight changes are
        # below fp16's resolution for many weights.
        tensors[_REFINER_PREFIX + name] = value.detach().float().cpu()
    config = {
        "kind": PERSONAL_KIND,
        "version": PERSONAL_VERSION,
        "expression": expression,
        "refiner": {**base_refiner, "model": refiner.config.to_dict()},
        "clip": clip,
        "prompts": prompts,
        "mouth": mouth,
        "training": training,
    }
    return save_checkpoint(path, tensors=tensors, config=config)


def load_personal(
    path: str | Path,
    *,
    expression: ExpressionModel | None = None,
    refiner_config: RefinerConfig | None = None,
) -> PersonalCheckpoint:
    """Read a personal checkpoint and, when given, check that it fits `expression` and a
    refiner of architecture `refiner_config` (see `PersonalCheckpoint.check_fits`).

    Raises SpfemError (exit 2) for a missing or damaged file, another kind or version, or a
    misfit.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise SpfemError(f"personal checkpoint not found: {path}")
    ckpt = load_checkpoint(path)
    cfg = ckpt.config
    if cfg.get("kind") != PERSONAL_KIND:
        raise SpfemError(
            f"{path} holds a {cfg.get('kind')!r} checkpoint, not a personal one "
            "(made by `spfem finetune`)"
        )
    if cfg.get("version") != PERSONAL_VERSION:
        raise SpfemError(
            f"{path}: personal checkpoint version {cfg.get('version')!r} is not supported "
            f"(this spfem reads version {PERSONAL_VERSION})"
        )
    try:
        au_names = list(cfg["expression"]["au_names"])
        emotions = list(cfg["expression"]["emotions"])
        model_cfg = RefinerConfig.from_dict(cfg["refiner"]["model"])
        offsets = ckpt.tensors["offsets"].float()
        person_feature = ckpt.tensors["person_feature"].float()
    except (KeyError, TypeError, ValueError) as exc:
        raise SpfemError(f"{path} is a damaged personal checkpoint (missing {exc})") from exc
    if tuple(offsets.shape) != (len(emotions), len(au_names)):
        raise SpfemError(
            f"{path} is a damaged personal checkpoint: offsets are {tuple(offsets.shape)}, "
            f"expected ({len(emotions)}, {len(au_names)})"
        )
    refiner = Refiner(model_cfg)
    state = {
        name[len(_REFINER_PREFIX) :]: t.float()
        for name, t in ckpt.tensors.items()
        if name.startswith(_REFINER_PREFIX)
    }
    try:
        refiner.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise SpfemError(f"{path}: its refiner weights do not fit its config: {first}") from exc
    personal = PersonalCheckpoint(
        offsets=offsets,
        person_feature=person_feature,
        refiner=refiner.eval(),
        config=cfg,
        path=path,
        sha256=ckpt.sha256,
    )
    if expression is not None:
        personal.check_fits(expression=expression, refiner_config=refiner_config)
    return personal
