"""`spfem batch`: mirrored outputs, the report, resume, failure isolation, workers and Ray.

Clips with a face are 1 s cut from the shared real clips (those tests skip without
../shared/clips); clips without one are synthetic, and edit fast (they pass through).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from spfem_cli import cli
from spfem_cli.batch import (
    REPORT_NAME,
    BatchInterrupted,
    BatchSummary,
    EditOptions,
    Job,
    Outcome,
    Record,
    ReportWriter,
    Target,
    _Driver,
    _init_worker,
    _run_ray,
    discover_inputs,
    output_path_for,
    process_job,
    read_report,
    run_batch,
)
from spfem_cli.errors import SpfemError
from spfem_cli.face.rest import RestFace
from spfem_cli.media import atomic_output, audio_packet_checksums, probe
from spfem_cli.pipeline import PHOTO_MOUTH_NOTE

from .conftest import HeldNeutral, MakeClip, frames_of, run_ffmpeg_checked, x264_options

runner = CliRunner()


@pytest.fixture(scope="module")
def speaker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s of a real speaker (256x256, 25 fps, AAC speech)."""
    src = Path(__file__).resolve().parents[2] / "shared" / "clips" / "speech_man_256x256.mp4"
    if not src.is_file():
        pytest.skip("../shared/clips is absent")
    out = tmp_path_factory.mktemp("speaker") / "speaker.mp4"
    run_ffmpeg_checked(
        "-i", str(src), "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "16",
        "-c:a", "copy", str(out),
    )  # fmt: skip
    return out


# The batch's own machinery measured without the speech's measuring, which would double the
# time of each edit of a face (natural mode's default; tests/test_speech_check.py tests it).
UNMEASURED = EditOptions(keep_speech=False)


def by_key(records: list[Record]) -> dict[tuple[str, str], Record]:
    return {(r.input, r.emotion): r for r in records}


def comparable(records: list[Record]) -> set[tuple[Any, ...]]:
    """What must not depend on how the jobs ran: no times, hosts or run ids."""
    return {
        (r.input, r.emotion, r.output, r.status, r.reason, r.frames, r.edited, r.notes)
        for r in records
    }


def hidden_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file()]


def synthetic_folder(make_clip: MakeClip, tmp_path: Path, names: list[str]) -> Path:
    """IN folder of 0.5 s synthetic clips (no face: they edit fast) named `names`."""
    folder = tmp_path / "in"
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        make_clip(f"in/{name}", size=(96, 64), duration=0.5)
    return folder


# --- finding inputs, naming outputs ----------------------------------------------------------


def test_discovery_skips_hidden_temp_and_out_dir(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for rel in [
        "a.mp4", "B.MOV", "c.webm", "notes.txt", ".hidden.mp4", ".a.mp4.spfem-1a2b3c4d.mp4",
        "sub/d.mkv", "sub/deeper/e.avi", ".cache/f.mp4", "out/a.happy.mp4",
    ]:  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "gone.mp4").symlink_to(root / "nowhere.mp4")
    os.mkfifo(root / "pipe.mp4")
    out = root / "out"

    def found(**kw: Any) -> list[str]:
        return [p.as_posix() for p in discover_inputs(in_dir=root, out_dir=out, **kw)]

    assert found() == ["B.MOV", "a.mp4", "c.webm", "gone.mp4"]
    assert found(recursive=True) == [
        "B.MOV", "a.mp4", "c.webm", "gone.mp4", "sub/d.mkv", "sub/deeper/e.avi",
    ]  # fmt: skip
    assert found(recursive=True, pattern="*.mkv") == ["sub/d.mkv"]
    assert found(recursive=True, pattern="deeper/*") == ["sub/deeper/e.avi"]
    assert found(pattern="*.txt") == ["notes.txt"]


def test_output_names(tmp_path: Path) -> None:
    from spfem_cli.targets import parse_emotion

    def name(rel: str, spec: str) -> str:
        label = parse_emotion(spec).label()
        return output_path_for(out_dir=tmp_path, rel=Path(rel), label=label).name

    assert output_path_for(out_dir=tmp_path, rel=Path("a/talk.mp4"), label="happy") == (
        tmp_path / "a" / "talk.happy.mp4"
    )
    assert name("talk.mkv", "sad") == "talk.sad.mkv"  # the container is kept when spfem writes it
    assert name("talk.avi", "Surprise") == "talk.surprised.mp4"
    assert name("talk.mp4", "happy:0.6+surprised:0.4") == "talk.happy0_6+surprised0_4.mp4"
    assert name("talk.mp4", "0-1:happy,1-:sad") == "talk.timeline.mp4"
    assert name("me.JPG", "happy") == "me.happy.JPG"  # a photo's edit is a photo


def test_a_folder_of_photos_by_pattern(tmp_path: Path) -> None:
    """Photos are edited into photos when --pattern picks them (by default a batch takes
    videos); the edit equals `spfem edit`'s."""
    from PIL import Image

    from spfem_cli.demo import portrait_frames

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    Image.fromarray(portrait_frames(n_frames=1)[0]).save(folder / "me.png")
    args = ["batch", str(folder), str(out), "-e", "sad", "--pattern", "*.png", "--quiet"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    alone = tmp_path / "alone.png"
    single = ["edit", str(folder / "me.png"), "-e", "sad", "-o", str(alone), "--quiet"]
    assert runner.invoke(cli.app, single).exit_code == 0
    batched = np.asarray(Image.open(out / "me.sad.png"))
    assert np.array_equal(batched, np.asarray(Image.open(alone)))
    assert not np.array_equal(batched, np.asarray(Image.open(folder / "me.png")))
    # A photo has no speech: its lips move as in expressive mode, and the record says so.
    (record,) = read_report(out / REPORT_NAME)
    assert PHOTO_MOUTH_NOTE in record.notes, record.notes


def test_bad_arguments(tmp_path: Path, make_clip: MakeClip) -> None:
    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4"])
    for kwargs, expect in [
        ({"in_dir": tmp_path / "nope"}, "does not exist"),
        ({"out_dir": folder}, "OUT_DIR is IN_DIR"),
        ({"in_dir": folder, "out_dir": tmp_path}, "inside OUT_DIR"),
        ({"emotions": ["ecstatic"]}, "ecstatic"),
        ({"emotions": []}, "at least one"),
        ({"emotions": ["0-1:happy,1-:sad", "0-1:sad,1-:happy"]}, "both be named 'timeline'"),
        ({"workers": 0}, "--workers"),
        ({"executor": "slurm"}, "executor"),
        ({"pattern": "*.mov"}, "no file"),
        ({"options": EditOptions(intensity=3)}, "intensity"),
        ({"options": EditOptions(mouth="loose")}, "mouth"),
        ({"options": EditOptions(side="up")}, "unknown side"),
        ({"options": EditOptions(face="middle")}, "--face must be largest, left, right or X,Y"),
        ({"options": EditOptions(crf=-1)}, "--crf must be between 0 and 51"),
        ({"options": EditOptions(preset="quick")}, "unknown preset 'quick'"),
        ({"options": EditOptions(device="tpu")}, "device"),
        ({"options": EditOptions(rest=str(tmp_path / "calm.png"))}, "rest face .* does not exist"),
        ({"options": EditOptions(rest="2-1")}, "ends before it starts"),
    ]:
        args: dict[str, Any] = {
            "in_dir": folder,
            "out_dir": tmp_path / "out",
            "emotions": ["happy"],
        }
        with pytest.raises(SpfemError, match=expect):
            run_batch(**{**args, **kwargs})
    assert not (tmp_path / "out").exists()


# --- a real folder: failures recorded, resume, overwrite --------------------------------------


def test_mixed_folder_records_failures_resumes_and_overwrites(
    speaker: Path,
    tmp_path: Path,
    make_clip: MakeClip,
    make_audio_only: Callable[[str], Path],
) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(speaker, folder / "good.mp4")
    shutil.copy(speaker, folder / "sub" / "good.mp4")
    (folder / "notes.mp4").write_text("these are not frames\n" * 100)
    (folder / "empty.mp4").touch()
    make_clip("in/sub/pattern.mp4", size=(96, 64), duration=0.5)
    shutil.move(make_audio_only("tone.mp4"), folder / "tone.mp4")
    data = speaker.read_bytes()
    (folder / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    (folder / "gone.mp4").symlink_to(folder / "deleted.mp4")
    (folder / "readme.txt").write_text("not matched")
    out = tmp_path / "out"

    summary = run_batch(
        in_dir=folder, out_dir=out, emotions=["happy"], recursive=True, options=UNMEASURED
    )
    records = by_key(summary.records)
    assert set(records) == {
        (name, "happy")
        for name in [
            "good.mp4", "sub/good.mp4", "notes.mp4", "empty.mp4", "sub/pattern.mp4",
            "tone.mp4", "cut.mp4", "gone.mp4",
        ]
    }  # fmt: skip
    for name, expect in [
        ("notes.mp4", "not a video"),
        ("empty.mp4", "empty"),
        ("tone.mp4", "no video stream"),
        ("cut.mp4", "cut.mp4"),
        ("gone.mp4", "gone.mp4"),
    ]:
        record = records[(name, "happy")]
        assert record.status == "failed" and expect in record.reason, record
        assert "\n" not in record.reason and str(folder) not in record.reason
    for name in ("good.mp4", "sub/good.mp4"):
        record = records[(name, "happy")]
        assert record.status == "done" and record.frames == 25 and record.edited >= 20
        output = out / record.output
        assert record.output == name.replace(".mp4", ".happy.mp4")
        assert probe(output).n_frames == 25 and output.stat().st_size == record.bytes
        assert audio_packet_checksums(output) == audio_packet_checksums(speaker)
    no_face = records[("sub/pattern.mp4", "happy")]
    assert no_face.status == "done" and no_face.edited == 0
    assert any("no face" in note for note in no_face.notes)
    assert summary.n_failed == 5 and not summary.ok
    assert read_report(out / REPORT_NAME) == summary.records
    assert hidden_files(out) == [] and not (out / "notes.happy.mp4").exists()

    # A re-run skips what is done (outputs untouched) and tries the failures again.
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    t0 = time.perf_counter()
    again = run_batch(
        in_dir=folder, out_dir=out, emotions=["happy"], recursive=True, options=UNMEASURED
    )
    assert time.perf_counter() - t0 < 5
    assert again.n_done == 0 and again.n_skipped == 3 and again.n_failed == 5
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == mtimes
    skipped = by_key(again.with_status("skipped"))[("good.mp4", "happy")]
    assert "earlier run" in skipped.reason and skipped.frames == 25
    assert len(read_report(out / REPORT_NAME)) == 16

    # --overwrite redoes the finished ones.
    redo = run_batch(
        in_dir=folder,
        out_dir=out,
        emotions=["happy"],
        recursive=True,
        overwrite=True,
        options=UNMEASURED,
    )
    assert redo.n_done == 3 and redo.n_skipped == 0
    assert all(p.stat().st_mtime_ns != mtimes[p] for p in mtimes)


def test_several_emotions_share_one_tracking_pass_and_equal_edit_video(
    speaker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spfem_cli import pipeline

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(speaker, folder / "talk.mp4")
    calls = {"n": 0}
    real = pipeline.analyse_video

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "analyse_video", counting)
    emotions = ["happy", "sad", "happy:0.6+surprised:0.4", "Happy"]
    summary = run_batch(
        in_dir=folder, out_dir=tmp_path / "out", emotions=emotions, options=UNMEASURED
    )
    assert calls["n"] == 1  # one tracking pass; "Happy" is "happy" spelled otherwise
    assert sorted(r.output for r in summary.records) == [
        "talk.happy.mp4", "talk.happy0_6+surprised0_4.mp4", "talk.sad.mp4",
    ]  # fmt: skip
    assert summary.ok and summary.n_done == 3
    # The shared path gives what `spfem edit` gives, frame for frame.
    alone = pipeline.edit_video(
        input_path=folder / "talk.mp4",
        emotion="happy",
        output_path=tmp_path / "alone.mp4",
        keep_speech=False,
    )
    record = by_key(summary.records)[("talk.mp4", "happy")]
    assert (record.frames, record.edited, list(record.notes)) == (
        alone.n_frames,
        alone.n_edited,
        alone.notes,
    )
    a, b = frames_of(alone.output), frames_of(tmp_path / "out" / record.output)
    assert len(a) == len(b) == 25
    assert (
        max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b, strict=True))
        <= 1
    )
    sad = frames_of(tmp_path / "out" / "talk.sad.mp4")
    assert np.abs(sad[12].astype(int) - b[12].astype(int)).max() > 20


def test_a_mouth_that_does_not_speak_is_edited_as_expressive_mode_edits_it(
    speaker: Path, tmp_path: Path
) -> None:
    """Natural mode (the default) on a video whose mouth never moves (1 s of talk_s20) plays as
    expressive mode, by one tracking pass for two emotions or by `edit_video` for one: its
    outputs say why and are expressive mode's, to the pixel, and their speech is not measured
    by default (there is none); the speaking video's outputs say nothing of it."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(speaker, folder / "talk.mp4")
    clips = Path(__file__).resolve().parents[2] / "shared" / "clips"
    run_ffmpeg_checked(
        "-i", str(clips / "talk_s20_480x908.mp4"), "-t", "1", "-vf", "scale=240:454",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "16", str(folder / "still.mp4"),
    )  # fmt: skip
    said = "the mouth does not move in this video (no speech to keep)"
    for emotions, out in ((["happy", "sad"], "two"), (["happy"], "one")):
        summary = run_batch(
            in_dir=folder, out_dir=tmp_path / out, emotions=emotions, options=UNMEASURED
        )
        assert summary.ok, summary.records
        records = by_key(summary.records)
        assert any(said in n for n in records[("still.mp4", "happy")].notes), out
        assert not any(said in n for n in records[("talk.mp4", "happy")].notes), out
    (folder / "talk.mp4").unlink()
    by_default = run_batch(in_dir=folder, out_dir=tmp_path / "default", emotions=["happy"])
    expressive = run_batch(
        in_dir=folder,
        out_dir=tmp_path / "expressive",
        emotions=["happy"],
        options=EditOptions(mouth="expressive"),
    )
    assert by_default.ok and expressive.ok
    (record,) = by_default.records
    assert not any("speech kept" in n or "speech changed" in n for n in record.notes), record
    made = [tmp_path / run / "still.happy.mp4" for run in ("default", "expressive")]
    assert _largest_difference(*made) == 0


def _largest_difference(a: Path, b: Path) -> int:
    """The largest difference of two videos' frames (levels); they have as many frames."""
    x, y = frames_of(a), frames_of(b)
    assert len(x) == len(y)
    return max(int(np.abs(f.astype(int) - g.astype(int)).max()) for f, g in zip(x, y, strict=True))


# The two-emotion case covers the one-emotion one (neutral among them): that one, 15-20 s on
# two cores, is left to `-m slow`.
@pytest.mark.parametrize(
    "emotions", [pytest.param(["neutral"], marks=pytest.mark.slow), ["neutral", "sad"]]
)
def test_a_calm_face_is_used_as_spfem_edit_uses_it(
    held_then_calm: Path,
    held_then_calm_neutral: HeldNeutral,
    tmp_path: Path,
    emotions: list[str],
) -> None:
    """`--rest` in a batch, one emotion (`edit_video`'s path) or several (one shared tracking
    pass): the output is `spfem edit --rest`'s, not the edit without it (her held brows are
    lowered); the record keeps the calm face among the options, and a re-run with the same
    calm face skips the done output while one without it must be told to overwrite."""
    import imageio.v3 as iio

    from spfem_cli.pipeline import edit_video

    from .conftest import CALM_FRAMES

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(held_then_calm, folder / "talk.mp4")
    calm = tmp_path / "calm.png"
    iio.imwrite(calm, frames_of(held_then_calm)[-1])  # her calm face: frame 145 of expr_d10
    assert CALM_FRAMES[1] - 1 == 145
    options = EditOptions(rest=str(calm), keep_speech=False)
    summary = run_batch(in_dir=folder, out_dir=tmp_path / "out", emotions=emotions, options=options)
    assert summary.ok and summary.records[0].options["rest"] == str(calm)
    # One photo: its lids are not taken as her usual ones, and the record says so.
    one_frame = "the calm face is read from one frame: where the lids usually stand"
    assert all(any(one_frame in n for n in r.notes) for r in summary.records)
    made = tmp_path / "out" / "talk.neutral.mp4"
    given = tmp_path / "given.mp4"
    edit_video(
        input_path=folder / "talk.mp4",
        emotion="neutral",
        output_path=given,
        rest=calm,
        keep_speech=False,
    )
    assert _largest_difference(made, given) <= 1
    assert _largest_difference(made, held_then_calm_neutral(None)) > 20
    again = run_batch(in_dir=folder, out_dir=tmp_path / "out", emotions=emotions, options=options)
    assert again.n_skipped == len(emotions)
    without = run_batch(
        in_dir=folder, out_dir=tmp_path / "out", emotions=emotions, options=UNMEASURED
    )
    assert not without.ok and "--overwrite" in without.records[0].reason


@pytest.mark.parametrize("emotions", [["sad"], ["sad", "happy"]])
def test_a_calm_face_file_is_read_once_for_the_whole_batch(
    held_then_calm: Path,
    tmp_path: Path,
    make_clip: MakeClip,
    monkeypatch: pytest.MonkeyPatch,
    emotions: list[str],
) -> None:
    """`--rest calm.png` is read once, when the options are checked, and every job (one
    emotion through `edit_video`, or several through one tracking pass) gets that face
    instead of reading the file again (a 720p clip as the calm face costs about 3 s)."""
    import imageio.v3 as iio

    import spfem_cli.pipeline as pipeline

    calm = tmp_path / "calm.png"
    iio.imwrite(calm, frames_of(held_then_calm)[-1])
    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
    reads: list[str] = []
    real = pipeline.read_rest_face

    def counted(rest: str | Path, *, video: str | Path | None = None, **kw: Any) -> RestFace:
        reads.append(str(rest))
        return real(rest, video=video, **kw)

    monkeypatch.setattr(pipeline, "read_rest_face", counted)
    options = EditOptions(rest=str(calm), keep_speech=False)
    summary = run_batch(in_dir=folder, out_dir=tmp_path / "out", emotions=emotions, options=options)
    assert summary.ok and len(summary.records) == 3 * len(emotions)
    assert reads == [str(calm)]


def test_a_calm_time_range_is_read_from_each_video(
    held_then_calm: Path, held_then_calm_neutral: HeldNeutral, tmp_path: Path
) -> None:
    """`--rest 1.5-1.7` in a batch reads each video's own seconds 1.5 to 1.7 (her calm face,
    here), as `spfem edit --rest 1.5-1.7` does; a video shorter than the range fails alone,
    with the reason."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(held_then_calm, folder / "talk.mp4")
    options = EditOptions(rest="1.5-1.7", keep_speech=False)
    out = tmp_path / "out"
    summary = run_batch(in_dir=folder, out_dir=out, emotions=["neutral"], options=options)
    assert summary.ok and summary.records[0].options["rest"] == "1.5-1.7"
    made = out / "talk.neutral.mp4"
    assert _largest_difference(made, held_then_calm_neutral("1.5-1.7")) <= 1
    assert _largest_difference(made, held_then_calm_neutral(None)) > 20
    late = run_batch(
        in_dir=folder,
        out_dir=tmp_path / "late",
        emotions=["sad"],
        options=EditOptions(rest="3-4", keep_speech=False),
    )
    assert not late.ok and "past the end of" in late.records[0].reason


@pytest.mark.parametrize("emotions", [["sad"], ["sad", "happy"]])
def test_the_encoding_options_reach_every_output(
    tmp_path: Path, make_clip: MakeClip, emotions: list[str]
) -> None:
    """`--crf` and `--preset` in a batch, one emotion (`edit_video`'s path) or several (one
    shared tracking pass): every output is encoded with them (x264's subpixel estimation is at
    level 8 in its slow preset, 2 in the default veryfast)."""
    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4"])
    options = EditOptions(crf=23, preset="slow")
    summary = run_batch(in_dir=folder, out_dir=tmp_path / "out", emotions=emotions, options=options)
    assert summary.ok and summary.n_done == len(emotions)
    for record in summary.records:
        assert record.options["preset"] == "slow"
        written = x264_options(tmp_path / "out" / record.output)
        assert (written["crf"], written["subme"]) == ("23.0", "8")


def test_out_dir_inside_in_dir_is_not_processed(tmp_path: Path, make_clip: MakeClip) -> None:
    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4", "sub/b.mp4"])
    out = folder / "edited"
    first = run_batch(in_dir=folder, out_dir=out, emotions=["sad"], recursive=True)
    assert first.ok and sorted(r.input for r in first.records) == ["a.mp4", "sub/b.mp4"]
    assert (out / "sub" / "b.sad.mp4").is_file()
    again = run_batch(in_dir=folder, out_dir=out, emotions=["sad", "happy"], recursive=True)
    assert sorted({r.input for r in again.records}) == ["a.mp4", "sub/b.mp4"]
    assert again.n_skipped == 2 and again.n_done == 2


# --- resume edge cases ------------------------------------------------------------------------


def test_resume_trusts_only_done_records_of_the_same_options(
    tmp_path: Path, make_clip: MakeClip
) -> None:
    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
    out = tmp_path / "out"
    run_batch(in_dir=folder, out_dir=out, emotions=["happy"])
    report = out / REPORT_NAME
    lines = report.read_text().splitlines()
    # b's record is lost (a crash after its rename), c's output replaced; a torn last line.
    report.write_text(
        "\n".join(line for line in lines if '"b.mp4"' not in line) + '\n{"run": "x", "inp'
    )
    (out / "c.happy.mp4").write_bytes(b"not what was recorded")
    summary = run_batch(in_dir=folder, out_dir=out, emotions=["happy"])
    status = {r.input: r.status for r in summary.records}
    assert status == {"a.mp4": "skipped", "b.mp4": "done", "c.mp4": "done"}
    assert probe(out / "c.happy.mp4").n_frames == probe(folder / "c.mp4").n_frames

    # Other options: the finished output is not silently replaced, nor passed off as done.
    other = run_batch(
        in_dir=folder, out_dir=out, emotions=["happy"], options=EditOptions(intensity=0.5)
    )
    assert other.n_failed == 3 and all("--overwrite" in r.reason for r in other.records)


def test_a_second_batch_into_the_same_folder_is_refused(
    tmp_path: Path, make_clip: MakeClip
) -> None:
    from spfem_cli.batch import ReportWriter

    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4"])
    out = tmp_path / "out"
    out.mkdir()
    holder = ReportWriter(out / REPORT_NAME)
    try:
        with pytest.raises(SpfemError, match="another spfem batch"):
            run_batch(in_dir=folder, out_dir=out, emotions=["happy"])
    finally:
        holder.close()


# --- failures during the run -----------------------------------------------------------------


def test_disk_full_stops_the_batch_and_keeps_finished_outputs(
    tmp_path: Path, make_clip: MakeClip, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    from spfem_cli.media import ffmpeg_args

    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
    out = tmp_path / "out"
    real = ffmpeg_args.mux_args
    calls = {"n": 0}

    def full_after_first(**kwargs: Any) -> list[str]:
        # The disk fills up after the first output: ffmpeg itself gets ENOSPC from /dev/full.
        calls["n"] += 1
        args = real(**kwargs)
        return args if calls["n"] == 1 else [*args[:-1], "/dev/full"]

    monkeypatch.setattr(ffmpeg_args, "mux_args", full_after_first)
    summary = run_batch(in_dir=folder, out_dir=out, emotions=["happy"])
    status = {r.input: (r.status, r.reason) for r in summary.records}
    assert status["a.mp4"] == ("done", "")
    assert status["b.mp4"][0] == "failed" and os.strerror(errno.ENOSPC) in status["b.mp4"][1]
    assert "c.mp4" not in status  # not attempted: the disk is full
    assert summary.stopped == "the disk is full" and summary.not_attempted == 1
    assert not summary.ok
    assert probe(out / "a.happy.mp4").n_frames == probe(folder / "a.mp4").n_frames
    assert not (out / "b.happy.mp4").exists() and hidden_files(out) == []

    monkeypatch.setattr(ffmpeg_args, "mux_args", real)
    resumed = run_batch(in_dir=folder, out_dir=out, emotions=["happy"])
    assert {r.input: r.status for r in resumed.records} == {
        "a.mp4": "skipped", "b.mp4": "done", "c.mp4": "done",
    }  # fmt: skip


def test_ctrl_c_keeps_finished_outputs_and_their_records(
    tmp_path: Path, make_clip: MakeClip, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spfem_cli import pipeline

    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
    out = tmp_path / "out"
    real = pipeline.edit_video
    calls = {"n": 0}

    def interrupted_second(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(**kwargs)

    monkeypatch.setattr(pipeline, "edit_video", interrupted_second)
    with pytest.raises(BatchInterrupted) as caught:
        run_batch(in_dir=folder, out_dir=out, emotions=["happy"])
    summary: BatchSummary = caught.value.summary
    assert summary.stopped == "interrupted" and summary.n_done == 1
    assert [r.input for r in read_report(out / REPORT_NAME)] == ["a.mp4"]
    assert (out / "a.happy.mp4").is_file() and not (out / "b.happy.mp4").exists()
    assert hidden_files(out) == []


@pytest.mark.parametrize("after_rename", [True, False])
def test_ctrl_c_leaves_no_output_without_its_record(
    tmp_path: Path, make_clip: MakeClip, monkeypatch: pytest.MonkeyPatch, after_rename: bool
) -> None:
    """Ctrl-C that lands once b's output is in place but before its record is written removes
    it; a file the user had under that name before the run is never touched."""
    from spfem_cli import pipeline

    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
    out = tmp_path / "out"
    out.mkdir()
    if not after_rename:
        (out / "b.happy.mp4").write_bytes(b"the user's own file")
    real = pipeline.edit_video

    def interrupted_at_b(**kwargs: Any) -> Any:
        if Path(kwargs["input_path"]).name == "b.mp4":
            if after_rename:
                real(**kwargs)
                assert Path(kwargs["output_path"]).is_file()
            raise KeyboardInterrupt
        return real(**kwargs)

    monkeypatch.setattr(pipeline, "edit_video", interrupted_at_b)
    with pytest.raises(BatchInterrupted):
        run_batch(in_dir=folder, out_dir=out, emotions=["happy"])
    assert [r.input for r in read_report(out / REPORT_NAME)] == ["a.mp4"]
    if after_rename:
        assert sorted(p.name for p in out.glob("*.mp4")) == ["a.happy.mp4"]
    else:
        assert (out / "b.happy.mp4").read_bytes() == b"the user's own file"
    assert hidden_files(out) == []


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="permission bits do not bind root (the broken link in the mixed folder stands in)",
)
def test_unreadable_file_is_recorded(tmp_path: Path, make_clip: MakeClip) -> None:
    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4", "locked.mp4"])
    (folder / "locked.mp4").chmod(0)
    try:
        summary = run_batch(in_dir=folder, out_dir=tmp_path / "out", emotions=["happy"])
    finally:
        (folder / "locked.mp4").chmod(0o644)
    status = {r.input: r for r in summary.records}
    assert status["a.mp4"].status == "done"
    assert status["locked.mp4"].status == "failed" and "locked.mp4" in status["locked.mp4"].reason


def test_ctrl_c_with_workers_stops_cleanly(tmp_path: Path, make_clip: MakeClip) -> None:
    """A real SIGINT to the whole process group, as a terminal sends on Ctrl-C."""
    import signal
    import subprocess
    import sys

    # Enough clips that the run is still going when the signal lands.
    names = [f"c{i}.mp4" for i in range(12)]
    folder = tmp_path / "in"
    folder.mkdir()
    for name in names:
        make_clip(f"in/{name}", size=(320, 180), duration=3.0)
    out = tmp_path / "out"
    report = out / REPORT_NAME
    # -X faulthandler: should it hang, SIGABRT makes it print where every thread is.
    cmd = [sys.executable, "-X", "faulthandler", "-m", "spfem_cli", "batch", str(folder), str(out)]
    proc = subprocess.Popen(
        [*cmd, "-e", "happy", "--workers", "2", "--quiet"],
        start_new_session=True,
        # As a terminal's foreground job has it. Run in the background of a shell without job
        # control (`cmd &` in a script), the tests inherit SIGINT ignored, Python keeps it so,
        # and the batch ran to the end: all records written, exit 0.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (report.is_file() and report.read_text().endswith("\n")):
            assert proc.poll() is None and time.monotonic() < deadline, "no record came"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # To the workers too, so that their stacks show as well.
            os.killpg(proc.pid, signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"still running 60 s after Ctrl-C; where it was:\n{err[-30000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    records = read_report(report)
    assert proc.returncode == 130, f"{len(records)} of {len(names)} recorded; stderr: {err!r}"
    assert "interrupted" in err and "resume" in err
    assert records and all(r.status == "done" for r in records)
    assert len(records) < len(names)
    for record in records:
        assert probe(out / record.output).n_frames == 75
    assert hidden_files(out) == []
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(r.output for r in records)


def test_sigterm_stops_a_batch_and_its_workers_cleanly(tmp_path: Path, clips_dir: Path) -> None:
    """SIGTERM to `spfem batch` alone (`kill`, a scheduler; no terminal sends it to the
    workers too) stops it as Ctrl-C does: its workers are interrupted at once and clean up
    (their jobs' working folders gone from the temporary directory, no hidden file in
    OUT_DIR), and it exits 130 within seconds, where its workers were ended without
    clean-up after the 15 s grace."""
    import signal
    import subprocess
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    # Real speech: each job takes longer than the grace (with its speech measured, one
    # thread a worker), so that only interrupting the workers ends them in time.
    for i in range(4):
        shutil.copy(clips_dir / "speech_man_256x256.mp4", folder / f"c{i}.mp4")
    out, temp = tmp_path / "out", tmp_path / "temp"
    temp.mkdir()
    cmd = [sys.executable, "-m", "spfem_cli", "batch", str(folder), str(out), "-e", "happy"]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "--quiet"],
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not list(temp.glob("spfem-*")):
            assert proc.poll() is None and time.monotonic() < deadline, "no job started"
            time.sleep(0.02)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and took < 10, (took, err)
    assert list(temp.glob("spfem-*")) == []
    assert hidden_files(out) == []


# --- workers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_folder(speaker: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A face clip, a clip without a face, a text file named .mp4, and a subfolder."""
    folder = tmp_path_factory.mktemp("small") / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(speaker, folder / "talk.mp4")
    shutil.copy(speaker, folder / "sub" / "talk2.mp4")
    run_ffmpeg_checked(
        "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=0.5", "-c:v", "libx264",
        "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(folder / "pattern.mp4"),
    )  # fmt: skip
    (folder / "notes.mp4").write_text("not a video\n")
    return folder


@pytest.fixture(scope="module")
def serial_records(small_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    out = tmp_path_factory.mktemp("serial") / "out"
    summary = run_batch(
        in_dir=small_folder,
        out_dir=out,
        emotions=["happy", "sad"],
        recursive=True,
        options=UNMEASURED,
    )
    assert summary.n_done == 6 and summary.n_failed == 2
    return summary.records


def test_two_workers_give_the_same_results(
    small_folder: Path, serial_records: list[Record], tmp_path: Path
) -> None:
    summary = run_batch(
        in_dir=small_folder,
        out_dir=tmp_path / "out",
        emotions=["happy", "sad"],
        recursive=True,
        workers=2,
        options=UNMEASURED,
    )
    assert comparable(summary.records) == comparable(serial_records)
    assert comparable(read_report(tmp_path / "out" / REPORT_NAME)) == comparable(serial_records)


def crash_on_crash_mp4(*, job: Job, options: EditOptions) -> list[Outcome]:
    """A job function whose worker process dies on inputs named crash*."""
    if Path(job.rel).name.startswith("crash"):
        os._exit(3)
    return process_job(job=job, options=options)


def hang_after_starting_an_output(*, job: Job, options: EditOptions) -> list[Outcome]:
    """A job function that starts writing its first output, then never returns, not even on
    Ctrl-C."""
    with atomic_output(job.targets[0].output) as temp:
        temp.write_bytes(b"half an output")
        while True:
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(60)


def test_ctrl_c_ends_a_job_that_does_not_return(
    tmp_path: Path, make_clip: MakeClip, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After Ctrl-C, jobs in flight that do not return within STOP_GRACE_S have their
    worker processes ended, and what they left in OUT_DIR (a temporary file) is removed."""
    import multiprocessing
    import signal
    import threading

    import spfem_cli.batch as batch

    monkeypatch.setattr(batch, "STOP_GRACE_S", 2.0)
    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
    out = tmp_path / "out"

    def interrupt_once_started() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(out.glob(".*.spfem-*"))) < 2:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_started, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(BatchInterrupted):
        run_batch(
            in_dir=folder,
            out_dir=out,
            emotions=["happy"],
            workers=2,
            _job_fn=hang_after_starting_an_output,
        )
    assert time.monotonic() - t0 < 60
    assert [p.name for p in out.iterdir()] == [REPORT_NAME]
    assert multiprocessing.active_children() == []


def test_a_dying_worker_fails_only_the_jobs_in_flight(tmp_path: Path, make_clip: MakeClip) -> None:
    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4", "crash.mp4", "d.mp4", "e.mp4"])
    summary = run_batch(
        in_dir=folder,
        out_dir=tmp_path / "out",
        emotions=["happy"],
        workers=2,
        _job_fn=crash_on_crash_mp4,
    )
    status = {r.input: r for r in summary.records}
    assert set(status) == {"a.mp4", "crash.mp4", "d.mp4", "e.mp4"}
    died = [r.input for r in summary.records if "worker process died" in r.reason]
    assert status["crash.mp4"].status == "failed" and "crash.mp4" in died
    # Only the jobs in flight with it (at most one per worker) fail; the rest are done.
    assert len(died) <= 2
    assert all(r.status == "done" for r in summary.records if r.input not in died)
    # Nothing is lost: a re-run redoes what the crash took down.
    again = run_batch(in_dir=folder, out_dir=tmp_path / "out", emotions=["happy"], workers=2)
    assert {r.input: r.status for r in again.records if r.status == "done"}.keys() == set(died)


def test_only_one_worker_takes_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import queue

    import torch

    slots: queue.Queue[str] = queue.Queue()
    slots.put("gpu")
    threads = torch.get_num_threads()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    try:
        _init_worker(slots)
        assert "CUDA_VISIBLE_DEVICES" not in os.environ and torch.get_num_threads() == 1
        _init_worker(slots)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    finally:
        torch.set_num_threads(threads)


# --- Ray ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """A local Ray instance with 2 CPUs, no dashboard and a small object store."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'spfem[ray]')")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024 * 1024,
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


class _InterruptedRay:
    """Stands in for Ray: jobs "a" and "b" are submitted; while the driver waits, a's task
    finishes and b's task puts its output in place, then Ctrl-C comes and b is cancelled."""

    def __init__(self, outputs: dict[str, Path]) -> None:
        self.outputs = outputs
        self.cancelled: list[str] = []

    def remote(self, fn: Any) -> Any:
        class Remote:
            def options(self, **_: Any) -> Any:
                return self

            def remote(self, *, job: Job, options: EditOptions) -> str:
                return job.rel  # the task's reference

        return Remote()

    def wait(self, refs: list[str], num_returns: int) -> Any:
        for path in self.outputs.values():
            path.write_bytes(b"a whole output")
        raise KeyboardInterrupt

    def cancel(self, ref: str) -> None:
        self.cancelled.append(ref)

    def get(self, ref: str) -> list[Outcome]:
        if ref in self.cancelled and ref == "b":
            raise RuntimeError("task cancelled")
        return [Outcome(emotion="happy", output=self.outputs[ref], status="done", frames=1)]


def test_ray_ctrl_c_records_finished_tasks_and_removes_unrecorded_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    outputs = {rel: out / f"{rel}.happy.mp4" for rel in ("a", "b")}
    jobs = [
        Job(input=tmp_path / f"{rel}.mp4", rel=rel, targets=(Target("happy", "happy", path),))
        for rel, path in outputs.items()
    ]
    ray = _InterruptedRay(outputs)
    writer = ReportWriter(out / REPORT_NAME)
    try:
        driver = _Driver(writer=writer, run="r", options=EditOptions(), out_dir=out)
        with pytest.raises(KeyboardInterrupt):
            _run_ray(jobs, ray=ray, options=EditOptions(), workers=2, driver=driver, fn=print)
    finally:
        writer.close()
    assert sorted(ray.cancelled) == ["a", "b"]
    assert [(r.input, r.status) for r in read_report(out / REPORT_NAME)] == [("a", "done")]
    assert sorted(p.name for p in out.glob("*.mp4")) == ["a.happy.mp4"]


def test_ray_executor_gives_the_same_report_and_resumes(
    local_ray: Any, small_folder: Path, serial_records: list[Record], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    kwargs: dict[str, Any] = {
        "in_dir": small_folder,
        "out_dir": out,
        "emotions": ["happy", "sad"],
        "recursive": True,
        "executor": "ray",
        "options": UNMEASURED,
    }
    summary = run_batch(**kwargs)
    assert comparable(summary.records) == comparable(serial_records)
    assert comparable(read_report(out / REPORT_NAME)) == comparable(serial_records)
    again = run_batch(**kwargs)
    assert again.n_skipped == 6 and again.n_failed == 2 and again.n_done == 0
    assert local_ray.is_initialized()  # an instance the caller started is left running


# --- the command line ------------------------------------------------------------------------


def test_cli_batch_end_to_end(tmp_path: Path, make_clip: MakeClip) -> None:
    folder = synthetic_folder(make_clip, tmp_path, ["a.mp4", "sub/b.mov"])
    (folder / "bad.mp4").write_text("nope")
    out = tmp_path / "out"
    args = ["batch", str(folder), str(out), "-e", "happy", "-e", "sad", "--recursive"]
    result = runner.invoke(cli.app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "4 done, 0 skipped, 2 failed" in result.output
    assert "bad.mp4 [happy]" in result.output and "not a video" in result.output
    assert (out / "sub" / "b.sad.mov").is_file() and (out / "a.happy.mp4").is_file()
    lines = (out / REPORT_NAME).read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["run"] for line in lines)

    quiet = runner.invoke(cli.app, [*args, "--quiet"], env={"COLUMNS": "200"})
    assert quiet.exit_code == 1 and quiet.output == ""
    (folder / "bad.mp4").unlink()
    clean = runner.invoke(cli.app, args, env={"COLUMNS": "200"})
    assert clean.exit_code == 0, clean.output
    assert "0 done, 4 skipped, 0 failed" in clean.output

    refused = runner.invoke(cli.app, ["batch", str(folder), str(folder), "-e", "happy"])
    assert refused.exit_code == 2 and "spfem: error: OUT_DIR is IN_DIR" in refused.output


def test_cli_batch_passes_every_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fake_run_batch(**kwargs: Any) -> BatchSummary:
        seen.update(kwargs)
        return BatchSummary(
            in_dir=tmp_path, out_dir=tmp_path, report=tmp_path / REPORT_NAME, records=[], seconds=1
        )

    monkeypatch.setattr("spfem_cli.batch.run_batch", fake_run_batch)
    result = runner.invoke(
        cli.app,
        [
            "batch", "in", "out", "-e", "happy", "--emotion", "sad", "--intensity", "0.5",
            "--device", "cpu", "--mouth", "strict", "--start", "1", "--end", "2", "--pattern",
            "*.mov", "--recursive", "--workers", "3", "--executor", "ray", "--ray-address",
            "head:6379", "--overwrite", "--quiet", "--rest", "calm.png", "--side", "left",
            "--crf", "20", "--preset", "slow", "--face", "0.7,0.4",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen["in_dir"] == Path("in") and seen["out_dir"] == Path("out")
    assert seen["emotions"] == ["happy", "sad"] and seen["pattern"] == "*.mov"
    assert seen["recursive"] and seen["overwrite"] and seen["workers"] == 3
    assert seen["executor"] == "ray" and seen["ray_address"] == "head:6379"
    assert seen["options"] == EditOptions(
        intensity=0.5,
        device="cpu",
        mouth="strict",
        start=1.0,
        end=2.0,
        rest=str(Path("calm.png").resolve()),
        side="left",
        face="0.7,0.4",
        crf=20,
        preset="slow",
    )
    chosen = seen["options"].result_options()
    assert (chosen["side"], chosen["crf"], chosen["preset"]) == ("left", 20, "slow")
    assert chosen["face"] == "0.7,0.4"
    # Records of older runs still match.
    assert not {"side", "crf", "preset", "face"} & set(EditOptions().result_options())


def test_a_calm_time_range_reaches_the_jobs_as_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A calm face file goes to the jobs by its absolute path (they may run elsewhere); a
    time range as typed, to be read from each video; a file named like a range is a file."""
    monkeypatch.chdir(tmp_path)
    assert cli._batch_rest(Path("0-2.5")) == "0-2.5"
    assert cli._batch_rest(Path("calm.png")) == str(tmp_path / "calm.png")
    (tmp_path / "1-2").write_bytes(b"")
    assert cli._batch_rest(Path("1-2")) == str(tmp_path / "1-2")
