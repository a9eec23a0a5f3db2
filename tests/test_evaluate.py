"""The measurements themselves: the mouth-only landmarks and what they stand on."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from spfem_cli.evaluate import (
    compare_speech,
    detector_gain,
    mouth_window,
    outline_window,
    video_landmarks,
    window_landmarks,
)
from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.expression import DETECTOR_GAIN, DETECTOR_GAIN_AUS, ExpressionModel
from spfem_cli.generator.generator import build_generator
from spfem_cli.media import FrameReader, probe
from spfem_cli.pipeline import analyse_video
from spfem_cli.progress import SilentReporter

from .conftest import run_ffmpeg_checked

OBAMA = "speech_obama_450x450.mp4"


def test_mouth_window_covers_the_lips_and_not_the_eyes() -> None:
    model = ExpressionModel.load()
    face = FaceFrame(origin=np.array([200.0, 150.0]), angle=0.2, iod=100.0)
    landmarks = face.to_image(model.template.double().numpy())
    weight = mouth_window((400, 400), landmarks)

    def at(points: np.ndarray) -> np.ndarray:
        xy = np.round(points).astype(int)
        return weight[xy[:, 1], xy[:, 0]]

    assert np.all(at(landmarks[list(mesh.LIPS_OUTER + mesh.LIPS_INNER)]) == 1.0)
    assert np.all(at(landmarks[list(mesh.RIGHT_EYE + mesh.LEFT_EYE)]) == 0.0)
    assert np.all(at(landmarks[list(mesh.RIGHT_EYEBROW + mesh.LEFT_EYEBROW)]) == 0.0)


def test_outline_window_follows_the_face_oval_only() -> None:
    model = ExpressionModel.load()
    face = FaceFrame(origin=np.array([200.0, 150.0]), angle=-0.1, iod=100.0)
    landmarks = face.to_image(model.template.double().numpy())
    weight = outline_window((400, 400), landmarks)
    xy = np.round(landmarks).astype(int)
    on = weight[xy[:, 1], xy[:, 0]]
    assert np.all(on[list(mesh.FACE_OVAL)] == 1.0)
    assert np.all(on[list(mesh.NOSE + mesh.LIPS_OUTER + mesh.RIGHT_EYE + mesh.LEFT_EYE)] == 0.0)


def test_speech_is_compared_a_chunk_at_a_time_as_in_one_pass(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`compare_speech` reads memory-mapped landmarks a chunk at a time (memory flat in the
    video's length): chunks of 100 frames give what one chunk gives, frames without a face in
    either video and at the chunks' seams included, and a frame without a face counts in
    neither the error nor the motion."""
    rng = np.random.default_rng(0)
    face = rng.normal(size=(478, 2)) * 50 + 200
    lm_in = np.lib.format.open_memmap(
        tmp_path / "in.npy", mode="w+", dtype=np.float32, shape=(450, 478, 2)
    )
    lm_in[:] = face + rng.normal(size=(450, 478, 2))
    lm_out = lm_in + rng.normal(size=(450, 478, 2)).astype(np.float32) * 0.5
    lm_in[[5, 99, 100, 300]] = np.nan
    lm_out[[7, 101, 449]] = np.nan
    whole = compare_speech(lm_in, lm_out)
    monkeypatch.setattr("spfem_cli.evaluate.SPEECH_CHUNK", 100)
    chunked = compare_speech(lm_in, lm_out)
    assert whole.frames == chunked.frames == 450 - 7
    for field in ("inner_lip_error", "opening_corr", "jitter_in", "jitter_out"):
        assert getattr(chunked, field) == pytest.approx(getattr(whole, field), rel=1e-12)
    assert 0 < whole.inner_lip_error < 0.05 and np.isfinite(whole.jitter_in)


def test_speech_is_compared_on_the_frames_asked_only(tmp_path: Path) -> None:
    """An edit's speech is measured on the frames it edited: the frames asked are measured as
    the same frames cut out of both videos would be, whatever the others hold, and chunk by
    chunk as in one pass."""
    rng = np.random.default_rng(1)
    face = rng.normal(size=(478, 2)) * 50 + 200
    lm_in = face + rng.normal(size=(300, 478, 2))
    lm_out = lm_in + rng.normal(size=(300, 478, 2)) * 0.2
    lm_out[200:260] += rng.normal(size=(60, 478, 2)) * 3.0  # the edited frames' change
    edited = np.zeros(300, bool)
    edited[200:260] = True
    alone = compare_speech(lm_in[200:260], lm_out[200:260])
    asked = compare_speech(lm_in, lm_out, frames=edited)
    assert asked.frames == alone.frames == 60
    for field in ("inner_lip_error", "opening_corr", "opening_error"):
        assert getattr(asked, field) == pytest.approx(getattr(alone, field), rel=1e-12)
    # Measured over the whole clip, the 240 frames passed through dilute the change.
    diluted = compare_speech(lm_in, lm_out)
    assert diluted.inner_lip_error < 0.5 * asked.inner_lip_error
    assert diluted.opening_error < 0.7 * asked.opening_error
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("spfem_cli.evaluate.SPEECH_CHUNK", 50)
        chunked = compare_speech(lm_in, lm_out, frames=edited)
    assert chunked.frames == 60
    assert chunked.inner_lip_error == pytest.approx(asked.inner_lip_error, rel=1e-12)
    assert chunked.opening_corr == pytest.approx(asked.opening_corr, rel=1e-12)


def test_brow_and_lid_edit_leaves_every_mouth_pixel_as_it_was(
    clips_dir: Path, tmp_path: Path
) -> None:
    """The control of scripts/measure_expressions.py: surprise's AU1, AU2 and AU5 alone change
    no pixel in the window `window_landmarks` takes from the output, yet change the eyes."""
    model = ExpressionModel.load()
    info = probe(clips_dir / OBAMA)
    control = np.zeros(model.num_aus)
    for au in ("AU1", "AU2", "AU5"):
        i = model.au_names.index(au)
        control[i] = float(model.emotion_vector("surprised")[i])
    gen = build_generator(model=model, device=torch.device("cpu"), kind="warp")
    analysis = analyse_video(info, model=model, workdir=tmp_path, reporter=SilentReporter())
    picks = set(np.flatnonzero(analysis.track.valid)[::50].tolist())
    checked = 0
    with FrameReader(info) as reader:
        for t, frame in enumerate(reader):
            if t not in picks:
                continue
            points = np.asarray(analysis.track.norm[t], np.float64)
            out = gen.edit_frame(frame, face=analysis.track.frame(t), points=points, delta=control)
            window = mouth_window(frame.shape[:2], analysis.track.landmarks_px(t)) > 0
            assert np.array_equal(out[window], frame[window])
            assert np.abs(out.astype(int) - frame.astype(int)).max() > 20  # the eyes did change
            checked += 1
    assert checked >= 4


def test_mouth_landmarks_of_an_unchanged_video_are_its_own(clips_dir: Path, tmp_path: Path) -> None:
    # speech_man's first 4 s (100 frames of speech): the whole clip's 300 took 10 s.
    clip = tmp_path / "speech_man.mp4"
    run_ffmpeg_checked(
        "-i", str(clips_dir / "speech_man_256x256.mp4"), "-t", "4", "-c:v", "libx264",
        "-crf", "12", "-an", str(clip),
    )  # fmt: skip
    lm = video_landmarks(clip)
    report = compare_speech(lm, window_landmarks(clip, clip, input_lm=lm, window="mouth"))
    assert report.frames == len(lm)
    assert report.inner_lip_error < 1e-3 and report.opening_corr > 0.999


def test_facemesh_sees_a_third_of_lid_and_brow_motion_as_the_edit_assumes(
    clips_dir: Path,
) -> None:
    """`detector_gain` on six real frames of two people agrees with the DETECTOR_GAIN matrix the
    edit undoes (within the spread between faces), including the brow AUs read as one another,
    and FaceMesh misses the cheek raise."""
    model = ExpressionModel.load()
    gen = build_generator(model=model, device=torch.device("cpu"), kind="warp")
    aus = (*DETECTOR_GAIN_AUS, "AU6")
    gains = []
    # The frames scripts/measure_detector_gain.py takes of these clips (three spread over each):
    # one frame's reading varies by about 0.1 from the next.
    for name in (OBAMA, "talk_s18_1280x720.mp4"):
        info = probe(clips_dir / name)
        times = set(np.linspace(0, info.n_frames - 1, 5)[1:-1].round().astype(int))
        with FrameReader(info) as reader:
            frames = [
                f for t, f in enumerate(itertools.islice(reader, max(times) + 1)) if t in times
            ]
        for frame in frames:
            g = detector_gain(frame, generator=gen, aus=aus, step=-1.0)
            assert g is not None
            gains.append(g)
    mean = np.mean(gains, axis=0)
    n = len(DETECTOR_GAIN_AUS)
    assert np.abs(mean[n, n]) < 0.1
    np.testing.assert_allclose(mean[:n, :n], np.array(DETECTOR_GAIN), atol=0.12)
    # Taking off a brow lowering reads as much as an inner brow raise as a lesser lowering.
    au1, au4 = DETECTOR_GAIN_AUS.index("AU1"), DETECTOR_GAIN_AUS.index("AU4")
    assert mean[au4, au1] < -0.5 * mean[au4, au4]


def test_lower_lids_are_read_off_the_pixels() -> None:
    """On painted eyes the lower lid is found where it was painted, below the iris's centre,
    and a lid painted 0.02 IOD higher reads 0.02 higher, with the white showing below the iris
    or not."""
    from spfem_cli.evaluate import LOWER_LID_COLUMNS, lower_lids_seen
    from spfem_cli.generator.warp import iris_radius, lid_lines
    from tests.painted import drop_lower_lids, painted_eyes, template_face

    pts = template_face()
    ff = FaceFrame(origin=np.array([200.0, 150.0]), angle=0.0, iod=120.0)
    seen = []
    for by in (0.0, -0.02):
        moved = pts + drop_lower_lids(pts, by)
        frame = painted_eyes(moved, ff, (420, 400))
        seen.append(lower_lids_seen(frame, face=ff, points=moved))
        for eye, (ring, iris) in enumerate(
            ((mesh.RIGHT_EYE, mesh.RIGHT_IRIS), (mesh.LEFT_EYE, mesh.LEFT_IRIS))
        ):
            centre = moved[iris[0]]
            radius = iris_radius(moved[list(iris)])
            columns = centre[0] + radius * np.array(LOWER_LID_COLUMNS)
            lower = np.median(lid_lines(moved[list(ring)], columns)[1])
            # Within a pixel (0.008 IOD here): the lid's edge is found where its colour is half
            # way from the skin's.
            assert abs(seen[-1][eye] - (lower - centre[1])) < 0.008, (by, eye, seen[-1])
    np.testing.assert_allclose(seen[0] - seen[1], 0.02, atol=0.004)


# Edits 24 frames of three clips five ways (about 40 s on two cores): left to `-m slow`.
@pytest.mark.slow
def test_smile_lids_script_reads_real_smiles_and_the_edit(clips_dir: Path) -> None:
    """scripts/measure_smile_lids.py reads a real smile's lower lids higher than the calm
    face's on expr_d0 (the one smile without glasses), and the edit's lids the higher the more
    lid tightening it is given."""
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, str(root / "scripts" / "measure_smile_lids.py"), "--clips",
         str(clips_dir), "--frames", "4", "--levels", "0", "1"],
        check=True, capture_output=True, text=True, cwd=root,
    )  # fmt: skip
    line = next(x for x in run.stdout.splitlines() if x.startswith("expr_d0:"))
    real = float(re.search(r"real ([-+][\d.]+)", line)[1])
    at_0, at_1 = (float(v) for v in re.findall(r"\d: ([-+][\d.]+)", line))
    assert real > 0.01 and at_1 > at_0 + 0.01, line
