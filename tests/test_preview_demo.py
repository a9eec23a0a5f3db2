"""`spfem preview` and `spfem demo`: the pictures a person looks at."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from spfem_cli import cli
from spfem_cli.media import FrameReader, probe

runner = CliRunner()
SPEAKER = Path(__file__).resolve().parents[2] / "shared" / "clips" / "speech_man_256x256.mp4"


def test_demo_writes_clip_edit_and_sheet(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["demo", "-o", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    clip, edit = tmp_path / "astronaut.mp4", tmp_path / "astronaut.surprised.mp4"
    a, b = probe(clip), probe(edit)
    assert (a.width, a.height, a.n_frames) == (b.width, b.height, b.n_frames)
    with FrameReader(a) as ra, FrameReader(b) as rb:
        fa, fb = list(ra)[40], list(rb)[40]
    changed = np.abs(fa.astype(int) - fb.astype(int)).max(axis=-1) > 20
    assert changed.sum() > 100  # the face was edited
    sheet = iio.imread(tmp_path / "contact_sheet.png")
    assert sheet.ndim == 3 and sheet.shape[0] > 3 * 200


@pytest.mark.skipif(not SPEAKER.is_file(), reason="../shared/clips is absent")
def test_preview_sheet_of_all_emotions(tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    result = runner.invoke(
        cli.app, ["preview", str(SPEAKER), "-o", str(out), "--frames", "2", "-q"]
    )
    assert result.exit_code == 0, result.output
    sheet = iio.imread(out)
    assert sheet.shape[0] > 2 * 200 and sheet.shape[1] > 9 * 150  # 2 rows, input + 8 emotions


def test_preview_moves_a_silent_mouth_as_expressive_mode_does(
    clips_dir: Path, tmp_path: Path, ffmpeg_checked: Callable[..., None]
) -> None:
    """On a video whose mouth never moves (1 s of talk_s20) natural mode plays as expressive
    mode, as `spfem edit` plays it: the sheet is expressive mode's, to the pixel, and says
    why; on a speaker (speech_man) natural mode's lips are its own and nothing is said."""
    still = tmp_path / "still.mp4"
    ffmpeg_checked(
        "-i", str(clips_dir / "talk_s20_480x908.mp4"), "-t", "1", "-vf", "scale=240:454",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "16", str(still),
    )  # fmt: skip
    said = "the mouth does not move in this video (no speech to keep)"

    def preview(clip: Path, *args: str) -> tuple[str, np.ndarray]:
        out = tmp_path / "sheet.png"
        result = runner.invoke(
            cli.app,
            ["preview", str(clip), "-o", str(out), "--frames", "1", *args],
            env={"COLUMNS": "300"},
        )
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split()), iio.imread(out)

    told, natural = preview(still, "-e", "happy")
    _, expressive = preview(still, "-e", "happy", "--mouth", "expressive")
    assert said in told and np.array_equal(natural, expressive)
    speaker = clips_dir / "speech_man_256x256.mp4"
    told, natural = preview(speaker, "-e", "happy")
    _, expressive = preview(speaker, "-e", "happy", "--mouth", "expressive")
    assert said not in told and not np.array_equal(natural, expressive)


def test_preview_traces_the_glasses_once_a_frame(
    clips_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a clip with glasses every emotion's edit of a previewed frame keeps the rims traced
    once on that frame (eight traces of the same frame before)."""
    from spfem_cli.face.glasses import Rims

    calls: list[int] = []
    trace = Rims.trace

    def counted(self: Rims, frame: np.ndarray, face: object) -> object:
        calls.append(1)
        return trace(self, frame, face)  # type: ignore[arg-type]

    monkeypatch.setattr(Rims, "trace", counted)
    out = tmp_path / "sheet.png"
    result = runner.invoke(
        cli.app,
        ["preview", str(clips_dir / "expr_d19.mp4"), "-o", str(out), "--frames", "2", "-q"],
    )
    assert result.exit_code == 0, result.output
    assert out.exists() and len(calls) == 2


def test_preview_shows_the_emotions_and_mixtures_asked(tmp_path: Path) -> None:
    """`-e` chooses the columns, mixtures as `spfem edit` takes them; a column that could not
    be edited (a timeline, free text without CLIP) is refused before the video is read."""
    from fractions import Fraction

    from spfem_cli.demo import portrait_frames
    from spfem_cli.media import FrameWriter

    clip = tmp_path / "portrait.mp4"
    with FrameWriter(clip, width=256, height=256, fps=Fraction(25)) as writer:
        for frame in portrait_frames(n_frames=10, size=256):
            writer.write(frame)
    sheets = {}
    for name, columns in (("two", ["happy:0.6+surprised:0.4", "sad"]), ("one", ["sad"])):
        out = tmp_path / f"{name}.png"
        args = [x for column in columns for x in ("-e", column)]
        result = runner.invoke(
            cli.app, ["preview", str(clip), "-o", str(out), "--frames", "1", "-q", *args]
        )
        assert result.exit_code == 0, result.output
        sheets[name] = iio.imread(out)
    # A folder takes the sheet under its default name.
    folder = tmp_path / "sheets"
    folder.mkdir()
    result = runner.invoke(
        cli.app, ["preview", str(clip), "-o", str(folder), "--frames", "1", "-q", "-e", "sad"]
    )
    assert result.exit_code == 0, result.output
    assert np.array_equal(iio.imread(folder / "spfem-preview.png"), sheets["one"])
    # input + 2 columns against input + 1, one cell wide each; the sad cells are the same.
    two, one = sheets["two"], sheets["one"]
    cell = two.shape[1] - one.shape[1]
    assert abs(one.shape[1] - 2 * cell) <= 2
    assert np.array_equal(two[40:, -cell:], one[40:, -cell:])
    assert np.abs(two[40:, cell : 2 * cell].astype(int) - one[40:, :cell]).max() > 40
    for spec, expect in (("0-1:happy", "has time ranges"), ("smug", "CLIP weights")):
        result = runner.invoke(
            cli.app,
            ["preview", str(tmp_path / "absent.mp4"), "-o", str(tmp_path / "x.png"), "-e", spec],
            env={"COLUMNS": "300"},
        )
        assert result.exit_code == 2 and expect in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_preview_refuses_bad_output(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["preview", "x.mp4", "-o", str(tmp_path / "a.jpg"), "-q"])
    assert result.exit_code == 2 and "PNG" in result.output


def test_preview_reads_the_rest_face_first(make_clip: Callable[..., Path], tmp_path: Path) -> None:
    """`--rest` reaches the preview: a calm face that is not there is refused before the
    tracking pass, in one line."""
    clip = make_clip("in.mp4")
    out = tmp_path / "sheet.png"
    result = runner.invoke(
        cli.app,
        ["preview", str(clip), "-o", str(out), "-q", "--rest", str(tmp_path / "calm.png")],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 2 and not out.exists()
    assert "rest face" in result.output and "does not exist" in result.output
    assert len(result.output.strip().splitlines()) == 1
    # A time range is read from the previewed video itself (this one is 1 s long).
    result = runner.invoke(
        cli.app,
        ["preview", str(clip), "-o", str(out), "-q", "--rest", "2-3"],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 2 and not out.exists()
    assert f"2-3 s is past the end of {clip}" in result.output


def test_preview_puts_the_sneer_on_the_side_asked(tmp_path: Path) -> None:
    """`--side` reaches the preview: on the painted portrait, which faces the camera, auto
    is the right side, left another sheet; a side that is not one is refused in one line."""
    from fractions import Fraction

    from spfem_cli.demo import portrait_frames
    from spfem_cli.media import FrameWriter

    clip = tmp_path / "portrait.mp4"
    with FrameWriter(clip, width=256, height=256, fps=Fraction(25)) as writer:
        for frame in portrait_frames(n_frames=10, size=256):
            writer.write(frame)
    sheets = {}
    for side in ("auto", "right", "left"):
        out = tmp_path / f"{side}.png"
        result = runner.invoke(
            cli.app,
            ["preview", str(clip), "-o", str(out), "--frames", "1", "-q", "-e", "contempt",
             "--side", side],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        sheets[side] = iio.imread(out).astype(int)
    assert np.array_equal(sheets["auto"], sheets["right"])
    assert np.abs(sheets["left"] - sheets["right"]).max() > 40
    refusals = (("--side", "unknown side 'up'"), ("--face", "--face must be largest, left, right"))
    for option, said in refusals:
        result = runner.invoke(
            cli.app,
            ["preview", str(clip), "-o", str(tmp_path / "x.png"), "-q", option, "up"],
            env={"COLUMNS": "300"},
        )
        assert result.exit_code == 2 and said in result.output, option
        assert len(result.output.strip().splitlines()) == 1
