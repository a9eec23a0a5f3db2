"""PCMECL stage two: personalised fine-tuning of the generator on one clip of one person.

What is tuned: per-person AU offsets (E, K) added to the expression model's emotion prototypes
(how *this* person shows each emotion), and the refiner's weights. CLIP and the prompt learner
of stage one stay frozen; they are the teacher.

One step takes `batch_size` frames of the person's clip as pairs of neighbouring frames. For
each pair it picks a target emotion other than the one the first frame shows (the source
emotion, read off the frame by the personalised prompts) and an intensity, builds the AU change
the edit would make (the person's target vector minus the expression already on the face as
`spfem edit` reads it, `training.frames.ClipFrames.present`), and runs the generator's
differentiable crop path
(`pcmecl.crop_edit.edit_crops`): displacement -> mouth rule -> crop flow, zero on the held
mouth -> warp -> refiner -> compose. The losses on the result:

- direction (PCMECL feature differencing): the change of the CLIP image feature from input to
  edit must point the way the personalised text feature changes from the source emotion to the
  target. This is the only term that says *what* the edit should look like; it shapes both the
  offsets (which AUs) and the refiner (what the warp cannot draw).
- coherence (STCCL): how the patches of a frame relate to their neighbours and to the same
  patch in the next frame must stay as in the input, so the edit does not flicker or smear
  structure; neighbouring frames get the same target for this reason. "Next" is the next
  frame of the sample taken from the clip: the next video frame when the clip has at most
  `max_frames` frames with a face, else about n_frames / max_frames frames later.
- mouth: the refiner's change next to the held mouth (a ring around it) must stay small: the
  mouth rule already fixes the lips, and this keeps the refiner from painting a new mouth shape
  just outside them, which would fight the speech.
- identity: with no AU change the edit must give the input back (the refiner may not invent an
  expression where none was asked for).
- reconstruction: the refiner's own self-supervised task (`training.refiner`: warp one frame of
  the clip toward another and reconstruct the real one) on this person's frames, so that it
  stays an honest renderer of this face while CLIP pushes it.
- offsets: a small L2 on the offsets, so that the prior is left only where CLIP insists.

Resumable: every `save_every` steps the whole state (offsets, refiner, optimiser, step, random
generator, loss history) goes to ``<output>.partial``; a later run with the same settings
continues from it and ends with the same file an uninterrupted run writes. The personal file is
written atomically at the end, and the partial file removed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spfem_cli.errors import SpfemError
from spfem_cli.generator.expression import (
    DEFAULT_MODEL,
    ExpressionModel,
    canonical_emotion,
    present_expression,
)
from spfem_cli.generator.generator import MouthMode, check_mouth_mode
from spfem_cli.generator.kinds import DEFAULT_BASE_REFINER
from spfem_cli.generator.refiner import Refiner, compose
from spfem_cli.generator.warp import WarpConfig
from spfem_cli.pcmecl.clip import ClipBundle, encode_images
from spfem_cli.pcmecl.crop_edit import (
    CropBatch,
    dilate,
    edit_crops,
    masked_l1,
    prepare_crops,
    to_unit_range,
)
from spfem_cli.pcmecl.losses import direction_loss, stccl_loss
from spfem_cli.pcmecl.personal import (
    MAX_ACTIVATION,
    clip_identity,
    personal_prototypes,
    save_personal,
)
from spfem_cli.pcmecl.prompts import PromptLearner, emotion_word
from spfem_cli.pcmecl.teacher import Teacher
from spfem_cli.progress import MetricsReporter, Reporter, SilentReporter
from spfem_cli.training.frames import ClipFrames

LOSS_TERMS = ("direction", "coherence", "mouth", "identity", "reconstruction", "offsets")
_ENCODE_CHUNK = 32


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything a fine-tuning run depends on (recorded in the file; a resumed run must have
    the same).

    steps: optimiser steps; lr: the refiner's learning rate (Adam, cosine decay to
    lr_final_fraction * lr); offset_lr: the offsets' learning rate (AU activation units; they
    start at 0 and matter at ~0.1 to 0.5, while the refiner's weights are ~0.05 and only need
    nudging); batch_size: frames per step, taken as batch_size // 2 pairs of neighbours;
    save_every: steps between resumable saves (0: never); intensity_range: the targets'
    intensities are drawn from it; mouth_ring_iod: width of the ring around the held mouth
    that the mouth loss watches (IOD); grad_clip: max gradient norm of the refiner (the
    direction loss's gradient is large while the edit is still tiny).
    """

    steps: int = 300
    lr: float = 1e-4
    offset_lr: float = 1e-2
    lr_final_fraction: float = 0.1
    batch_size: int = 8
    seed: int = 0
    save_every: int = 25
    log_every: int = 10
    intensity_range: tuple[float, float] = (0.6, 1.2)
    mouth: str = "natural"
    weight_direction: float = 1.0
    weight_coherence: float = 1.0
    weight_mouth: float = 1.0
    weight_identity: float = 1.0
    weight_reconstruction: float = 0.5
    weight_offsets: float = 0.1
    mouth_ring_iod: float = 0.15
    grad_clip: float = 1.0

    def check(self) -> None:
        """SpfemError (exit 2) for settings that cannot run."""
        if self.steps < 1:
            raise SpfemError(f"--steps must be at least 1, got {self.steps}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise SpfemError(f"--lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.offset_lr) and self.offset_lr > 0):
            raise SpfemError(f"offset_lr must be a positive number, got {self.offset_lr}")
        if self.batch_size < 2:
            raise SpfemError(
                f"--batch-size must be at least 2 (frames come in neighbouring pairs), "
                f"got {self.batch_size}"
            )
        if self.save_every < 0:
            raise SpfemError(f"--save-every must be >= 0, got {self.save_every}")
        check_mouth_mode(self.mouth)
        low, high = self.intensity_range
        if not 0 < low <= high <= MAX_ACTIVATION:
            raise SpfemError(f"intensity_range must lie in (0, {MAX_ACTIVATION}]")


@dataclass(frozen=True)
class StepPlan:
    """What one step trains on: frames (B,) indices into the clip, pairs of neighbours
    (2p, 2p + 1); targets (P,) emotion indices of the expression model and intensities (P,),
    one per pair; rec_pairs the self-supervised reconstruction pairs (clip 0, frame A, B);
    jitter_seed the seed of their colour jitter (so that a plan is a fixed batch: the same
    plan gives the same losses)."""

    frames: np.ndarray
    targets: np.ndarray
    intensities: np.ndarray
    rec_pairs: list[tuple[int, int, int]]
    jitter_seed: int


def _encode(bundle: ClipBundle, source: Tensor) -> Tensor:
    """Unit CLIP image features (T, D) of crops (T, 3, S, S) in [-1, 1], without gradient."""
    with torch.no_grad():
        return torch.cat(
            [encode_images(bundle, to_unit_range(c)) for c in source.split(_ENCODE_CHUNK)]
        ).float()


class PersonalTuner:
    """The state and the step of one fine-tuning run on one person's frames.

    Trainable: `offsets` (E, K) and every parameter of `refiner`. Cached at the start (the
    teacher is frozen and frames are not augmented): the frames on the device, their CLIP
    image features (T, D), the source emotion of every frame, and the personalised text
    features of every source and target emotion.
    """

    def __init__(
        self,
        *,
        frames: ClipFrames,
        bundle: ClipBundle,
        learner: PromptLearner | None,
        expression: ExpressionModel,
        refiner: Refiner,
        config: FinetuneConfig,
        device: torch.device,
    ) -> None:
        from spfem_cli.training.refiner import TrainConfig

        config.check()
        if len(frames) < 2:
            raise SpfemError(f"{frames.name}: need at least two frames with a face to fine-tune")
        crop = refiner.config.crop
        if frames.crops.shape[-1] != 2 * crop.size:
            raise ValueError(
                f"frames are cut for {frames.crops.shape[-1] // 2}-pixel crops, the refiner "
                f"takes {crop.size}"
            )
        self.frames = frames
        self.config = config
        self.device = device
        self.crop = crop
        self.mouth: MouthMode = config.mouth  # type: ignore[assignment]
        self.warp = WarpConfig()
        self.bundle = bundle
        # A private copy on the device: the caller's model stays where it was.
        self.expression = copy.deepcopy(expression).to(device)
        self.refiner = refiner.to(device).train()
        self.batch: CropBatch = prepare_crops(
            frames.crops, frames.points, crop=crop, mouth=self.mouth, device=device
        )
        self.image_features = _encode(bundle, self.batch.source)  # (T, D)
        person = F.normalize(self.image_features.mean(dim=0), dim=-1)
        self.teacher = Teacher(bundle=bundle, learner=learner, person=person)
        source_class = self.teacher.classify(self.image_features)  # (T,)
        class_text = self.teacher.text_features(self.teacher.class_texts)  # (C, D)
        self.source_text = class_text[source_class]  # (T, D)
        self.source_names = [self.teacher.class_names[int(i)] for i in source_class]
        emotions = self.expression.emotions
        self.target_text = self.teacher.text_features([emotion_word(e) for e in emotions])
        # The source as an emotion of the expression model (-1: a class it does not have).
        self.source_emotion = np.array(
            [_emotion_index(name, emotions) for name in self.source_names], dtype=np.int64
        )
        # The expression each edit replaces, as `spfem edit` reads it; frames not cut from a
        # video (tests, benchmarks) have only their AUs to read it from.
        present = frames.present
        if present is None:
            present = present_expression(frames.aus, au_names=self.expression.au_names)
        self.current = torch.from_numpy(np.asarray(present, dtype=np.float32)).to(device)
        self.offsets = nn.Parameter(
            torch.zeros(len(emotions), self.expression.num_aus, device=device)
        )
        self.optimizer = torch.optim.Adam(
            [
                {"params": list(self.refiner.parameters()), "lr": config.lr},
                {"params": [self.offsets], "lr": config.offset_lr},
            ]
        )
        self.rng = np.random.default_rng(config.seed)
        self.rec_config = TrainConfig(seed=config.seed)
        self.ring_px = max(1, round(config.mouth_ring_iod * crop.pixels_per_iod))

    # --- sampling ------------------------------------------------------------------------------

    def sample(self) -> StepPlan:
        """Draw one step's frames, targets and reconstruction pairs from `rng`."""
        from spfem_cli.training.refiner import sample_pairs

        n_pairs = self.config.batch_size // 2
        n_frames = len(self.frames)
        starts = self.rng.integers(0, n_frames - 1, size=n_pairs)
        frames = np.stack([starts, starts + 1], axis=1).reshape(-1)
        n_emotions = len(self.expression.emotions)
        targets = np.empty(n_pairs, dtype=np.int64)
        for p, start in enumerate(starts):
            choices = [e for e in range(n_emotions) if e != self.source_emotion[start]]
            targets[p] = choices[int(self.rng.integers(0, len(choices)))]
        low, high = self.config.intensity_range
        intensities = self.rng.uniform(low, high, size=n_pairs)
        rec_pairs = sample_pairs([self.frames], n_pairs, rng=self.rng, config=self.rec_config)
        return StepPlan(
            frames=frames,
            targets=targets,
            intensities=intensities,
            rec_pairs=rec_pairs,
            jitter_seed=int(self.rng.integers(0, 2**63 - 1)),
        )

    # --- losses --------------------------------------------------------------------------------

    def target_vectors(self) -> Tensor:
        """The person's emotion vectors (E, K): prototypes plus offsets, bounded."""
        return personal_prototypes(self.expression.prototypes, self.offsets)

    def losses(self, plan: StepPlan) -> dict[str, Tensor]:
        """Every loss term of a step (scalars) and their weighted sum under "total"."""
        from spfem_cli.training.refiner import make_batch, reconstruction_losses, total_loss

        cfg = self.config
        idx = torch.from_numpy(plan.frames).to(self.device)
        batch = self.batch.index(idx)
        pair_targets = torch.from_numpy(plan.targets).to(self.device)
        intensity = torch.from_numpy(plan.intensities).float().to(self.device)
        vectors = self.target_vectors()[pair_targets] * intensity[:, None]  # (P, K)
        target = vectors.repeat_interleave(2, dim=0)  # (B, K): both frames of a pair
        delta = target - self.current[idx]
        # On the side `spfem edit` plays the one-sided units for this clip.
        edit = edit_crops(
            batch, delta, expression=self.expression, refiner=self.refiner, mouth=self.mouth,
            crop=self.crop, warp=self.warp, side=self.frames.side,
        )  # fmt: skip

        edited_features = encode_images(self.bundle, to_unit_range(edit.out))
        direction = direction_loss(
            self.image_features[idx],
            edited_features,
            self.source_text[idx],
            self.target_text[pair_targets].repeat_interleave(2, dim=0),
        )
        coherence = torch.stack(
            [
                stccl_loss(batch.source[p : p + 2], edit.out[p : p + 2])
                for p in range(0, len(batch), 2)
            ]
        ).mean()
        held = edit.maps[:, 0:1]
        ring = dilate(held, radius_px=self.ring_px) * (1.0 - held)
        mouth = masked_l1(edit.out, edit.warped, ring)

        # Identity on the first frame of each pair (the second adds little).
        first = batch.index(list(range(0, len(batch), 2)))
        still = edit_crops(
            first, torch.zeros_like(delta[::2]), expression=self.expression,
            refiner=self.refiner, mouth=self.mouth, crop=self.crop, warp=self.warp,
        )  # fmt: skip
        identity = masked_l1(still.out, first.source, first.maps[:, 1:2])

        rec = make_batch(
            [self.frames], plan.rec_pairs, crop=self.crop, warp=self.warp,
            rng=np.random.default_rng(plan.jitter_seed), color_jitter=self.rec_config.color_jitter,
        )  # fmt: skip
        allow = rec.allow.to(self.device)
        residual, mask = self.refiner(rec.inputs.to(self.device), rec.aus.to(self.device))
        rec_out = compose(rec.warped.to(self.device), residual, mask, allow)
        terms = reconstruction_losses(rec_out, rec.target.to(self.device), allow)
        reconstruction = total_loss(terms, mask, allow, self.rec_config, residual)

        offsets = self.offsets.square().mean()
        out = {
            "direction": direction,
            "coherence": coherence,
            "mouth": mouth,
            "identity": identity,
            "reconstruction": reconstruction,
            "offsets": offsets,
        }
        weights = {name: getattr(cfg, f"weight_{name}") for name in LOSS_TERMS}
        out["total"] = sum(weights[name] * out[name] for name in LOSS_TERMS)  # type: ignore[assignment]
        return out

    def lr_factor(self, step: int) -> float:
        """Learning rate over its start value at `step` (1-based): a cosine decay to
        lr_final_fraction (the last steps polish instead of jumping around)."""
        floor = self.config.lr_final_fraction
        progress = (step - 1) / max(self.config.steps - 1, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def step(self, step: int) -> dict[str, float]:
        """One optimiser step (`step` counts from 1); returns the loss terms as floats."""
        plan = self.sample()
        terms = self.losses(plan)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(self.refiner.parameters(), self.config.grad_clip)
        factor = self.lr_factor(step)
        for group, base in zip(
            self.optimizer.param_groups, (self.config.lr, self.config.offset_lr), strict=True
        ):
            group["lr"] = base * factor
        self.optimizer.step()
        return {name: float(value.detach()) for name, value in terms.items()}

    # --- state ---------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: tensors, optimiser and random state."""
        return {
            "offsets": self.offsets.detach().cpu().clone(),
            "refiner": {k: v.detach().cpu().clone() for k, v in self.refiner.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": json.dumps(self.rng.bit_generator.state),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state` saved."""
        with torch.no_grad():
            self.offsets.copy_(state["offsets"].to(self.device))
        self.refiner.load_state_dict(state["refiner"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = json.loads(state["rng"])


def _emotion_index(name: str, emotions: tuple[str, ...]) -> int:
    """Index of a classifier's class name among the expression model's emotions, or -1."""
    try:
        canonical = canonical_emotion(name)
    except SpfemError:
        return -1
    return emotions.index(canonical) if canonical in emotions else -1


# --- the run: resumable, with progress --------------------------------------------------------


@dataclass
class FinetuneResult:
    """What a fine-tuning run did. first / last: the loss terms averaged over the first and the
    last logging window (at most `log_every` steps each)."""

    output: Path
    sha256: str
    steps: int
    resumed_from: int
    n_frames: int
    seconds: float
    first: dict[str, float]
    last: dict[str, float]
    source_emotions: dict[str, int]
    notes: list[str] = field(default_factory=list)


def partial_path(output: Path) -> Path:
    """Where a run keeps its resumable state: ``<output>.partial``."""
    return output.with_name(output.name + ".partial")


def _data_digest(frames: ClipFrames) -> str:
    digest = hashlib.sha256()
    arrays = [frames.crops, frames.points, frames.aus]
    if frames.present is not None:
        arrays.append(frames.present)
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _write_partial(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file beside `path`, then rename: a crash mid-save leaves the
    previous state intact."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_partial(path: Path, *, device: torch.device) -> dict[str, Any]:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise SpfemError(
            f"cannot read the saved state {path} ({type(exc).__name__}); delete it or pass "
            "--no-resume to start over"
        ) from exc


def run_finetune(
    *,
    frames: ClipFrames,
    bundle: ClipBundle,
    learner: PromptLearner | None,
    expression: ExpressionModel,
    expression_meta: dict[str, Any],
    refiner: Refiner,
    refiner_meta: dict[str, Any],
    output: str | Path,
    config: FinetuneConfig,
    device: torch.device | str = "cpu",
    resume: bool = True,
    prompts_meta: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
) -> FinetuneResult:
    """Fine-tune on loaded frames and write the personal checkpoint to `output`.

    expression_meta / refiner_meta: the identities of the base models (see
    `personal.load_expression`, `personal.load_base_refiner`); `refiner` is modified in place.
    With `resume`, a ``<output>.partial`` left by an interrupted run with the same settings,
    data and models is continued (one with other settings is refused); without, it is
    discarded. A reporter that is a `MetricsReporter` shows the running losses.
    """
    started = time.perf_counter()
    rep = reporter or SilentReporter()
    metrics = rep.metrics if isinstance(rep, MetricsReporter) else None
    output = Path(output)
    dev = torch.device(device)
    tuner = PersonalTuner(
        frames=frames, bundle=bundle, learner=learner, expression=expression, refiner=refiner,
        config=config, device=dev,
    )  # fmt: skip
    clip_meta = clip_identity(bundle)
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "config": asdict(config),
                "data": _data_digest(frames),
                "expression": expression_meta.get("sha256"),
                "refiner": refiner_meta.get("sha256"),
                # The weights by what they are, not by the path they were loaded from.
                "clip": {k: v for k, v in clip_meta.items() if k != "weights"},
                "prompts": (prompts_meta or {}).get("sha256"),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    partial = partial_path(output)
    history: list[dict[str, float]] = []
    start = 0
    if partial.exists():
        if resume:
            state = _read_partial(partial, device=dev)
            if state.get("fingerprint") != fingerprint:
                raise SpfemError(
                    f"{partial} was saved by a run with other settings, data or models; pass "
                    "--no-resume to start over (it is then replaced)"
                )
            tuner.load_state(state)
            start = int(state["step"])
            history = json.loads(state["history"])
            rep.note(f"resuming from step {start} of {config.steps} ({partial})")
        else:
            partial.unlink()

    output.parent.mkdir(parents=True, exist_ok=True)
    window: dict[str, float] = {}
    window_steps = 0
    with rep.stage("Fine-tuning", config.steps) as advance:
        for _ in range(start):
            advance()
        for step in range(start + 1, config.steps + 1):
            terms = tuner.step(step)
            for name, value in terms.items():
                window[name] = window.get(name, 0.0) + value
            window_steps += 1
            # Step 1 alone is logged too: the "before" of the run's first and last losses.
            if step == 1 or step % config.log_every == 0 or step == config.steps:
                history.append(
                    {"step": step, **{k: round(v / window_steps, 6) for k, v in window.items()}}
                )
                window, window_steps = {}, 0
            if metrics is not None:
                metrics(
                    f"loss {terms['total']:.3f}  dir {terms['direction']:.3f}  "
                    f"coh {terms['coherence']:.3f}  mouth {terms['mouth']:.3f}  "
                    f"id {terms['identity']:.3f}  rec {terms['reconstruction']:.3f}"
                )
            if config.save_every and step % config.save_every == 0 and step < config.steps:
                _write_partial(
                    partial,
                    {
                        "fingerprint": fingerprint,
                        "step": step,
                        "history": json.dumps(history),
                        **tuner.state(),
                    },
                )
            advance()

    seconds = time.perf_counter() - started
    counts: dict[str, int] = {}
    for name in tuner.source_names:
        counts[name] = counts.get(name, 0) + 1
    record = {
        "clip": frames.name,
        "person": frames.person,
        "n_frames": len(frames),
        "steps": config.steps,
        "resumed_from": start,
        # The expression the edits it learnt from replaced, mean over the frames (`--rest`
        # reveals one the person holds all through).
        "present": {
            name: round(float(v), 4)
            for name, v in zip(expression.au_names, tuner.current.mean(dim=0).tolist(), strict=True)
            if v > 0
        },
        "config": _jsonable(asdict(config)),
        "source_emotions": counts,
        "history": history,
        "seconds": round(seconds, 1),
    }
    sha = save_personal(
        output,
        offsets=tuner.offsets,
        refiner=tuner.refiner.cpu().eval(),
        person_feature=tuner.teacher.person,
        expression=expression_meta,
        base_refiner=refiner_meta,
        clip=clip_meta,
        prompts=prompts_meta,
        training=record,
        mouth=config.mouth,
    )
    partial.unlink(missing_ok=True)
    return FinetuneResult(
        output=output,
        sha256=sha,
        steps=config.steps,
        resumed_from=start,
        n_frames=len(frames),
        seconds=seconds,
        first=dict(history[0]) if history else {},
        last=dict(history[-1]) if history else {},
        source_emotions=counts,
    )


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, default=list))


def finetune(
    *,
    clip_path: str | Path,
    output: str | Path,
    prompts: str | Path | None,
    clip_arch: str = "ViT-B-32",
    clip_weights: str | Path | None = None,
    clip_config: str | Path | None = None,
    steps: int = 300,
    lr: float = 1e-4,
    batch_size: int = 8,
    device: str = "auto",
    seed: int = 0,
    resume: bool = True,
    overwrite: bool = False,
    model: str | Path = DEFAULT_MODEL,
    refiner: str | Path = DEFAULT_BASE_REFINER,
    mouth: str = "natural",
    max_frames: int = 240,
    save_every: int = 25,
    cache_dir: str | Path | None = None,
    rest: str | Path | None = None,
    face: str = "largest",
    reporter: Reporter | None = None,
) -> FinetuneResult:
    """Fine-tune spfem on one clip of one person and write their personal checkpoint.

    clip_path: a video of the person (a minute of talking is plenty; up to `max_frames` frames
    with a face, spread over it, are used). prompts: the prompt file of `spfem train-prompts`
    (trained on the same CLIP); None uses zero-shot CLIP prompts, which are not personalised.
    clip_weights: an open_clip tag (downloaded once) or a local file; None gives random weights
    (useless except for testing). refiner: the refiner the person's starts from (manifest name
    or path). rest: a photo or clip of the person's calm face, or a time range of the clip
    where it is calm (`spfem edit --rest`), so that an expression they hold through the rest
    of the clip counts as on the face, not as their rest, when the edits it learns from
    replace it. face: the person's face where the clip shows several (`spfem edit --face`).
    Everything else as in `FinetuneConfig`.

    Raises SpfemError: exit 2 for bad arguments, an existing output (without `overwrite`), a
    clip without a usable face, a prompt file that does not fit the CLIP, or a partial state
    from other settings; exit 3 for a CLIP or checkpoint that cannot be loaded.
    """
    from spfem_cli.face.tracker import FacePick
    from spfem_cli.generator.device import resolve_device
    from spfem_cli.generator.refiner import CropGeometry
    from spfem_cli.media import probe
    from spfem_cli.pcmecl.clip import load_clip
    from spfem_cli.pcmecl.personal import load_base_refiner, load_expression
    from spfem_cli.pcmecl.prompts import load_prompt_learner
    from spfem_cli.pipeline import read_rest_face, rest_note
    from spfem_cli.training.frames import load_clip_frames

    rep = reporter or SilentReporter()
    config = FinetuneConfig(
        steps=steps, lr=lr, batch_size=batch_size, seed=seed, save_every=save_every, mouth=mouth
    )
    config.check()
    if max_frames < 2:
        raise SpfemError(f"--max-frames must be at least 2, got {max_frames}")
    output = Path(output).expanduser()
    if output.is_dir():
        raise SpfemError(f"output {output} is a folder; give a file name (me.spfem)")
    if output.exists() and not overwrite:
        raise SpfemError(f"output {output} exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise SpfemError(f"the folder of output {output} does not exist")
    clip_path = Path(clip_path).expanduser()
    prompts_path = Path(prompts).expanduser() if prompts is not None else None
    if prompts_path is not None and not prompts_path.is_file():
        raise SpfemError(f"prompt file not found: {prompts_path}")
    info = probe(clip_path)  # refuses a missing or unreadable video before anything is loaded
    pick = FacePick.parse(face)
    rest_face = None if rest is None else read_rest_face(rest, video=clip_path, pick=pick)
    torch_device = resolve_device(device)

    expression, expression_meta = load_expression(model)
    base, refiner_meta = load_base_refiner(refiner)
    bundle = load_clip(
        arch=clip_arch,
        pretrained=clip_weights,
        config=Path(clip_config) if clip_config is not None else None,
        device=torch_device,
    )
    notes = [note] if (note := rest_note(rest_face)) else []
    if clip_weights is None:
        notes.append("CLIP has random weights: fine for a test, useless else")
    learner = None
    prompts_meta = None
    if prompts_path is not None:
        learner = load_prompt_learner(prompts_path, bundle=bundle)
        from spfem_cli.generator.checkpoint import sha256_file

        prompts_meta = {"file": prompts_path.name, "sha256": sha256_file(prompts_path)}
    else:
        notes.append("no --prompts: zero-shot CLIP prompts, not personalised")
    for note in notes:
        rep.note(note)

    crop: CropGeometry = base.config.crop
    frames = load_clip_frames(
        clip_path,
        person=clip_path.stem,
        name=clip_path.name,
        model=expression,
        crop=crop,
        max_frames=max_frames,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        rest_face=rest_face,
        face=pick,
        reporter=rep,
    )
    if frames is None:
        raise SpfemError(
            f"{clip_path}: no frame has a face large enough to learn from "
            f"({info.width}x{info.height}); use a clip where the face is at least ~40 px "
            "between the eyes"
        )
    result = run_finetune(
        frames=frames,
        bundle=bundle,
        learner=learner,
        expression=expression,
        expression_meta=expression_meta,
        refiner=base,
        refiner_meta=refiner_meta,
        output=output,
        config=config,
        device=torch_device,
        resume=resume,
        prompts_meta=prompts_meta,
        reporter=rep,
    )
    result.notes = notes + result.notes
    return result
