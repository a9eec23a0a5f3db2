"""The terminal side of progress reporting: rich progress bars and notes on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from spfem_cli.progress import Advance


class RichReporter:
    """Draws each stage as a progress bar (transient when the terminal is not interactive)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    @contextmanager
    def stage(self, description: str, total: int) -> Iterator[Advance]:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=self.console,
        ) as progress:
            task = progress.add_task(description, total=max(total, 1))
            yield lambda: progress.advance(task)

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]note:[/yellow] {message}")
