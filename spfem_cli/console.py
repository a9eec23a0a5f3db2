"""The terminal side of progress reporting: rich progress bars and notes on stderr."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from spfem_cli.batch import BatchSummary, Record
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


class RichTrainingReporter(RichReporter):
    """A `RichReporter` whose bars also show the running loss and accuracy (a
    `MetricsReporter`), with a kept line per epoch above them."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self._live: tuple[Progress, TaskID] | None = None

    @contextmanager
    def stage(self, description: str, total: int) -> Iterator[Advance]:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
        ) as progress:
            task = progress.add_task(description, total=max(total, 1), metrics="")
            self._live = (progress, task)
            try:
                yield lambda: progress.advance(task)
            finally:
                self._live = None

    def metrics(self, text: str, *, keep: bool = False) -> None:
        if self._live is not None:
            progress, task = self._live
            progress.update(task, metrics=escape(text))
        if keep:
            self.console.print(escape(text), highlight=False)


class RichBatchReporter:
    """`spfem batch` on the terminal: one bar over all outputs, a line per finished file.

    Outputs skipped because an earlier run made them are counted, not listed one by one, so
    resuming a large folder prints one line for them.
    """

    def __init__(self, console: Console) -> None:
        self.console = console

    @contextmanager
    def batch(self, total: int) -> Iterator[Callable[[Record], None]]:
        skipped = 0

        def flush_skipped() -> None:
            nonlocal skipped
            if skipped:
                progress.console.print(
                    f"[dim]skipped[/dim] {skipped} output{'s' if skipped > 1 else ''} "
                    "done by an earlier run",
                    highlight=False,
                )
                skipped = 0

        def show(record: Record) -> None:
            nonlocal skipped
            if record.status == "skipped":
                skipped += 1
            else:
                flush_skipped()
                progress.console.print(status_line(record), highlight=False)
            progress.advance(task)

        with Progress(
            TextColumn("[bold]Batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        ) as progress:
            task = progress.add_task("batch", total=max(total, 1))
            try:
                yield show
            finally:
                flush_skipped()


def status_line(record: Record) -> str:
    """One finished output, as rich markup: status, input, emotion, and the result or reason."""
    what = escape(f"{record.input} [{record.emotion}]")
    if record.status == "failed":
        return f"[red]failed[/red]  {what}: {escape(record.reason)}"
    if record.status == "skipped":
        return f"[dim]skipped[/dim] {what}: {escape(record.reason)}"
    line = (
        f"[green]done[/green]    {what} -> {escape(record.output)} "
        f"({record.frames} frames, {record.edited} edited, {record.seconds:.1f} s)"
    )
    for note in record.notes:
        line += f"\n        [yellow]note:[/yellow] {escape(note)}"
    return line


# Up to this many outputs the summary lists each; beyond, only the failures.
SUMMARY_ROWS = 40


def print_batch_summary(console: Console, summary: BatchSummary) -> None:
    """The table at the end of `spfem batch`: outputs with their status (failures with the
    reason), totals, throughput, and where the report is."""
    table = Table("status", "input", "emotion", "output or reason", title="spfem batch")
    listed = summary.records
    if len(listed) > SUMMARY_ROWS:
        listed = summary.with_status("failed")
    colour = {"done": "green", "skipped": "dim", "failed": "red"}
    for r in listed:
        table.add_row(
            f"[{colour[r.status]}]{r.status}[/{colour[r.status]}]",
            escape(r.input),
            escape(r.emotion),
            escape(r.reason if r.status == "failed" else r.output),
        )
    if listed is not summary.records:
        for status in ("done", "skipped"):
            table.add_row(f"[{colour[status]}]{status}[/{colour[status]}]", "…", "", "")
    if listed:
        console.print(table)
    minutes = max(summary.seconds, 1e-9) / 60
    console.print(
        f"{summary.n_done} done, {summary.n_skipped} skipped, "
        f"[{'red' if summary.n_failed else 'green'}]{summary.n_failed} failed[/] "
        f"in {summary.seconds:.1f} s ({summary.n_done / minutes:.1f} outputs/min, "
        f"{summary.frames_done / max(summary.seconds, 1e-9):.1f} frames/s); "
        f"report: {escape(str(summary.report))}",
        highlight=False,
    )
    if summary.stopped:
        console.print(
            f"[red]stopped[/red]: {escape(summary.stopped)}; {summary.not_attempted} "
            "output(s) not attempted; run the same command again to resume",
            highlight=False,
        )
