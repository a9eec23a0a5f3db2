"""`spfem check`: whether an edit kept its input's speech."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spfem_cli import pipeline, speech_check
from spfem_cli.batch import EditOptions, run_batch
from spfem_cli.cli import app
from spfem_cli.errors import SpfemError
from spfem_cli.evaluate import SpeechReport, mouth_window, tracked_landmarks, video_landmarks
from spfem_cli.face.mesh import LIPS_INNER, eye_centres
from spfem_cli.generator.expression import ExpressionModel
from spfem_cli.generator.kinds import keeps_speech
from spfem_cli.media import FrameReader, FrameWriter, VideoInfo, probe
from spfem_cli.pipeline import (
    MEASURE_LEAD,
    analyse_video,
    edit_video,
    held_in_step,
    measured_frames,
    measured_spans,
    tracking_readers,
    tracking_segments,
)
from spfem_cli.progress import SilentReporter
from spfem_cli.speech_check import (
    INNER_LIP_LIMIT,
    OPENING_LIMIT,
    STILL_MOUTH,
    SpeechCheck,
    check_speech,
    check_speech_parts,
    frames_between,
)
from tests.conftest import MakeClip, run_ffmpeg_checked

SPEAKER = Path(__file__).resolve().parents[2] / "shared" / "clips" / "speech_man_256x256.mp4"


def _report(err: float, corr: float) -> SpeechReport:
    return SpeechReport(
        inner_lip_error=err, opening_corr=corr, jitter_in=0.02, jitter_out=0.02, frames=100
    )


def _check(err: float, corr: float, *, spread: float = 0.06) -> SpeechCheck:
    return SpeechCheck(mouth=_report(err, corr), whole=_report(0.05, 0.5), opening_spread=spread)


def test_the_verdict_follows_the_limits_on_the_mouth_alone() -> None:
    # The whole frames' reading (0.05, 0.5 here) never decides: changed eyes move it.
    assert _check(INNER_LIP_LIMIT, OPENING_LIMIT).kept
    assert not _check(INNER_LIP_LIMIT + 1e-4, 0.999).kept
    assert not _check(0.005, OPENING_LIMIT - 1e-3).kept
    # A mouth that barely moves is judged by its inner lips alone.
    assert _check(0.005, 0.5, spread=STILL_MOUTH / 2).kept
    assert not _check(0.02, 0.999, spread=STILL_MOUTH / 2).kept


def test_the_lines_say_the_verdict_the_numbers_and_what_to_do() -> None:
    bad = _check(0.0129, 0.9604).lines()
    assert bad[0].startswith("speech changed: inner lips 1.29% of the eye distance")
    assert "0.960 (at least 0.98)" in bad[0]
    assert "--mouth strict" in bad[-1]
    good = _check(0.0111, 0.987).lines()
    assert good[0].startswith("speech kept") and "0.987" in good[0]
    assert not any("--mouth strict" in line for line in good)
    still = _check(0.004, 0.3, spread=0.015).lines()
    assert "barely moves" in still[0] and "0.300" not in still[0]


def test_a_partial_edit_is_judged_by_its_openings_error_against_the_clips_speech() -> None:
    """Measured on the edited part of a clip, the opening's verdict reads the correlation its
    error would give over the clip's whole speech (a second of speech holds too few syllables
    for a correlation of its own), and the lines say the frames were the edited ones."""
    report = SpeechReport(
        inner_lip_error=0.005, opening_corr=0.90, jitter_in=0.02, jitter_out=0.02, frames=24,
        opening_error=0.011,
    )  # fmt: skip
    partial = SpeechCheck(mouth=report, whole=None, opening_spread=0.069, of_edited=True)
    assert partial.opening_score == pytest.approx(1 / np.sqrt(1 + (0.011 / 0.069) ** 2))
    assert partial.opening_score == pytest.approx(0.9876, abs=1e-4) and partial.kept
    line = partial.lines()[0]
    assert line.startswith("speech kept") and "over 24 edited frames" in line
    assert "differs from the input's by 0.011" in line and "correlation of 0.988" in line
    # An error twice the size is a correlation of 0.953 over the clip's speech: changed.
    worse = SpeechCheck(
        mouth=SpeechReport(**{**report.__dict__, "opening_error": 0.022}),
        whole=None, opening_spread=0.069, of_edited=True,
    )  # fmt: skip
    assert not worse.kept and worse.opening_score < OPENING_LIMIT
    # Over a whole clip the correlation itself is read, as before.
    whole = SpeechCheck(mouth=report, whole=None, opening_spread=0.069)
    assert whole.opening_score == 0.90 and not whole.kept
    assert "over 24 frames" in whole.lines()[0]


def test_videos_that_cannot_be_an_edit_and_its_input_are_refused(make_clip: MakeClip) -> None:
    a = make_clip("a.mp4", size=(160, 120))
    b = make_clip("b.mp4", size=(176, 144))
    c = make_clip("c.mp4", size=(160, 120), rate="30")
    for before, after, said in (
        (a, b, "b.mp4 is not an edit of a.mp4: 25 frames of 176x144"),
        (a, c, "c.mp4 is not an edit of a.mp4"),
        (a, a.with_name("missing.mp4"), "missing.mp4 does not exist"),
    ):
        result = CliRunner().invoke(app, ["check", "-q", str(before), str(after)])
        assert result.exit_code == 2, result.output
        assert said in result.output
        assert "Traceback" not in result.output


def test_a_range_is_measured_on_the_frames_an_edit_of_it_changes(make_clip: MakeClip) -> None:
    """`spfem check --start 1 --end 2` on 25 fps: frames 26 to 49, the 24 that an edit of
    that range changes (frame 25, on its start, is where the fade-in is still nothing), which
    is what the edit's own check measures and says it measured."""
    clip = make_clip("a.mp4", duration=3.0)
    t = np.arange(75) / 25.0
    for start, end, frames in (
        (1.0, 2.0, (t > 1.0) & (t < 2.0)),
        (None, 2.0, t < 2.0),
        (0.0, 1.0, t < 1.0),
        (1.01, None, t >= 1.01),
    ):
        assert np.array_equal(frames_between(clip, start=start, end=end), frames), (start, end)
    with pytest.raises(SpfemError, match="an edit from 1 s to 1.02 s changes no frame of a.mp4"):
        frames_between(clip, start=1.0, end=1.02)


def test_videos_without_a_face_are_refused(make_clip: MakeClip) -> None:
    a = make_clip("a.mp4", size=(160, 120))
    result = CliRunner().invoke(app, ["check", "-q", str(a), str(a)])
    assert result.exit_code == 2, result.output
    assert "found a face on 0 frames" in result.output


@pytest.fixture(scope="module")
def speaker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """speech_man's first 4 s (100 frames of speech), re-encoded nearly losslessly."""
    if not SPEAKER.is_file():
        pytest.skip("../shared/clips is absent")
    clip = tmp_path_factory.mktemp("speaker") / "speech_man.mp4"
    run_ffmpeg_checked(
        "-i", str(SPEAKER), "-t", "4", "-c:v", "libx264", "-crf", "12", "-c:a", "copy", str(clip)
    )  # fmt: skip
    return clip


def _mouth_one_frame_late(src: Path, out: Path) -> None:
    """Write `src` with the region around its lips taken from the frame before: lips 40 ms
    late at 25 fps, a lip-sync error."""
    info = probe(src)
    lm = video_landmarks(src)
    with (
        FrameReader(info) as reader,
        FrameWriter(out, width=info.width, height=info.height, fps=info.fps) as writer,
    ):
        before = None
        for t, frame in enumerate(reader):
            shown = frame
            if before is not None and not np.isnan(lm[t]).any():
                w = mouth_window(frame.shape[:2], lm[t])[..., None]
                shown = np.round(frame * (1 - w) + before * w).astype(np.uint8)
            writer.write(shown)
            before = frame


def test_check_finds_lips_one_frame_late(speaker: Path, tmp_path: Path) -> None:
    """On the whole clip: inner lips 2.74% of the eye distance, opening 0.715."""
    late = tmp_path / "late.mp4"
    _mouth_one_frame_late(speaker, late)
    result = CliRunner().invoke(app, ["check", "-q", str(speaker), str(late)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("speech changed")


def test_check_finds_a_strict_edit_kept_the_speech(speaker: Path, tmp_path: Path) -> None:
    """speech_man edited to sad with the whole mouth kept (`--mouth strict`, which the check
    advises when natural mode's corners change how the lips read): mouth alone, inner lips
    0.51% and opening 0.988 (0.49% and 0.987 on the whole clip). The check changes neither
    video."""
    out = tmp_path / "sad.mp4"
    edit_video(input_path=speaker, output_path=out, emotion="sad", mouth="strict", device="cpu")
    before, after = speaker.read_bytes(), out.read_bytes()
    result = CliRunner().invoke(app, ["check", "-q", str(speaker), str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("speech kept")
    assert "over 100 frames" in result.output
    assert speaker.read_bytes() == before and out.read_bytes() == after


def test_an_input_is_read_alike_with_a_variable_rate_edit() -> None:
    """A variable-rate video is resampled as it is read, which a segment cannot be: beside
    one, a long constant-rate video is read in one piece too, so that the check's input pass
    and its window pass (the edit's mouth pasted in) read the input alike."""
    clips = SPEAKER.parent
    steady, uneven = clips / "speech_obama_450x450.mp4", clips / "mead_emotions" / "sad.mp4"
    if not (steady.is_file() and uneven.is_file()):
        pytest.skip("../shared/clips is absent")
    a, b = probe(steady), probe(uneven)
    assert not a.variable_frame_rate and b.variable_frame_rate
    halves, _ = tracking_readers(a)
    assert [(first, len(readers)) for first, readers in halves] == [(0, 1), (125, 1)]
    whole, scale = tracking_readers(a, b)
    assert [(first, len(readers)) for first, readers in whole] == [(0, 2)] and scale == (1, 1)
    # Read in one piece, the first half's landmarks are the two halves' own.
    alone = video_landmarks(steady, alike=[uneven])
    assert alone.shape == (250, 478, 2) and not np.isnan(alone).any()
    assert np.array_equal(alone[:125], video_landmarks(steady)[:125])
    # Some frames asked of a video read in one piece: the others are decoded and passed by
    # (and none after the last is decoded), FaceMesh is shown the runs with their lead.
    asked = np.zeros(250, bool)
    asked[140:160] = True
    seen: list[int] = []
    some = video_landmarks(steady, alike=[uneven], frames=asked, on_frame=lambda: seen.append(1))
    shown = measured_frames(a, b, frames=asked)
    assert np.array_equal(np.flatnonzero(shown), np.arange(140 - MEASURE_LEAD, 160))
    assert len(seen) == shown.sum() and np.isnan(some[~shown]).all()
    right, left = eye_centres(alone[asked])
    apart = np.linalg.norm(some[asked][:, LIPS_INNER] - alone[asked][:, LIPS_INNER], axis=-1)
    assert (apart.mean(axis=1) / np.linalg.norm(left - right, axis=-1)).mean() < 0.003


def test_natural_mode_edits_again_until_the_speech_is_kept(
    speaker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """speech_man's first 4 s to sad in natural mode, which keeps the speech by default: the
    edit is measured (the opening reads 0.954, changed), made again with the lip corners moving
    half as far (still changed), then a quarter as far, which reads 0.988 (0.61% inner lips).
    Only that last edit appears, and nothing else is left in the folder. Every try is measured
    against the landmarks the edit's tracking found on the input, which are the check's own.
    The half reads close to the limit, and small changes anywhere on the face move FaceMesh's
    reading of it (with the shading's blur read by another rule it read 0.984): an edit kept
    at the half, after two tries, passes too."""
    given: list[np.ndarray] = []

    def recorded(**kw: object) -> list[SpeechCheck | str]:
        given.append(np.array(kw["input_lm"]))
        return check_speech_parts(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(speech_check, "check_speech_parts", recorded)
    out = tmp_path / "sad.mp4"
    result = CliRunner().invoke(app, ["edit", str(speaker), "-e", "sad", "-o", str(out)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    tries = {"half as far": 2, "a quarter as far": 3}
    kept = [k for k in tries if f"with the lip corners moving {k}" in said]
    assert "speech kept:" in said and len(kept) == 1, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sad.mp4"]
    found = video_landmarks(speaker)
    assert len(given) == tries[kept[0]]
    assert all(np.array_equal(lm, found, equal_nan=True) for lm in given)
    assert check_speech(before=speaker, after=out).kept


def test_a_partial_edit_is_measured_on_the_frames_it_edited(speaker: Path, tmp_path: Path) -> None:
    """speech_man's last 24 frames (from 3 s) to sad: measured over the whole clip, the 76
    frames passed through dilute the full-strength edit into a pass (inner lips 0.65%, opening
    0.982). Its edited frames alone read 1.25%, and an opening error of 0.018 of the eye
    distance, 0.967 over the clip's speech: changed. So the edit that keeps the speech by
    default moves the lip corners less, and says over which frames it measured."""
    full = tmp_path / "full.mp4"
    edit_video(
        input_path=speaker, output_path=full, emotion="sad", start=3.0, device="cpu",
        keep_speech=False,
    )  # fmt: skip
    edited = np.zeros(100, bool)
    edited[76:] = True
    diluted = check_speech(before=speaker, after=full, whole=False)
    asked = check_speech(before=speaker, after=full, whole=False, frames=edited)
    assert diluted.mouth.frames == 100 and not diluted.of_edited
    assert asked.mouth.frames == 24 and asked.of_edited and not asked.kept
    assert diluted.mouth.opening_corr > asked.opening_score + 0.005
    assert asked.mouth.inner_lip_error > 1.5 * diluted.mouth.inner_lip_error
    # Every frame asked, the whole clip is measured as without frames.
    every = check_speech(before=speaker, after=full, whole=False, frames=np.ones(100, bool))
    assert not every.of_edited and every.mouth == diluted.mouth
    # `spfem check` measures a range on the frames the edit changed (from 3 s: not frame 75,
    # which the edit's fade-in left as it was), and reads what the edit's own check read.
    assert np.array_equal(frames_between(speaker, start=3.0, end=None), edited)
    said = CliRunner().invoke(app, ["check", "-q", str(speaker), str(full), "--start", "3"])
    assert said.exit_code == 1 and said.output.startswith("speech changed")
    assert said.output.startswith(asked.lines()[0]), said.output
    for bad, why in (
        (["--start", "5"], "an edit from 5 s to its end changes no frame of speech_man.mp4 (4.00"),
        (["--start", "3.96"], "an edit from 3.96 s to its end changes no frame of speech_man"),
        (["--start", "3", "--end", "2"], "--end (2.0 s) must be after --start (3.0 s)"),
    ):
        said = CliRunner().invoke(app, ["check", "-q", str(speaker), str(full), *bad])
        assert said.exit_code == 2 and why in said.output and "Traceback" not in said.output
    kept = tmp_path / "kept.mp4"
    report = edit_video(
        input_path=speaker, output_path=kept, emotion="sad", start=3.0, device="cpu"
    )
    assert report.n_edited == 24
    note = report.notes[-1]
    assert note.startswith("speech kept:") and "over 24 edited frames with the lip corners" in note
    assert check_speech(before=speaker, after=kept, whole=False, frames=edited).kept


def test_each_part_of_a_timeline_keeps_the_speech_on_its_own(
    speaker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """speech_man's first 4 s, fear then sad: each part is measured on its own frames and
    only sad's lip corners move less (a quarter as far, three tries), while fear's keep all
    their motion, crossfading at the boundary as the emotions do. Measured as one (until
    2026-12-07) the whole edit went to a quarter, fear too."""
    scales: list[np.ndarray] = []
    render = pipeline.render_video

    def recorded(*args: object, **kw: object) -> int:
        scales.append(np.broadcast_to(np.asarray(kw["mouth_scale"]), (100,)).copy())
        return render(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "render_video", recorded)
    out = tmp_path / "both.mp4"
    report = edit_video(
        input_path=speaker, output_path=out, emotion="0-2:fear,2-:sad", device="cpu"
    )
    fear, sad = report.notes[-2:]
    assert fear.startswith("0-2 s fear: speech kept:") and "lip corners" not in fear, fear
    assert sad.startswith("2- s sad: speech kept:"), sad
    assert sad.endswith("over 49 edited frames with the lip corners moving a quarter as far")
    assert len(scales) == 3
    last = scales[-1]
    t = np.arange(100) / 25.0
    assert np.all(last[t < 1.8] == 1.0) and np.all(last[t > 2.2] == 0.25)
    assert np.all(np.diff(last) <= 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["both.mp4"]


@pytest.fixture(scope="module")
def looped_speaker(speaker: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """speech_man's first 4 s three times over (12 s, 300 frames at a constant 25 fps)."""
    looped = tmp_path_factory.mktemp("looped") / "looped.mp4"
    run_ffmpeg_checked(
        "-stream_loop", "2", "-i", str(speaker), "-vf", "setpts=N/25/TB", "-r", "25",
        "-c:v", "libx264", "-crf", "12", "-an", str(looped),
    )  # fmt: skip
    return looped


@pytest.fixture(scope="module")
def uneven_speaker(looped_speaker: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The looped speaker with one frame in nine dropped, the others' times kept: a variable
    rate, as a phone camera writes (267 frames, read at their mean rate of 22.25 fps)."""
    uneven = tmp_path_factory.mktemp("uneven") / "uneven.mp4"
    run_ffmpeg_checked(
        "-i", str(looped_speaker), "-vf", r"select='not(eq(mod(n\,9)\,4))'",
        "-fps_mode", "passthrough", "-c:v", "libx264", "-crf", "12", "-an", str(uneven),
    )  # fmt: skip
    return uneven


@pytest.mark.parametrize("rate", ["constant", "variable"])
def test_a_short_edit_of_a_longer_video_is_tried_on_its_own_frames(
    rate: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """speech_man's first 4 s looped to 12 s, sad from 7 s to 8 s: the tries render only the
    34 frames their measuring reads (the 24 edited and 10 before them), not the 300, each
    frame as the whole video's render makes it. The video is then rendered with the corners'
    motion the tries found and measured in turn; where it reads changed (the encoder's noise
    differs between the two), it goes on down the ladder as a whole. The note is the output's
    own measure. A variable-rate video (one frame in nine dropped) is tried alike: decoded
    from its start, resampled, but only the frames measured are edited, encoded and read."""
    looped = request.getfixturevalue("looped_speaker" if rate == "constant" else "uneven_speaker")
    info = probe(looped)
    n = FrameReader(info).expected_frames
    assert info.variable_frame_rate == (rate == "variable")
    assert n == (300 if rate == "constant" else 267)
    written: list[list[np.ndarray]] = []

    class Recording(FrameWriter):
        def __enter__(self) -> FrameWriter:
            written.append([])
            return super().__enter__()

        def write(self, frame: np.ndarray) -> None:
            written[-1].append(frame.copy())
            super().write(frame)

    parts: list[np.ndarray] = []

    def recorded(**kw: object) -> list[SpeechCheck | str]:
        parts.append(np.asarray(kw["parts"][0]))  # type: ignore[index]
        return check_speech_parts(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "FrameWriter", Recording)
    monkeypatch.setattr(speech_check, "check_speech_parts", recorded)
    out = tmp_path / "sad.mp4"
    report = edit_video(
        input_path=looped, output_path=out, emotion="sad", start=7.0, end=8.0, device="cpu"
    )
    edited = parts[0]
    held = measured_frames(info, frames=edited)
    count = 24 if rate == "constant" else 22  # the edited second's frames (past their fade)
    assert edited.sum() == report.n_edited == count and held.sum() == count + MEASURE_LEAD
    counts = [len(frames) for frames in written]
    alone = counts.index(n)
    assert alone >= 1 and counts[:alone] == [held.sum()] * alone and set(counts[alone:]) == {n}
    # The first whole render plays the last try's corners: its frames are the try's.
    assert np.array_equal(np.stack(written[alone])[held], np.stack(written[alone - 1]))
    assert probe(out).n_frames == n
    own = check_speech(before=looped, after=out, whole=False, frames=edited)
    assert own.kept and report.notes[-1].startswith(own.lines()[0])


def test_a_range_tried_alone_that_cannot_be_measured_is_rendered_whole(
    looped_speaker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a try of a short range cannot be measured (FaceMesh finding the face too
    seldom, say), the video is still written whole, as the try was, and the note says so."""

    def unmeasured(**kw: object) -> list[SpeechCheck | str]:
        assert kw["held"] is not None
        raise SpfemError("FaceMesh found a face on 2 frames of both videos: too few to measure")

    monkeypatch.setattr(speech_check, "check_speech_parts", unmeasured)
    out = tmp_path / "sad.mp4"
    report = edit_video(
        input_path=looped_speaker, output_path=out, emotion="sad", start=7.0, end=8.0,
        device="cpu",
    )  # fmt: skip
    assert report.notes[-1].startswith("the speech was not measured: FaceMesh found a face on 2")
    assert report.n_edited == 24 and probe(out).n_frames == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sad.mp4"]


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The frames each `render_video` of the test renders, in order (of the looped speaker's
    300 where it renders the whole video)."""
    counts: list[int] = []
    render = pipeline.render_video

    def recorded(*args: object, **kw: object) -> int:
        frames = kw.get("frames")
        counts.append(300 if frames is None else int(np.sum(frames)))  # type: ignore[arg-type]
        return render(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "render_video", recorded)
    return counts


def test_a_timeline_tries_only_the_short_part_that_moves_the_mouth(
    looped_speaker: Path, renders: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same 12 s surprised but for a second of sadness (7-8 s): surprise leaves the mouth
    be, so only sadness's second is tried, alone (35 frames a try: its 25 and 10 before), and
    every part is measured on the video the tries lead to. Before, each try rendered the 300
    frames: three tries, the same verdicts."""
    asked: list[list[np.ndarray]] = []

    def checked(**kw: object) -> list[SpeechCheck | str]:
        asked.append([np.asarray(m) for m in kw["parts"]])  # type: ignore[attr-defined]
        return check_speech_parts(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(speech_check, "check_speech_parts", checked)
    out = tmp_path / "out.mp4"
    report = edit_video(
        input_path=looped_speaker, output_path=out, emotion="0-7:surprised,7-8:sad,8-:surprised",
        device="cpu",
    )  # fmt: skip
    first, sad, last = report.notes[-3:]
    assert "lip corners" not in first + last and "speech kept" in first + last
    assert sad.startswith("7-8 s sad: speech kept:") and "with the lip corners moving" in sad
    tries = renders.index(300)
    assert tries >= 1 and renders[:tries] == [35] * tries and set(renders[tries:]) == {300}
    assert all(len(parts) == 1 and parts[0].sum() == 25 for parts in asked[:tries])
    assert [len(parts) for parts in asked[tries:]] == [3] * (len(renders) - tries)
    own = check_speech_parts(before=looped_speaker, after=out, parts=asked[-1], whole=False)
    assert all(isinstance(c, SpeechCheck) and c.kept for c in own)
    assert (
        [note.split(": ", 1)[1] for note in (first, sad, last)]
        == [
            line + tail
            for line, tail in zip(
                [c.lines()[0] for c in own],  # type: ignore[union-attr]
                ["", sad[sad.index(" with the lip corners") :], ""],
                strict=True,
            )
        ]
    )


def test_a_short_part_that_changed_beside_a_long_one_kept_is_tried_alone(
    looped_speaker: Path, renders: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same 12 s afraid but for a second of sadness (7-8 s): fear moves the mouth too, so
    the first try renders the 300 frames. Fear keeps the speech there and sadness does not;
    sadness's second is then tried alone (35 frames a try), fear's corners left as they
    were, and the video rendered and measured once more. Before, each try rendered the 300
    frames: the same verdicts."""
    found: list[list[SpeechCheck | str]] = []

    def checked(**kw: object) -> list[SpeechCheck | str]:
        found.append(check_speech_parts(**kw))  # type: ignore[arg-type]
        return found[-1]

    monkeypatch.setattr(speech_check, "check_speech_parts", checked)
    report = edit_video(
        input_path=looped_speaker, output_path=tmp_path / "out.mp4",
        emotion="0-7:fear,7-8:sad,8-:fear", device="cpu",
    )  # fmt: skip
    assert renders[0] == 300 and renders[-1] == 300 and renders[1:-1]
    assert set(renders[1:-1]) == {35}
    assert [len(checks) for checks in found] == [3] + [1] * (len(renders) - 2) + [3]
    first, last = found[0], found[-1]
    assert not first[1].kept and first[0].kept and first[2].kept  # type: ignore[union-attr]
    assert all(c.kept for c in last)  # type: ignore[union-attr]
    fear, sad, fear_again = report.notes[-3:]
    assert "lip corners" not in fear + fear_again
    assert sad.startswith("7-8 s sad: speech kept:") and "with the lip corners moving" in sad


def test_a_variable_rate_video_and_its_edit_are_measured_and_compared(tmp_path: Path) -> None:
    """talk_s32's first 4 s, made small and looped three times without re-encoding, have a
    variable rate; their edit is written at the mean rate, which the container reads back as
    another fraction (789879/26506 for 5529600/185557). The two were refused as "not an edit"
    by `spfem check` and `spfem compare`, and an edit's own speech went unmeasured; they are
    one rate."""
    clip = SPEAKER.parent / "talk_s32_1280x720.mp4"
    if not clip.is_file():
        pytest.skip("../shared/clips is absent")
    small, looped = tmp_path / "small.mp4", tmp_path / "looped.mp4"
    run_ffmpeg_checked(
        "-i", str(clip), "-t", "4", "-vf", "scale=480:270", "-c:v", "libx264", "-crf", "18",
        "-c:a", "copy", str(small),
    )  # fmt: skip
    run_ffmpeg_checked("-stream_loop", "2", "-i", str(small), "-c", "copy", str(looped))
    out = tmp_path / "out.mp4"
    edit_video(input_path=looped, output_path=out, emotion="happy", intensity=0.0, device="cpu")
    before, after = probe(looped), probe(out)
    assert before.variable_frame_rate and before.fps != after.fps
    said = CliRunner().invoke(app, ["check", "-q", str(looped), str(out)])
    assert said.exit_code == 0 and said.output.startswith("speech kept"), said.output
    assert "over 360 frames" in said.output
    shown = CliRunner().invoke(
        app, ["compare", "-q", str(looped), str(out), "-o", str(tmp_path / "c.mp4")]
    )
    assert shown.exit_code == 0, shown.output


def _write_try(info: VideoInfo, *, held: np.ndarray, to: Path) -> list[np.ndarray]:
    """Write the frames `held` (T,) bool of a video to `to`, as a try rendered alone holds
    them (`render_video(frames=)`, unedited); returns all T frames as read, (H, W, 3) int."""
    with FrameReader(info) as reader:
        frames = [f.astype(int) for f in reader]
    with FrameWriter(to, width=info.width, height=info.height, fps=info.fps) as writer:
        for t in np.flatnonzero(held):
            writer.write(frames[t].astype(np.uint8))
    return frames


def test_a_try_holding_some_frames_is_read_where_they_lie(
    make_clip: MakeClip, tmp_path: Path
) -> None:
    """A try of a partial edit rendered alone holds only the frames its measuring reads
    (`render_video(frames=)`, `tried_alone`). Read alike with the input, each of the input's
    segments is read at its place among them: each frame of the input meets its own frame of
    the try. A pass that would read a frame the try does not hold is refused."""
    src = make_clip("in.mp4", duration=6.0)
    info = probe(src)
    asked = np.zeros(150, bool)
    asked[[*range(40, 50), *range(100, 110)]] = True
    held = measured_frames(info, frames=asked)
    assert held.sum() == 40
    tried = tmp_path / "try.mp4"
    frames = _write_try(info, held=held, to=tried)
    segments, _ = tracking_readers(info, probe(tried), frames=asked, held=held)
    assert [(first, [r.expected_frames for r in readers]) for first, readers in segments] == [
        (40 - MEASURE_LEAD, [20, 20]), (100 - MEASURE_LEAD, [20, 20]),
    ]  # fmt: skip
    for first, (a, b) in segments:
        with a, b:
            for t, (fa, fb) in enumerate(zip(a, b, strict=True), start=first):
                assert np.array_equal(fa, frames[t])
                own = np.abs(fb - frames[t]).mean()
                assert own < np.abs(fb - frames[t - 3]).mean() / 3
    with pytest.raises(ValueError, match="do not hold"):
        tracking_readers(info, probe(tried), frames=asked, held=held & (np.arange(150) != 45))


def test_a_variable_rate_try_is_read_in_step_with_its_input(
    make_vfr_clip: Callable[[str], Path], tmp_path: Path
) -> None:
    """A variable-rate video is read whole (resampled as it is read); a try holding some of
    its frames is read beside it, stepping only on the frames it holds, each meeting its own
    (`held_in_step`). A pass showing FaceMesh a frame the try does not hold is refused."""
    src = make_vfr_clip("vfr.mp4")
    info = probe(src)
    n = FrameReader(info).expected_frames
    assert info.variable_frame_rate and n == 60
    asked = np.zeros(n, bool)
    asked[40:46] = True
    held = measured_frames(info, frames=asked)
    assert np.array_equal(np.flatnonzero(held), np.arange(40 - MEASURE_LEAD, 46))
    tried = tmp_path / "try.mp4"
    frames = _write_try(info, held=held, to=tried)
    segments, _ = tracking_readers(info, probe(tried), frames=asked, held=held)
    assert [(first, [r.expected_frames for r in readers]) for first, readers in segments] == [
        (0, [n, 16])
    ]
    ((_, (a, b)),) = segments
    with a, b:
        met = 0
        for t, (fa, fb) in enumerate(held_in_step([a, b], start=0, held=held)):
            assert np.array_equal(fa, frames[t])
            if not held[t]:
                assert fb is None
                continue
            met += 1
            own = np.abs(fb.astype(int) - frames[t]).mean()
            assert own < np.abs(fb.astype(int) - frames[t - 3]).mean() / 3
    assert met == 16
    with pytest.raises(ValueError, match="do not hold"):
        tracked_landmarks(
            [src, tried], frames=asked, held=held & (np.arange(n) != 43),
            shown=lambda t, got, scale: got[1],
        )  # fmt: skip


def test_held_frames_step_only_where_held() -> None:
    """`held_in_step`: the other videos step on held frames only, None elsewhere, and the
    frames end where a video needed runs out; without held all step together."""
    a = [np.full(1, i) for i in range(6)]
    b = [np.full(1, 10 + i) for i in range(2)]
    held = np.array([0, 1, 0, 1, 0, 1], bool)
    got = [
        (int(x[0]), None if y is None else int(y[0]))
        for x, y in held_in_step([a, b], start=0, held=held)
    ]
    assert got == [(0, None), (1, 10), (2, None), (3, 11), (4, None)]
    assert [int(y[0]) for _, y in held_in_step([a, b], start=0, held=None)] == [10, 11]


def test_the_tracking_finds_the_landmarks_the_check_finds(tmp_path: Path) -> None:
    """On a real clip long enough to be tracked in two halves at once (Obama, 250 frames),
    the landmarks the edit's tracking pass keeps (`FaceTrack.raw`) are, to the bit, those the
    check finds on it: an edit measures its speech without a FaceMesh pass over its input."""
    clip = SPEAKER.parent / "speech_obama_450x450.mp4"
    if not clip.is_file():
        pytest.skip("../shared/clips is absent")
    info = probe(clip)
    assert len(tracking_segments(info)) == 2
    track = analyse_video(
        info, model=ExpressionModel.load(), workdir=tmp_path, reporter=SilentReporter()
    ).track
    assert track.raw is not None
    found = video_landmarks(clip)
    assert found.shape == (250, 478, 2) and not np.isnan(found).any()
    assert np.array_equal(np.asarray(track.raw), found)


def test_the_spans_a_partial_pass_reads() -> None:
    """Each run of frames is read from MEASURE_LEAD frames before it, not before its tracking
    segment's start (where the tracking, too, starts afresh); runs whose spans meet are read
    as one; every frame asked, the spans are the tracking's own segments."""
    frames = np.zeros(250, bool)
    frames[[*range(60, 80), *range(85, 90), *range(130, 140), *range(200, 210)]] = True
    lead = MEASURE_LEAD
    assert measured_spans(frames, within=(0, 125)) == [(60 - lead, 90 - 60 + lead)]
    assert measured_spans(frames, within=(125, 125)) == [(125, 15), (200 - lead, 10 + lead)]
    assert measured_spans(frames, within=None) == [
        (60 - lead, 30 + lead), (130 - lead, 10 + lead), (200 - lead, 10 + lead),
    ]  # fmt: skip
    every = np.ones(250, bool)
    assert measured_spans(every, within=(125, 125)) == [(125, 125)]
    assert measured_spans(np.zeros(250, bool), within=None) == []


def test_a_pass_over_some_frames_finds_them_as_a_whole_pass_does() -> None:
    """On Obama, landmarks asked for three runs of frames: only their spans are shown to
    FaceMesh (the other rows are NaN), and on the frames asked the inner lips lie within
    0.3% of the eye distance of a whole pass's (what FaceMesh's tracking carries from
    earlier frames); every frame asked, the pass is the whole one, to the bit."""
    clip = SPEAKER.parent / "speech_obama_450x450.mp4"
    if not clip.is_file():
        pytest.skip("../shared/clips is absent")
    whole = video_landmarks(clip)
    frames = np.zeros(250, bool)
    frames[[*range(60, 80), *range(130, 140), *range(200, 230)]] = True
    seen: list[int] = []
    some = video_landmarks(clip, frames=frames, on_frame=lambda: seen.append(1))
    shown = measured_frames(probe(clip), frames=frames)
    # The second run begins 5 frames into the second half, tracked from its own start.
    spans = [(60 - MEASURE_LEAD, 30), (125, 15), (200 - MEASURE_LEAD, 40)]
    read = [t for first, count in spans for t in range(first, first + count)]
    assert np.array_equal(shown, np.isin(np.arange(250), read))
    assert some.shape == whole.shape and len(seen) == shown.sum() == 85
    assert np.isnan(some[~shown]).all() and not np.isnan(some[shown]).any()
    inner = list(LIPS_INNER)
    right, left = eye_centres(whole[frames])
    iod = np.linalg.norm(left - right, axis=-1)
    apart = np.linalg.norm(some[frames][:, inner] - whole[frames][:, inner], axis=-1)
    assert (apart.mean(axis=1) / iod).mean() < 0.003
    assert np.array_equal(video_landmarks(clip, frames=np.ones(250, bool)), whole)


def test_no_keep_speech_edits_once_and_the_speech_can_change(speaker: Path, tmp_path: Path) -> None:
    """What the default measures away: with --no-keep-speech the same edit is made once, at
    full strength, unmeasured, and its mouth's opening reads 0.954 (changed)."""
    out = tmp_path / "sad.mp4"
    result = CliRunner().invoke(
        app, ["edit", str(speaker), "-e", "sad", "--no-keep-speech", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "speech kept" not in result.output and "speech changed" not in result.output
    found = check_speech(before=speaker, after=out, whole=False)
    assert found.whole is None
    assert not found.kept and found.mouth.opening_corr < OPENING_LIMIT


@pytest.mark.parametrize(
    ("asked", "mouth", "measured"),
    [
        (None, "natural", True),
        (None, "strict", False),
        (None, "expressive", False),
        (False, "natural", False),
        (True, "strict", True),
        (True, "expressive", True),
    ],
)
def test_the_speech_is_kept_by_default_in_natural_mode_only(
    asked: bool | None, mouth: str, measured: bool
) -> None:
    """Strict mode holds the mouth region still, expressive mode gives the lips to the
    emotion: neither is measured unless asked."""
    assert keeps_speech(asked, mouth=mouth) is measured
    assert EditOptions(keep_speech=asked, mouth=mouth).measures_speech is measured
    assert ("keep_speech" in EditOptions(keep_speech=asked, mouth=mouth).result_options()) is (
        measured
    )


def test_an_edit_whose_speech_stays_changed_ends_with_the_corners_held_and_says_so(
    speaker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every try measured as changed (a stand-in for the measuring, and two tries instead of
    four): the last, with the lip corners held, is the one written, and the note names the
    way left, strict mode."""
    tries: list[Path] = []

    def always_changed(**kw: object) -> list[SpeechCheck | str]:
        tries.append(Path(str(kw["after"])))
        return [_check(0.01, 0.95)]

    monkeypatch.setattr(speech_check, "check_speech_parts", always_changed)
    monkeypatch.setattr("spfem_cli.pipeline.KEEP_SPEECH_SCALES", (1.0, 0.0))
    out = tmp_path / "sad.mp4"
    report = edit_video(input_path=speaker, output_path=out, emotion="sad", device="cpu")
    assert len(tries) == 2 and all(t.parent != tmp_path for t in tries)
    note = report.notes[-1]
    assert note.startswith("speech changed:") and "with the lip corners held" in note, note
    assert note.endswith("--mouth strict keeps the whole mouth region")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sad.mp4"]


@pytest.mark.parametrize("raised", [False, True])
def test_an_edit_whose_speech_cannot_be_measured_is_kept_and_says_so(
    speaker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: bool
) -> None:
    """The measuring failing (FaceMesh finding a face too seldom in a part, or an error of
    the whole measuring) is no reason to throw the edit away: it is written, once, with a
    note."""
    why = "FaceMesh found a face on 2 frames of both videos: too few to measure"

    def unmeasurable(**_: object) -> list[SpeechCheck | str]:
        if raised:
            raise SpfemError(why)
        return [why]

    monkeypatch.setattr(speech_check, "check_speech_parts", unmeasurable)
    out = tmp_path / "sad.mp4"
    report = edit_video(input_path=speaker, output_path=out, emotion="sad", device="cpu")
    assert report.n_edited == 100
    assert report.notes[-1] == f"the speech was not measured: {why}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sad.mp4"]


def test_keep_speech_is_refused_for_a_photo(tmp_path: Path) -> None:
    photo = tmp_path / "face.png"
    run_ffmpeg_checked("-f", "lavfi", "-i", "testsrc2=size=160x120", "-frames:v", "1", str(photo))
    result = CliRunner().invoke(app, ["edit", str(photo), "-e", "sad", "--keep-speech"])
    assert result.exit_code == 2, result.output
    assert "--keep-speech measures a video's speech; a photo has none" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png"]


@pytest.mark.parametrize("emotions", [["neutral"], ["neutral", "surprised"]])
def test_a_batch_keeps_the_speech_of_every_video(
    speaker: Path, tmp_path: Path, emotions: list[str]
) -> None:
    """`spfem batch` in natural mode, one emotion (`edit_video`'s path) or several (one shared
    tracking pass, `render_edit` per emotion): each video's edit is measured by default, the
    record says what was measured and keeps the option; a photo beside it is edited once,
    unmeasured. (Emotions that leave the lips be, so the first try keeps the speech: the
    tries after it are `test_keep_speech_edits_again_until_the_speech_is_kept`'s.)"""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(speaker, folder / "talk.mp4")
    run_ffmpeg_checked(
        "-f", "lavfi", "-i", "testsrc2=size=160x120", "-frames:v", "1", str(folder / "card.png")
    )  # fmt: skip
    summary = run_batch(
        in_dir=folder,
        out_dir=tmp_path / "out",
        emotions=emotions,
        pattern="*",
        options=EditOptions(),
    )
    assert summary.ok
    talk = [r for r in summary.records if r.input == "talk.mp4"]
    assert len(talk) == len(emotions)
    for record in talk:
        assert record.options["keep_speech"] is True
        assert any(n.startswith("speech kept:") for n in record.notes), record.notes
    card = [r for r in summary.records if r.input == "card.png"]
    assert len(card) == len(emotions)
    assert all(r.status == "done" and not any("speech" in n for n in r.notes) for r in card)
