"""Shots: a cut is found from the frames' thumbnails, the landmarks are smoothed within shots,
and each shot's expression is read against its own calm face."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pytest

from spfem_cli import demo
from spfem_cli.face.shots import CUT, cut_score, shot_ranges, thumbnail
from spfem_cli.face.track import smooth_shots, track_frames
from spfem_cli.generator.expression import DEFAULT_MODEL, ExpressionModel
from spfem_cli.media import probe
from spfem_cli.pipeline import (
    EXPRESSION_SMOOTHING_S,
    analyse_video,
    analysis_notes,
    estimate_expression,
)
from spfem_cli.progress import SilentReporter

from .conftest import run_ffmpeg_checked


def test_thumbnail_and_cut_score() -> None:
    frame = np.zeros((90, 160, 3), dtype=np.uint8)
    frame[:, 80:] = 255  # right half white
    thumb = thumbnail(frame)
    assert thumb.shape == (8, 8, 3) and thumb.dtype == np.float32
    assert np.allclose(thumb[:, :4], 0) and np.allclose(thumb[:, 4:], 1)
    assert cut_score(thumb, thumb) == 0
    assert cut_score(thumb, thumbnail(255 - frame)) == pytest.approx(1.0)
    # A frame smaller than the thumbnail's blocks at the stride still gives one.
    assert thumbnail(np.full((5, 7, 3), 51, dtype=np.uint8)).max() == pytest.approx(0.2)


def test_shot_ranges() -> None:
    cuts = np.zeros(10, dtype=bool)
    assert shot_ranges(cuts) == [(0, 10)]
    cuts[[0, 4, 7]] = True
    assert shot_ranges(cuts) == [(0, 4), (4, 7), (7, 10)]
    assert shot_ranges(np.zeros(0, dtype=bool)) == []


def test_smoothing_stays_within_shots() -> None:
    x = np.r_[np.zeros(10), np.ones(10)]
    valid = np.ones(20, dtype=bool)
    across = smooth_shots(x, valid, [(0, 20)], sigma=2.0)
    within = smooth_shots(x, valid, [(0, 10), (10, 20)], sigma=2.0)
    assert across[9] > 0.2 and across[10] < 0.8  # blurred over the cut
    assert np.array_equal(within, x)


def test_a_cut_is_found_in_one_segment_and_where_two_segments_meet(tmp_path: Path) -> None:
    """The demo portrait, then the same face moved and on another background: a new shot
    starts at frame 6, whether one thread tracks it all or the second of two starts there."""
    first = list(demo.portrait_frames(n_frames=6, size=192))
    second = []
    for frame in demo.portrait_frames(n_frames=6, size=192):
        moved = np.full_like(frame, 30)
        moved[20:, 30:] = frame[:-20, :-30]
        second.append(moved)
    assert cut_score(thumbnail(first[-1]), thumbnail(second[0])) > CUT
    (tmp_path / "alone").mkdir()
    alone = track_frames([(0, second)], n_frames=6, workdir=tmp_path / "alone")
    for name, sources in (
        ("one", [(0, first + second)]),
        ("two", [(0, first), (6, second)]),
    ):
        work = tmp_path / name
        work.mkdir()
        track = track_frames(sources, n_frames=12, workdir=work)
        assert track.shots() == [(0, 6), (6, 12)], name
        # Frame 6's face is where it is tracked alone, not pulled toward frame 5's, 36 pixels
        # away (the smoothing took a quarter of that when it reached across the cut; FaceMesh
        # itself reads the first face after a cut within a pixel or so of a fresh start).
        assert np.linalg.norm(track.params[5, :2] - track.params[6, :2]) > 30
        assert np.allclose(track.params[6:], alone.params, atol=2.0), name


def test_a_cut_to_another_person_is_read_against_their_own_calm_face(clips_dir: Path) -> None:
    """Obama's first 4 s, then talk_s18's speaker's, joined into one 640x360 video. Read as
    one shot, her face read against the median of both read as a strong expression (brows
    raised 1.2-1.3 and lowered 1.4 activation units), which "neutral" set out to take off.
    Each shot is now read as if it were alone."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fit = "scale=640:360:force_original_aspect_ratio=decrease,pad=640:360:(ow-iw)/2:(oh-ih)/2"
        parts = []
        for name in ("speech_obama_450x450.mp4", "talk_s18_1280x720.mp4"):
            part = work / name
            run_ffmpeg_checked(
                "-i", str(clips_dir / name), "-t", "4", "-vf", f"{fit},fps=25", "-an",
                "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", str(part),
            )  # fmt: skip
            parts.append(part)
        joined = work / "joined.mp4"
        run_ffmpeg_checked(
            "-i", str(parts[0]), "-i", str(parts[1]), "-filter_complex",
            "[0:v][1:v]concat=n=2:v=1:a=0[v]", "-map", "[v]",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", str(joined),
        )  # fmt: skip
        model = ExpressionModel.load(DEFAULT_MODEL)
        analyses = {}
        for path in (joined, parts[1]):
            (work / path.stem).mkdir()
            analyses[path.stem] = analyse_video(
                probe(path), model=model, workdir=work / path.stem, reporter=SilentReporter()
            )
        both, alone = analyses["joined"], analyses[parts[1].stem]
        assert both.track.shots() == [(0, 100), (100, 200)]
        assert any("the video cuts once (at 4.00 s)" in n for n in analysis_notes(both))
        # Her expression as read alone, within 0.15 activation units on every frame and unit;
        # read as one shot with Obama, it was over 1 unit off.
        assert np.abs(both.current[100:] - alone.current).max() < 0.15
        one_shot = estimate_expression(
            dataclasses.replace(both.track, cuts=None),
            model=model,
            sigma_frames=EXPRESSION_SMOOTHING_S * 25,
        )
        assert np.abs(one_shot[100:] - alone.current).max() > 1.0
        # Her landmarks right after the cut as tracked alone (16 pixels off when the smoothing
        # reached across the cut).
        after = both.track.landmarks_px(100) - alone.track.landmarks_px(0)
        assert np.abs(after).mean() < 1.0
