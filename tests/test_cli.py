"""The command line: options reach the library, errors become one line and an exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from spfem_cli import cli
from spfem_cli.errors import SpfemError
from spfem_cli.pipeline import EditReport

runner = CliRunner()


def _fake_report(output: Path) -> EditReport:
    from fractions import Fraction

    return EditReport(
        output=output,
        n_frames=10,
        n_face_frames=8,
        n_edited=8,
        max_faces=2,
        fps=Fraction(25),
        width=64,
        height=64,
        notes=["2 of 10 frames have no face and pass through unchanged"],
    )


def test_edit_passes_every_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fake_edit_video(**kwargs: Any) -> EditReport:
        seen.update(kwargs)
        return _fake_report(Path(kwargs["output_path"]))

    monkeypatch.setattr("spfem_cli.pipeline.edit_video", fake_edit_video)
    out = tmp_path / "o.mp4"
    result = runner.invoke(
        cli.app,
        [
            "edit",
            "in.mp4",
            "--emotion",
            "sad",
            "-o",
            str(out),
            "--intensity",
            "0.5",
            "--device",
            "cpu",
            "--mouth",
            "strict",
            "--start",
            "1",
            "--end",
            "2.5",
            "--overwrite",
            "--rest",
            "calm.png",
            "--side",
            "left",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["input_path"] == Path("in.mp4") and seen["emotion"] == "sad"
    assert seen["output_path"] == out and seen["intensity"] == 0.5
    assert seen["device"] == "cpu" and seen["mouth"] == "strict"
    assert seen["start"] == 1.0 and seen["end"] == 2.5 and seen["overwrite"] is True
    assert seen["rest"] == Path("calm.png") and seen["side"] == "left"
    assert "2 of 10 frames have no face" in result.output


def test_edit_error_is_one_line_with_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(**kwargs: Any) -> EditReport:
        raise SpfemError("input file not found: nope.mp4")

    monkeypatch.setattr("spfem_cli.pipeline.edit_video", failing)
    result = runner.invoke(cli.app, ["edit", "nope.mp4", "--emotion", "happy"])
    assert result.exit_code == 2
    assert result.output.strip() == "spfem: error: input file not found: nope.mp4"
    assert "Traceback" not in result.output


def test_a_folder_given_to_edit_points_to_batch_and_a_video_to_batch_to_edit(
    tmp_path: Path,
) -> None:
    """`spfem edit FOLDER` says that `spfem batch` edits a folder, and `spfem batch VIDEO`
    that `spfem edit` edits a video, in one line, and neither writes anything."""
    (tmp_path / "talk.mp4").write_bytes(b"")
    result = runner.invoke(cli.app, ["edit", str(tmp_path), "--emotion", "happy"])
    assert result.exit_code == 2
    line = " ".join(result.output.split())
    assert line == (
        f"spfem: error: {tmp_path} is a folder, not a video file; `spfem batch {tmp_path} "
        "OUT_DIR --emotion EMOTION` edits every video in it"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.mp4"]
    # And the other way round: a video given to `spfem batch`.
    video = tmp_path / "talk.mp4"
    result = runner.invoke(cli.app, ["batch", str(video), str(tmp_path / "out"), "-e", "sad"])
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == (
        f"spfem: error: {video} is a file, not a folder; `spfem edit` edits one video"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.mp4"]


def test_unexpected_error_has_no_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**kwargs: Any) -> EditReport:
        raise RuntimeError("boom")

    monkeypatch.setattr("spfem_cli.pipeline.edit_video", broken)
    monkeypatch.delenv("SPFEM_DEBUG", raising=False)
    result = runner.invoke(cli.app, ["edit", "x.mp4", "--emotion", "happy"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "RuntimeError: boom" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(**kwargs: Any) -> EditReport:
        raise KeyboardInterrupt

    monkeypatch.setattr("spfem_cli.pipeline.edit_video", interrupted)
    result = runner.invoke(cli.app, ["edit", "x.mp4", "--emotion", "happy"])
    assert result.exit_code == 130


def test_emotions_lists_all_eight() -> None:
    result = runner.invoke(cli.app, ["emotions"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised"):
        assert name in result.output


def test_doctor_reports_ok_here() -> None:
    result = runner.invoke(cli.app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for check in ("ffmpeg", "face models", "torch", "weights: facs-v1"):
        assert check in result.output
    assert "FAIL" not in result.output


def test_doctor_fails_on_a_bad_checksum(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import json
    import shutil

    from spfem_cli.generator import checkpoint

    src = Path(checkpoint.__file__).resolve().parents[2] / "weights"
    shutil.copytree(src, tmp_path / "weights")
    manifest = json.loads((tmp_path / "weights" / "manifest.json").read_text())
    entry = next(iter(manifest["checkpoints"].values()))
    (tmp_path / "weights" / entry["file"]).write_bytes(b"not the checkpoint")
    monkeypatch.setenv("SPFEM_WEIGHTS_DIR", str(tmp_path / "weights"))
    result = runner.invoke(cli.app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 3 and "FAIL" in result.output


def test_version() -> None:
    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("spfem ")


def test_the_command_list_gives_each_command_one_line() -> None:
    """`spfem --help` lists each command by its docstring's first paragraph, line breaks
    kept (rich markup): a paragraph broken over two lines in the code came out broken in
    the middle of a sentence. Each command's own --help still shows the whole docstring."""
    import inspect

    import typer.main

    def commands(group: Any) -> list[Any]:
        found = []
        for command in group.commands.values():
            found.append(command)
            found += commands(command) if hasattr(command, "commands") else []
        return found

    for command in commands(typer.main.get_command(cli.app)):
        first = inspect.cleandoc(command.help or "").split("\n\n")[0]
        assert first and "\n" not in first, command.name
    wide = {"COLUMNS": "200"}
    listed = runner.invoke(cli.app, ["--help"], env=wide)
    assert listed.exit_code == 0
    assert "Write a contact sheet of a few frames of INPUT under each emotion, side by side." in (
        listed.output
    )
    own = runner.invoke(cli.app, ["check", "--help"], env=wide)
    assert own.exit_code == 0 and "would dilute the verdict" in " ".join(own.output.split())
