"""`spfem compare`: an input and its edit side by side in one video, with the edit's audio."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spfem_cli.cli import app
from spfem_cli.compare import GAP_PX, side_by_side, write_comparison
from spfem_cli.errors import SpfemError
from spfem_cli.media import FrameReader, audio_packet_checksums, probe, temporary_pattern
from tests.conftest import MakeClip

runner = CliRunner()


def frames(path: Path) -> list[np.ndarray]:
    with FrameReader(probe(path)) as reader:
        return list(reader)


def test_side_by_side_scales_the_right_to_the_lefts_height_and_keeps_an_even_width() -> None:
    left = np.full((60, 81, 3), 200, np.uint8)
    right = np.full((30, 40, 3), 50, np.uint8)
    out = side_by_side(left, right)
    # 81 + 8 + 80 is odd: one more column of gap.
    assert out.shape == (60, 81 + GAP_PX + 1 + 80, 3)
    assert np.all(out[:, :81] == 200) and np.all(out[:, 81 : 81 + GAP_PX + 1] == 0)
    assert np.abs(out[:, -80:].astype(int) - 50).max() <= 1


def test_a_clip_and_its_edit_play_side_by_side_with_the_edits_audio(
    make_clip: MakeClip, tmp_path: Path
) -> None:
    before = make_clip("talk.mp4", size=(160, 120), duration=1.0, audio=True)
    after = make_clip("talk.edited.mp4", size=(320, 240), duration=1.2, audio=True, vf="negate")
    out = tmp_path / "cmp.mp4"
    before_bytes = before.read_bytes()
    n = write_comparison(before=before, after=after, output=out)
    info = probe(out)
    assert n == info.n_frames == probe(before).n_frames == 25  # the shorter's frames
    assert (info.width, info.height) == (160 + GAP_PX + 160, 120)
    shown, left, right = frames(out), frames(before), frames(after)
    for t in (0, 12, 24):
        # Up to the encoder's loss: the left is the input, the right the edit at half size.
        assert np.abs(shown[t][:, :160].astype(int) - left[t]).mean() < 6
        half = right[t].reshape(120, 2, 160, 2, 3).mean(axis=(1, 3))
        assert np.abs(shown[t][:, -160:].astype(int) - half).mean() < 8
    assert audio_packet_checksums(out) == audio_packet_checksums(after)
    assert before.read_bytes() == before_bytes


def test_an_output_folder_takes_the_comparison_under_its_default_name(
    make_clip: MakeClip, tmp_path: Path
) -> None:
    """`spfem compare BEFORE AFTER -o FOLDER` writes FOLDER/AFTER.compare.mp4, as `spfem edit
    -o FOLDER` writes its edit there."""
    before = make_clip("talk.mp4", size=(96, 64), duration=0.3)
    after = make_clip("talk.sad.mp4", size=(96, 64), duration=0.3, vf="negate")
    folder = tmp_path / "cmp"
    folder.mkdir()
    result = runner.invoke(app, ["compare", str(before), str(after), "-o", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in folder.iterdir()] == ["talk.sad.compare.mp4"]


def test_bad_input_is_one_line_and_leaves_nothing(make_clip: MakeClip, tmp_path: Path) -> None:
    before = make_clip("a.mp4", rate="25")
    other_rate = make_clip("b.mp4", rate="30")
    out = tmp_path / "cmp.mp4"
    cases = [
        (["compare", str(tmp_path / "missing.mp4"), str(before), "-o", str(out)], "missing"),
        (["compare", str(before), str(other_rate), "-o", str(out)], "fps"),
        (["compare", str(before), str(before), "-o", str(before)], "input file"),
        (["compare", str(before), str(before), "-o", str(tmp_path / "cmp.png")], "video"),
    ]
    for args, words in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("spfem: error:"), result.output
        assert words in lines[0], lines[0]
    assert not out.exists()
    assert not list(tmp_path.glob(temporary_pattern(out)))
    out.write_bytes(b"kept")
    with pytest.raises(SpfemError, match="exists"):
        write_comparison(before=before, after=before, output=out)
    assert out.read_bytes() == b"kept"


def test_an_interrupted_comparison_leaves_nothing(
    make_clip: MakeClip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C halfway: no output, no temporary file beside it."""
    import spfem_cli.compare as compare

    before = make_clip("a.mp4", duration=1.0)
    out = tmp_path / "cmp.mp4"
    calls = []

    def interrupted(left: np.ndarray, right: np.ndarray, **kw: int) -> np.ndarray:
        calls.append(1)
        if len(calls) > 10:
            raise KeyboardInterrupt
        return side_by_side(left, right, **kw)

    monkeypatch.setattr(compare, "side_by_side", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_comparison(before=before, after=before, output=out)
    assert not out.exists() and not list(tmp_path.glob(temporary_pattern(out)))


@pytest.mark.skipif(
    not (Path(__file__).resolve().parents[2] / "shared" / "clips").is_dir(),
    reason="../shared/clips is absent",
)
def test_a_real_edit_against_its_input(clips_dir: Path, tmp_path: Path) -> None:
    """The CLI on a real clip and its `spfem edit`: the left half is the input, the right the
    edit (which differs from it on the face), the audio the edit's, bit for bit."""
    clip = clips_dir / "speech_obama_450x450.mp4"
    edited = tmp_path / "obama.happy.mp4"
    result = runner.invoke(
        app, ["edit", str(clip), "-e", "happy", "--end", "1", "--no-keep-speech", "-o", str(edited)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["compare", str(clip), str(edited)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "obama.happy.compare.mp4"
    assert f"wrote {out}" in result.output
    shown, left, right = frames(out), frames(clip), frames(edited)
    assert len(shown) == len(left) == len(right)
    for t in (10, 20):
        assert np.abs(shown[t][:, :450].astype(int) - left[t]).mean() < 3
        assert np.abs(shown[t][:, -450:].astype(int) - right[t]).mean() < 3
        assert np.abs(right[t].astype(int) - left[t]).max() > 30  # the face was edited
    assert audio_packet_checksums(out) == audio_packet_checksums(edited)
    assert os.access(out, os.R_OK)
