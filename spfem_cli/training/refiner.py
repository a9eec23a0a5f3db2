"""Self-supervised pre-training of the refiner on real video.

No labels and no pairs: two frames A and B of the same video are taken, A's crop is warped
toward B's landmarks with the generator's own warp (`generator.refiner.generator_warp_crops`:
the smooth flow, the eyes' correction and the eyeballs, all as on a frame; at twice the crop's
size, then pooled, as an edit samples the crop from the warped frame), and the refiner
learns to turn the warped crop into B's real crop. What the warp cannot do (creases, shading,
eye whites, teeth behind a lip that moved) is what it learns.

Losses, over the region the refiner may change (the face, not the held mouth):
- L1 on pixels: the reconstruction itself, robust to the odd bad landmark;
- L1 on a Laplacian pyramid (three band-pass levels): a loss in a frequency "feature space"
  that weighs creases and edges as much as flat skin, so the residual is not a blur;
- SSIM on luminance: local structure (contrast and correlation), not just intensity;
- a small penalty on the mask, so the refiner leaves alone what it cannot improve.
No pretrained feature network (VGG/LPIPS/CLIP) can be had offline, and an adversarial loss
would need far more steps than a CPU run gives to be stable, so the pyramid and SSIM terms
stand in for both.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from spfem_cli.errors import SpfemError
from spfem_cli.face import mesh
from spfem_cli.face.tracker import FacePick
from spfem_cli.generator.expression import DEFAULT_MODEL, ExpressionModel
from spfem_cli.generator.generator import mouth_hold
from spfem_cli.generator.refiner import (
    CropGeometry,
    Refiner,
    RefinerConfig,
    compose,
    generator_warp_crops,
    network_inputs,
    regions,
)
from spfem_cli.generator.warp import WarpConfig
from spfem_cli.media.pixels import REC601_LUMA
from spfem_cli.progress import Reporter, SilentReporter
from spfem_cli.training.frames import ClipFrames, load_collection

# Landmarks that move with the head but not with expression or speech: their difference
# between two frames (in the face frame) measures how far the head turned.
_POSE_POINTS = np.array(
    sorted((set(mesh.FACE_OVAL) - set(mesh.JAW)) | set(mesh.NOSE) | {33, 133, 263, 362})
)


@dataclass
class TrainConfig:
    """Everything a refiner training run depends on (saved in the checkpoint and the log)."""

    seed: int = 0
    steps: int = 3000
    batch_size: int = 12
    lr: float = 2e-3
    lr_final: float = 1e-4
    warmup_steps: int = 200
    min_gap_frames: int = 3
    # Frame B within this many (cached) frames of A; 0: anywhere in the video. Close pairs
    # share light and pose, so what differs is mostly expression and speech.
    max_gap_frames: int = 0
    pose_tolerance: float = 0.06
    candidates: int = 16
    expression_bias: float = 0.75
    max_frames_per_clip: int = 400
    val_people: list[str] = field(default_factory=list)
    val_fraction: float = 0.25
    val_pairs: int = 192
    people: dict[str, str] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=list)
    # Which face each video is learnt from where it shows several (`spfem edit --face`:
    # largest, left, right or X,Y).
    face: str = "largest"
    weight_l1: float = 1.0
    weight_pyramid: float = 1.0
    weight_ssim: float = 0.5
    weight_mask: float = 0.005
    weight_residual: float = 0.05
    color_jitter: float = 0.08
    # Mirror half the training pairs left to right: twice the faces, and a refiner that cannot
    # learn one side of one person's face by heart.
    mirror: bool = False
    log_every: int = 25
    val_every: int = 500
    # Processes that build the training pairs (warping is CPU work, one pair ~20 ms on a
    # core), so a GPU is not left waiting; 0: the training process builds them. Each worker
    # has its own random stream, so results depend on this number as on the seed.
    workers: int = 0
    crop_size: int = 128
    channels: tuple[int, int, int] = (24, 48, 96)
    expression_model: str = DEFAULT_MODEL

    @classmethod
    def from_file(cls, path: Path) -> TrainConfig:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SpfemError(f"cannot read training config {path}: {exc}") from exc
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known - {"comment"})
        if unknown:
            raise SpfemError(f"{path}: unknown training settings: {', '.join(unknown)}")
        data.pop("comment", None)
        if "channels" in data:
            data["channels"] = tuple(data["channels"])
        return cls(**data)

    def model_config(self) -> RefinerConfig:
        return RefinerConfig(crop=CropGeometry(size=self.crop_size), channels=self.channels)


@dataclass
class Batch:
    """A batch of training pairs on the crop, all (B, C, S, S) in [-1, 1] unless said.

    inputs: the network's input (B, 10, S, S); aus: (B, K) AU change from A to B; warped:
    A warped toward B; target: B; allow: (B, 1, S, S) where the refiner may act."""

    inputs: Tensor
    aus: Tensor
    warped: Tensor
    target: Tensor
    allow: Tensor


def split_people(clips: Sequence[ClipFrames], config: TrainConfig) -> tuple[list[str], list[str]]:
    """(training people, validation people): `val_people` when given, else a seeded choice of
    about val_fraction of the people. Raises if either side would be empty."""
    people = sorted({c.person for c in clips})
    if config.val_people:
        missing = sorted(set(config.val_people) - set(people))
        if missing:
            raise SpfemError(f"validation people not in the collection: {', '.join(missing)}")
        val = sorted(config.val_people)
    else:
        rng = np.random.default_rng(config.seed)
        n_val = max(1, round(config.val_fraction * len(people)))
        val = sorted(rng.choice(people, size=n_val, replace=False).tolist()) if people else []
    train = [p for p in people if p not in val]
    if not train or not val:
        raise SpfemError(
            "need videos of at least two people to train with a held-out person; "
            f"found {len(people)}"
        )
    return train, val


def pose_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS landmark difference (IOD) of two frames' pose points, face frame."""
    d = a[_POSE_POINTS] - b[_POSE_POINTS]
    return float(np.sqrt((d**2).sum(axis=-1).mean()))


def sample_pairs(
    clips: Sequence[ClipFrames], n: int, *, rng: np.random.Generator, config: TrainConfig
) -> list[tuple[int, int, int]]:
    """n pairs (clip index, frame A, frame B) of different frames of one video with a similar
    head pose (clips drawn in proportion to their length).

    For frame A, `candidates` frames B are drawn; of those within the pose tolerance (or the
    closest in pose, if none is), the one whose AU activations differ most from A's is taken
    with probability `expression_bias`, else a random one. Most pairs of a talking clip differ
    by little but speech and noise; the refiner's work is where the expression changed."""
    sizes = np.array([len(c) for c in clips], dtype=np.float64)
    out = []
    for c in rng.choice(len(clips), size=n, p=sizes / sizes.sum()):
        clip = clips[c]
        a = int(rng.integers(len(clip)))
        gap = np.abs(np.arange(len(clip)) - a)
        ok_gap = gap >= config.min_gap_frames
        if config.max_gap_frames > 0:
            ok_gap &= gap <= config.max_gap_frames
        far = np.flatnonzero(ok_gap)
        pool = far if far.size else np.delete(np.arange(len(clip)), a)
        cands = rng.choice(pool, size=min(config.candidates, pool.size), replace=False)
        pose = np.array([pose_distance(clip.points[a], clip.points[b]) for b in cands])
        ok = cands[pose <= config.pose_tolerance]
        if ok.size == 0:
            ok = cands[[int(np.argmin(pose))]]
        if rng.random() < config.expression_bias:
            change = np.linalg.norm(clip.aus[ok] - clip.aus[a], axis=1)
            b = int(ok[int(np.argmax(change))])
        else:
            b = int(rng.choice(ok))
        out.append((int(c), a, b))
    return out


def make_batch(
    clips: Sequence[ClipFrames],
    pairs: Sequence[tuple[int, int, int]],
    *,
    crop: CropGeometry,
    warp: WarpConfig,
    rng: np.random.Generator | None = None,
    color_jitter: float = 0.0,
) -> Batch:
    """Build the network's inputs and targets for pairs (clip, A, B): A warped toward B.

    The clips' crops are at twice the crop's size (`ClipFrames`): A is warped at that size and
    everything is pooled to `crop`'s, as an edit warps the frame and samples the crop."""
    for c in {c for c, _, _ in pairs}:
        if clips[c].crops.shape[-1] != 2 * crop.size:
            raise ValueError(
                f"{clips[c].name}: crops of {clips[c].crops.shape[-1]} pixels, not twice the "
                f"crop's {crop.size}"
            )
    src = torch.from_numpy(np.stack([clips[c].crops[a] for c, a, _ in pairs])).float() / 127.5 - 1
    tgt = torch.from_numpy(np.stack([clips[c].crops[b] for c, _, b in pairs])).float() / 127.5 - 1
    if rng is not None and color_jitter > 0:
        # The same colour change on both frames: a new skin tone or light, not a new target.
        gain = torch.from_numpy(1 + color_jitter * rng.standard_normal((len(pairs), 3, 1, 1)))
        bias = torch.from_numpy(color_jitter * rng.standard_normal((len(pairs), 3, 1, 1)))
        src = (src * gain.float() + bias.float()).clamp(-1, 1)
        tgt = (tgt * gain.float() + bias.float()).clamp(-1, 1)
    pa = torch.from_numpy(np.stack([clips[c].points[a] for c, a, _ in pairs]))
    pb = torch.from_numpy(np.stack([clips[c].points[b] for c, _, b in pairs]))
    aus = torch.from_numpy(np.stack([clips[c].aus[b] - clips[c].aus[a] for c, a, b in pairs]))
    with torch.no_grad():
        warped, flow = generator_warp_crops(src, points=pa, values=pb - pa, crop=crop, warp=warp)
        src, tgt = F.avg_pool2d(src, 2), F.avg_pool2d(tgt, 2)
    maps = torch.stack(
        [
            regions(p, mouth_hold(p.astype(np.float64), mode="natural"), crop=crop)
            for p in pb.numpy()
        ]
    )
    inputs = network_inputs(warped=warped, source=src, flow=flow, maps=maps)
    return Batch(inputs=inputs, aus=aus.float(), warped=warped, target=tgt, allow=maps[:, 1:2])


def mirror_batch(batch: Batch, *, which: Tensor, one_sided: Sequence[int]) -> Batch:
    """The pairs flagged in `which` (B,) bool, mirrored left to right (the crop is centred on
    the face's midline): images and maps flipped, the flow's x component negated. A one-sided
    AU (e.g. the right lip corner's AU12R) has no mirror among the AUs, so its change is
    zeroed on a mirrored pair (indices `one_sided`)."""
    if not bool(which.any()):
        return batch
    w = which[:, None, None, None]
    inputs = torch.where(w, batch.inputs.flip(-1), batch.inputs)
    inputs[:, 6] = torch.where(which[:, None, None], -inputs[:, 6], inputs[:, 6])
    aus = batch.aus.clone()
    if len(one_sided):
        aus[which[:, None] & _index_mask(aus.shape[1], one_sided)[None]] = 0.0
    return Batch(
        inputs=inputs,
        aus=aus,
        warped=torch.where(w, batch.warped.flip(-1), batch.warped),
        target=torch.where(w, batch.target.flip(-1), batch.target),
        allow=torch.where(w, batch.allow.flip(-1), batch.allow),
    )


def _index_mask(n: int, indices: Sequence[int]) -> Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[list(indices)] = True
    return mask


def _masked_mean(x: Tensor, weight: Tensor) -> Tensor:
    return (x * weight).sum() / (weight.sum() * x.shape[1] / weight.shape[1]).clamp_min(1e-6)


def _laplacian(x: Tensor, levels: int) -> list[Tensor]:
    bands = []
    for _ in range(levels):
        down = F.avg_pool2d(x, 2)
        bands.append(
            x - F.interpolate(down, size=x.shape[-2:], mode="bilinear", align_corners=False)
        )
        x = down
    return bands


def _ssim_map(a: Tensor, b: Tensor, *, window: int = 7) -> Tensor:
    """SSIM per pixel of luminance images (B, 1, S, S) in [-1, 1]."""
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    pad = window // 2

    def blur(x: Tensor) -> Tensor:
        return F.avg_pool2d(F.pad(x, (pad,) * 4, mode="replicate"), window, stride=1)

    ma, mb = blur(a), blur(b)
    va = blur(a * a) - ma * ma
    vb = blur(b * b) - mb * mb
    cov = blur(a * b) - ma * mb
    return ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))


def _luma(x: Tensor) -> Tensor:
    """(B, 1, H, W) the luminance of RGB images (B, 3, H, W)."""
    red, green, blue = REC601_LUMA
    return red * x[:, 0:1] + green * x[:, 1:2] + blue * x[:, 2:3]


def reconstruction_losses(out: Tensor, target: Tensor, allow: Tensor) -> dict[str, Tensor]:
    """The loss terms (scalars) of a refined crop against the real one, over `allow`."""
    l1 = _masked_mean((out - target).abs(), allow)
    pyramid = out.new_zeros(())
    weight = allow
    for bo, bt in zip(_laplacian(out, 3), _laplacian(target, 3), strict=True):
        if weight.shape[-1] != bo.shape[-1]:
            weight = F.interpolate(allow, size=bo.shape[-2:], mode="area")
        pyramid = pyramid + _masked_mean((bo - bt).abs(), weight)
    ssim = _masked_mean(1 - _ssim_map(_luma(out), _luma(target)), allow)
    return {"l1": l1, "pyramid": pyramid, "ssim": ssim}


def total_loss(
    terms: dict[str, Tensor], mask: Tensor, allow: Tensor, config: TrainConfig, residual: Tensor
) -> Tensor:
    """The weighted sum of the reconstruction terms and two small penalties: on the mask (leave
    alone what cannot be improved) and on the residual's size (without it, Adam lets the
    residual drift where the mask is nearly closed, until mask and residual lock at 0 and 1)."""
    return (
        config.weight_l1 * terms["l1"]
        + config.weight_pyramid * terms["pyramid"]
        + config.weight_ssim * terms["ssim"]
        + config.weight_mask * (mask * allow).mean()
        + config.weight_residual * (residual.square() * allow).mean()
    )


@dataclass
class ValidationResult:
    """Held-out reconstruction errors, mean over pairs: L1 in 8-bit levels and 1 - SSIM, for
    the unwarped source, the warp alone and warp + refiner; wins: the fraction of pairs whose
    L1 the refiner lowered."""

    pairs: int
    l1_source: float
    l1_warp: float
    l1_refined: float
    dssim_warp: float
    dssim_refined: float
    wins: float = 0.0

    @property
    def l1_gain(self) -> float:
        """Relative reduction of the warp's L1 error by the refiner (0.1 = 10% lower)."""
        return 1 - self.l1_refined / self.l1_warp if self.l1_warp else 0.0


def validate(
    model: Refiner,
    clips: Sequence[ClipFrames],
    pairs: Sequence[tuple[int, int, int]],
    *,
    warp: WarpConfig,
    batch_size: int = 32,
) -> ValidationResult:
    """Reconstruction errors on fixed pairs (from people the model was not trained on)."""
    crop = model.config.crop
    device = next(model.parameters()).device
    sums = np.zeros(6)
    model.eval()
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i : i + batch_size]
            b = make_batch(clips, chunk, crop=crop, warp=warp)
            residual, mask = model(b.inputs.to(device), b.aus.to(device))
            refined = compose(b.warped, residual.cpu(), mask.cpu(), b.allow)
            source = b.inputs[:, 3:6]
            for j in range(len(chunk)):
                w = b.allow[j : j + 1]
                t = b.target[j : j + 1]
                l1_warp = 127.5 * float(_masked_mean((b.warped[j : j + 1] - t).abs(), w))
                l1_refined = 127.5 * float(_masked_mean((refined[j : j + 1] - t).abs(), w))
                sums += [
                    127.5 * float(_masked_mean((source[j : j + 1] - t).abs(), w)),
                    l1_warp,
                    l1_refined,
                    float(_masked_mean(1 - _ssim_map(_luma(b.warped[j : j + 1]), _luma(t)), w)),
                    float(_masked_mean(1 - _ssim_map(_luma(refined[j : j + 1]), _luma(t)), w)),
                    float(l1_refined < l1_warp),
                ]
    model.train()
    m = sums / max(len(pairs), 1)
    return ValidationResult(len(pairs), *[float(v) for v in m])


def training_batch(
    clips: Sequence[ClipFrames],
    *,
    config: TrainConfig,
    warp: WarpConfig,
    rng: np.random.Generator,
    one_sided: Sequence[int],
) -> Batch:
    """One training batch: `batch_size` pairs drawn, colour-jittered, half mirrored when the
    config says so (`one_sided`: indices of the AUs without a mirror)."""
    pairs = sample_pairs(clips, config.batch_size, rng=rng, config=config)
    b = make_batch(
        clips, pairs, crop=config.model_config().crop, warp=warp, rng=rng,
        color_jitter=config.color_jitter,
    )  # fmt: skip
    if config.mirror:
        flip = torch.from_numpy(rng.random(len(pairs)) < 0.5)
        b = mirror_batch(b, which=flip, one_sided=one_sided)
    return b


class PairStream(torch.utils.data.IterableDataset):
    """The training batches of a run, `config.steps` of them, built where they are iterated.

    In a DataLoader with n workers, worker w builds the batches of steps w, w + n, ... from
    its own random stream (the seed and w), and the loader hands them out in step order, so a
    run is reproducible for a given seed and number of workers.
    """

    def __init__(
        self,
        clips: Sequence[ClipFrames],
        *,
        config: TrainConfig,
        warp: WarpConfig,
        one_sided: Sequence[int],
    ) -> None:
        self.clips, self.config, self.warp, self.one_sided = clips, config, warp, one_sided

    def batches(
        self, rng: np.random.Generator, *, first: int = 0, every: int = 1
    ) -> Iterator[Batch]:
        """The batches of steps first, first + every, ... drawn from `rng`."""
        for _ in range(first, self.config.steps, every):
            yield training_batch(
                self.clips, config=self.config, warp=self.warp, rng=rng, one_sided=self.one_sided
            )

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        if info is None:
            return self.batches(np.random.default_rng(self.config.seed))
        # A worker's torch work is one pair at a time; more threads would only fight the
        # other workers for the cores.
        torch.set_num_threads(1)
        rng = np.random.default_rng([self.config.seed, info.id + 1])
        return self.batches(rng, first=info.id, every=info.num_workers)


def batch_source(stream: PairStream) -> Iterator[Batch]:
    """The stream's batches in step order: from `config.workers` worker processes, or built
    here, from the config's seed, when there are none."""
    workers = stream.config.workers
    if workers > 0:
        return iter(
            torch.utils.data.DataLoader(
                stream, batch_size=None, num_workers=workers, prefetch_factor=4
            )
        )
    return iter(stream)


def train_step(
    model: Refiner,
    opt: torch.optim.Optimizer,
    b: Batch,
    *,
    config: TrainConfig,
    device: torch.device,
) -> dict[str, Tensor]:
    """One optimiser step on a batch; returns the loss terms (scalars), the total as "loss"."""
    residual, mask = model(b.inputs.to(device), b.aus.to(device))
    allow = b.allow.to(device)
    warped = b.warped.to(device)
    out = compose(warped, residual, mask, allow)
    target = b.target.to(device)
    terms = reconstruction_losses(out, target, allow)
    loss = total_loss(terms, mask, allow, config, residual)
    # The warp's own error on the same batch: the refiner's gain on training pairs is
    # l1_warp - l1 in the log.
    terms["l1_warp"] = _masked_mean((warped - target).abs(), allow)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {**terms, "loss": loss}


# Steps a pace probe times, at least; with workers, four per worker, after two per worker
# have let every worker start and the loader's queue fill.
PROBE_STEPS = 8


def probe_step_seconds(
    model: Refiner,
    clips: Sequence[ClipFrames],
    *,
    config: TrainConfig,
    warp: WarpConfig,
    one_sided: Sequence[int],
    device: torch.device,
) -> float:
    """Seconds a training step takes at its steady pace, pair building included: a copy of
    `model` trains on batches of another random stream, so the run itself is untouched (the
    torch random state is restored too)."""
    probe = replace(config, seed=config.seed + 7919, steps=2**31 - 1)
    stream = PairStream(clips, config=probe, warp=warp, one_sided=one_sided)
    batches = batch_source(stream)
    twin = copy.deepcopy(model)
    opt = torch.optim.Adam(twin.parameters(), lr=config.lr)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        for _ in range(2 * config.workers + 1):
            train_step(twin, opt, next(batches), config=config, device=device)
        n = max(PROBE_STEPS, 4 * config.workers)
        t0 = time.perf_counter()
        for _ in range(n):
            terms = train_step(twin, opt, next(batches), config=config, device=device)
        float(terms["loss"].detach())  # waits for the GPU
        seconds = (time.perf_counter() - t0) / n
    del batches  # stops the probe's workers
    return seconds


def steps_for_budget(*, seconds_left: float, step_s: float, val_s: float, val_every: int) -> int:
    """How many steps fit in `seconds_left`: each costs `step_s` and a share of the validations
    (one every `val_every` steps, `val_s` each), the last validation is kept time for, and a
    tenth is left over because a probe's pace is a little optimistic. At least 1."""
    per_step = step_s + val_s / max(val_every, 1)
    return max(1, int(0.9 * (seconds_left - val_s) / per_step))


def lr_factor(step: int, config: TrainConfig) -> float:
    """Learning rate over lr at a step: a linear warm-up (a zero-initialised head takes big
    first steps otherwise), then a cosine decay to lr_final."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    floor = config.lr_final / config.lr
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class TrainResult:
    output: Path
    sha256: str
    train_people: list[str]
    val_people: list[str]
    steps: int
    seconds: float
    validation: ValidationResult
    log: Path


def train_refiner(
    *,
    video_dir: Path,
    output: Path,
    config: TrainConfig,
    cache_dir: Path | None = None,
    device: str = "cpu",
    reporter: Reporter | None = None,
    time_budget_s: float | None = None,
) -> TrainResult:
    """Pre-train a refiner on the videos under video_dir and save it to `output` (fp16).

    Losses and validation results are logged, one JSON object per line, to
    ``<output>.log.jsonl``. At each validation before the last step the weights are saved to
    `last_checkpoint_path(output)`, so that a run stopped early keeps them; that file is removed
    when the run ends. Reproducible for a given config (seed, workers) and machine.
    time_budget_s: train for about this long once the crops are cut (`train_on_clips`).
    """
    rep = reporter or SilentReporter()
    expression = ExpressionModel.load(config.expression_model)
    # The crops are read from disk (memory mapped) so that RAM does not grow with the
    # collection; without a cache folder they live in a temporary one for this run.
    folder = (
        tempfile.TemporaryDirectory(prefix="spfem-crops-")
        if cache_dir is None
        else contextlib.nullcontext(str(cache_dir))
    )
    with folder as crops_dir:
        clips = load_collection(
            Path(video_dir),
            people=config.people,
            model=expression,
            crop=config.model_config().crop,
            max_frames=config.max_frames_per_clip,
            cache_dir=Path(crops_dir),
            exclude=tuple(config.exclude),
            face=FacePick.parse(config.face),
            reporter=rep,
        )
        return train_on_clips(
            clips,
            output=output,
            config=config,
            expression=expression,
            device=device,
            reporter=rep,
            time_budget_s=time_budget_s,
        )


def last_checkpoint_path(output: Path) -> Path:
    """Where a training run keeps the weights of its latest validation before the last step
    (`refiner.last.safetensors` beside `refiner.safetensors`); removed when the run ends."""
    return output.with_name(f"{output.stem}.last{output.suffix}")


def train_on_clips(
    clips: list[ClipFrames],
    *,
    output: Path,
    config: TrainConfig,
    expression: ExpressionModel,
    device: str = "cpu",
    reporter: Reporter | None = None,
    time_budget_s: float | None = None,
) -> TrainResult:
    """Train a refiner on clips already cut (`training.frames`) and save it to `output`
    (fp16, with its log beside it, as `train_refiner`).

    time_budget_s: train for about this long instead of `config.steps` steps: the steps are
    set from a probe of the pace (`probe_step_seconds`) and the first validation's length, and
    stored in the checkpoint's config, so that running that config repeats the run exactly
    (the probe draws from another random stream and trains a copy of the model)."""
    t_start = time.perf_counter()
    rep = reporter or SilentReporter()
    dev = torch.device(device)
    torch.manual_seed(config.seed)
    warp = WarpConfig()
    model_cfg = replace(config.model_config(), n_aus=expression.num_aus)
    train_people, val_people = split_people(clips, config)
    train_clips = [c for c in clips if c.person in train_people]
    val_clips = [c for c in clips if c.person in val_people]
    val_pairs = sample_pairs(
        val_clips, config.val_pairs, rng=np.random.default_rng(config.seed + 1), config=config
    )
    one_sided = torch.nonzero(expression.one_sided).flatten().tolist()
    model = Refiner(model_cfg).to(dev)
    t_val = time.perf_counter()
    result = validate(model, val_clips, val_pairs, warp=warp)
    val_s = time.perf_counter() - t_val
    if time_budget_s is not None:
        step_s = probe_step_seconds(
            model, train_clips, config=config, warp=warp, one_sided=one_sided, device=dev
        )
        steps = steps_for_budget(
            seconds_left=time_budget_s - (time.perf_counter() - t_start),
            step_s=step_s,
            val_s=val_s,
            val_every=config.val_every,
        )
        config = replace(config, steps=steps)
        rep.note(
            f"{steps} steps fit in {time_budget_s / 60:g} minute"
            f"{'' if time_budget_s == 60 else 's'} "
            f"({1000 * step_s:.0f} ms a step, {val_s:.1f} s a validation)"
        )
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, config))
    log_path = output.with_name(output.name + ".log.jsonl")
    last = last_checkpoint_path(output)
    output.parent.mkdir(parents=True, exist_ok=True)

    def training_record(step: int, result: ValidationResult, **more: float) -> dict:
        return {
            "training": {
                "config": _jsonable(asdict(config)),
                "train_people": train_people,
                "val_people": val_people,
                "step": step,
                "validation": asdict(result),
                **more,
            }
        }

    with log_path.open("w", encoding="utf-8") as log:
        log.write(
            json.dumps(
                {
                    "config": _jsonable(asdict(config)),
                    "train_people": train_people,
                    "val_people": val_people,
                    "train_frames": sum(len(c) for c in train_clips),
                    "val_frames": sum(len(c) for c in val_clips),
                    "time_budget_s": time_budget_s,
                }
            )
            + "\n"
        )
        log.write(json.dumps({"step": 0, "val": asdict(result)}) + "\n")
        running: dict[str, float] = {}
        stream = PairStream(train_clips, config=config, warp=warp, one_sided=one_sided)
        batches = batch_source(stream)
        with rep.stage("Training refiner", config.steps) as adv:
            for step in range(1, config.steps + 1):
                terms = train_step(model, opt, next(batches), config=config, device=dev)
                sched.step()
                for k, v in terms.items():
                    running[k] = running.get(k, 0.0) + float(v.detach())
                if step % config.log_every == 0:
                    entry = {k: v / config.log_every for k, v in running.items()}
                    log.write(
                        json.dumps({"step": step, "lr": sched.get_last_lr()[0], **entry}) + "\n"
                    )
                    log.flush()
                    running = {}
                if step % config.val_every == 0 or step == config.steps:
                    result = validate(model, val_clips, val_pairs, warp=warp)
                    log.write(json.dumps({"step": step, "val": asdict(result)}) + "\n")
                    log.flush()
                    saved = ""
                    if step < config.steps:
                        # A run stopped later (a time limit, a crash) still leaves these
                        # weights, complete, under their own name.
                        model.save(last, extra=training_record(step, result))
                        saved = f"; saved to {last.name}"
                    rep.note(
                        f"step {step}: held-out L1 {result.l1_refined:.2f} levels "
                        f"(warp alone {result.l1_warp:.2f}){saved}"
                    )
                adv()
    seconds = time.perf_counter() - t_start
    sha = model.cpu().save(
        output, extra=training_record(config.steps, result, seconds=round(seconds, 1))
    )
    last.unlink(missing_ok=True)
    return TrainResult(
        output=output,
        sha256=sha,
        train_people=train_people,
        val_people=val_people,
        steps=config.steps,
        seconds=seconds,
        validation=result,
        log=log_path,
    )


def _jsonable(data: dict) -> dict:
    return json.loads(json.dumps(data, default=list))
