"""Cost of training the PCMECL prompt learner on a full-size CLIP.

    python scripts/benchmark_prompts.py [--arch ViT-B-32] [--batch 32] [--steps 3] [--threads N]

Builds the architecture at random initialisation (nothing is downloaded), saves its state_dict
to a temporary file and loads it back through `load_clip(pretrained=file)`, the route
`spfem train-prompts --clip-weights FILE` takes. Then times, on the CPU and (when present) on
CUDA:

- encoding a batch of 224x224 frames with the frozen image tower (done once per frame, before
  training, since CLIP is frozen and frames are not augmented);
- one training step of `PromptLearner` on cached features: personalised text features for all
  8 emotions of every frame in the batch, cross-entropy, backward, Adam step.

Prints seconds per batch / step and the peak memory: VmHWM of the process, and
torch.cuda.max_memory_allocated on the GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from benchmark_clip import peak_rss_mib

from spfem_cli.generator.expression import EMOTIONS
from spfem_cli.pcmecl.clip import ClipBundle, encode_images, load_clip
from spfem_cli.pcmecl.prompts import PromptLearner, emotion_word


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


def benchmark(bundle: ClipBundle, *, batch: int, steps: int) -> tuple[float, float]:
    """(seconds to encode `batch` frames, seconds per training step of `batch` frames)."""
    device = bundle.device
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(batch, 3, 224, 224, generator=generator).to(device)
    with torch.no_grad():
        features = encode_images(bundle, frames)

    def encode() -> None:
        with torch.no_grad():
            encode_images(bundle, frames)

    learner = PromptLearner(
        bundle=bundle, class_names=EMOTIONS, class_texts=[emotion_word(e) for e in EMOTIONS]
    )
    optimizer = torch.optim.Adam(learner.parameters(), lr=2e-3)
    labels = torch.arange(batch, device=device) % len(EMOTIONS)

    def step() -> None:
        loss = F.cross_entropy(learner.logits(features), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed(encode, device=device, repeats=1), timed(step, device=device, repeats=steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, devices {devices}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.arch}-random.pt"
        random_init = load_clip(arch=args.arch, pretrained=None)
        torch.save(random_init.model.state_dict(), path)
        del random_init
        for name in devices:
            bundle = load_clip(arch=args.arch, pretrained=path, device=name)
            if name == "cuda":
                torch.cuda.reset_peak_memory_stats()
            encode_s, step_s = benchmark(bundle, batch=args.batch, steps=args.steps)
            line = (
                f"{name}: encode {encode_s:.3f} s per {args.batch} frames "
                f"({1000 * encode_s / args.batch:.1f} ms/frame, once per frame); "
                f"train step {step_s:.3f} s (batch {args.batch} x {len(EMOTIONS)} emotions, "
                f"forward+backward+Adam); peak RSS {peak_rss_mib():.0f} MiB"
            )
            if name == "cuda":
                line += f"; peak CUDA allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
            print(line)
            del bundle


if __name__ == "__main__":
    main()
