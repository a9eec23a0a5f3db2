"""The `spfem` command line: thin Typer commands over library calls.

Every user-facing failure is a `SpfemError`, turned here into one line on stderr and its exit
code; an interrupted run exits 130.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spfem_cli import __version__
from spfem_cli.encoding import DEFAULT_CRF, DEFAULT_PRESET
from spfem_cli.errors import SpfemError
from spfem_cli.generator.kinds import DEFAULT_BASE_REFINER, DEFAULT_GENERATOR, DEFAULT_REFINER

T = TypeVar("T")

app = typer.Typer(
    name="spfem",
    help="Change the emotion of a speaker's face in a video, keeping the speech intact.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# Options several commands share, declared once.
IntensityOption = Annotated[
    float, typer.Option(help="How strong the emotion is, 0 (no change) to 1.5.")
]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
MouthOption = Annotated[
    str,
    typer.Option(
        help="natural: lip corners follow the emotion, lip opening follows the "
        "speech (a photo, or a video whose mouth never moves, has none and is edited as in "
        "expressive mode); strict: the whole "
        "mouth region is kept from the source; expressive: the lip corners move as far as in "
        "a real expression (a smile reads as one), the opening still follows the speech but "
        "the inner lips change more."
    ),
]
GeneratorOption = Annotated[
    str,
    typer.Option(
        help="refiner: the warp plus the learned refiner (creases, shading, eye whites); "
        "warp: the warp alone (faster)."
    ),
]
EditGeneratorOption = Annotated[
    str | None,
    typer.Option(
        "--generator",
        help="refiner: the warp plus the learned refiner (creases, shading, eye whites); "
        "warp: the warp alone. Default: warp, or the person's refiner with --checkpoint.",
        show_default=False,
    ),
]
StartOption = Annotated[
    float | None, typer.Option(help="Edit from this time (seconds); before it, unchanged.")
]
EndOption = Annotated[
    float | None, typer.Option(help="Edit until this time (seconds); after it, unchanged.")
]
RestOption = Annotated[
    Path | None,
    typer.Option(
        help="A photo or clip of the same person with a calm face, or a time range of the "
        "video where their face is calm ('0-2.5', seconds): an expression held through the "
        "rest of the video is then replaced too (without it, the person's calmest moments in "
        "the video are their rest). A clip or a time range of 15 frames or more also "
        "tells where their lids usually stand (eyes held wide); a photo does not."
    ),
]
SideOption = Annotated[
    str,
    typer.Option(
        help="The subject's side for contempt's one-sided sneer: auto (the side nearer the "
        "camera when the head is turned, else the right), right or left."
    ),
]
FaceOption = Annotated[
    str,
    typer.Option(
        help="Which face to edit where there are several: largest, left, right, or X,Y, the "
        "one nearest that point of the frame (fractions of its width and height from the top "
        "left: 0.75,0.4). It is taken up where it first appears and followed."
    ),
]
CrfOption = Annotated[
    int,
    typer.Option(
        help="x264's constant rate factor of the output: 0 (lossless) to 51; 18 looks like "
        "the source."
    ),
]
PresetOption = Annotated[
    str,
    typer.Option(
        help="x264's preset, ultrafast to veryslow: a slower one packs the picture better "
        "(a smaller file or a slightly better picture) and takes longer."
    ),
]
KeepSpeechOption = Annotated[
    bool | None,
    typer.Option(
        "--keep-speech/--no-keep-speech",
        help="Measure each edit's speech as `spfem check` does, on the frames it changed (a "
        "timeline segment by segment), and, where it changed, edit again with the lip corners "
        "moving half as far, a quarter, then held. Default: on with "
        "--mouth natural (videos only); --no-keep-speech saves the measuring's time.",
        show_default=False,
    ),
]
ClipArchOption = Annotated[str, typer.Option(help="CLIP architecture (open_clip name).")]
ClipWeightsOption = Annotated[
    str | None,
    typer.Option(
        help="CLIP weights: an open_clip tag such as 'openai' (downloaded once and cached) "
        "or a local weights file."
    ),
]
# Training on an untrained CLIP writes a file that teaches nothing: it must be asked for by name.
RANDOM_CLIP = "random"
TrainingClipWeightsOption = Annotated[
    str | None,
    typer.Option(
        help="CLIP weights, needed: an open_clip tag such as 'openai' (downloaded once and "
        f"cached) or a local weights file; '{RANDOM_CLIP}': an untrained CLIP, for tests only.",
        show_default=False,
    ),
]
ClipConfigOption = Annotated[
    Path | None,
    typer.Option(help="JSON config of a CLIP architecture open_clip does not ship."),
]


def _console(quiet: bool = False) -> Console:
    return Console(stderr=True, quiet=quiet)


def refuse_folder(path: Path) -> None:
    """A folder given to `spfem edit`: say that `spfem batch` edits one."""
    raise SpfemError(
        f"{path} is a folder, not a video file; `spfem batch {path} OUT_DIR --emotion EMOTION` "
        "edits every video in it"
    )


def run_guarded(fn: Callable[[], T]) -> T:
    """Run a command body, turning errors into a one-line message and an exit code."""
    err = _console()
    try:
        return fn()
    except SpfemError as exc:
        # soft_wrap: the message stays one line however narrow the terminal; escape: a file
        # name with brackets is not markup.
        err.print(
            f"[bold red]spfem: error:[/bold red] {escape(str(exc))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("[bold red]spfem: interrupted[/bold red]: nothing was written")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # noqa: BLE001 - the edge where any failure becomes one line
        if os.environ.get("SPFEM_DEBUG"):
            raise
        err.print(
            f"[bold red]spfem: internal error:[/bold red] {type(exc).__name__}: "
            f"{escape(str(exc))} (set SPFEM_DEBUG=1 for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


def _training_clip(weights: str | None, *, command: str) -> str | None:
    """The CLIP weights a training command passes on (None: an untrained CLIP, asked for as
    RANDOM_CLIP). Without weights, training ran its minutes on a CLIP that reads no face and
    wrote a file that looked finished."""
    if weights is None:
        raise SpfemError(
            f"spfem {command} needs CLIP weights: --clip-weights openai (downloaded once and "
            f"cached) or a local weights file (--clip-weights {RANDOM_CLIP}: an untrained CLIP, "
            "for tests only)"
        )
    return None if weights == RANDOM_CLIP else weights


def _version(value: bool) -> None:
    if value:
        print(f"spfem {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """spfem: speech-preserving facial expression manipulation."""


def _batch_rest(rest: Path) -> str:
    """`--rest` as batch jobs take it: a time range as given, a file by its absolute path
    (jobs may run in another folder, on Ray)."""
    from spfem_cli.pipeline import rest_span

    return str(rest) if rest_span(rest) is not None else str(rest.resolve())


@app.command()
def edit(
    input: Annotated[Path, typer.Argument(help="The video to edit (never modified).")],
    emotion: Annotated[
        str,
        typer.Option(
            "--emotion",
            "-e",
            help="Target: a label (see `spfem emotions`), a mixture 'happy:0.6+surprised:0.4', "
            "a timeline '0-3:happy,3-:sad' (seconds; smooth transitions), a .json file, or "
            "free text such as 'smug' (needs --clip-weights).",
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file (.mp4, .mov, .mkv; a photo's edit may be .png, .jpg, .webp), or "
            "a folder to write INPUT.EMOTION.mp4 in. Default: INPUT.EMOTION.mp4 beside the "
            "input (a photo keeps its format).",
        ),
    ] = None,
    intensity: IntensityOption = 1.0,
    device: DeviceOption = "auto",
    mouth: MouthOption = "natural",
    generator: EditGeneratorOption = None,
    start: StartOption = None,
    end: EndOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Personal checkpoint of `spfem finetune` (me.spfem): the person's own "
            "emotions and refiner."
        ),
    ] = None,
    refiner: Annotated[
        str,
        typer.Option(
            help="With --generator refiner: the refiner (a file of `spfem train refiner`, or a "
            "name in weights/manifest.json)."
        ),
    ] = DEFAULT_REFINER,
    clip_weights: ClipWeightsOption = None,
    clip_arch: ClipArchOption = "ViT-B-32",
    clip_config: ClipConfigOption = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            help="Prompt file of `spfem train-prompts` (same CLIP): personalises how free "
            "text is read."
        ),
    ] = None,
    rest: RestOption = None,
    side: SideOption = "auto",
    face: FaceOption = "largest",
    crf: CrfOption = DEFAULT_CRF,
    preset: PresetOption = DEFAULT_PRESET,
    keep_speech: KeepSpeechOption = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or notes.")
    ] = False,
) -> None:
    """Edit the emotion on the face in INPUT and write a new video with the same audio."""
    from spfem_cli.console import RichReporter
    from spfem_cli.pipeline import edit_video

    console = _console(quiet)
    if input.is_dir():
        run_guarded(lambda: refuse_folder(input))
    report = run_guarded(
        lambda: edit_video(
            input_path=input,
            emotion=emotion,
            output_path=output,
            intensity=intensity,
            device=device,
            mouth=mouth,
            generator=generator,
            start=start,
            end=end,
            overwrite=overwrite,  # type: ignore[arg-type]
            checkpoint=checkpoint,
            refiner=refiner,
            clip_arch=clip_arch,
            clip_weights=clip_weights,
            clip_config=clip_config,
            prompts=prompts,
            rest=rest,
            side=side,
            face=face,
            crf=crf,
            preset=preset,
            keep_speech=keep_speech,
            reporter=RichReporter(console),
        )
    )
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    for hint in report.hints:
        console.print(f"[cyan]hint:[/cyan] {hint}")
    if report.n_frames == 1:
        done = (
            "edited"
            if report.n_edited
            else "no face found, unchanged"
            if report.n_without_face
            else "nothing to change"
        )
        summary = f"(one frame, {done})"
    else:
        summary = (
            f"({report.n_frames} frames, {report.n_edited} edited, "
            f"{report.n_without_face} without a face)"
        )
    console.print(f"[green]wrote[/green] {report.output}  {summary}", highlight=False)


@app.command()
def batch(
    in_dir: Annotated[Path, typer.Argument(help="Folder of videos to edit (never modified).")],
    out_dir: Annotated[
        Path, typer.Argument(help="Folder for the outputs and the report; mirrors IN_DIR.")
    ],
    emotion: Annotated[
        list[str],
        typer.Option(
            "--emotion",
            "-e",
            help="Target emotion (as for `spfem edit`); repeat for several: one output per "
            "emotion, named STEM.EMOTION.mp4.",
        ),
    ],
    intensity: IntensityOption = 1.0,
    device: DeviceOption = "auto",
    mouth: MouthOption = "natural",
    generator: GeneratorOption = DEFAULT_GENERATOR,
    start: StartOption = None,
    end: EndOption = None,
    pattern: Annotated[
        str | None,
        typer.Option(
            help="Glob for the files to edit, matched against their path in IN_DIR "
            "(default: .mp4 .mov .mkv .avi .webm .m4v)."
        ),
    ] = None,
    recursive: Annotated[bool, typer.Option(help="Also edit the videos in subfolders.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Local worker processes (default 1); with --executor ray, the most tasks "
            "in flight (default: as many as the cluster runs)."
        ),
    ] = None,
    executor: Annotated[
        str, typer.Option(help="local (this machine) or ray (a Ray cluster).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to run on (HEAD:6379); default: a local Ray instance."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Redo outputs that an earlier run finished.")
    ] = False,
    rest: Annotated[
        Path | None,
        typer.Option(
            help="As for `spfem edit`: a photo or clip of a calm face when every video shows "
            "the same person, or a time range ('0-2.5', seconds) read from each video."
        ),
    ] = None,
    side: SideOption = "auto",
    face: FaceOption = "largest",
    crf: CrfOption = DEFAULT_CRF,
    preset: PresetOption = DEFAULT_PRESET,
    keep_speech: KeepSpeechOption = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress, status lines or summary.")
    ] = False,
) -> None:
    """Edit every video in IN_DIR into OUT_DIR; a re-run resumes where the last one stopped.

    Exit code 0 when every output is done (or was done before), 1 when any failed or was
    left undone, 2 for bad arguments, 130 on Ctrl-C.
    """
    from spfem_cli.batch import BatchInterrupted, BatchSummary, EditOptions, run_batch
    from spfem_cli.console import RichBatchReporter, print_batch_summary

    console = _console(quiet)

    def body() -> BatchSummary:
        try:
            return run_batch(
                in_dir=in_dir,
                out_dir=out_dir,
                emotions=emotion,
                pattern=pattern,
                recursive=recursive,
                workers=workers,
                executor=executor,
                ray_address=ray_address,
                overwrite=overwrite,
                options=EditOptions(
                    intensity=intensity,
                    device=device,
                    mouth=mouth,
                    generator=generator,
                    start=start,
                    end=end,
                    rest=None if rest is None else _batch_rest(rest),
                    side=side,
                    face=face,
                    crf=crf,
                    preset=preset,
                    keep_speech=keep_speech,
                ),
                reporter=RichBatchReporter(console),
            )
        except BatchInterrupted as exc:
            print_batch_summary(console, exc.summary)
            _console().print(
                f"[bold red]spfem: interrupted[/bold red]: {exc.summary.n_done} finished "
                "output(s) and their records are kept; run the same command again to resume"
            )
            raise typer.Exit(130) from None

    summary = run_guarded(body)
    print_batch_summary(console, summary)
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
def preview(
    input: Annotated[Path, typer.Argument(help="The video to preview.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="PNG to write, or a folder to write it in.")
    ] = Path("spfem-preview.png"),
    emotion: Annotated[
        list[str] | None,
        typer.Option(
            "--emotion",
            "-e",
            metavar="<str>",
            help="An emotion or mixture to show as a column, as `spfem edit` takes it "
            "('happy:0.6+surprised:0.4'); repeat for more columns. Default: all eight.",
        ),
    ] = None,
    frames: Annotated[int, typer.Option(help="How many frames (rows) to show.")] = 3,
    intensity: IntensityOption = 1.0,
    mouth: MouthOption = "natural",
    generator: GeneratorOption = DEFAULT_GENERATOR,
    device: DeviceOption = "auto",
    rest: RestOption = None,
    side: SideOption = "auto",
    face: FaceOption = "largest",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Write a contact sheet of a few frames of INPUT under each emotion, side by side.

    Every emotion is a column, or only those given with --emotion."""
    from spfem_cli.console import RichReporter
    from spfem_cli.preview import preview_sheet

    console = _console(quiet)
    done = run_guarded(
        lambda: preview_sheet(
            input_path=input,
            output_path=output,
            emotions=emotion,
            n_frames=frames,
            intensity=intensity,
            mouth=mouth,  # type: ignore[arg-type]
            generator=generator,
            device=device,
            rest=rest,
            side=side,
            face=face,
            reporter=RichReporter(console),
        )
    )
    console.print(f"[green]wrote[/green] {done.path}", highlight=False)
    for hint in done.hints:
        console.print(f"[cyan]hint:[/cyan] {hint}")


@app.command()
def compare(
    before: Annotated[Path, typer.Argument(help="The input video (left).")],
    after: Annotated[Path, typer.Argument(help="Its edit (right), e.g. from `spfem edit`.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Video to write (.mp4, .mov, .mkv), or a folder to write AFTER.compare.mp4 "
            "in. Default: AFTER.compare.mp4 beside AFTER.",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    crf: CrfOption = DEFAULT_CRF,
    preset: PresetOption = DEFAULT_PRESET,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Write a video of BEFORE and AFTER side by side, to watch an edit against its input.

    The video has AFTER's audio."""
    from spfem_cli.compare import write_comparison
    from spfem_cli.console import RichReporter
    from spfem_cli.media import default_output_path, given_output_path

    console = _console(quiet)
    path = given_output_path(output, default=default_output_path(after, "compare"))
    frames = run_guarded(
        lambda: write_comparison(
            before=before,
            after=after,
            output=path,
            overwrite=overwrite,
            crf=crf,
            preset=preset,
            reporter=RichReporter(console),
        )
    )
    console.print(
        f"[green]wrote[/green] {path}  ({frames} frames)", highlight=False, soft_wrap=True
    )


@app.command()
def check(
    before: Annotated[Path, typer.Argument(help="The input video.")],
    after: Annotated[Path, typer.Argument(help="Its edit, e.g. from `spfem edit`.")],
    start: Annotated[
        float | None,
        typer.Option(help="Measure from this time (seconds): where an edit's --start was."),
    ] = None,
    end: Annotated[
        float | None,
        typer.Option(help="Measure until this time (seconds): where an edit's --end was."),
    ] = None,
    face: Annotated[
        str,
        typer.Option(
            help="The face to measure where there are several, as `spfem edit --face` took it: "
            "largest, left, right or X,Y."
        ),
    ] = "largest",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Measure whether AFTER, an edit of BEFORE, kept its speech; exits with 1 if not.

    FaceMesh finds the lips again on both, and the inner lips' place and the mouth's opening
    over time are compared (over the edited range only with --start or --end: frames passed
    through would dilute the verdict)."""
    from spfem_cli.console import RichReporter
    from spfem_cli.speech_check import SpeechCheck, check_speech, frames_between

    console = _console(quiet)

    def measured() -> SpeechCheck:
        ranged = start is not None or end is not None
        frames = frames_between(before, start=start, end=end) if ranged else None
        return check_speech(
            before=before, after=after, reporter=RichReporter(console), frames=frames, face=face
        )

    result = run_guarded(measured)
    out = Console(highlight=False, soft_wrap=True)
    for line in result.lines():
        out.print(escape(line))
    if not result.kept:
        raise typer.Exit(1)


@app.command()
def emotions() -> None:
    """List the emotions and what each one changes on the face."""
    from spfem_cli.generator.expression import EMOTION_DESCRIPTIONS, EMOTIONS

    table = Table("emotion", "what changes on the face")
    for name in EMOTIONS:
        table.add_row(name, EMOTION_DESCRIPTIONS[name])
    Console().print(table)


@app.command()
def doctor() -> None:
    """Check the installation: ffmpeg, face models, torch and device, weights and checksums."""
    from spfem_cli.doctor import run_checks

    table = Table("check", "status", "detail")
    results = run_guarded(run_checks)
    for check in results:
        table.add_row(
            check.name, "[green]ok[/green]" if check.ok else "[red]FAIL[/red]", check.detail
        )
    Console().print(table)
    if not all(c.ok for c in results):
        raise typer.Exit(3)


@app.command()
def demo(
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", help="Where to write the demo files.")
    ] = Path("spfem-demo"),
    emotion: Annotated[
        str, typer.Option("--emotion", "-e", help="Emotion for the demo edit.")
    ] = "surprised",
    device: DeviceOption = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Make a short clip from a built-in portrait, edit it, and write a contact sheet."""
    # Surprised by default: the portrait smiles already, so happy would change little that a
    # first look sees; surprise moves brows, lids and the eyes' whites, and keeps her smile.
    from spfem_cli.console import RichReporter
    from spfem_cli.demo import run_demo

    console = _console(quiet)
    result = run_guarded(
        lambda: run_demo(
            output_dir=output_dir, emotion=emotion, device=device, reporter=RichReporter(console)
        )
    )
    console.print(
        f"[green]demo written[/green]: input {result.input}, edit {result.edited}, "
        f"contact sheet {result.sheet}",
        highlight=False,
    )


train_app = typer.Typer(
    help="Train spfem's learned parts on your own videos.", no_args_is_help=True
)
app.add_typer(train_app, name="train")


@train_app.command("refiner")
def train_refiner_command(
    video_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder of videos: one sub-folder per person, or one person per file "
            "(the config's 'people' can name who is in which file)."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The refiner checkpoint to write.")
    ] = Path("refiner.safetensors"),
    config: Annotated[
        Path | None, typer.Option(help="Training config (JSON); see configs/refiner-v1.json.")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Training steps (overrides the config).")
    ] = None,
    minutes: Annotated[
        float | None,
        typer.Option(
            help="Train for about this long once the crops are cut, instead of a number of "
            "steps: a short probe times a step, and the steps that fit are stored in the "
            "checkpoint's config, so that config repeats the run."
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides the config).")] = None,
    cache: Annotated[
        Path | None, typer.Option(help="Folder to keep the cut face crops in between runs.")
    ] = None,
    device: DeviceOption = "auto",
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes that build the training pairs beside the training (overrides the "
            "config; 0: none). On a GPU, about one per spare CPU core."
        ),
    ] = None,
    face: Annotated[
        str | None,
        typer.Option(
            help="The face to learn from in every video where it shows several: largest, left, "
            "right or X,Y, as `spfem edit --face` takes it (overrides the config)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Pre-train the refiner on your own videos (self-supervised).

    Warps one frame toward another frame of the same video and learns the rest. Validates on
    held-out people; logs to OUTPUT.log.jsonl.
    """
    from spfem_cli.console import RichReporter
    from spfem_cli.face.tracker import FacePick
    from spfem_cli.generator.device import resolve_device
    from spfem_cli.training.refiner import TrainConfig, train_refiner

    console = _console(quiet)

    def body():  # noqa: ANN202 - the result type lives in a lazily imported module
        cfg = TrainConfig.from_file(config) if config is not None else TrainConfig()
        if steps is not None:
            if steps < 1:
                raise SpfemError(f"--steps must be at least 1, got {steps}")
            cfg.steps = steps
        if seed is not None:
            cfg.seed = seed
        if workers is not None:
            if workers < 0:
                raise SpfemError(f"--workers must be 0 or more, got {workers}")
            cfg.workers = workers
        if face is not None:
            cfg.face = face
        FacePick.parse(cfg.face)  # a bad value is told before the crops are cut
        if minutes is not None:
            if steps is not None:
                raise SpfemError("give --steps or --minutes, not both")
            if not minutes > 0:
                raise SpfemError(f"--minutes must be more than 0, got {minutes:g}")
        return train_refiner(
            video_dir=video_dir,
            output=output,
            config=cfg,
            cache_dir=cache,
            device=str(resolve_device(device)),
            reporter=RichReporter(console),
            time_budget_s=None if minutes is None else 60.0 * minutes,
        )

    result = run_guarded(body)
    v = result.validation
    console.print(
        f"[green]wrote[/green] {result.output} (sha256 {result.sha256[:12]}); held-out people "
        f"{', '.join(result.val_people)}: L1 {v.l1_refined:.2f} levels with the refiner, "
        f"{v.l1_warp:.2f} warp alone ({abs(100 * v.l1_gain):.1f}% "
        f"{'lower' if v.l1_gain >= 0 else 'higher'}); log {result.log}",
        highlight=False,
    )


# --- PCMECL stage one: personalised emotion prompts --------------------------------------------


@app.command("train-prompts")
def train_prompts_command(
    data_dir: Annotated[
        Path,
        typer.Argument(
            help="One folder per emotion (happy/, sad/ ...) of face images and/or video clips. "
            "Person: a sub-folder per person in each emotion folder, or else the file name up "
            "to the first '_' (alice_01.png)."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The prompt file to write (.safetensors).")
    ] = Path("prompts.safetensors"),
    arch: Annotated[str, typer.Option(help="CLIP architecture (open_clip name).")] = "ViT-B-32",
    clip_weights: TrainingClipWeightsOption = None,
    clip_config: Annotated[
        Path | None,
        typer.Option(help="JSON config of an architecture open_clip does not ship (named ARCH)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training frames.")] = 10,
    lr: Annotated[float, typer.Option(help="Learning rate (Adam, cosine decay).")] = 2e-3,
    batch_size: Annotated[int, typer.Option(help="Frames per step.")] = 32,
    val_people: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated people to hold out for validation. Default: a fifth of the "
            "people (at least one), drawn with --seed."
        ),
    ] = None,
    frames_per_clip: Annotated[
        int, typer.Option(help="Frames taken from each video, evenly spaced.")
    ] = 4,
    n_ctx: Annotated[int, typer.Option(help="Learned context tokens in the prompt.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed (split, initialisation, order).")] = 0,
    device: DeviceOption = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Learn personalised emotion prompts for CLIP (PCMECL stage one).

    From faces sorted into one folder per emotion; validates on people it never trained on.
    """
    from spfem_cli.console import RichTrainingReporter
    from spfem_cli.pcmecl.prompt_training import PromptTrainingResult, train_prompts

    console = _console(quiet)
    held_out = None
    if val_people is not None:
        held_out = [name.strip() for name in val_people.split(",") if name.strip()]

    def body() -> PromptTrainingResult:
        if val_people is not None and not held_out:
            raise SpfemError("--val-people is empty; name people separated by commas")
        return train_prompts(
            data_dir=data_dir,
            output=output,
            arch=arch,
            clip_weights=_training_clip(clip_weights, command="train-prompts"),
            clip_config=clip_config,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            val_people=held_out,
            n_ctx=n_ctx,
            frames_per_clip=frames_per_clip,
            device=device,
            overwrite=overwrite,
            reporter=RichTrainingReporter(console),
        )

    result = run_guarded(body)
    last = result.history[-1]
    console.print(
        f"[green]wrote[/green] {result.output} (sha256 {result.sha256[:12]}): "
        f"{len(result.class_names)} emotions, {result.n_train_frames} frames of "
        f"{len(result.train_people)} people trained, {result.n_val_frames} frames of "
        f"{', '.join(result.val_people)} held out; held-out accuracy "
        f"{100 * last.val_accuracy:.0f}% (chance {100 * result.chance:.0f}%)",
        highlight=False,
    )


# --- PCMECL stage two: personalised fine-tuning -----------------------------------------------


@app.command("finetune")
def finetune_command(
    clip: Annotated[Path, typer.Argument(help="A video of the person talking (never modified).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The personal checkpoint to write.")
    ] = Path("me.spfem"),
    prompts: Annotated[
        Path | None,
        typer.Option(
            help="Prompt file of `spfem train-prompts`, trained on the same CLIP "
            "(default: zero-shot CLIP prompts, not personalised)."
        ),
    ] = None,
    clip_arch: ClipArchOption = "ViT-B-32",
    clip_weights: TrainingClipWeightsOption = None,
    clip_config: ClipConfigOption = None,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 300,
    lr: Annotated[
        float, typer.Option(help="Learning rate of the refiner (the AU offsets take 100x).")
    ] = 1e-4,
    batch_size: Annotated[
        int, typer.Option(help="Frames per step (pairs of neighbouring frames).")
    ] = 8,
    device: DeviceOption = "auto",
    seed: Annotated[int, typer.Option(help="Random seed (frames, targets, intensities).")] = 0,
    resume: Annotated[
        bool,
        typer.Option(help="Continue from OUTPUT.partial when an interrupted run left one."),
    ] = True,
    save_every: Annotated[
        int, typer.Option(help="Steps between resumable saves to OUTPUT.partial (0: never).")
    ] = 25,
    max_frames: Annotated[
        int, typer.Option(help="Frames with a face taken from the clip, evenly spread.")
    ] = 240,
    mouth: MouthOption = "natural",
    refiner: Annotated[
        str,
        typer.Option(
            help="The refiner to start from (manifest name or file; none: an untrained one)."
        ),
    ] = DEFAULT_BASE_REFINER,
    cache: Annotated[
        Path | None, typer.Option(help="Folder to keep the clip's tracked face crops in.")
    ] = None,
    rest: RestOption = None,
    face: Annotated[
        str,
        typer.Option(
            help="The person's face where the clip shows several: largest, left, right or X,Y, "
            "as `spfem edit --face` takes it."
        ),
    ] = "largest",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Fine-tune spfem on one person's clip (PCMECL stage two).

    Learns their own AU offsets for every emotion and their own refiner, taught by CLIP. Use
    the result with `spfem edit --checkpoint OUTPUT`.
    """
    from spfem_cli.console import RichTrainingReporter
    from spfem_cli.pcmecl.finetune import FinetuneResult, finetune, partial_path

    console = _console(quiet)

    def body() -> FinetuneResult:
        try:
            return run()
        except KeyboardInterrupt:
            saved = partial_path(output.expanduser())
            if not saved.is_file():
                raise
            _console().print(
                f"[bold red]spfem: interrupted[/bold red]: the last saved state is kept in "
                f"{escape(str(saved))}; run the same command again to resume",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(130) from None

    def run() -> FinetuneResult:
        return finetune(
            clip_path=clip,
            output=output,
            prompts=prompts,
            clip_arch=clip_arch,
            clip_weights=_training_clip(clip_weights, command="finetune"),
            clip_config=clip_config,
            steps=steps,
            lr=lr,
            batch_size=batch_size,
            device=device,
            seed=seed,
            resume=resume,
            overwrite=overwrite,
            refiner=refiner,
            mouth=mouth,
            max_frames=max_frames,
            save_every=save_every,
            cache_dir=cache,
            rest=rest,
            face=face,
            reporter=RichTrainingReporter(console),
        )

    result = run_guarded(body)
    first, last = result.first, result.last
    console.print(
        f"[green]wrote[/green] {result.output} (sha256 {result.sha256[:12]}): {result.steps} "
        f"steps on {result.n_frames} frames in {result.seconds:.0f} s; loss "
        f"{first.get('total', float('nan')):.3f} -> {last.get('total', float('nan')):.3f} "
        f"(direction {first.get('direction', float('nan')):.3f} -> "
        f"{last.get('direction', float('nan')):.3f})",
        highlight=False,
    )


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM taken as a terminal's Ctrl-C: this process is interrupted, and so are its
    worker processes (a batch's pool), which a terminal's Ctrl-C reaches too."""
    import multiprocessing

    for child in multiprocessing.active_children():
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGINT)  # type: ignore[arg-type]
    signal.default_int_handler(signum, frame)  # type: ignore[arg-type]


def main() -> None:
    """Console entry point. SIGTERM (`kill`, `timeout`, a job scheduler or `docker stop`)
    stops a run as Ctrl-C does (`_terminated`): Python's default for it ends the process at
    once, which skipped every clean-up and left the run's working folder in the temporary
    directory (its landmarks, and the speech check's tries: a video's worth)."""
    signal.signal(signal.SIGTERM, _terminated)
    app(prog_name="spfem")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
