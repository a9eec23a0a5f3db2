"""`spfem check`: whether an edit kept its input's speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spfem_cli.cli import app
from spfem_cli.evaluate import SpeechReport, mouth_window, video_landmarks
from spfem_cli.media import FrameReader, FrameWriter, probe
from spfem_cli.pipeline import edit_video
from spfem_cli.speech_check import INNER_LIP_LIMIT, OPENING_LIMIT, STILL_MOUTH, SpeechCheck
from tests.conftest import MakeClip

SPEAKER = Path(__file__).resolve().parents[2] / "shared" / "clips" / "speech_man_256x256.mp4"
needs_speaker = pytest.mark.skipif(not SPEAKER.is_file(), reason="../shared/clips is absent")


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


def test_videos_without_a_face_are_refused(make_clip: MakeClip) -> None:
    a = make_clip("a.mp4", size=(160, 120))
    result = CliRunner().invoke(app, ["check", "-q", str(a), str(a)])
    assert result.exit_code == 2, result.output
    assert "found a face on 0 frames" in result.output


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


@needs_speaker
def test_check_finds_lips_one_frame_late(tmp_path: Path) -> None:
    late = tmp_path / "late.mp4"
    _mouth_one_frame_late(SPEAKER, late)
    result = CliRunner().invoke(app, ["check", "-q", str(SPEAKER), str(late)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("speech changed")


@needs_speaker
def test_check_finds_a_strict_edit_kept_the_speech(tmp_path: Path) -> None:
    """speech_man edited to sad with the whole mouth kept (`--mouth strict`, which the check
    advises when natural mode's corners change how the lips read): mouth alone, inner lips
    0.49% and opening 0.987. The input is not changed by the check."""
    out = tmp_path / "sad.mp4"
    edit_video(input_path=SPEAKER, output_path=out, emotion="sad", mouth="strict", device="cpu")
    before = SPEAKER.read_bytes()
    result = CliRunner().invoke(app, ["check", "-q", str(SPEAKER), str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("speech kept")
    assert "over 300 frames" in result.output
    assert SPEAKER.read_bytes() == before
