"""`spfem edit` on awkward and bad input, through the real command line.

Clips with a face are cut from the shared real clips (skipped without ../shared/clips);
clips without one are synthetic.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spfem_cli import cli
from spfem_cli.errors import SpfemError
from spfem_cli.evaluate import video_landmarks
from spfem_cli.generator.generator import FaceGenerator
from spfem_cli.generator.warp import face_box
from spfem_cli.media import FrameReader, FrameWriter, audio_packet_checksums, probe
from spfem_cli.pipeline import edit_video

from .conftest import (
    CHAPTERS,
    SUBTITLE_CUES,
    add_subtitles_and_chapters,
    combing,
    file_metadata,
    frames_of,
    run_ffmpeg_checked,
    subtitle_cues,
    x264_options,
)

runner = CliRunner()
# A quick, nearly lossless encode for the clips the tests derive.
FAST_X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-crf", "16")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spfem(*args: str) -> tuple[int, str]:
    # Unmeasured: these are the media's and the errors' tests; the speech's are
    # tests/test_speech_check.py's.
    result = runner.invoke(
        cli.app, ["edit", *args, "--quiet", "--no-keep-speech"], env={"COLUMNS": "300"}
    )
    return result.exit_code, result.output


def assert_clean_failure(code: int, output: str, *, expect: str) -> None:
    assert code != 0
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("spfem: error:") and expect in lines[0], lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "spfem" in p.name)


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of a real speaker (256x256, 25 fps, AAC speech)."""
    src = Path(__file__).resolve().parents[2] / "shared" / "clips" / "speech_man_256x256.mp4"
    if not src.is_file():
        pytest.skip("../shared/clips is absent")
    out = tmp_path_factory.mktemp("clips") / "speaker.mp4"
    run_ffmpeg_checked(
        "-i",
        str(src),
        "-t",
        "2",
        *FAST_X264,
        "-c:a",
        "copy",
        str(out),
    )
    return out


def derived(face_clip: Path, tmp_path: Path, name: str, *args: str) -> Path:
    out = tmp_path / name
    run_ffmpeg_checked("-i", str(face_clip), *args, str(out))
    return out


# --- bad input -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    code, out = spfem(str(tmp_path / "nope.mp4"), "-e", "happy")
    assert_clean_failure(code, out, expect="nope.mp4")


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    code, out = spfem(str(empty), "-e", "happy")
    assert_clean_failure(code, out, expect="empty")
    assert leftovers(tmp_path) == []


def test_not_a_video(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are not frames\n" * 100)
    code, out = spfem(str(fake), "-e", "happy")
    assert_clean_failure(code, out, expect="not a video")


def test_audio_only(make_audio_only: Callable[[str], Path]) -> None:
    code, out = spfem(str(make_audio_only("tone.m4a")), "-e", "happy")
    assert_clean_failure(code, out, expect="no video stream")


@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_video(face_clip: Path, tmp_path: Path, faststart: bool) -> None:
    full = derived(
        face_clip,
        tmp_path,
        "full.mp4",
        "-c",
        "copy",
        *(["-movflags", "+faststart"] if faststart else []),
    )
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    code, out = spfem(str(cut), "-e", "happy", "-o", str(tmp_path / "out.mp4"))
    assert_clean_failure(code, out, expect="cut.mp4")
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_output_equal_to_input(face_clip: Path, tmp_path: Path) -> None:
    before = sha256(face_clip)
    code, out = spfem(str(face_clip), "-e", "happy", "-o", str(face_clip), "--overwrite")
    assert_clean_failure(code, out, expect="input")
    link = tmp_path / "link.mp4"
    link.symlink_to(face_clip)
    code, out = spfem(str(face_clip), "-e", "happy", "-o", str(link), "--overwrite")
    assert_clean_failure(code, out, expect="input")
    assert sha256(face_clip) == before


def test_output_folder_missing_or_not_a_folder(face_clip: Path, tmp_path: Path) -> None:
    code, out = spfem(str(face_clip), "-e", "happy", "-o", str(tmp_path / "no" / "o.mp4"))
    assert_clean_failure(code, out, expect="does not exist")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out = spfem(str(face_clip), "-e", "happy", "-o", str(blocker / "o.mp4"))
    assert_clean_failure(code, out, expect="file")


def test_output_folder_not_writable(face_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, for whom permission bits do not bind: /proc refuses everyone.
    code, out = spfem(str(face_clip), "-e", "happy", "-o", "/proc/o.mp4")
    assert_clean_failure(code, out, expect="/proc")


def test_existing_output_needs_overwrite(face_clip: Path, tmp_path: Path) -> None:
    target = tmp_path / "o.mp4"
    target.write_bytes(b"keep me")
    code, out = spfem(str(face_clip), "-e", "happy", "-o", str(target))
    assert_clean_failure(code, out, expect="--overwrite")
    assert target.read_bytes() == b"keep me"


def test_bad_options(face_clip: Path, tmp_path: Path) -> None:
    o = str(tmp_path / "o.mp4")
    for args, expect in [
        (["-e", "ecstatic"], "ecstatic"),
        (["-e", "happy", "--intensity", "2"], "intensity"),
        (["-e", "happy", "--mouth", "loose"], "mouth"),
        (["-e", "contempt", "--side", "up"], "unknown side 'up'"),
        (["-e", "happy", "--face", "top"], "--face must be largest, left, right or X,Y"),
        (["-e", "happy", "--face", "2,0.5"], "got '2,0.5'"),
        (["-e", "happy", "--device", "tpu"], "device"),
        (["-e", "happy", "--crf", "52"], "--crf must be between 0 and 51, got 52"),
        (["-e", "happy", "--preset", "slowest"], "unknown preset 'slowest'; choose one of: "),
        (["-e", "happy", "--start", "1.5", "--end", "1"], "--end"),
        (["-e", "happy", "--start", "99"], "--start"),
        (["-e", "5-9:sad,12-:fear"], "the timeline (5-9, 12-) starts past the end of the video"),
    ]:
        code, out = spfem(str(face_clip), *args, "-o", o)
        assert_clean_failure(code, out, expect=expect)
    assert not Path(o).exists()


def test_a_model_without_a_mirror_map_keeps_the_sneer_on_the_right(
    face_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An expression model without a mirror map (one a user built) plays the one-sided units
    on the right: "auto" picks the right whatever the head's turn, and side "left" is
    refused before the tracking pass."""
    from spfem_cli.generator.checkpoint import load_checkpoint, save_checkpoint
    from spfem_cli.generator.expression import ExpressionModel
    from spfem_cli.pipeline import analyse_video
    from spfem_cli.progress import SilentReporter

    shipped = load_checkpoint("facs-v2")
    tensors = {k: v for k, v in shipped.tensors.items() if k != "mirror"}
    model_path = tmp_path / "nomirror.safetensors"
    save_checkpoint(model_path, tensors=tensors, config=shipped.config)
    model = ExpressionModel.load(model_path)
    assert model.left_basis is None
    o = tmp_path / "o.mp4"
    with pytest.raises(SpfemError, match="--side left needs an expression model with a mirror"):
        edit_video(
            input_path=face_clip, output_path=o, emotion="contempt", model=model_path, side="left"
        )
    assert not o.exists()
    work = tmp_path / "work"
    work.mkdir()
    # As if the head were turned so that its left side is nearer the camera.
    monkeypatch.setattr("spfem_cli.pipeline.near_side", lambda turn: "left")
    analysis = analyse_video(probe(face_clip), model=model, workdir=work, reporter=SilentReporter())
    assert analysis.side == "right"
    assert analysis.side_reason == "the expression model has no mirror map"


def test_bad_rest_face(make_clip: Callable[..., Path], tmp_path: Path) -> None:
    """`--rest` must name a photo or clip with a face; it is read before the tracking pass."""
    import imageio.v3 as iio

    clip = make_clip("in.mp4")
    grey = tmp_path / "wall.png"
    iio.imwrite(grey, np.full((120, 160, 3), 128, np.uint8))
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture\n" * 50)
    o = tmp_path / "o.mp4"
    for rest, expect in [
        (tmp_path / "nope.png", "does not exist"),
        (grey, "no face found in the rest face"),
        (notes, "rest face: "),
        ("3-2", "ends before it starts"),
        ("50-60", "past the end of"),
    ]:
        code, out = spfem(str(clip), "-e", "neutral", "--rest", str(rest), "-o", str(o))
        assert_clean_failure(code, out, expect=expect)
    assert not o.exists() and leftovers(tmp_path) == []


# --- failures during the run leave nothing behind ---------------------------------------------


@pytest.mark.parametrize("error", [KeyboardInterrupt, SpfemError])
def test_interrupted_run_leaves_nothing(
    face_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    real = FaceGenerator.edit_frame
    calls = {"n": 0}

    def flaky(self: FaceGenerator, frame: np.ndarray, **kw: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 20:
            raise error("stop") if error is SpfemError else error()
        return real(self, frame, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(FaceGenerator, "edit_frame", flaky)
    before = sha256(face_clip)
    target = tmp_path / "o.mp4"
    code, out = spfem(str(face_clip), "-e", "happy", "-o", str(target))
    assert code == (130 if error is KeyboardInterrupt else 2)
    assert not target.exists() and leftovers(tmp_path) == []
    assert sha256(face_clip) == before


def test_a_terminated_run_cleans_up_as_an_interrupted_one(clips_dir: Path, tmp_path: Path) -> None:
    """SIGTERM (`kill`, `timeout`, a scheduler) stops `spfem edit` as Ctrl-C does: exit 130,
    "interrupted", no output, and its working folder gone from the temporary directory,
    where Python's own SIGTERM ended the process at once and left it there (the landmarks'
    files and the speech check's tries)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    temp, out = tmp_path / "temp", tmp_path / "out"
    temp.mkdir()
    out.mkdir()
    clip = clips_dir / "speech_man_256x256.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spfem_cli", "edit", str(clip), "-e", "happy", "-q",
         "-o", str(out / "edit.mp4")],
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        # Its working folder appears as the tracking pass starts: the run is under way.
        while not list(temp.glob("spfem-*")):
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "spfem: interrupted: nothing was written" in err and "Traceback" not in err
    assert list(out.iterdir()) == [] and list(temp.iterdir()) == []


# --- awkward but valid input ---------------------------------------------------------------


def frames_of_stored(path: Path) -> list[np.ndarray]:
    """The frames as stored: an interlaced video's two fields woven, not deinterlaced."""
    with FrameReader(dataclasses.replace(probe(path), interlaced=False)) as reader:
        return list(reader)


def test_crf_and_preset_reach_the_encoder(make_clip: Callable[..., Path], tmp_path: Path) -> None:
    """By default an edit is encoded at crf 18 with x264's veryfast preset (its subpixel
    estimation at level 2; medium's is 7); `--crf` and `--preset` choose others."""
    clip = make_clip("pattern.mp4", size=(160, 120), duration=0.4)
    made = {}
    for name, args in (("default", []), ("chosen", ["--crf", "23", "--preset", "medium"])):
        made[name] = tmp_path / f"{name}.mp4"
        code, out = spfem(str(clip), "-e", "sad", "-o", str(made[name]), *args)
        assert code == 0, out
    default, chosen = x264_options(made["default"]), x264_options(made["chosen"])
    assert (default["crf"], default["subme"]) == ("18.0", "2")
    assert (chosen["crf"], chosen["subme"]) == ("23.0", "7")


def test_video_without_faces_passes_through(make_clip: Callable[..., Path], tmp_path: Path) -> None:
    clip = make_clip("pattern.mp4", size=(160, 120), duration=1.0, audio=True)
    target = tmp_path / "o.mp4"
    result = runner.invoke(
        cli.app, ["edit", str(clip), "-e", "happy", "-o", str(target)], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 0, result.output
    assert "no face was found" in result.output
    # Unchanged frames: the output is what a plain re-encode with the same settings gives.
    plain = tmp_path / "plain.mp4"
    info = probe(clip)
    with FrameWriter(plain, width=info.width, height=info.height, fps=info.fps) as writer:
        for frame in frames_of(clip):
            writer.write(frame)
    a, b = frames_of(plain), frames_of(target)
    assert len(a) == len(b) == info.n_frames
    worst = max(np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(a, b, strict=True))
    assert worst < 0.1
    assert audio_packet_checksums(target) == audio_packet_checksums(clip)


def test_an_output_folder_takes_the_edit_under_its_default_name(
    make_clip: Callable[..., Path], tmp_path: Path
) -> None:
    """`-o FOLDER` writes FOLDER/INPUT.EMOTION.mp4 (it was refused as a name without a video
    suffix); an edit already there is kept unless --overwrite, and a folder that does not
    exist is still a file name to refuse."""
    clip = make_clip("talk.mov", size=(96, 64), duration=0.3)
    edits = tmp_path / "edits"
    edits.mkdir()
    code, output = spfem(str(clip), "-e", "happy:0.5+sad:0.5", "-o", str(edits), "-q")
    assert code == 0, output
    assert [p.name for p in edits.iterdir()] == ["talk.happy0_5+sad0_5.mov"]
    code, output = spfem(str(clip), "-e", "happy:0.5+sad:0.5", "-o", str(edits), "-q")
    assert code == 2 and "exists; use --overwrite" in output
    code, output = spfem(str(clip), "-e", "sad", "-o", str(tmp_path / "nofolder"), "-q")
    assert code == 2 and "output must end in .mp4" in output


def test_some_frames_without_a_face(face_clip: Path, tmp_path: Path) -> None:
    clip = derived(
        face_clip,
        tmp_path,
        "half.mp4",
        "-vf",
        "drawbox=enable='gte(t,1)':color=black:t=fill",
        *FAST_X264,
        "-c:a",
        "copy",
    )
    report = edit_video(
        keep_speech=False, input_path=clip, emotion="happy", output_path=tmp_path / "o.mp4"
    )
    assert 20 <= report.n_without_face <= 30
    assert any("have no face and pass through unchanged" in n for n in report.notes)
    a, b = frames_of(clip), frames_of(report.output)
    assert np.abs(a[-1].astype(int) - b[-1].astype(int)).max() <= 2


def test_several_faces_edits_the_largest(face_clip: Path, tmp_path: Path) -> None:
    clip = derived(
        face_clip,
        tmp_path,
        "two.mp4",
        "-filter_complex",
        "[0:v]split[a][b];[b]scale=128:128,pad=128:256:0:64[s];[a][s]hstack",
        *FAST_X264,
    )
    report = edit_video(
        keep_speech=False, input_path=clip, emotion="surprised", output_path=tmp_path / "o.mp4"
    )
    assert report.max_faces >= 2
    assert any("largest" in n for n in report.notes)
    assert not any("glasses" in n for n in report.notes)  # the portrait wears none
    a, b = frames_of(clip)[25], frames_of(report.output)[25]
    # Count pixels changed beyond codec noise: many on the big face, hardly any on the small.
    changed = np.abs(a.astype(int) - b.astype(int)).max(axis=-1) > 20
    assert changed[:, :256].sum() > 200
    assert changed[:, 256:].sum() < 0.05 * changed[:, :256].sum()


@pytest.mark.parametrize(
    ("name", "args", "pix_fmt"),
    [
        ("odd.mkv", ["-vf", "scale=721:405", "-c:v", "mpeg4", "-q:v", "2"], "yuv444p"),
        (
            "ten.mp4",
            ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le"],
            "yuv420p10le",
        ),
        ("full.mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p"], "yuv444p"),
    ],
)
def test_odd_sizes_and_pixel_formats(
    face_clip: Path, tmp_path: Path, name: str, args: list[str], pix_fmt: str
) -> None:
    clip = derived(face_clip, tmp_path, name, *args, "-an")
    report = edit_video(
        keep_speech=False, input_path=clip, emotion="happy", output_path=tmp_path / f"o.{name}"
    )
    a, b = probe(clip), probe(report.output)
    assert (b.width, b.height, b.n_frames) == (a.width, a.height, a.n_frames)
    assert b.pix_fmt == pix_fmt
    assert report.n_edited >= 0.9 * report.n_frames


def test_rotated_phone_video(
    face_clip: Path, tmp_path: Path, make_rotated: Callable[[Path, int], Path]
) -> None:
    upright = derived(
        face_clip,
        tmp_path,
        "wide.mp4",
        "-vf",
        "pad=320:256:32:0",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "copy",
    )
    # Stored sideways with a rotation tag, as phones record: displayed 256x320.
    sideways = derived(
        upright,
        tmp_path,
        "side.mp4",
        "-vf",
        "transpose=2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "copy",
    )
    phone = make_rotated(sideways, 270)
    info = probe(phone)
    assert info.rotation in (90, 270) and (info.width, info.height) == (320, 256)
    report = edit_video(input_path=phone, emotion="happy", output_path=tmp_path / "o.mp4")
    out = probe(report.output)
    assert (out.width, out.height) == (320, 256) and out.n_frames == info.n_frames
    assert report.n_edited >= 0.9 * report.n_frames


def test_anamorphic_video_is_edited_in_square_pixels(face_clip: Path, tmp_path: Path) -> None:
    """Stored at half its width with pixels twice as wide as tall (as DV and HDV store
    video): the face is tracked and edited at its true shape, and written in square pixels
    at the size it displays at."""
    squeezed = derived(face_clip, tmp_path, "anamorphic.mp4", "-vf", "scale=128:256,setsar=2")
    info = probe(squeezed)
    assert (info.width, info.height, info.sar) == (256, 256, 2)
    report = edit_video(input_path=squeezed, emotion="happy", output_path=tmp_path / "o.mp4")
    out = probe(report.output)
    assert (out.width, out.height, out.sar, out.n_frames) == (256, 256, 1, info.n_frames)
    assert report.n_edited >= 0.9 * report.n_frames
    # Where and how much the edit changed the face matches the same edit of the clip at full
    # width: the mean change of each pixel over the clip, against the input's decoded frames.
    square = edit_video(input_path=face_clip, emotion="happy", output_path=tmp_path / "s.mp4")

    def change(edited: Path, source: Path) -> np.ndarray:
        pairs = zip(frames_of(edited), frames_of(source), strict=True)
        return np.mean([np.abs(a.astype(float) - b).mean(axis=-1) for a, b in pairs], axis=0)

    ours, full_width = change(report.output, squeezed), change(square.output, face_clip)
    # Measured 0.95 (0.59 against the full-width change moved 8 pixels to the side).
    assert np.corrcoef(ours.ravel(), full_width.ravel())[0, 1] > 0.85
    assert 0.75 < ours.mean() / full_width.mean() < 1.25


def test_interlaced_video_is_edited_as_whole_frames(face_clip: Path, tmp_path: Path) -> None:
    """Woven from 50 fields a second, top field first, as a camcorder records: the edit
    works on whole frames and writes progressive video; warped as stored, every other row
    came from another moment and the edit combed."""
    woven = derived(
        face_clip, tmp_path, "woven.mp4",
        "-vf", "fps=50,tinterlace=interleave_top,setfield=tff",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12",
        "-flags", "+ilme+ildct", "-x264opts", "tff=1", "-c:a", "copy",
    )  # fmt: skip
    info = probe(woven)
    assert info.interlaced
    report = edit_video(
        keep_speech=False, input_path=woven, emotion="surprised", output_path=tmp_path / "o.mp4"
    )
    out = probe(report.output)
    assert not out.interlaced and out.n_frames == info.n_frames
    assert report.n_edited >= 0.9 * report.n_frames

    # Measured 3.24 on the output, 4.13 on the woven frames as stored (3.94 on the clip it
    # was woven from, whose skin's grain counts too).
    assert combing(frames_of(report.output)) < 0.9 * combing(frames_of_stored(woven))


def test_variable_frame_rate_real_clip(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "shared" / "clips" / "mead_emotions" / "sad.mp4"
    if not src.is_file():
        pytest.skip("../shared/clips is absent")
    info = probe(src)
    # A 25 fps clip with one frame missing before its last: read at 25 fps, the hole filled.
    assert info.variable_frame_rate and info.fps == 25 and info.n_frames == 110
    report = edit_video(input_path=src, emotion="happy", output_path=tmp_path / "o.mp4")
    out = probe(report.output)
    assert out.fps == 25 and out.n_frames == 111 and not out.variable_frame_rate
    assert any("variable frame rate" in n and "25.000 fps" in n for n in report.notes)
    assert abs(out.duration_s - info.duration_s) <= 1.0 / float(info.fps)
    assert audio_packet_checksums(report.output) == audio_packet_checksums(src)


def test_intensity_zero_and_time_range(face_clip: Path, tmp_path: Path) -> None:
    zero = edit_video(
        keep_speech=False,
        input_path=face_clip,
        emotion="angry",
        intensity=0.0,
        output_path=tmp_path / "zero.mp4",
    )
    assert zero.n_edited == 0
    ranged = edit_video(
        keep_speech=False,
        input_path=face_clip,
        emotion="angry",
        start=0.5,
        end=1.5,
        output_path=tmp_path / "ranged.mp4",
    )
    assert 0.4 * ranged.n_frames <= ranged.n_edited <= 0.5 * ranged.n_frames
    # The zero-intensity output is a plain re-encode: the ranged edit matches it before the
    # range (up to the encoder's choices, which see later frames) and differs inside it.
    a, b = frames_of(zero.output), frames_of(ranged.output)

    def changed(t: int) -> int:
        return int((np.abs(a[t].astype(int) - b[t].astype(int)).max(axis=-1) > 20).sum())

    assert changed(3) < 5 and changed(25) > 100


def test_portrait_video(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "shared" / "clips" / "talk_s20_480x908.mp4"
    if not src.is_file():
        pytest.skip("../shared/clips is absent")
    clip = tmp_path / "portrait.mp4"
    run_ffmpeg_checked(
        "-i",
        str(src),
        "-t",
        "1",
        *FAST_X264,
        "-c:a",
        "copy",
        str(clip),
    )
    report = edit_video(
        keep_speech=False, input_path=clip, emotion="surprised", output_path=tmp_path / "o.mp4"
    )
    a, b = probe(clip), probe(report.output)
    assert (b.width, b.height, b.n_frames) == (480, 908, a.n_frames)
    assert report.n_edited >= 0.9 * report.n_frames
    assert audio_packet_checksums(report.output) == audio_packet_checksums(clip)


def test_mixture_and_timeline_specs(face_clip: Path, tmp_path: Path) -> None:
    mix = edit_video(
        keep_speech=False,
        input_path=face_clip,
        emotion="happy:0.6+surprised:0.4",
        output_path=tmp_path / "mix.mp4",
    )
    assert mix.n_edited >= 0.9 * mix.n_frames
    clip = tmp_path / "speaker.mp4"
    clip.write_bytes(face_clip.read_bytes())
    timeline = edit_video(keep_speech=False, input_path=clip, emotion="0-1:happy,1-:sad")
    assert timeline.output == tmp_path / "speaker.timeline.mp4"
    assert timeline.n_edited >= 0.9 * timeline.n_frames
    a, b = frames_of(mix.output), frames_of(timeline.output)
    # Early frames lean happy in both; late frames differ (sad vs the mixture).
    late = np.abs(a[45].astype(int) - b[45].astype(int)).max(axis=-1) > 20
    assert late.sum() > 50


def test_a_timeline_segment_past_the_end_is_named_and_not_played(
    face_clip: Path, tmp_path: Path
) -> None:
    report = edit_video(
        keep_speech=False,
        input_path=face_clip,
        emotion="0-1:happy,7-:sad",
        output_path=tmp_path / "a.mp4",
    )
    assert any("the timeline's 7- starts past the end of the video" in n for n in report.notes)
    alone = edit_video(
        keep_speech=False, input_path=face_clip, emotion="0-1:happy", output_path=tmp_path / "b.mp4"
    )
    assert report.n_edited == alone.n_edited > 0
    assert all(
        np.array_equal(a, b)
        for a, b in zip(frames_of(report.output), frames_of(alone.output), strict=True)
    )


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in portrait (the demo's) as a PNG photo."""
    from PIL import Image

    from spfem_cli.demo import portrait_frames

    path = tmp_path_factory.mktemp("photos") / "portrait.png"
    Image.fromarray(portrait_frames(n_frames=1)[0]).save(path)
    return path


def test_a_photo_is_edited_into_a_photo(photo: Path, tmp_path: Path) -> None:
    """A PNG in, a PNG of the same size out beside it (default name keeps the format): the
    face changed, the rest of the picture exactly as it was; the input untouched."""
    from PIL import Image

    src = tmp_path / photo.name
    src.write_bytes(photo.read_bytes())
    before = sha256(src)
    code, output = spfem(str(src), "--emotion", "surprised")
    assert code == 0, output
    out = tmp_path / "portrait.surprised.png"
    original = np.asarray(Image.open(src).convert("RGB")).astype(int)
    edited = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert edited.shape == original.shape
    changed = np.abs(edited - original).max(axis=-1) > 8
    assert changed.sum() > 500
    h, w = changed.shape
    # The edit stays on the face: beyond the face's box grown by 15% of its size (as
    # `spfem preview` crops it), the photo is the input's, bit for bit.
    x0, y0, x1, y1 = face_box(video_landmarks(src)[0], width=w, height=h, margin=0.15)
    border = np.ones((h, w), dtype=bool)
    border[y0:y1, x0:x1] = False
    assert border.mean() > 0.5
    assert np.array_equal(edited[border], original[border])
    assert sha256(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["portrait.png", out.name]


def test_a_photos_lips_move_as_in_a_real_expression(photo: Path, tmp_path: Path) -> None:
    """A photo has no speech to hold its lips near: natural mode (the default) edits it as
    expressive mode does, bit for bit, and says so, with no hint to try expressive mode;
    strict mode still keeps the mouth. `spfem preview` shows the edit `spfem edit` makes."""
    from PIL import Image

    from spfem_cli.pipeline import PHOTO_MOUTH_NOTE
    from spfem_cli.preview import preview_sheet

    edits = {}
    for mouth in ("natural", "expressive", "strict"):
        report = edit_video(
            input_path=photo, output_path=tmp_path / f"{mouth}.png", emotion="happy",
            mouth=mouth, device="cpu",
        )  # fmt: skip
        assert (PHOTO_MOUTH_NOTE in report.notes) == (mouth == "natural"), report.notes
        assert not report.hints
        edits[mouth] = np.asarray(Image.open(report.output).convert("RGB"))
    assert np.array_equal(edits["natural"], edits["expressive"])
    assert not np.array_equal(edits["natural"], edits["strict"])
    sheets = {}
    for mouth in ("natural", "expressive"):
        sheets[mouth] = np.asarray(
            Image.open(
                preview_sheet(
                    input_path=photo,
                    output_path=tmp_path / f"{mouth}.sheet.png",
                    emotions=["happy"],
                    n_frames=1,
                    mouth=mouth,
                    device="cpu",
                ).path
            )
        )
    assert np.array_equal(sheets["natural"], sheets["expressive"])


@pytest.mark.parametrize(("suffix", "fmt"), [(".jpg", "JPEG"), (".webp", "WEBP")])
def test_a_photo_can_be_written_as_jpeg_or_webp(
    photo: Path, tmp_path: Path, suffix: str, fmt: str
) -> None:
    from PIL import Image

    png, other = tmp_path / "a.png", tmp_path / f"a{suffix}"
    assert spfem(str(photo), "-e", "happy", "-o", str(png))[0] == 0
    code, output = spfem(str(photo), "-e", "happy", "-o", str(other))
    assert code == 0, output
    with Image.open(other) as image:
        assert image.format == fmt
        saved = np.asarray(image.convert("RGB")).astype(int)
    assert np.abs(saved - np.asarray(Image.open(png).convert("RGB"))).mean() < 3


def test_a_photos_transparency_is_kept(photo: Path, tmp_path: Path) -> None:
    """A portrait cut out on a transparent background keeps its alpha channel as it was."""
    from PIL import Image

    rgb = Image.open(photo).convert("RGB")
    w, h = rgb.size
    yy, xx = np.mgrid[:h, :w]
    alpha = np.where((xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (0.45 * w) ** 2, 255, 0)
    cut = rgb.copy()
    cut.putalpha(Image.fromarray(alpha.astype(np.uint8)))
    src, out = tmp_path / "cut.png", tmp_path / "cut.happy.png"
    cut.save(src)
    code, output = spfem(str(src), "-e", "happy")
    assert code == 0, output
    with Image.open(out) as image:
        assert image.mode == "RGBA"
        edited = np.asarray(image)
    assert np.array_equal(edited[..., 3], alpha)
    assert not np.array_equal(edited[..., :3], np.asarray(rgb))


def test_an_image_output_needs_a_photo(face_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "edit.png"
    code, output = spfem(str(face_clip), "-e", "happy", "-o", str(out))
    assert_clean_failure(code, output, expect="needs a photo as input")
    assert not out.exists() and leftovers(tmp_path) == []
    code, output = spfem(str(face_clip), "-e", "happy", "-o", str(tmp_path / "edit.gif"))
    assert_clean_failure(code, output, expect="or .png, .jpg, .jpeg, .webp (a photo's edit)")


def test_a_time_range_of_a_photo_is_refused(photo: Path, tmp_path: Path) -> None:
    code, output = spfem(str(photo), "-e", "happy", "--end", "1", "-o", str(tmp_path / "a.png"))
    assert_clean_failure(code, output, expect="portrait.png is one frame")
    assert leftovers(tmp_path) == [] and not (tmp_path / "a.png").exists()


def test_a_phone_photo_stored_sideways_is_edited_upright(photo: Path, tmp_path: Path) -> None:
    """A JPEG stored on its side with EXIF orientation 6, as phones write portraits: the face
    is found, and the edit is written upright (no tag), as a viewer showed the input."""
    from PIL import Image, ImageOps

    upright = Image.open(photo).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    phone = tmp_path / "phone.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(phone, exif=exif.tobytes(), quality=95)
    out = tmp_path / "phone.surprised.jpg"
    code, output = spfem(str(phone), "-e", "surprised")
    assert code == 0, output
    shown = np.asarray(ImageOps.exif_transpose(Image.open(phone)).convert("RGB")).astype(int)
    with Image.open(out) as image:
        assert image.getexif().get(0x0112, 1) == 1
        edited = np.asarray(image.convert("RGB")).astype(int)
    assert edited.shape == shown.shape
    changed = np.abs(edited - shown).max(axis=-1) > 25
    assert changed.sum() > 300  # the face was found and edited
    assert np.abs(edited - shown).mean() < 4  # ...and nothing else turned


def test_subtitles_chapters_and_title_come_through_an_edit(face_clip: Path, tmp_path: Path) -> None:
    """A real speaker's clip in Matroska with SubRip subtitles, chapters, a title and a
    creation time, edited to an mp4: the subtitles come out as mov_text with the same cues,
    and the chapters, title, creation time and sound are the source's. Before, the
    subtitles, title and creation time were dropped without a word."""
    src = add_subtitles_and_chapters(face_clip, tmp_path / "talk.mkv")
    out = tmp_path / "talk_happy.mp4"
    code, output = spfem(str(src), "-e", "happy", "-o", str(out))
    assert code == 0, output
    assert probe(out).subtitles == ("mov_text",)
    assert subtitle_cues(out) == SUBTITLE_CUES
    tags, chapters = file_metadata(out)
    assert chapters == CHAPTERS and tags["title"] == "My talk"
    assert tags["creation_time"].startswith("2024-05-01T10:00:00")
    assert audio_packet_checksums(out) == audio_packet_checksums(src)
    assert "left out" not in output


@pytest.mark.parametrize("timecode", ["01:00:00:00", "10:20:30;12"])
def test_the_start_timecode_comes_through_an_edit(
    make_clip: Callable[..., Path], tmp_path: Path, timecode: str
) -> None:
    """A camera's start timecode (a timecode track in mov; drop-frame at 29.97 fps) is the
    edit's too, in mp4 and in Matroska and back: an editor lines the edit up with the
    source by it. Before, it was dropped without a word."""
    src = make_clip(
        "cam.mov", size=(96, 64), rate="30000/1001", duration=0.4,
        extra=["-timecode", timecode],
    )  # fmt: skip
    assert probe(src).timecode == timecode
    mkv, mp4 = tmp_path / "cam.mkv", tmp_path / "cam.mp4"
    for source, out in ((src, mkv), (mkv, mp4)):
        code, output = spfem(str(source), "-e", "sad", "-o", str(out), "-q")
        assert code == 0, output
        assert probe(out).timecode == timecode, out


def test_a_subtitle_the_output_cannot_hold_is_named(
    face_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Blu-ray subtitle (pictures) has no place in mp4: the edit says so and keeps the rest.
    No such stream can be made here, so the probe is told the source has one after its
    SubRip stream."""
    import spfem_cli.pipeline as pipeline

    src = add_subtitles_and_chapters(face_clip, tmp_path / "talk.mkv")
    real = pipeline.probe

    def with_pictures(path: str | Path) -> object:
        info = real(path)
        return dataclasses.replace(info, subtitles=(*info.subtitles, "hdmv_pgs_subtitle"))

    monkeypatch.setattr(pipeline, "probe", with_pictures)
    report = edit_video(
        keep_speech=False, input_path=src, emotion="sad", output_path=tmp_path / "o.mp4"
    )
    assert (
        "a subtitle stream (hdmv_pgs_subtitle) cannot be written to .mp4 and was left out: "
        "write .mkv to keep it"
    ) in report.notes
    assert subtitle_cues(report.output) == SUBTITLE_CUES


def test_a_mixture_moves_the_face_no_further_than_one_emotion_can(
    face_clip: Path, tmp_path: Path
) -> None:
    """Two emotions at full weight and the top intensity add their action units: fear and
    surprise so moved a point of speech_man's face 0.53 of the eye distance, two and a half
    times as far as surprise at 1.5 (0.21), the farthest any one emotion goes. An edit plays
    such a mixture scaled down to reach (`targets.within_reach`), and no pair then moves a
    point further than one emotion can (within 2%: the largest, angry and disgusted, 0.215),
    the replacement of the expression he already shows included."""
    import itertools

    from spfem_cli.generator.expression import DEFAULT_MODEL, EMOTIONS
    from spfem_cli.pipeline import Editor, analyse_video
    from spfem_cli.progress import SilentReporter
    from spfem_cli.targets import parse_emotion, render

    editor = Editor.load(model=DEFAULT_MODEL, device="cpu", mouth="natural", generator="warp")
    analysis = analyse_video(
        probe(face_clip), model=editor.expression, workdir=tmp_path, reporter=SilentReporter()
    )
    t = 12
    points = np.asarray(analysis.track.norm[t], np.float64)

    def farthest(delta: np.ndarray) -> float:
        """How far the AU change moves the farthest face point, IOD."""
        values, _ = editor.generator.sparse(points=points, delta=delta)
        return float(np.linalg.norm(np.asarray(values), axis=-1).max())

    def played(spec: str) -> float:
        return farthest(editor.deltas(analysis, parse_emotion(spec), intensity=1.5)[t])

    emotions = [e for e in EMOTIONS if e != "neutral"]
    one = max(played(e) for e in emotions)
    assert 0.19 < one < 0.24, one
    for a, b in itertools.combinations(emotions, 2):
        assert played(f"{a}:1.5+{b}:1.5") <= 1.02 * one, (a, b)
    # Unscaled, the same frame's fear and surprise go two and a half times as far.
    timeline = parse_emotion("fear:1.5+surprised:1.5")
    targets, weights = render(
        timeline, n_frames=analysis.track.n_frames, fps=25.0, resolve=editor.vector_of
    )
    raw = analysis.deltas(target=1.5 * targets, weights=weights, removal=1.0)[t]
    assert farthest(raw) > 2 * one
