"""Choosing the torch device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from spfem_cli.errors import SpfemError

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """ "auto" -> the GPU when torch sees one, else the CPU; "cuda" refuses when there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise SpfemError("--device cuda: torch sees no CUDA GPU on this machine")
        return torch.device("cuda")
    raise SpfemError(f"unknown device {name!r}; choose one of: {', '.join(DEVICE_CHOICES)}")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch CPU work on `n` threads, then restore the setting.

    While the video encoder keeps every core busy, torch's own worker threads only compete
    with it (and spin while waiting), so a single thread makes the whole edit faster.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
