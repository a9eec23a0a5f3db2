"""Training the personalised prompt learner (PCMECL stage one) on emotion-labelled faces.

CLIP stays frozen and no image is augmented, so every frame's CLIP image feature is computed
once, up front; the epochs then only run the learner and CLIP's text transformer. The loss is
the cross-entropy of CLIP's logits, logit_scale * cos(image feature, personalised text feature
of each emotion), the personalisation coming from the same image feature (CoCoOp).
Validation is on people never trained on (see `split_people`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from spfem_cli.errors import SpfemError
from spfem_cli.pcmecl.clip import ClipBundle, encode_images, load_clip
from spfem_cli.pcmecl.prompt_data import (
    DEFAULT_VAL_FRACTION,
    PromptDataset,
    Sample,
    read_frames,
    scan_dataset,
    split_people,
)
from spfem_cli.pcmecl.prompts import (
    DEFAULT_N_CTX,
    PromptLearner,
    emotion_word,
    save_prompt_learner,
)
from spfem_cli.progress import MetricsReporter, Reporter, SilentReporter

DEFAULT_FRAMES_PER_CLIP = 4
# Frames of one size are encoded together; this many at most.
_ENCODE_BATCH = 32


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss and accuracy over its batches (as the learner was while it
    changed), and loss and accuracy on the held-out people at its end."""

    epoch: int
    loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float


@dataclass(frozen=True)
class PromptTrainingResult:
    """What `train_prompts` did: the file written, the split, and the history."""

    output: Path
    sha256: str
    class_names: tuple[str, ...]
    train_people: tuple[str, ...]
    val_people: tuple[str, ...]
    n_train_frames: int
    n_val_frames: int
    history: tuple[EpochStats, ...]
    seconds: float
    notes: tuple[str, ...]

    @property
    def chance(self) -> float:
        """Accuracy of guessing: 1 / number of classes."""
        return 1.0 / len(self.class_names)


@dataclass(frozen=True)
class _Features:
    """Cached CLIP image features (N, D), class index (N,) and person (N,) of every frame."""

    features: Tensor
    labels: Tensor
    people: tuple[str, ...]


def _to_tensor(frame: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(frame).permute(2, 0, 1).float().div_(255.0)


def _encode_samples(
    bundle: ClipBundle,
    samples: Sequence[Sample],
    *,
    class_index: dict[str, int],
    frames_per_clip: int,
    advance: Callable[[], None],
) -> _Features:
    """Read every sample's frames and encode them with CLIP, batching frames of equal size."""
    pending: dict[tuple[int, int], list[tuple[Tensor, int]]] = {}
    features: list[Tensor | None] = []
    owners: list[int] = []

    def flush(size: tuple[int, int]) -> None:
        batch = pending.pop(size)
        images = torch.stack([image for image, _ in batch])
        with torch.no_grad():
            encoded = encode_images(bundle, images).float()
        for row, (_, slot) in zip(encoded, batch, strict=True):
            features[slot] = row

    for sample_index, sample in enumerate(samples):
        for frame in read_frames(sample, frames_per_clip=frames_per_clip):
            size = (int(frame.shape[0]), int(frame.shape[1]))
            pending.setdefault(size, []).append((_to_tensor(frame), len(features)))
            features.append(None)
            owners.append(sample_index)
            if len(pending[size]) >= _ENCODE_BATCH:
                flush(size)
            elif sum(len(group) for group in pending.values()) >= 2 * _ENCODE_BATCH:
                # Many sizes, none filling a batch (a folder of photos): encode what waits,
                # so memory holds at most a few batches of frames.
                for waiting in list(pending):
                    flush(waiting)
        advance()
    for size in list(pending):
        flush(size)
    stacked = torch.stack([f for f in features if f is not None])
    labels = torch.tensor([class_index[samples[i].emotion] for i in owners], dtype=torch.long)
    return _Features(
        features=stacked,
        labels=labels.to(stacked.device),
        people=tuple(samples[i].person for i in owners),
    )


def _evaluate(
    learner: PromptLearner, features: Tensor, labels: Tensor, *, batch_size: int
) -> tuple[float, float]:
    """(mean loss, accuracy) of the learner on cached features, without gradients."""
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, features.shape[0], batch_size):
            f, y = features[start : start + batch_size], labels[start : start + batch_size]
            logits = learner.logits(f)
            total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=-1) == y).sum())
    n = max(features.shape[0], 1)
    return total_loss / n, correct / n


def _check_args(
    *, epochs: int, lr: float, batch_size: int, frames_per_clip: int, n_ctx: int
) -> None:
    if epochs < 1:
        raise SpfemError(f"--epochs must be at least 1, got {epochs}")
    if not (lr > 0 and math.isfinite(lr)):
        raise SpfemError(f"--lr must be a positive number, got {lr}")
    if batch_size < 1:
        raise SpfemError(f"--batch-size must be at least 1, got {batch_size}")
    if frames_per_clip < 1:
        raise SpfemError(f"--frames-per-clip must be at least 1, got {frames_per_clip}")
    if n_ctx < 1:
        raise SpfemError(f"--n-ctx must be at least 1, got {n_ctx}")


def _dataset_notes(data: PromptDataset, *, train: set[str], val: set[str]) -> list[str]:
    notes: list[str] = []
    if data.n_ignored:
        notes.append(
            f"{data.n_ignored} file(s) in {data.root} are neither images nor videos: skipped"
        )
    for emotion in data.emotions:
        people = {s.person for s in data.samples if s.emotion == emotion}
        if not people & train:
            notes.append(f"no trained person shows '{emotion}'; only held-out people do")
        elif not people & val:
            notes.append(f"no held-out person shows '{emotion}'; it is not validated")
    return notes


def train_prompts(
    *,
    data_dir: str | Path,
    output: str | Path,
    arch: str = "ViT-B-32",
    clip_weights: str | Path | None = None,
    clip_config: str | Path | None = None,
    epochs: int = 10,
    lr: float = 2e-3,
    batch_size: int = 32,
    seed: int = 0,
    val_people: Sequence[str] | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    n_ctx: int = DEFAULT_N_CTX,
    frames_per_clip: int = DEFAULT_FRAMES_PER_CLIP,
    device: str = "auto",
    overwrite: bool = False,
    reporter: Reporter | None = None,
) -> PromptTrainingResult:
    """Train a `PromptLearner` on DATA_DIR (layout: `spfem_cli.pcmecl.prompt_data`) and save it.

    `clip_weights` is an open_clip tag or a local file (None: random weights, for tests only);
    `clip_config` a JSON architecture config named like `arch`. `val_people` names the held-out
    people; otherwise `val_fraction` of them are drawn with `seed`. The same data, arguments
    and seed give the same file on the same device. A reporter that is a `MetricsReporter`
    also gets the running loss and accuracy.

    Raises SpfemError: exit 2 for bad arguments or data (missing folder, unknown emotion
    folders, fewer than two people or emotions, an unreadable file, an existing output without
    `overwrite`), exit 3 for a CLIP that cannot be loaded.
    """
    from spfem_cli.generator.device import resolve_device

    started = time.perf_counter()
    rep = reporter or SilentReporter()
    metrics = rep.metrics if isinstance(rep, MetricsReporter) else None
    _check_args(
        epochs=epochs, lr=lr, batch_size=batch_size, frames_per_clip=frames_per_clip, n_ctx=n_ctx
    )
    output = Path(output).expanduser()
    if output.is_dir():
        raise SpfemError(f"output {output} is a folder; give a file name (prompts.safetensors)")
    if output.exists() and not overwrite:
        raise SpfemError(f"output {output} exists; pass --overwrite to replace it")

    data = scan_dataset(data_dir)
    train_people, held_out = split_people(
        data.people, val_people=val_people, seed=seed, val_fraction=val_fraction
    )
    notes = _dataset_notes(data, train=set(train_people), val=set(held_out))
    torch_device = resolve_device(device)
    bundle = load_clip(
        arch=arch,
        pretrained=clip_weights,
        config=Path(clip_config) if clip_config is not None else None,
        device=torch_device,
    )
    if clip_weights is None:
        notes.append("CLIP has random weights: fine for a test, useless otherwise")
    for note in notes:
        rep.note(note)

    class_names = data.emotions
    class_index = {name: i for i, name in enumerate(class_names)}
    with rep.stage("Reading and encoding frames", len(data.samples)) as advance:
        encoded = _encode_samples(
            bundle,
            data.samples,
            class_index=class_index,
            frames_per_clip=frames_per_clip,
            advance=advance,
        )
    is_val = torch.tensor([p in held_out for p in encoded.people], device=encoded.features.device)
    train_x, train_y = encoded.features[~is_val], encoded.labels[~is_val]
    val_x, val_y = encoded.features[is_val], encoded.labels[is_val]

    learner = PromptLearner(
        bundle=bundle,
        class_names=class_names,
        class_texts=[emotion_word(name) for name in class_names],
        n_ctx=n_ctx,
        seed=seed,
    )
    learner.train()
    optimizer = torch.optim.Adam(learner.parameters(), lr=lr)
    steps_per_epoch = math.ceil(train_x.shape[0] / batch_size)
    total_steps = epochs * steps_per_epoch
    # Cosine decay to zero: the last steps polish instead of jumping around.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)),
    )
    # A private generator, so the order depends on the seed alone.
    order_rng = torch.Generator().manual_seed(seed)

    history: list[EpochStats] = []
    with rep.stage("Training prompts", total_steps) as advance:
        for epoch in range(1, epochs + 1):
            order = torch.randperm(train_x.shape[0], generator=order_rng).to(train_x.device)
            loss_sum, correct, seen = 0.0, 0, 0
            for start in range(0, order.shape[0], batch_size):
                idx = order[start : start + batch_size]
                logits = learner.logits(train_x[idx])
                loss = F.cross_entropy(logits, train_y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                n = idx.shape[0]
                loss_sum += float(loss.detach()) * n
                correct += int((logits.detach().argmax(dim=-1) == train_y[idx]).sum())
                seen += n
                advance()
                if metrics is not None:
                    metrics(
                        f"epoch {epoch}/{epochs}  loss {loss_sum / seen:.3f}  "
                        f"train acc {100 * correct / seen:.0f}%"
                    )
            learner.eval()
            val_loss, val_acc = _evaluate(learner, val_x, val_y, batch_size=batch_size * 2)
            learner.train()
            stats = EpochStats(
                epoch=epoch,
                loss=loss_sum / seen,
                train_accuracy=correct / seen,
                val_loss=val_loss,
                val_accuracy=val_acc,
            )
            history.append(stats)
            if metrics is not None:
                metrics(
                    f"epoch {epoch}/{epochs}  loss {stats.loss:.3f}  train acc "
                    f"{100 * stats.train_accuracy:.0f}%  held-out acc {100 * val_acc:.0f}%",
                    keep=True,
                )

    learner.eval()
    record: dict[str, Any] = {
        "data_dir": str(data.root),
        "train_people": list(train_people),
        "val_people": list(held_out),
        "n_train_frames": int(train_x.shape[0]),
        "n_val_frames": int(val_x.shape[0]),
        "frames_per_clip": frames_per_clip,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "history": [asdict(stats) for stats in history],
    }
    sha256 = save_prompt_learner(learner, output, extra=record)
    return PromptTrainingResult(
        output=output,
        sha256=sha256,
        class_names=class_names,
        train_people=train_people,
        val_people=held_out,
        n_train_frames=int(train_x.shape[0]),
        n_val_frames=int(val_x.shape[0]),
        history=tuple(history),
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )
