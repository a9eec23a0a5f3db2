"""MediaPipe's start-up chatter is silenced without losing the process's own stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

from spfem_cli import demo
from spfem_cli.face.tracker import _native_stderr_silenced
from spfem_cli.media import FrameWriter


def _stderr_identity() -> tuple[int, int]:
    info = os.fstat(2)
    return info.st_dev, info.st_ino


def test_silenced_sections_in_two_threads_leave_stderr_where_it_was() -> None:
    """Thread A silences stderr and waits for B to silence it too; then A leaves first. Two
    sections that overlap this way each restored what they found on entry, so B restored A's
    /dev/null. Sections now take turns (B enters after A's wait times out), and fd 2 ends up
    as it started."""
    before = _stderr_identity()
    a_inside, b_inside, a_left = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with _native_stderr_silenced():
            a_inside.set()
            b_inside.wait(timeout=0.5)
        a_left.set()

    def second() -> None:
        a_inside.wait()
        with _native_stderr_silenced():
            b_inside.set()
            a_left.wait(timeout=0.5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _stderr_identity() == before


def test_edit_still_reports_after_tracking_in_two_threads(tmp_path: Path) -> None:
    """A clip long enough to be tracked as two halves at once (`tracking_segments`): the
    command still prints its progress and the 'wrote' line on stderr. They went nowhere when
    the two trackers' silenced start-ups overlapped."""
    clip = tmp_path / "portrait.mp4"
    with FrameWriter(clip, width=192, height=192, fps=Fraction(25)) as writer:
        for frame in demo.portrait_frames(n_frames=130, size=192):
            writer.write(frame)
    out = tmp_path / "portrait.happy.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "spfem_cli", "edit", str(clip), "-e", "happy", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file()
    assert f"wrote {out}" in done.stderr.replace("\n", "")
