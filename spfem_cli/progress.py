"""Progress reporting that library calls accept and the CLI draws with rich."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, runtime_checkable

Advance = Callable[[], None]


class Reporter(Protocol):
    """Receives long work as stages of known length, and one-line notes for the user."""

    def stage(self, description: str, total: int) -> AbstractContextManager[Advance]:
        """A context whose value is called once per unit of work done."""
        ...

    def note(self, message: str) -> None: ...


@runtime_checkable
class MetricsReporter(Reporter, Protocol):
    """A reporter that can also show how training goes (loss, accuracy); training code checks
    for it with isinstance and falls back to plain stages."""

    def metrics(self, text: str, *, keep: bool = False) -> None:
        """Show `text` beside the running stage, replacing the last; `keep` also leaves it
        as a line of its own (once per epoch, say)."""
        ...


class SilentReporter:
    """Reports nothing: for scripts, tests and `--quiet`."""

    @contextmanager
    def stage(self, description: str, total: int) -> Iterator[Advance]:
        yield lambda: None

    def note(self, message: str) -> None:
        pass
