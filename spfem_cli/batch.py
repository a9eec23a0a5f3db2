"""`run_batch`: `spfem edit` over a folder of videos, resumable, with failures kept apart.

The driver (the calling process) alone finds the inputs, decides what is already done, hands
out jobs and writes the report; the jobs run in this process (one worker), in a pool of
spawned processes (several workers) or as Ray tasks on a cluster (``executor="ray"``). So the
three behave alike: same outputs, same report, same resume.

Outputs mirror the input folder: ``IN_DIR/a/talk.mp4`` edited to "happy" is
``OUT_DIR/a/talk.happy.mp4`` (the label of `spfem_cli.targets.Timeline.label`, so mixtures
and timelines get names too; the container is kept when spfem writes it, else ``.mp4``).

The report, ``OUT_DIR/spfem-batch.jsonl``, gets one JSON object per (input, emotion) attempt,
appended and fsynced as each job finishes, so an interrupted batch keeps the record of all it
finished. A later run skips an output that exists and has a "done" record; anything else
(failed, never reached, an output without a record) is done again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import multiprocessing
import os
import queue
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, Protocol

from spfem_cli.encoding import DEFAULT_CRF, DEFAULT_PRESET, check_encoding
from spfem_cli.errors import SpfemError
from spfem_cli.generator.kinds import DEFAULT_GENERATOR, GENERATORS, keeps_speech

if TYPE_CHECKING:
    from spfem_cli.face.rest import RestFace

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
REPORT_NAME = "spfem-batch.jsonl"
EXECUTORS = ("local", "ray")
Status = Literal["done", "skipped", "failed"]
# Errors that no later file can escape: once one shows, the batch stops instead of spending
# minutes per remaining file on tracking and editing only to fail at the encoder.
DISK_FULL = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))
MAX_REASON_CHARS = 400
_GPU_TOKEN = "gpu"
# After Ctrl-C, how long (seconds) the jobs in flight get to clean up and return before their
# worker processes are ended. One CI run sat 60 s after Ctrl-C waiting on a job that never
# returned (test_ctrl_c_with_workers_stops_cleanly).
STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class EditOptions:
    """The options of `spfem edit` that every job of a batch shares."""

    intensity: float = 1.0
    device: str = "auto"
    mouth: str = "natural"
    generator: str = DEFAULT_GENERATOR
    start: float | None = None
    end: float | None = None
    # None: the pipeline's default checkpoint (`run_batch` records which one that was).
    model: str | None = None
    # As `spfem edit --rest`: a photo or clip of the (one) person in the videos with a calm
    # face, by an absolute path every worker can read, or a time range read from each video.
    rest: str | None = None
    # The calm face read from a `rest` file (`read_rest_face`), once for the whole
    # batch by `run_batch`: reading a 720p clip costs about 3 s, which every job repeated.
    rest_face: RestFace | None = field(default=None, compare=False, repr=False)
    # As `spfem edit --side` and `--face`.
    side: str = "auto"
    face: str = "largest"
    # As `spfem edit --crf` and `--preset`: how the outputs are encoded.
    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET
    # As `spfem edit --keep-speech`: each video's edit measured and made again with the lip
    # corners moving less where the speech changed (photos have none and are edited once);
    # None: in natural mouth mode (`keeps_speech`).
    keep_speech: bool | None = None

    @property
    def measures_speech(self) -> bool:
        """Whether each video's edit is measured and kept to its speech (`keeps_speech`) in
        the mouth mode asked; a video whose mouth never moves plays expressive mode
        (`played_mouth`) and is measured only where --keep-speech asks."""
        return keeps_speech(self.keep_speech, mouth=self.mouth)

    def result_options(self) -> dict[str, Any]:
        """The options that change an output (not the device): a done output is skipped only
        when they match. The calm face only when there is one, so that records written before
        it existed still match; the side, crf and preset likewise only when not the default
        (outputs of the default preset before, medium, hold the same picture)."""
        options: dict[str, Any] = {
            "intensity": self.intensity,
            "mouth": self.mouth,
            "generator": self.generator,
            "start": self.start,
            "end": self.end,
            "model": self.model,
        }
        if self.rest is not None:
            options["rest"] = self.rest
        if self.side != "auto":
            options["side"] = self.side
        if self.face != "largest":
            options["face"] = self.face
        if self.crf != DEFAULT_CRF:
            options["crf"] = self.crf
        if self.preset != DEFAULT_PRESET:
            options["preset"] = self.preset
        if self.measures_speech:
            options["keep_speech"] = True
        return options


@dataclass(frozen=True)
class Target:
    """One output of a job: the emotion spec as given, its file label, the absolute path."""

    emotion: str
    label: str
    output: Path


@dataclass(frozen=True)
class Job:
    """One input and the outputs still to make from it (several share one tracking pass)."""

    input: Path
    rel: str
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class Outcome:
    """What a worker made of one target; `reason` is one line when status is "failed"."""

    emotion: str
    output: Path
    status: Literal["done", "failed"]
    reason: str = ""
    frames: int = 0
    edited: int = 0
    without_face: int = 0
    seconds: float = 0.0
    bytes: int = 0
    notes: tuple[str, ...] = ()
    host: str = ""

    @property
    def disk_full(self) -> bool:
        return self.status == "failed" and any(text in self.reason for text in DISK_FULL)


@dataclass(frozen=True)
class Record:
    """One line of the report. Paths are relative (input to IN_DIR, output to OUT_DIR, POSIX
    separators); `seconds` is the processing time spent on this output (a tracking pass shared
    by several emotions is split evenly); `run` tells apart the runs appended to one report."""

    run: str
    timestamp: str
    input: str
    emotion: str
    output: str
    status: Status
    reason: str = ""
    frames: int = 0
    edited: int = 0
    without_face: int = 0
    seconds: float = 0.0
    bytes: int = 0
    notes: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    host: str = ""

    def to_json(self) -> str:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Record | None:
        """The record on one report line; None for a line that is not one (e.g. cut short)."""
        try:
            data = json.loads(line)
            data["notes"] = tuple(data.get("notes", ()))
            return cls(**data)
        except (ValueError, TypeError, AttributeError):
            return None


@dataclass
class BatchSummary:
    """What `run_batch` did in this run.

    records: this run's report lines, in the order written. stopped: why the batch ended
    before every job ran (None when it did not); not_attempted: the outputs it left for the
    next run because of that. seconds: wall time of the run.
    """

    in_dir: Path
    out_dir: Path
    report: Path
    records: list[Record]
    seconds: float
    stopped: str | None = None
    not_attempted: int = 0

    def with_status(self, status: Status) -> list[Record]:
        return [r for r in self.records if r.status == status]

    @property
    def n_done(self) -> int:
        return len(self.with_status("done"))

    @property
    def n_skipped(self) -> int:
        return len(self.with_status("skipped"))

    @property
    def n_failed(self) -> int:
        return len(self.with_status("failed"))

    @property
    def frames_done(self) -> int:
        return sum(r.frames for r in self.with_status("done"))

    @property
    def ok(self) -> bool:
        """True when nothing failed and nothing was left undone."""
        return self.n_failed == 0 and self.stopped is None


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch; `summary` holds what was finished (and recorded) before it."""

    def __init__(self, summary: BatchSummary) -> None:
        super().__init__()
        self.summary = summary


RecordSink = Callable[[Record], None]


class BatchReporter(Protocol):
    """Receives a batch's progress: the number of outputs, then each record as it is written."""

    def batch(self, total: int) -> AbstractContextManager[RecordSink]: ...


class SilentBatchReporter:
    """Reports nothing: for scripts, tests and `--quiet`."""

    @contextmanager
    def batch(self, total: int) -> Iterator[RecordSink]:
        yield lambda record: None


# --- finding the inputs and naming the outputs ----------------------------------------------


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def discover_inputs(
    *, in_dir: Path, out_dir: Path, pattern: str | None = None, recursive: bool = False
) -> list[Path]:
    """The files to edit under `in_dir`, sorted, as paths relative to it.

    pattern: a glob matched against the path relative to `in_dir` from the right (``*.mp4``
    matches names, ``talks/*.mov`` a folder and a name); None means any of VIDEO_SUFFIXES,
    in any letter case. Hidden files and folders (spfem's temporary files among them) and
    `out_dir`, when it lies inside `in_dir`, are never looked into. Broken symbolic links are
    listed (they fail with a reason); FIFOs and devices are not.
    """
    in_dir, out_dir = in_dir.resolve(), out_dir.resolve()
    found: list[Path] = []

    def wanted(entry: os.DirEntry[str], rel: PurePosixPath) -> bool:
        if entry.name.startswith(".") or entry.is_dir():
            return False
        if not (entry.is_file() or (entry.is_symlink() and not os.path.exists(entry.path))):
            return False
        if pattern is None:
            return rel.suffix.lower() in VIDEO_SUFFIXES
        return rel.match(pattern)

    def scan(folder: Path, rel: PurePosixPath) -> None:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                path = folder / entry.name
                if entry.is_dir(follow_symlinks=False):
                    if recursive and not entry.name.startswith(".") and path != out_dir:
                        scan(path, rel / entry.name)
                elif wanted(entry, rel / entry.name):
                    found.append(Path(rel / entry.name))

    scan(in_dir, PurePosixPath())
    return found


def output_path_for(*, out_dir: Path, rel: Path, label: str) -> Path:
    """``OUT_DIR/<rel folder>/<stem>.<label><suffix>``: the input's container or image format
    when spfem writes it (.mp4, .mov, .mkv; .png, .jpg, .jpeg, .webp), else .mp4; the same rule as
    `spfem edit`."""
    from spfem_cli.media import default_output_path

    return default_output_path(out_dir / rel, label)


# --- the report ----------------------------------------------------------------------------


def read_report(path: Path) -> list[Record]:
    """Every record of a report (earlier runs included); unreadable lines are left out."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", errors="replace") as handle:
        return [r for line in handle if line.strip() and (r := Record.from_json(line))]


class ReportWriter:
    """Appends records to the report, each flushed and fsynced before it counts as written.

    Holds an exclusive lock on the report while open, so two batches cannot write into one
    OUT_DIR at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._handle = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise SpfemError(f"cannot write the batch report {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._handle.close()
            raise SpfemError(
                f"another spfem batch is writing into {path.parent} (its report is locked)"
            ) from exc

    def write(self, records: Sequence[Record]) -> None:
        """Append `records` and make them durable (one fsync for all). Raises OSError."""
        if not records:
            return
        self._handle.write("".join(r.to_json() + "\n" for r in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        # A failed flush (disk full) must not hide the error that is being handled.
        with contextlib.suppress(OSError):
            self._handle.close()


# --- the work of one job, wherever it runs ---------------------------------------------------


def describe_error(exc: BaseException) -> str:
    """One line for the report: the SpfemError's own message, else the exception's type too."""
    if isinstance(exc, SpfemError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        text = f"{type(exc).__name__}: {exc}"
    lines = text.strip().splitlines() or [type(exc).__name__]
    return lines[0][:MAX_REASON_CHARS]


def _job_reason(exc: BaseException, job: Job) -> str:
    # The report names inputs relative to IN_DIR; so do its reasons.
    return describe_error(exc).replace(str(job.input), job.rel)


def _failed(target: Target, reason: str, *, host: str = "", seconds: float = 0.0) -> Outcome:
    return Outcome(
        emotion=target.emotion,
        output=target.output,
        status="failed",
        reason=reason,
        host=host,
        seconds=seconds,
    )


def _done(target: Target, report: Any, *, host: str, seconds: float) -> Outcome:
    """An Outcome from an `EditReport`."""
    return Outcome(
        emotion=target.emotion,
        output=target.output,
        status="done",
        frames=report.n_frames,
        edited=report.n_edited,
        without_face=report.n_without_face,
        seconds=seconds,
        bytes=target.output.stat().st_size,
        # Not the hints: they would be the same line on every output of a folder.
        notes=tuple(report.notes),
        host=host,
    )


def process_job(*, job: Job, options: EditOptions) -> list[Outcome]:
    """Make every output of `job`; one Outcome per target, in order.

    Never raises for a bad file or a failed edit (each is a "failed" Outcome with its reason);
    KeyboardInterrupt passes through, after the edit has removed its temporary files.
    One target goes through `edit_video`, exactly as `spfem edit`; several share one
    tracking pass (`edit_shared`).
    """
    host = socket.gethostname()
    t0 = time.perf_counter()
    try:
        for target in job.targets:
            target.output.parent.mkdir(parents=True, exist_ok=True)
        if len(job.targets) > 1:
            return edit_shared(job=job, options=options, host=host)
        from spfem_cli.media import probe
        from spfem_cli.pipeline import edit_video

        (target,) = job.targets
        report = edit_video(
            input_path=job.input,
            emotion=target.emotion,
            output_path=target.output,
            intensity=options.intensity,
            device=options.device,
            mouth=options.mouth,  # type: ignore[arg-type]
            generator=options.generator,
            start=options.start,
            end=options.end,
            # The driver decided this output is to be (re)made: a leftover without a
            # "done" record, or --overwrite.
            overwrite=True,
            rest=options.rest,
            rest_face=options.rest_face,
            side=options.side,
            crf=options.crf,
            preset=options.preset,
            # A photo in the folder has no speech to keep: it is edited once. Otherwise as
            # asked, or (None) as `edit_video` decides for the mouth mode it plays.
            keep_speech=options.keep_speech if probe(job.input).n_frames > 1 else False,
            **({"model": options.model} if options.model else {}),
        )
        return [_done(target, report, host=host, seconds=time.perf_counter() - t0)]
    except Exception as exc:  # noqa: BLE001 - any failure is this file's, recorded, not fatal
        reason = _job_reason(exc, job)
        seconds = (time.perf_counter() - t0) / len(job.targets)
        return [_failed(t, reason, host=host, seconds=seconds) for t in job.targets]


def edit_shared(*, job: Job, options: EditOptions, host: str = "") -> list[Outcome]:
    """Several emotions of one input from one tracking pass: what `edit_video` does for one,
    with `analyse_video` run once and `render_edit` once per target.

    Raises when the input cannot be read or tracked (every target fails alike); a failure
    while rendering one target is that target's Outcome, and the rest are still made unless
    the disk is full. The results equal `edit_video`'s (a test holds the two together).
    """
    import tempfile

    from spfem_cli.face.tracker import FacePick
    from spfem_cli.generator.expression import DEFAULT_MODEL
    from spfem_cli.media import check_output_path, check_still_output, left_out_note, probe
    from spfem_cli.pipeline import (
        Editor,
        analyse_video,
        analysis_notes,
        drop_late_segments,
        edit_parts,
        played_mouth,
        read_rest_face,
        render_edit,
        validate_options,
    )
    from spfem_cli.progress import SilentReporter
    from spfem_cli.targets import parse_emotion, with_range

    t0 = time.perf_counter()
    info = probe(job.input)
    timelines = [
        with_range(parse_emotion(t.emotion), start=options.start, end=options.end)
        for t in job.targets
    ]
    for target in job.targets:
        check_output_path(input_path=job.input, output_path=target.output, overwrite=True)
        check_still_output(info=info, output_path=target.output)
    validate_options(
        info=info,
        intensity=options.intensity,
        start=options.start,
        end=options.end,
        mouth=options.mouth,
        side=options.side,
        crf=options.crf,
        preset=options.preset,
    )
    timelines, late_notes = zip(
        *[drop_late_segments(timeline, info=info) for timeline in timelines], strict=True
    )
    editor = Editor.load(
        model=options.model or DEFAULT_MODEL,
        device=options.device,
        mouth=options.mouth,  # type: ignore[arg-type]
        generator=options.generator,
    )
    pick = FacePick.parse(options.face)
    rest_face = options.rest_face
    if rest_face is None and options.rest is not None:
        rest_face = read_rest_face(options.rest, video=job.input, pick=pick)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="spfem-") as tmp:
        workdir = Path(tmp)
        analysis = analyse_video(
            info,
            model=editor.expression,
            workdir=workdir,
            reporter=SilentReporter(),
            rest_face=rest_face,
            side=options.side,
            face=pick,
        )
        track = analysis.track
        shared_s = (time.perf_counter() - t0) / len(job.targets)
        notes = analysis_notes(analysis, rest_face=rest_face)
        photo = info.n_frames == 1
        mouth, mouth_note = played_mouth(
            options.mouth,  # type: ignore[arg-type]
            photo=photo,
            track=track,
        )
        editor = editor.with_mouth(mouth)
        # A photo in the folder has no speech to keep: it is edited once.
        measure_speech = keeps_speech(options.keep_speech, mouth=mouth) and not photo
        if mouth_note and track.n_valid:
            notes.append(mouth_note)
        for target, timeline, late in zip(job.targets, timelines, late_notes, strict=True):
            if outcomes and outcomes[-1].disk_full:
                outcomes.append(_failed(target, outcomes[-1].reason, host=host))
                continue
            t1 = time.perf_counter()
            try:
                deltas = editor.deltas(analysis, timeline, intensity=options.intensity)
                side_note = analysis.side_note(deltas, model=editor.expression)
                rendered = render_edit(
                    analysis,
                    editor=editor,
                    deltas=deltas,
                    input_path=job.input,
                    output=target.output,
                    workdir=workdir,
                    crf=options.crf,
                    preset=options.preset,
                    reporter=SilentReporter(),
                    label=timeline.label(),
                    keep_speech=measure_speech,
                    parts=edit_parts(analysis, timeline),
                )
            except Exception as exc:  # noqa: BLE001 - this target's failure, recorded
                seconds = shared_s + time.perf_counter() - t1
                outcomes.append(_failed(target, _job_reason(exc, job), host=host, seconds=seconds))
                continue
            outcomes.append(
                Outcome(
                    emotion=target.emotion,
                    output=target.output,
                    status="done",
                    frames=track.n_frames,
                    edited=rendered.n_edited,
                    without_face=track.n_frames - track.n_valid,
                    seconds=shared_s + time.perf_counter() - t1,
                    bytes=target.output.stat().st_size,
                    notes=tuple(
                        n
                        for n in (
                            *notes,
                            *late,
                            side_note,
                            *rendered.notes,
                            left_out_note(info=info, output=target.output),
                        )
                        if n
                    ),
                    host=host,
                )
            )
    return outcomes


# --- the driver ----------------------------------------------------------------------------


JobFn = Callable[..., list[Outcome]]


class _Driver:
    """Turns outcomes into report records as they arrive, and decides when to stop."""

    def __init__(
        self, *, writer: ReportWriter, run: str, options: EditOptions, out_dir: Path
    ) -> None:
        self.writer = writer
        self.run = run
        self.options = options
        self.out_dir = out_dir
        self.records: list[Record] = []
        self.sink: RecordSink = lambda record: None
        self.stopped: str | None = None
        self.interrupted = False

    def add(self, records: Sequence[Record]) -> None:
        """Write records to the report, then count and show them."""
        try:
            self.writer.write(records)
        except OSError as exc:
            # Without its record an output is simply made again by the next run.
            self.stopped = f"the report cannot be written ({exc.strerror or exc})"
        for record in records:
            self.records.append(record)
            self.sink(record)

    def accept(self, job: Job, outcomes: Sequence[Outcome]) -> None:
        """Record the outcomes of a finished job. After Ctrl-C only finished outputs count:
        a job that failed then most likely failed of the interrupt itself."""
        kept = [o for o in outcomes if not self.interrupted or o.status == "done"]
        self.add([self.record(job.rel, o) for o in kept])
        if any(o.disk_full for o in kept) and self.stopped is None:
            self.stopped = "the disk is full"

    def discard_unrecorded(self, job: Job, *, since_ns: int, ended: bool = False) -> None:
        """Remove the outputs of an interrupted `job` that were put in place (at or after
        `since_ns`, wall clock) but have no "done" record in this run; with `ended` (its
        worker process was ended before it could clean up), its temporary files as well.

        Ctrl-C can land after an output's rename and before its record is written (the
        worker is interrupted while cleaning up, or while returning). Such a file is whole,
        but the report is what a resumed run trusts, so the two are kept in agreement; the
        next run makes it again. A file older than the job (one the user had) is never
        touched.
        """
        from spfem_cli.media import temporary_pattern

        recorded = {r.output for r in self.records if r.status == "done" and r.run == self.run}
        for target in job.targets:
            if _relative(target.output, self.out_dir) in recorded:
                continue
            made = [target.output]
            if ended:
                made += target.output.parent.glob(temporary_pattern(target.output))
            for path in made:
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime_ns >= since_ns:
                        path.unlink()

    def record(self, rel: str, outcome: Outcome) -> Record:
        return Record(
            run=self.run,
            timestamp=_now(),
            input=rel,
            emotion=outcome.emotion,
            output=_relative(outcome.output, self.out_dir),
            status=outcome.status,
            reason=outcome.reason,
            frames=outcome.frames,
            edited=outcome.edited,
            without_face=outcome.without_face,
            seconds=round(outcome.seconds, 3),
            bytes=outcome.bytes,
            notes=outcome.notes,
            options=self.options.result_options(),
            host=outcome.host,
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)


def _failed_job(job: Job, reason: str) -> list[Outcome]:
    return [_failed(t, reason) for t in job.targets]


def _run_serial(jobs: Sequence[Job], *, options: EditOptions, driver: _Driver, fn: JobFn) -> None:
    """One worker: the jobs run in this process, one after the other."""
    for job in jobs:
        if driver.stopped:
            return
        since_ns = time.time_ns()
        try:
            driver.accept(job, fn(job=job, options=options))
        except KeyboardInterrupt:
            driver.discard_unrecorded(job, since_ns=since_ns)
            raise


def _end_workers() -> None:
    """End this process's worker processes (the pool's, the only ones it starts) and reap
    them: their jobs did not return after Ctrl-C."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout=5)


def _init_worker(gpu_slots: Any) -> None:
    """Set up one pool process: one torch thread (the workers share the cores), and the GPU
    for the first process only; the others see none and run the generator on the CPU."""
    import torch

    torch.set_num_threads(1)
    if gpu_slots is None:
        return
    try:
        gpu_slots.get_nowait()
    except queue.Empty:
        # CUDA reads this when first used, which is after this point: this process never
        # makes a CUDA context, so one process owns the GPU model.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def _pool_outcomes(future: Future[list[Outcome]], job: Job) -> tuple[list[Outcome], bool]:
    """A finished future's outcomes, and whether its worker process died."""
    exc = future.exception()
    if exc is None:
        return future.result(), False
    if isinstance(exc, BrokenProcessPool):
        return _failed_job(
            job,
            "a worker process died while this file was being edited (a crash or out of "
            "memory; every file in progress then fails): run again to retry",
        ), True
    return _failed_job(job, describe_error(exc)), False


def _run_pool(
    jobs: Sequence[Job],
    *,
    options: EditOptions,
    workers: int,
    share_gpu: bool,
    driver: _Driver,
    fn: JobFn,
) -> None:
    """Several workers: a pool of spawned processes, at most `workers` jobs in flight.

    A worker that dies breaks the pool: the jobs in flight are recorded as failed and the
    rest go on in a fresh pool. On Ctrl-C (which the workers receive too, being in the
    terminal's process group) no new job starts, and what finishes meanwhile is recorded.
    """
    ctx = multiprocessing.get_context("spawn")
    pending = deque(jobs)
    while pending and not driver.stopped:
        gpu_slots = None
        if share_gpu:
            gpu_slots = ctx.Queue()
            gpu_slots.put(_GPU_TOKEN)
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(pending)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(gpu_slots,),
        )
        # Each job in flight and when it was submitted (wall clock, ns; see discard_unrecorded).
        in_flight: dict[Future[list[Outcome]], tuple[Job, int]] = {}
        try:
            broken = False
            while not broken:
                while pending and len(in_flight) < workers and not driver.stopped:
                    job = pending.popleft()
                    try:
                        since_ns = time.time_ns()
                        future = pool.submit(fn, job=job, options=options)
                    except BrokenProcessPool:
                        # A worker died since the last result came in; this job never
                        # started, so it goes to the next pool.
                        pending.appendleft(job)
                        broken = True
                        break
                    in_flight[future] = (job, since_ns)
                if broken or not in_flight:
                    break
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    job, _ = in_flight.pop(future)
                    outcomes, died = _pool_outcomes(future, job)
                    broken |= died
                    driver.accept(job, outcomes)
            # A broken pool fails every job still in it; they finish at once.
            for future, (job, _) in list(in_flight.items()):
                wait([future])
                driver.accept(job, _pool_outcomes(future, job)[0])
            in_flight.clear()
        except KeyboardInterrupt:
            driver.interrupted = True
            pool.shutdown(wait=False, cancel_futures=True)
            stuck = set(in_flight)
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting
                _, stuck = wait(in_flight, timeout=STOP_GRACE_S)
            for future, (job, _) in in_flight.items():
                if future not in stuck and not future.cancelled() and future.exception() is None:
                    driver.accept(job, future.result())
            if stuck:
                _end_workers()
            for future, (job, since_ns) in in_flight.items():
                driver.discard_unrecorded(job, since_ns=since_ns, ended=future in stuck)
            raise
        finally:
            pool.shutdown(wait=not driver.interrupted, cancel_futures=True)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise SpfemError(
            "--executor ray needs Ray: pip install 'spfem[ray]' (on every node)", exit_code=3
        ) from exc
    return ray


@contextmanager
def _ray_session(address: str | None) -> Iterator[Any]:
    """Ray, connected to the cluster at `address`, or to a Ray instance already running on
    this machine, else to one started here for the run (and stopped after it). A connection
    this process already has is used as it is, and left open."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    # Ray's start-up chatter and the workers' logs would break up the progress display;
    # each task's failure comes back in its outcome instead.
    kwargs: dict[str, Any] = {
        "address": address,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
    }
    if address is None:
        kwargs["include_dashboard"] = False
    try:
        ray.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; the message says it
        where = f"at {address}" if address else "on this machine"
        raise SpfemError(
            f"cannot start or reach Ray {where}: {describe_error(exc)} (a cluster with token "
            "authentication also needs RAY_AUTH_MODE=token and its token here)"
        ) from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def _run_ray(
    jobs: Sequence[Job],
    *,
    ray: Any,
    options: EditOptions,
    workers: int | None,
    driver: _Driver,
    fn: JobFn,
) -> None:
    """The jobs as Ray tasks, collected as they finish.

    Each task asks for one CPU, and one GPU with ``device="cuda"``; ``"auto"`` runs on CPUs
    (Ray hides the GPUs from tasks that did not ask for one). At most `workers` tasks are in
    flight (None: all of them, and Ray schedules them as resources allow).
    """
    gpu = options.device == "cuda"
    task_options = replace(options, device="cuda" if gpu else "cpu")
    remote = ray.remote(fn).options(num_cpus=1, num_gpus=1 if gpu else 0, max_retries=1)
    pending = deque(jobs)
    in_flight: dict[Any, tuple[Job, int]] = {}  # as in `_run_pool`
    cap = workers or len(jobs)
    try:
        while pending or in_flight:
            while pending and len(in_flight) < cap and not driver.stopped:
                job = pending.popleft()
                since_ns = time.time_ns()
                ref = remote.remote(job=job, options=task_options)
                in_flight[ref] = (job, since_ns)
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                job, _ = in_flight.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a lost node or worker
                    outcomes = _failed_job(job, f"Ray task failed: {describe_error(exc)}")
                driver.accept(job, outcomes)
            if driver.stopped:
                pending.clear()
    except KeyboardInterrupt:
        driver.interrupted = True
        # Cancelling raises KeyboardInterrupt inside the running tasks, so each removes
        # its temporary files as on Ctrl-C in a terminal. A task that finished meanwhile
        # is recorded; one cancelled after its output was in place loses that output.
        for ref in in_flight:
            ray.cancel(ref)
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting
            for ref, (job, since_ns) in in_flight.items():
                try:
                    outcomes = ray.get(ref)
                except Exception:  # noqa: BLE001 - cancelled or lost: nothing to record
                    outcomes = []
                driver.accept(job, outcomes)
                driver.discard_unrecorded(job, since_ns=since_ns)
        raise


# --- planning ------------------------------------------------------------------------------


def _check_options(*, options: EditOptions, executor: str, workers: int | None) -> RestFace | None:
    """Refuse, before any file is touched, options that would fail every job alike. Returns
    the calm face of a `rest` file, read once for every job (None: none, or a time range,
    which each job reads from its own video)."""
    from spfem_cli.face.tracker import FacePick
    from spfem_cli.generator.device import DEVICE_CHOICES, resolve_device
    from spfem_cli.generator.generator import check_mouth_mode
    from spfem_cli.pipeline import check_side
    from spfem_cli.targets import check_intensity

    if executor not in EXECUTORS:
        raise SpfemError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise SpfemError(f"--workers must be at least 1, got {workers}")
    check_intensity(options.intensity)
    check_mouth_mode(options.mouth)
    check_side(options.side)
    pick = FacePick.parse(options.face)
    check_encoding(crf=options.crf, preset=options.preset)
    if options.generator not in GENERATORS:
        raise SpfemError(
            f"unknown generator {options.generator!r}; choose one of: {', '.join(GENERATORS)}"
        )
    if options.end is not None and options.end <= 0:
        raise SpfemError(f"--end must be > 0 seconds, got {options.end}")
    if options.device not in DEVICE_CHOICES:
        raise SpfemError(
            f"unknown device {options.device!r}; choose one of: {', '.join(DEVICE_CHOICES)}"
        )
    if executor == "local":
        # On Ray the GPUs are the cluster's, not this machine's.
        resolve_device(options.device)
    if options.rest is not None:
        from spfem_cli.pipeline import read_rest_face, rest_span

        # A calm face in a file is refused here, before any file is touched; a time range is
        # read from each video in its own job.
        if rest_span(options.rest) is None:
            return read_rest_face(options.rest, pick=pick)
    return None


def _labels(emotions: Sequence[str], *, options: EditOptions) -> list[tuple[str, str]]:
    """(spec, label) per distinct emotion; two specs that would share a file name are refused."""
    from spfem_cli.targets import free_text_error, parse_emotion, with_range

    if not emotions:
        raise SpfemError("give at least one --emotion")
    seen: dict[str, tuple[str, Any]] = {}
    for spec in emotions:
        timeline = with_range(parse_emotion(spec), start=options.start, end=options.end)
        # The pipeline resolves only the eight emotions (`default_resolver`); refused here, a
        # misspelt emotion does not cost every file a tracking pass before it fails.
        for segment in timeline.segments:
            for part in segment.parts:
                if part.is_text:
                    raise free_text_error(part)
        label = timeline.label()
        if label in seen:
            if seen[label][1] == timeline:
                continue  # the same emotion spelled twice ("happy", "Happy")
            raise SpfemError(
                f"--emotion {seen[label][0]!r} and {spec!r} would both be named "
                f"'{label}'; run them as separate batches into different folders"
            )
        seen[label] = (spec, timeline)
    return [(spec, label) for label, (spec, _) in seen.items()]


def _same_emotion(a: str, b: str) -> bool:
    from spfem_cli.targets import parse_emotion

    if a == b:
        return True
    try:
        return parse_emotion(a) == parse_emotion(b)
    except SpfemError:
        return False


def _plan(
    *,
    inputs: Sequence[Path],
    in_dir: Path,
    out_dir: Path,
    labels: Sequence[tuple[str, str]],
    options: EditOptions,
    previous: Sequence[Record],
    overwrite: bool,
    run: str,
) -> tuple[list[Job], list[Record]]:
    """The jobs still to run, and records for the outputs that are done or cannot be made."""
    last_done: dict[str, Record] = {}
    for record in previous:
        if record.status == "done":
            last_done[record.output] = record
    wanted = options.result_options()
    claimed: dict[Path, str] = {}
    jobs: list[Job] = []
    settled: list[Record] = []
    for rel in inputs:
        targets: list[Target] = []
        for spec, label in labels:
            output = output_path_for(out_dir=out_dir, rel=rel, label=label)
            out_rel = _relative(output, out_dir)
            base = Record(
                run=run,
                timestamp=_now(),
                input=rel.as_posix(),
                emotion=spec,
                output=out_rel,
                status="failed",
                options=wanted,
            )
            if output in claimed:
                reason = f"output name {out_rel} is also that of {claimed[output]}; rename one"
                settled.append(replace(base, reason=reason))
                continue
            claimed[output] = rel.as_posix()
            done = last_done.get(out_rel)
            exists = output.is_file()
            if done and exists and not overwrite:
                if done.options != wanted or not _same_emotion(done.emotion, spec):
                    reason = (
                        f"{out_rel} was made by an earlier run with other options "
                        f"({done.emotion}, {done.options}); use --overwrite to redo it"
                    )
                    settled.append(replace(base, reason=reason))
                    continue
                if output.stat().st_size == done.bytes:
                    settled.append(
                        replace(
                            base,
                            status="skipped",
                            reason=f"done by an earlier run ({done.timestamp})",
                            frames=done.frames,
                            edited=done.edited,
                            without_face=done.without_face,
                            bytes=done.bytes,
                            notes=done.notes,
                        )
                    )
                    continue
            targets.append(Target(emotion=spec, label=label, output=output))
        if targets:
            jobs.append(Job(input=in_dir / rel, rel=rel.as_posix(), targets=tuple(targets)))
    return jobs, settled


def run_batch(
    *,
    in_dir: str | Path,
    out_dir: str | Path,
    emotions: Sequence[str],
    pattern: str | None = None,
    recursive: bool = False,
    workers: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    overwrite: bool = False,
    options: EditOptions | None = None,
    reporter: BatchReporter | None = None,
    _job_fn: JobFn = process_job,
) -> BatchSummary:
    """Edit every video under `in_dir` into `out_dir`, one output per emotion.

    workers: local processes (None: 1, in this process); with the Ray executor, how many
    tasks may be in flight (None: as many as the cluster runs). A failed file is recorded with
    its reason and the batch goes on; a full disk stops it (the finished outputs and their
    records stay). Raises SpfemError for bad arguments and BatchInterrupted (with the summary
    so far) on Ctrl-C. `_job_fn` replaces `process_job`, for tests only.
    """
    from spfem_cli.generator.expression import DEFAULT_MODEL

    options = options or EditOptions()
    if options.model is None:
        options = replace(options, model=DEFAULT_MODEL)
    rep = reporter or SilentBatchReporter()
    t0 = time.perf_counter()
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if in_dir.is_file():
        raise SpfemError(f"{in_dir} is a file, not a folder; `spfem edit` edits one video")
    if not in_dir.is_dir():
        raise SpfemError(f"input folder {in_dir} does not exist or is not a folder")
    in_abs, out_abs = in_dir.resolve(), out_dir.resolve()
    if in_abs == out_abs:
        raise SpfemError("OUT_DIR is IN_DIR: give the outputs a folder of their own")
    if _inside(in_abs, out_abs):
        raise SpfemError(
            f"IN_DIR {in_dir} is inside OUT_DIR {out_dir}: outputs could land among the inputs"
        )
    if out_abs.exists() and not out_abs.is_dir():
        raise SpfemError(f"OUT_DIR {out_dir} exists and is not a folder")
    rest_face = _check_options(options=options, executor=executor, workers=workers)
    if rest_face is not None:
        options = replace(options, rest_face=rest_face)
    labels = _labels(emotions, options=options)
    inputs = discover_inputs(in_dir=in_abs, out_dir=out_abs, pattern=pattern, recursive=recursive)
    if not inputs:
        what = (
            f"--pattern {pattern!r}" if pattern else f"a video suffix ({', '.join(VIDEO_SUFFIXES)})"
        )
        where = " (or its subfolders)" if recursive else " (add --recursive for subfolders)"
        raise SpfemError(f"no file in {in_dir}{where} matches {what}")
    try:
        out_abs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpfemError(f"cannot make OUT_DIR {out_dir}: {exc.strerror or exc}") from exc
    if not os.access(out_abs, os.W_OK | os.X_OK):
        raise SpfemError(f"OUT_DIR {out_dir} is not writable")

    report_path = out_abs / REPORT_NAME
    run = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
    total = len(inputs) * len(labels)
    with contextlib.ExitStack() as stack:
        writer = ReportWriter(report_path)
        stack.callback(writer.close)
        jobs, settled = _plan(
            inputs=inputs,
            in_dir=in_abs,
            out_dir=out_abs,
            labels=labels,
            options=options,
            previous=read_report(report_path),
            overwrite=overwrite,
            run=run,
        )
        # Connected before the progress display starts, so a cluster that cannot be reached
        # is one clean error; a finished folder never waits for Ray.
        ray = stack.enter_context(_ray_session(ray_address)) if executor == "ray" and jobs else None
        driver = _Driver(writer=writer, run=run, options=options, out_dir=out_abs)

        def summary() -> BatchSummary:
            return BatchSummary(
                in_dir=in_abs,
                out_dir=out_abs,
                report=report_path,
                records=driver.records,
                seconds=time.perf_counter() - t0,
                stopped=driver.stopped,
                not_attempted=total - len(driver.records),
            )

        try:
            with rep.batch(total) as sink:
                driver.sink = sink
                driver.add(settled)
                if ray is not None:
                    _run_ray(
                        jobs, ray=ray, options=options, workers=workers, driver=driver, fn=_job_fn
                    )
                elif (workers or 1) == 1 or len(jobs) <= 1:
                    _run_serial(jobs, options=options, driver=driver, fn=_job_fn)
                else:
                    _run_local_pool(
                        jobs, options=options, workers=workers or 1, driver=driver, fn=_job_fn
                    )
        except KeyboardInterrupt:
            driver.stopped = "interrupted"
            raise BatchInterrupted(summary()) from None
        return summary()


def _run_local_pool(
    jobs: Sequence[Job], *, options: EditOptions, workers: int, driver: _Driver, fn: JobFn
) -> None:
    """Several local workers; on a GPU, one of them holds the GPU model (see `_init_worker`)."""
    from spfem_cli.generator.device import resolve_device

    on_gpu = resolve_device(options.device).type == "cuda"
    # "auto" lets each worker take what it sees: the GPU in one, the CPU in the others.
    job_options = replace(options, device="auto") if on_gpu else options
    _run_pool(jobs, options=job_options, workers=workers, share_gpu=on_gpu, driver=driver, fn=fn)
