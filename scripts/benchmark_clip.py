"""Cost of one PCMECL direction-loss step through a full-size CLIP image encoder.

    python scripts/benchmark_clip.py [--arch ViT-B-32] [--batch 8] [--steps 5]

Builds the architecture at random initialisation (nothing is downloaded), saves its state_dict
to a temporary file and loads it back through `load_clip(pretrained=file)`, the route a user's
local weights take. Then times forward + backward of `direction_loss` through `encode_images`
for a batch of 224x224 frames (the source features are computed once, outside the timing, as a
training loop would cache them) on the CPU and, when present, on CUDA. Prints seconds per step
and the peak memory: VmHWM of the process, and torch.cuda.max_memory_allocated on the GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from spfem_cli.pcmecl.clip import ClipBundle, encode_images, encode_texts, load_clip
from spfem_cli.pcmecl.losses import direction_loss


def peak_rss_mib() -> float:
    """The process's peak resident set size (VmHWM) in MiB; NaN where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def time_steps(bundle: ClipBundle, *, batch: int, size: int, steps: int) -> float:
    """Mean seconds per forward + backward step, after one warm-up step."""
    device = bundle.device
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(batch, 3, size, size, generator=generator).to(device)
    txt = encode_texts(bundle, ["a photo of a neutral face", "a photo of a happy face"])
    with torch.no_grad():
        img_src = encode_images(bundle, frames)

    def step() -> None:
        edited = (frames + 0.01).requires_grad_(True)
        loss = direction_loss(img_src, encode_images(bundle, edited), txt[0], txt[1])
        loss.backward()
        assert edited.grad is not None

    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, devices {devices}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.arch}-random.pt"
        start = time.perf_counter()
        random_init = load_clip(arch=args.arch, pretrained=None)
        torch.save(random_init.model.state_dict(), path)
        del random_init
        print(
            f"built and saved {args.arch} (random init): {time.perf_counter() - start:.2f} s, "
            f"{path.stat().st_size / 2**20:.0f} MiB"
        )
        for name in devices:
            start = time.perf_counter()
            bundle = load_clip(arch=args.arch, pretrained=path, device=name)
            load_s = time.perf_counter() - start
            if name == "cuda":
                torch.cuda.reset_peak_memory_stats()
            seconds = time_steps(bundle, batch=args.batch, size=args.size, steps=args.steps)
            line = (
                f"{name}: load {load_s:.2f} s; {seconds:.3f} s per step "
                f"(batch {args.batch}, {args.size}x{args.size}, forward+backward); "
                f"peak RSS {peak_rss_mib():.0f} MiB"
            )
            if name == "cuda":
                line += f"; peak CUDA allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
            print(line)
            del bundle


if __name__ == "__main__":
    main()
