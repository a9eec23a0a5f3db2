"""Dark glasses: found where no eye shows inside the eyes' outlines, kept still by an edit.

No clip here shows a person in sunglasses, so they are painted on real clips, following the
tracked face (`tests.painted.painted_sunglasses`: rounded lenses shaded darker at the top,
with a highlight, a dark rim and a bridge, letting 8% of the eye through).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion

from spfem_cli.face.lenses import LENS_SPREAD, LensFinder, lens_layer
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.face.tracker import LandmarkTracker
from spfem_cli.media import FrameReader, FrameWriter, probe
from spfem_cli.pipeline import edit_video
from tests.conftest import frames_of
from tests.painted import painted_sunglasses

SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "clips"
needs_clips = pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason="../shared/clips is absent")
REAL_CLIPS = sorted(SHARED_CLIPS.glob("*.mp4")) + sorted(SHARED_CLIPS.glob("mead_emotions/*.mp4"))


def clip_spread(path: Path) -> float:
    """`LensFinder.spread` of a clip, on the frames the tracking pass samples."""
    info = probe(path)
    finder = LensFinder(n_frames=info.n_frames)
    with FrameReader(info) as reader:
        finder.offer_frames(reader)
    return finder.spread()


def with_sunglasses(clip: Path, out: Path, *, n_frames: int) -> np.ndarray:
    """The first n_frames of a real clip with sunglasses painted on the face FaceMesh finds on
    each, written to `out` (near-lossless); returns the glasses' masks (T, H, W) bool."""
    info = probe(clip)
    masks = []
    with (
        FrameReader(info) as reader,
        LandmarkTracker() as tracker,
        FrameWriter(out, width=info.width, height=info.height, fps=info.fps, crf=12) as writer,
    ):
        for frame in itertools.islice(reader, n_frames):
            found = tracker.detect(frame)
            assert found is not None
            painted, mask = painted_sunglasses(frame, FaceFrame.from_landmarks(found.landmarks))
            writer.write(painted)
            masks.append(mask)
    return np.array(masks)


def _painted_clip(
    factory: pytest.TempPathFactory, name: str, *, n_frames: int
) -> tuple[Path, np.ndarray]:
    if not SHARED_CLIPS.is_dir():
        pytest.skip("../shared/clips is absent")
    out = factory.mktemp("lenses") / f"sunglasses_{name}"
    return out, with_sunglasses(SHARED_CLIPS / name, out, n_frames=n_frames)


@pytest.fixture(scope="module")
def obama_in_sunglasses(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    return _painted_clip(tmp_path_factory, "speech_obama_450x450.mp4", n_frames=50)


@pytest.fixture(scope="module")
def s18_in_sunglasses(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """talk_s18's speaker, whose hair meets the painted right lens at her temple."""
    return _painted_clip(tmp_path_factory, "talk_s18_1280x720.mp4", n_frames=31)


@needs_clips
@pytest.mark.parametrize("clip", REAL_CLIPS, ids=lambda p: p.name)
def test_no_real_face_is_taken_for_dark_glasses(clip: Path) -> None:
    """Every clip's eyes show: the spread of grey levels inside their outlines, in the median
    over the frames sampled, is 1.5 times LENS_SPREAD at least for the eye that shows more
    (46 on expr_d3, who squints and frowns hard, in `scripts/measure_lenses.py`); expr_d9,
    d12 and d19 wear clear glasses."""
    assert clip_spread(clip) >= 1.5 * LENS_SPREAD


@needs_clips
def test_painted_sunglasses_are_found(
    obama_in_sunglasses: tuple[Path, np.ndarray], s18_in_sunglasses: tuple[Path, np.ndarray]
) -> None:
    assert clip_spread(obama_in_sunglasses[0]) < LENS_SPREAD
    assert clip_spread(s18_in_sunglasses[0]) < LENS_SPREAD


@needs_clips
def test_the_lenses_are_cut_out_and_not_the_hair_beside_them(
    s18_in_sunglasses: tuple[Path, np.ndarray],
) -> None:
    """On talk_s18, whose hair meets the painted right lens at her temple, the layer covers
    the glasses and little else: the hair, about as dark as the lens is from the skin, ran
    on from the lens to the window's edge before the lens's outline was fitted."""
    clip, masks = s18_in_sunglasses
    frame = frames_of(clip)[30]
    with LandmarkTracker(video_mode=False) as tracker:
        found = tracker.detect(frame)
    assert found is not None
    face = FaceFrame.from_landmarks(found.landmarks)
    layer = lens_layer(frame, face=face, points=face.to_face(found.landmarks.astype(np.float64)))
    assert layer is not None
    x0, y0, x1, y1 = layer.window
    matte = np.zeros(frame.shape[:2], dtype=bool)
    matte[y0:y1, x0:x1] = layer.matte
    glasses = masks[30]
    assert (matte & glasses).sum() >= 0.97 * glasses.sum()
    # Measured 3.6%: hair at the temple and the tail of the brow over the lens's corner.
    assert (matte & ~binary_dilation(glasses, iterations=3)).sum() < 0.06 * glasses.sum()


@needs_clips
def test_sunglasses_are_kept_still_while_the_brows_rise(
    obama_in_sunglasses: tuple[Path, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Surprise on Obama in painted sunglasses: the lenses, rims and bridge come out as they
    went in, while the skin around them, the brows over them, is edited. Left to the warp,
    the lenses' tops were stretched up with the brows and the eyeballs drawn between the lids
    FaceMesh guesses behind them painted lid lines onto the lenses."""
    clip, masks = obama_in_sunglasses
    source = np.array(frames_of(clip))
    core = np.array([binary_erosion(m) for m in masks])
    around = np.array(
        [binary_dilation(m, iterations=12) & ~binary_dilation(m, iterations=2) for m in masks]
    )

    def change(output: Path) -> tuple[float, float]:
        """The 99th percentile of the change (levels, the largest over R, G and B) on the
        glasses, and its mean around them."""
        moved = np.abs(np.array(frames_of(output)).astype(np.int16) - source).max(axis=-1)
        return float(np.percentile(moved[core], 99)), float(moved[around].mean())

    report = edit_video(
        input_path=clip, emotion="surprised", output_path=tmp_path / "kept.mp4", keep_speech=False
    )
    assert any(n.startswith("dark glasses found") for n in report.notes)
    on_glasses, beside = change(report.output)
    # Measured 10 (the encoder's noise on the rims' edges), and 5.5 beside them.
    assert on_glasses < 16 and beside > 3
    monkeypatch.setattr(LensFinder, "found", lambda self: False)
    warped = edit_video(
        input_path=clip, emotion="surprised", output_path=tmp_path / "bent.mp4", keep_speech=False
    )
    # Measured 53.
    assert change(warped.output)[0] > 40
