"""Cost of PCMECL stage two (personal fine-tuning) and of open vocabulary on a full-size CLIP.

    python scripts/benchmark_finetune.py [--arch ViT-B-32] [--batch 8] [--steps 3]
                                         [--threads N] [--devices cpu,cuda]

Builds the architecture at random initialisation (nothing is downloaded), saves its state_dict
to a temporary file and loads it back through `load_clip(pretrained=file)`, the route
`spfem finetune --clip-weights FILE` takes. The person's frames are synthetic (smooth random
texture under the expression model's neutral landmarks, 128-pixel crops, as `load_clip_frames`
cuts them): the cost does not depend on what the pixels show. The refiner is the default
architecture (untrained), the prompt learner an untrained one over the eight emotions.

Times, per device:
- one fine-tuning step of `PersonalTuner` with `--batch` frames: sampling, the crop path,
  CLIP forward and backward for every frame, STCCL, the identity pass, the self-supervised
  reconstruction batch, Adam;
- one step of the open-vocabulary search (`text_to_aus`) on 4 frames.

Prints seconds per step and the peak memory: VmHWM of the process, and
torch.cuda.max_memory_allocated on the GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from benchmark_clip import peak_rss_mib

from spfem_cli.generator.expression import EMOTIONS, ExpressionModel
from spfem_cli.generator.refiner import Refiner
from spfem_cli.pcmecl.clip import ClipBundle, load_clip
from spfem_cli.pcmecl.crop_edit import prepare_crops
from spfem_cli.pcmecl.finetune import FinetuneConfig, PersonalTuner
from spfem_cli.pcmecl.open_vocab import OpenVocabConfig, text_to_aus
from spfem_cli.pcmecl.prompts import PromptLearner, emotion_word
from spfem_cli.pcmecl.teacher import Teacher
from spfem_cli.training.frames import ClipFrames


def synthetic_frames(model: ExpressionModel, *, n: int, size: int = 128) -> ClipFrames:
    """n frames of smooth random texture (uint8 crops cut for a `size`-pixel crop, at twice it)
    under jittered neutral landmarks."""
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.uniform(0, 255, size=(n, 3, 16, 16)).astype(np.float32))
    crops = torch.nn.functional.interpolate(coarse, size=(2 * size, 2 * size), mode="bicubic")
    points = model.template.numpy()[None] + rng.normal(0, 0.005, size=(n, 478, 2))
    return ClipFrames(
        name="bench.mp4",
        person="bench",
        crops=crops.clamp(0, 255).round().numpy().astype(np.uint8),
        points=points.astype(np.float32),
        aus=rng.normal(0, 0.2, size=(n, model.num_aus)).astype(np.float32),
    )


def timed(fn: Callable[[], None], *, device: torch.device, repeats: int) -> float:
    """Mean seconds per call of `fn`, after one warm-up call."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def benchmark(
    bundle: ClipBundle, *, model: ExpressionModel, batch: int, steps: int
) -> tuple[float, float]:
    """(seconds per fine-tuning step, seconds per open-vocabulary step)."""
    device = bundle.device
    frames = synthetic_frames(model, n=64)
    learner = PromptLearner(
        bundle=bundle, class_names=EMOTIONS, class_texts=[emotion_word(e) for e in EMOTIONS]
    ).eval()
    tuner = PersonalTuner(
        frames=frames,
        bundle=bundle,
        learner=learner,
        expression=model,
        refiner=Refiner(),
        config=FinetuneConfig(steps=steps + 1, batch_size=batch),
        device=device,
    )
    counter = iter(range(1, 10_000))
    finetune_s = timed(lambda: tuner.step(next(counter)), device=device, repeats=steps)

    crop = tuner.crop
    few = prepare_crops(
        frames.crops[:4], frames.points[:4], crop=crop, mouth="natural", device=device
    )
    teacher = Teacher(bundle=bundle, learner=learner, person=tuner.teacher.person)
    refiner = tuner.refiner.eval()
    present = torch.zeros(4, model.num_aus, device=device)
    expression = tuner.expression

    def vocab(n_steps: int) -> None:
        text_to_aus(
            "smug", batch=few, present=present, teacher=teacher, expression=expression,
            prototypes=expression.prototypes, refiner=refiner, mouth="natural", crop=crop,
            config=OpenVocabConfig(steps=n_steps),
        )  # fmt: skip

    # The search costs a fixed set-up (encoding, text features) plus its steps: time two
    # lengths and take the difference per step.
    short = timed(lambda: vocab(1), device=device, repeats=1)
    longer = timed(lambda: vocab(1 + steps), device=device, repeats=1)
    return finetune_s, (longer - short) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--clip-config", type=Path, default=None, help="JSON config (e.g. the tiny test CLIP)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--devices", default=None, help="comma-separated; default cpu (+cuda)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = (
        args.devices.split(",")
        if args.devices
        else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, devices {devices}")
    model = ExpressionModel.load()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.arch}-random.pt"
        random_init = load_clip(arch=args.arch, pretrained=None, config=args.clip_config)
        torch.save(random_init.model.state_dict(), path)
        del random_init
        for name in devices:
            bundle = load_clip(
                arch=args.arch, pretrained=path, config=args.clip_config, device=name
            )
            if name == "cuda":
                torch.cuda.reset_peak_memory_stats()
            step_s, vocab_s = benchmark(bundle, model=model, batch=args.batch, steps=args.steps)
            line = (
                f"{name}: fine-tuning step {step_s:.2f} s (batch {args.batch} frames, "
                f"{args.arch}); open-vocabulary step {vocab_s:.2f} s (4 frames); "
                f"peak RSS {peak_rss_mib():.0f} MiB"
            )
            if name == "cuda":
                line += f"; peak CUDA allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
            print(line, flush=True)
            del bundle


if __name__ == "__main__":
    main()
