"""facs-v2, the expression model calibrated on real faces by scripts/calibrate_expressions.py.

The checkpoint tests need only the weights. The clip tests measure the acted clips again with the
script's own functions (about 15 s on two cores, once per module) and compare facs-v1 and
facs-v2 with what the faces do. What they ask of the within-clip pattern is limited to where
that pattern carries a direction at all: see the script's docstring and `test_within_pattern`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from spfem_cli.face.mesh import FACE_OVAL, JAW, LIPS_INNER, N_LANDMARKS
from spfem_cli.generator.checkpoint import load_checkpoint, verify_manifest
from spfem_cli.generator.expression import EMOTIONS, ExpressionModel

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"
SCRIPT = REPO / "scripts" / "calibrate_expressions.py"
CLIPS = REPO.parent / "shared" / "clips"
ACTED = ("happy", "sad", "surprised", "fear", "disgusted", "contempt")
# EMFACS: the AUs that make each emotion.
DEFINING = {
    "angry": ("AU4", "AU5", "AU7", "AU23"),
    "contempt": ("AU12R", "AU14R"),
    "disgusted": ("AU9", "AU10", "AU15"),
    "fear": ("AU1", "AU2", "AU4", "AU5", "AU7", "AU20"),
    "happy": ("AU6", "AU12"),
    "sad": ("AU1", "AU4", "AU15"),
    "surprised": ("AU1", "AU2", "AU5"),
}


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calibrate_expressions", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is being built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return _load_script()


@pytest.fixture(scope="module")
def v1() -> ExpressionModel:
    return ExpressionModel.load("facs-v1", weights_dir=WEIGHTS)


@pytest.fixture(scope="module")
def v2() -> ExpressionModel:
    return ExpressionModel.load("facs-v2", weights_dir=WEIGHTS)


@pytest.fixture(scope="module")
def mirror() -> np.ndarray:
    return load_checkpoint(WEIGHTS / "facs_v1.safetensors").tensors["mirror"].numpy()


def _disp(model: ExpressionModel, emotion: str) -> np.ndarray:
    return model.emotion_displacement(emotion).double().numpy()


def test_v2_loads_by_name_with_the_same_names(v1: ExpressionModel, v2: ExpressionModel) -> None:
    assert v2.au_names == v1.au_names
    assert v2.emotions == v1.emotions == EMOTIONS
    assert torch.equal(v2.template, v1.template)
    assert torch.equal(v2.estimate_mask, v1.estimate_mask)
    checks = {name: ok for name, ok, _ in verify_manifest(weights_dir=WEIGHTS)}
    assert checks["facs-v1"] and checks["facs-v2"]
    calibration = v2.config["calibration"]
    assert calibration["base"] == "facs-v1"
    assert {f"mead_emotions/{e}.mp4" for e in ACTED} <= set(calibration["clips"]["acted"])
    for emotion in ACTED:
        row = calibration["comparison"][emotion]
        assert {"within_v1", "within_v2", "held_v1", "held_v2", "max_v1", "max_v2"} <= set(row)


def test_prototypes_keep_the_defining_aus(v2: ExpressionModel) -> None:
    assert (v2.prototypes >= 0).all()
    assert torch.count_nonzero(v2.emotion_vector("neutral")) == 0
    for emotion, aus in DEFINING.items():
        vec = v2.emotion_vector(emotion)
        for au in aus:
            assert vec[v2.au_names.index(au)] > 0, (emotion, au)


def test_speech_landmarks_never_move(v2: ExpressionModel) -> None:
    held = list(LIPS_INNER) + list(JAW)
    assert v2.au_basis[:, held].abs().max() == 0
    for emotion in EMOTIONS:
        assert np.abs(_disp(v2, emotion)[held]).max() == 0, emotion
    assert v2.au_basis[:, list(FACE_OVAL)].norm(dim=-1).max() < 0.03


def test_au_fields_keep_their_directions(v1: ExpressionModel, v2: ExpressionModel) -> None:
    """Calibration may only make an AU field larger, never turn it."""
    for k, name in enumerate(v1.au_names):
        old, new = v1.au_basis[k].double(), v2.au_basis[k].double()
        scale = float((new * old).sum() / (old * old).sum())
        assert 1.0 - 1e-6 <= scale < 1.6, name
        assert torch.allclose(new, scale * old, atol=1e-6), name


def test_magnitudes_grow_where_v1_read_weakly(
    script: ModuleType, v1: ExpressionModel, v2: ExpressionModel, mirror: np.ndarray
) -> None:
    upper = script.upper_face(v2)
    f1 = {e: script.feature_values(_disp(v1, e), mirror) for e in EMOTIONS}
    f2 = {e: script.feature_values(_disp(v2, e), mirror) for e in EMOTIONS}
    # The brows of surprise and fear: clearly higher than v1's, at real full-expression size.
    for emotion in ("surprised", "fear"):
        assert f2[emotion]["brow raise"] > f1[emotion]["brow raise"] + 0.015, emotion
        assert f2[emotion]["inner brow raise"] > 0.075, emotion
    assert f2["surprised"]["brow raise"] > 0.10
    # No signature movement got weaker than v1's.
    for emotion, features in script.SIGNATURE.items():
        for feature in features:
            assert f2[emotion][feature] >= f1[emotion][feature] - 1e-3, (emotion, feature)
    for emotion in EMOTIONS[1:]:
        peak = np.linalg.norm(_disp(v2, emotion)[upper], axis=1).max()
        assert peak <= script.MAX_DISPLACEMENT + 1e-6, emotion
        if emotion != "contempt":  # contempt lives in the mouth: its upper face barely moves
            assert peak > 0.06, emotion


def test_emotions_keep_their_signature(v2: ExpressionModel, mirror: np.ndarray) -> None:
    d = {e: _disp(v2, e) for e in EMOTIONS}
    inner, outer = [107, 55, 336, 285], [70, 46, 300, 276]
    # Sad: the oblique brow, inner ends above the outer ones; lip corners down.
    assert d["sad"][inner, 1].mean() < min(-0.02, d["sad"][outer, 1].mean())
    assert d["sad"][[61, 291], 1].min() > 0.03
    # Angry: inner brows down and together.
    assert d["angry"][inner, 1].mean() > 0.05
    assert d["angry"][[107, 55], 0].min() > 0.02 and d["angry"][[336, 285], 0].max() < -0.02
    # Happy: cheeks and lower lids up, lip corners up and out.
    assert d["happy"][[145, 374], 1].max() < -0.015
    assert d["happy"][61, 0] < -0.015 and d["happy"][61, 1] < -0.03
    # Surprised: lids open; the lip corners stay (the jaw drop belongs to the speech).
    assert d["surprised"][[159, 386], 1].max() < -0.025
    assert np.abs(d["surprised"][[61, 291]]).max() < 0.01
    # Every emotion but contempt is mirror-symmetric; contempt is one-sided.
    flip = np.array([-1.0, 1.0])
    for emotion in EMOTIONS:
        gap = np.abs(d[emotion] - d[emotion][mirror] * flip).max()
        assert (gap > 0.03) if emotion == "contempt" else (gap < 1e-5), emotion


# --- on the real clips -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def measured(script: ModuleType, v1: ExpressionModel, mirror: np.ndarray) -> dict:
    """The within and held patterns of the six acted clips, measured as the script does."""
    if not (CLIPS / "mead_emotions").is_dir():
        pytest.skip(f"real clips not found at {CLIPS}")
    pytest.importorskip("mediapipe")
    found, _, _ = script.measure_clips(CLIPS, base=v1, mirror=mirror)
    return found


@pytest.fixture(scope="module")
def rows(
    script: ModuleType,
    measured: dict,
    v1: ExpressionModel,
    v2: ExpressionModel,
    mirror: np.ndarray,
) -> dict:
    return script.comparison({"v1": v1, "v2": v2}, measured, mirror=mirror)


@pytest.mark.clips
def test_calibration_is_reproducible(rows: dict, v2: ExpressionModel) -> None:
    """The clips measured again give the cosines the checkpoint records."""
    stored = v2.config["calibration"]["comparison"]
    for emotion in ACTED:
        for key in ("within_v1", "within_v2", "held_v1", "held_v2"):
            assert rows[emotion][key] == pytest.approx(stored[emotion][key], abs=0.02), (
                emotion,
                key,
            )


@pytest.mark.clips
def test_contempt_is_one_sided_in_the_acted_clip_and_in_the_model(
    script: ModuleType, rows: dict, v2: ExpressionModel
) -> None:
    """The acted contempt squints and frowns on one side, far beyond the other actors' own
    asymmetry (AU4R 0.84, AU7R 1.83 against 0.35 at most); the prototype keeps her
    proportions with the larger at ONE_SIDED_MAX."""
    sides = {e: [rows[e][f"{n}_sides"] for n in script.ONE_SIDED] for e in ACTED}
    others = max(max(v) for e, v in sides.items() if e != "contempt")
    assert min(sides["contempt"]) > 2 * others, sides
    vec = v2.emotion_vector("contempt")
    got = [float(vec[v2.au_names.index(n)]) for n in script.ONE_SIDED]
    assert max(got) == pytest.approx(script.ONE_SIDED_MAX, abs=1e-3)
    measured = np.array(sides["contempt"])
    assert np.allclose(got, measured / measured.max() * script.ONE_SIDED_MAX, atol=0.03), got


@pytest.mark.clips
def test_held_pattern(rows: dict) -> None:
    """v2 is closer than v1 to the expression each actor holds through the clip.

    The held pattern also carries the actor's identity (one actor per emotion), so only
    a clear gain for most emotions and no loss are asked for, and a high cosine only where the
    expression dominates the identity (big brow and lid movements, the smile's cheeks).
    """
    gains = {e: rows[e]["held_v2"] - rows[e]["held_v1"] for e in ACTED}
    assert all(g > -0.01 for g in gains.values()), gains
    assert sum(g > 0.05 for g in gains.values()) >= 4, gains
    for emotion in ("surprised", "fear", "happy"):
        assert rows[emotion]["held_v2"] > 0.6, emotion


@pytest.mark.clips
def test_within_pattern(rows: dict) -> None:
    """The within-clip pattern (the issue's measurement) is tiny in these clips: the actors
    hold the emotion while they speak. Where its sign is determined (its cosine with the prior
    is large enough) v2 must still follow it; elsewhere its cosine is noise in either model,
    and no threshold on it would mean anything (see the script's docstring)."""
    directed = [e for e in ACTED if rows[e]["within_directed"]]
    assert "disgusted" in directed
    for emotion in directed:
        assert rows[emotion]["within_v2"] > 0.6, emotion
        assert rows[emotion]["within_v2"] > rows[emotion]["within_v1"] - 0.1, emotion
    for emotion in ACTED:
        # Far below the 0.1 IOD of a full expression: the measurement is weak, not the model.
        assert rows[emotion]["within_spread"] < 0.08, emotion


@pytest.mark.clips
def test_lip_corners_agree_with_the_faces(rows: dict) -> None:
    """Corner directions (mouth AUs keep their recipe) against the held faces: up and out for
    happy, down for sad and disgusted, the right corner up relative to the left for contempt."""
    for emotion in ("happy", "sad", "disgusted", "contempt"):
        assert rows[emotion]["corners_v2"] > 0.5, emotion


def test_estimate_recovers_v2_prototypes(v2: ExpressionModel) -> None:
    """The rescaled fields stay separable: the AU estimate reads each emotion back (the AUs
    it reads: contempt's one-sided squint and frown are played, never read)."""
    for emotion in EMOTIONS:
        vec = v2.emotion_vector(emotion, intensity=0.8) * v2.read_aus
        got = v2.estimate(v2.displacement(vec)[None])[0]
        assert torch.allclose(got, vec, atol=0.01), emotion
    assert v2.template.shape == (N_LANDMARKS, 2)
