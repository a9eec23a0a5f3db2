"""The FACS expression model: the shipped facs-v1 checkpoint, directions, and the AU estimate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spfem_cli.errors import SpfemError
from spfem_cli.face.mesh import (
    FACE_OVAL,
    JAW,
    LEFT_EYEBROW,
    LIPS_INNER,
    LIPS_OUTER,
    N_LANDMARKS,
    RIGHT_EYEBROW,
    FaceFrame,
)
from spfem_cli.generator.checkpoint import load_checkpoint, save_checkpoint, verify_manifest
from spfem_cli.generator.expression import (
    ACTION_UNITS,
    DETECTOR_GAIN,
    DETECTOR_GAIN_AUS,
    EMOTION_DESCRIPTIONS,
    EMOTIONS,
    ONE_SIDED_AUS,
    PLAYED_ONLY_AUS,
    ExpressionModel,
    canonical_emotion,
    present_expression,
    undo_detector_gain,
)

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
RIGHT_CORNER, LEFT_CORNER = 61, 291
RIGHT_INNER_BROW, LEFT_INNER_BROW = (107, 55), (336, 285)
RIGHT_OUTER_BROW, LEFT_OUTER_BROW = (70, 46), (300, 276)
UPPER_LIDS, LOWER_LIDS = (159, 386), (145, 374)


@pytest.fixture(scope="module")
def model() -> ExpressionModel:
    return ExpressionModel.load("facs-v1", weights_dir=WEIGHTS)


@pytest.fixture(scope="module")
def mirror() -> torch.Tensor:
    return load_checkpoint(WEIGHTS / "facs_v1.safetensors").tensors["mirror"]


def disp(model: ExpressionModel, emotion: str) -> torch.Tensor:
    return model.emotion_displacement(emotion)


def test_shipped_checkpoint_loads_by_name_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPFEM_WEIGHTS_DIR", raising=False)
    by_name = ExpressionModel.load("facs-v1")
    by_path = ExpressionModel.load(WEIGHTS / "facs_v1.safetensors")
    by_str = ExpressionModel.load(str(WEIGHTS / "facs_v1.safetensors"))
    for other in (by_path, by_str):
        assert torch.equal(by_name.au_basis, other.au_basis)
        assert torch.equal(by_name.prototypes, other.prototypes)
    assert ("facs-v1", True) in [row[:2] for row in verify_manifest(weights_dir=WEIGHTS)]
    assert torch.equal(
        ExpressionModel.load().prototypes,
        ExpressionModel.load(WEIGHTS / "facs_v2.safetensors").prototypes,
    )


def test_shapes_and_names(model: ExpressionModel) -> None:
    k = model.num_aus
    assert model.template.shape == (N_LANDMARKS, 2)
    assert model.au_basis.shape == (k, N_LANDMARKS, 2)
    assert model.prototypes.shape == (len(EMOTIONS), k)
    assert model.emotions == EMOTIONS
    assert set(model.au_names) == set(ACTION_UNITS)
    assert set(EMOTION_DESCRIPTIONS) == set(EMOTIONS)
    assert all(isinstance(d, str) and d for d in EMOTION_DESCRIPTIONS.values())
    assert (model.prototypes >= 0).all()
    assert torch.count_nonzero(model.emotion_vector("neutral")) == 0


def test_template_is_a_face_in_the_normalised_frame(model: ExpressionModel) -> None:
    t = model.template.double().numpy()
    right_eye = t[[33, 133]].mean(axis=0)
    left_eye = t[[263, 362]].mean(axis=0)
    np.testing.assert_allclose(right_eye, [-0.5, 0.0], atol=0.02)
    np.testing.assert_allclose(left_eye, [0.5, 0.0], atol=0.02)
    assert t[1, 1] > 0.4 and t[RIGHT_CORNER, 1] > t[1, 1] and t[152, 1] > t[RIGHT_CORNER, 1]
    assert t[list(RIGHT_EYEBROW), 1].max() < 0


def test_emotion_vector_errors_and_scaling(model: ExpressionModel) -> None:
    with pytest.raises(SpfemError, match="angry, contempt, disgusted"):
        model.emotion_vector("bored")
    with pytest.raises(SpfemError, match="intensity"):
        model.emotion_vector("happy", intensity=-0.5)
    with pytest.raises(SpfemError, match="intensity"):
        model.emotion_vector("happy", intensity=float("nan"))
    happy = model.emotion_vector("happy")
    assert torch.allclose(model.emotion_vector("Happy ", intensity=0.5), happy * 0.5)
    assert torch.equal(model.emotion_vector("anger"), model.emotion_vector("angry"))
    assert canonical_emotion("SURPRISE") == "surprised"
    d1 = model.displacement(happy)
    assert torch.allclose(model.displacement(happy * 2), d1 * 2, atol=1e-6)


def test_displacement_batches(model: ExpressionModel) -> None:
    acts = torch.rand(3, 4, model.num_aus)
    out = model.displacement(acts)
    assert out.shape == (3, 4, N_LANDMARKS, 2)
    assert torch.allclose(out[2, 1], model.displacement(acts[2, 1]), atol=1e-6)
    with pytest.raises(ValueError):
        model.displacement(torch.zeros(model.num_aus + 1))


def test_speech_landmarks_never_move(model: ExpressionModel) -> None:
    held = list(LIPS_INNER) + list(JAW)
    assert model.au_basis[:, held].abs().max() == 0
    for emotion in EMOTIONS:
        assert disp(model, emotion)[held].abs().max() == 0, emotion
    # The face outline moves only a little.
    assert model.au_basis[:, list(FACE_OVAL)].norm(dim=-1).max() < 0.02


def test_magnitudes_are_visible_but_natural(model: ExpressionModel) -> None:
    for emotion in EMOTIONS[1:]:
        peak = disp(model, emotion).norm(dim=-1).max()
        assert 0.04 < peak < 0.15, (emotion, float(peak))
    assert model.au_basis.norm(dim=-1).max() < 0.12


def test_happy_lip_corners_up_and_out(model: ExpressionModel) -> None:
    d = disp(model, "happy")
    assert d[RIGHT_CORNER, 1] < -0.03 and d[LEFT_CORNER, 1] < -0.03
    assert d[RIGHT_CORNER, 0] < -0.015 and d[LEFT_CORNER, 0] > 0.015
    assert d[[145, 374], 1].max() < -0.01  # lower lids pushed up by the cheeks


def test_surprised_brows_and_lids_up(model: ExpressionModel) -> None:
    d = disp(model, "surprised")
    brows = list(RIGHT_EYEBROW) + list(LEFT_EYEBROW)
    assert d[brows, 1].max() < -0.03
    assert d[list(UPPER_LIDS), 1].max() < -0.02
    assert d[list(LOWER_LIDS)].abs().max() < 0.005
    assert d[[RIGHT_CORNER, LEFT_CORNER]].abs().max() < 0.005


def test_angry_inner_brows_down_and_together(model: ExpressionModel) -> None:
    d = disp(model, "angry")
    right, left = list(RIGHT_INNER_BROW), list(LEFT_INNER_BROW)
    assert d[right + left, 1].min() > 0.04
    assert d[right, 0].min() > 0.02 and d[left, 0].max() < -0.02  # toward the midline
    # The inner brows lower more than the outer ones.
    assert d[right + left, 1].mean() > d[list(RIGHT_OUTER_BROW + LEFT_OUTER_BROW), 1].mean()


def test_sad_inner_brows_up_corners_down(model: ExpressionModel) -> None:
    d = disp(model, "sad")
    inner = list(RIGHT_INNER_BROW + LEFT_INNER_BROW)
    outer = list(RIGHT_OUTER_BROW + LEFT_OUTER_BROW)
    assert d[inner, 1].max() < -0.02
    assert d[inner, 1].mean() < d[outer, 1].mean()  # the oblique, worried brow
    assert d[RIGHT_CORNER, 1] > 0.03 and d[LEFT_CORNER, 1] > 0.03


def test_disgusted_and_fear(model: ExpressionModel) -> None:
    d = disp(model, "disgusted")
    assert d[[64, 294], 1].max() < -0.02  # nose sides up
    assert d[[RIGHT_CORNER, LEFT_CORNER], 1].min() > 0.02
    d = disp(model, "fear")
    assert d[list(RIGHT_INNER_BROW + LEFT_INNER_BROW), 1].max() < -0.02
    assert d[list(UPPER_LIDS), 1].max() < -0.015
    assert d[RIGHT_CORNER, 0] < -0.03 and d[LEFT_CORNER, 0] > 0.03  # lips stretched


def test_contempt_is_one_sided(model: ExpressionModel, mirror: torch.Tensor) -> None:
    d = disp(model, "contempt")
    assert d[RIGHT_CORNER, 1] < -0.03
    assert d[LEFT_CORNER].norm() < 0.1 * d[RIGHT_CORNER].norm()
    mirrored = d[mirror] * torch.tensor([-1.0, 1.0])
    assert (d - mirrored).norm(dim=-1).max() > 0.03


def test_bilateral_emotions_are_symmetric(model: ExpressionModel, mirror: torch.Tensor) -> None:
    assert torch.equal(mirror[mirror], torch.arange(N_LANDMARKS))
    assert int(mirror[RIGHT_CORNER]) == LEFT_CORNER and int(mirror[33]) == 263
    for emotion in EMOTIONS:
        if emotion == "contempt":
            continue
        d = disp(model, emotion)
        mirrored = d[mirror] * torch.tensor([-1.0, 1.0])
        assert torch.allclose(d, mirrored, atol=1e-6), emotion


def test_estimate_recovers_sparse_activations(model: ExpressionModel) -> None:
    gen = torch.Generator().manual_seed(0)
    k = model.num_aus
    read = model.read_aus
    acts = torch.rand(500, k, generator=gen) * (torch.rand(500, k, generator=gen) < 0.3) * read
    est = model.estimate(model.displacement(acts))
    assert est.shape == (500, k)
    assert (est >= 0).all()
    assert (est - acts).abs().max() < 5e-3
    for emotion in EMOTIONS:
        vec = model.emotion_vector(emotion, intensity=0.8) * read
        got = model.estimate(model.displacement(vec)[None])[0]
        assert torch.allclose(got, vec, atol=5e-3), emotion


def test_one_sided_upper_units_are_played_not_read(model: ExpressionModel) -> None:
    """Contempt's one-sided squint and frown are in the model but never read off a face: the
    fit reads them as what the both-sided units can show of them."""
    played = [model.au_names.index(n) for n in PLAYED_ONLY_AUS]
    assert played and not model.read_aus[played].any()
    squint = torch.zeros(model.num_aus)
    squint[model.au_names.index("AU7R")] = 1.0
    est = model.estimate(model.displacement(squint)[None])[0]
    assert (est[played] == 0).all()
    # Half a squint on both sides is what a one-sided squint has in common with a squint.
    assert 0.3 < est[model.au_names.index("AU7")] < 0.7


def test_one_sided_units_play_on_the_left_as_their_mirror_image(model: ExpressionModel) -> None:
    """side="left" plays the one-sided units as the mirror image of the right side's: each
    landmark moves as its mirror image does on the right, x reversed; both-sided emotions are
    the same on either side."""
    mirror = load_checkpoint("facs-v1").tensors["mirror"].long()
    sneer = torch.tensor([float(n in ONE_SIDED_AUS) for n in model.au_names])
    right = model.displacement(sneer)
    left = model.displacement(sneer, side="left")
    torch.testing.assert_close(left, right[mirror] * torch.tensor([-1.0, 1.0]))
    size = right.norm(dim=-1)
    assert size[list(RIGHT_EYEBROW)].mean() > 0.03 and size[list(LEFT_EYEBROW)].max() < 0.003
    assert left.norm(dim=-1)[list(RIGHT_EYEBROW)].max() < 0.003
    assert set(ONE_SIDED_AUS) <= set(model.au_names)
    for emotion in ("happy", "sad", "surprised", "disgusted"):
        vector = model.emotion_vector(emotion)
        assert torch.equal(model.displacement(vector, side="left"), model.displacement(vector))
    without = ExpressionModel(
        template=model.template,
        au_basis=model.au_basis,
        prototypes=model.prototypes,
        au_names=model.au_names,
        emotions=model.emotions,
    )
    with pytest.raises(SpfemError, match="no mirror map"):
        without.displacement(sneer, side="left")
    with pytest.raises(SpfemError, match="unknown side"):
        model.displacement(sneer, side="up")  # type: ignore[arg-type]


def test_estimate_ignores_the_mouth_and_negative_directions(model: ExpressionModel) -> None:
    offsets = torch.zeros(2, N_LANDMARKS, 2)
    speech = list(LIPS_INNER) + list(LIPS_OUTER) + list(JAW)
    offsets[0, speech] = torch.randn(len(speech), 2) * 0.1  # talking, nothing else
    offsets[1] = -model.displacement(model.emotion_vector("happy"))  # the opposite of a smile
    est = model.estimate(offsets)
    assert est[0].abs().max() == 0
    assert est[1, model.au_names.index("AU12")] < 0.05
    assert est[1, model.au_names.index("AU6")] < 0.05


def test_estimate_cap_and_nan(model: ExpressionModel) -> None:
    offsets = model.displacement(model.emotion_vector("surprised", intensity=3.0))[None]
    capped = model.estimate(offsets, max_activation=1.0)
    assert capped.max() <= 1.0 + 1e-6
    assert capped[0, model.au_names.index("AU1")] > 0.99
    offsets = offsets.repeat(2, 1, 1)
    offsets[1, 107, 0] = float("nan")  # a brow landmark; NaN outside the mask is ignored
    est = model.estimate(offsets)
    assert torch.isfinite(est[0]).all() and torch.isnan(est[1]).all()
    with pytest.raises(ValueError):
        model.estimate(torch.zeros(N_LANDMARKS, 2))


def _au(model: ExpressionModel, name: str) -> int:
    return model.au_names.index(name)


def test_present_expression_replaces_only_upper_face(model: ExpressionModel) -> None:
    acts = np.zeros((20, model.num_aus))
    acts[10:, _au(model, "AU6")] = 0.8  # a smile's cheek raise in half the frames
    acts[10:, _au(model, "AU12")] = 0.8  # and its lip corners
    current = present_expression(acts, au_names=model.au_names)
    # FaceMesh cannot see a cheek raise, so AU6 is taken as read: 0.8 less the noise floor.
    assert current[15, _au(model, "AU6")] == pytest.approx(0.65)
    assert current[5].max() == 0 and current[:, _au(model, "AU12")].max() == 0


def test_present_expression_noise_floor_is_a_setting(model: ExpressionModel) -> None:
    acts = np.zeros((20, model.num_aus))
    acts[10:, _au(model, "AU6")] = 0.12  # below the shipped floor: read as noise
    assert present_expression(acts, au_names=model.au_names).max() == 0
    lower = present_expression(acts, au_names=model.au_names, noise_floor=0.05)
    assert lower[15, _au(model, "AU6")] == pytest.approx(0.07)


def test_present_expression_undoes_what_facemesh_misses(model: ExpressionModel) -> None:
    """A brow unit FaceMesh reads a fraction of is undone through the measured gain; the lid
    units, read off the lids themselves as far as a real lid moves, are taken as read."""
    acts = np.zeros((20, model.num_aus))
    acts[10:, _au(model, "AU2")] = 0.35  # FaceMesh reads a fraction of an outer brow raise
    acts[10:, _au(model, "AU7")] = 0.35
    current = present_expression(acts, au_names=model.au_names)
    gain = np.array(DETECTOR_GAIN)
    brow = DETECTOR_GAIN_AUS.index("AU2")
    assert gain[brow, brow] < 0.5
    assert current[15, _au(model, "AU2")] > 1.5 * (0.35 - 0.15)
    assert current[15, _au(model, "AU7")] == pytest.approx(0.35 - 0.15)
    acts[10:, _au(model, "AU4")] = 1.0
    current = present_expression(acts, au_names=model.au_names)
    assert current[15, _au(model, "AU4")] == 1.5  # capped at MAX_PRESENT


def test_undoing_the_gain_takes_off_what_was_read_without_raising_other_brow_aus() -> None:
    """A frowning, worried brow (inner brows up and drawn together: AU1 and AU4 both read) is
    taken off so that FaceMesh would read both less. Dividing each AU by its own gain took the
    brow lowering off four times over, and that lifting of the brows reads mostly as an inner
    brow raise: the edit raised the inner brows it was asked to calm."""
    names = DETECTOR_GAIN_AUS
    gain = np.array(DETECTOR_GAIN)
    au1, au4 = names.index("AU1"), names.index("AU4")
    reading = np.zeros((1, len(names)))
    reading[0, [au1, au4]] = 0.3
    removal = undo_detector_gain(reading, au_names=names)
    assert (removal >= 0).all()
    read_after = reading - removal @ gain
    assert read_after[0, au1] < 0.5 * 0.3 and read_after[0, au4] < 0.8 * 0.3
    assert np.abs(read_after).max() < 0.3
    per_au = reading / np.diag(gain)
    assert (reading - per_au @ gain)[0, au1] > 0.3  # the inner brows went up
    # AUs outside the matrix are taken as read; a model without some of them still works.
    mixed = undo_detector_gain(np.array([[0.3, 0.2], [0.0, 0.0]]), au_names=("AU5", "AU2"))
    assert mixed[0, 0] == 0.3 and mixed[0, 1] > 0.2 and not mixed[1].any()


def test_a_calm_face_reveals_an_expression_held_all_through(model: ExpressionModel) -> None:
    """A cheek raise held in every frame is the clip's rest and is not replaced; read against
    the same person's calm face (`--rest`) it is. A calm face that shows more of an AU than
    the clip's calmest moments adds nothing, and where it cannot tell an AU (NaN: a photo's
    lids, `pipeline.rest_activations`) the clip's own rest stays; where it can (the lids of
    the median of several frames), lids wider than the calm face's are read as raised."""
    cheek, lid = _au(model, "AU6"), _au(model, "AU5")
    acts = np.zeros((20, model.num_aus))
    acts[:, cheek] = 0.1  # held all through, relative to the clip's median face
    acts[10:, cheek] = 0.3
    assert present_expression(acts, au_names=model.au_names)[:10].max() == 0
    calm = np.zeros(model.num_aus)
    calm[cheek] = -0.6
    calm[_au(model, "AU4")] = 0.5  # the calm face frowns more than the clip ever does
    calm[lid] = np.nan  # and its lids say nothing of their usual place
    current = present_expression(acts, au_names=model.au_names, calm=calm)
    assert current[5, cheek] == pytest.approx(0.1 + 0.6 - 0.15)
    assert current[15, cheek] == pytest.approx(0.3 + 0.6 - 0.15)
    others = np.delete(current, cheek, axis=1)
    assert others.max() == 0
    calm[lid] = -1.0  # the calm face's usual lids are lower than the clip's median
    wide = present_expression(acts, au_names=model.au_names, calm=calm)[:, lid]
    assert wide == pytest.approx(np.full(len(acts), 1.0 - 0.15))


def test_present_expression_lid_rest_is_the_usual_opening(model: ExpressionModel) -> None:
    acts = np.zeros((40, model.num_aus))
    acts[:6, _au(model, "AU5")] = -1.0  # blinks and squints: lids below their usual place
    acts[30:, _au(model, "AU5")] = 0.5  # eyes wide in the last quarter
    valid = np.ones(40, dtype=bool)
    valid[35:] = False
    current = present_expression(acts, au_names=model.au_names, valid=valid)
    lid = current[:, _au(model, "AU5")]
    # Open eyes are the rest, only the wide ones are an expression; rows without a face are 0.
    assert lid[6:30].max() == 0 and lid[:6].max() == 0
    assert lid[32] == pytest.approx(0.5 - 0.15)  # the lid raiser is taken as read
    assert lid[35:].max() == 0


def test_wrong_checkpoint_kind(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_checkpoint(path, tensors={"x": torch.zeros(1)}, config={"kind": "refiner", "version": 1})
    with pytest.raises(SpfemError, match="not an expression model"):
        ExpressionModel.load(path)


def test_import_has_no_heavy_side_effects() -> None:
    code = (
        "import sys, spfem_cli.generator.expression as e; "
        "assert 'mediapipe' not in sys.modules; print(len(e.EMOTIONS))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "8"


def _clip_faces(path: Path) -> np.ndarray:
    """Normalised landmarks (T, 478, 2) of every frame with a face."""
    imageio = pytest.importorskip("imageio.v3")
    mp = pytest.importorskip("mediapipe")
    faces = []
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=False, max_num_faces=1, refine_landmarks=True
    ) as mesh:
        for frame in imageio.imiter(path):
            h, w = frame.shape[:2]
            result = mesh.process(np.ascontiguousarray(frame[..., :3]))
            if result.multi_face_landmarks:
                lm = np.array([[p.x * w, p.y * h] for p in result.multi_face_landmarks[0].landmark])
                faces.append(FaceFrame.from_landmarks(lm).to_face(lm))
    return np.stack(faces)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.clips
def test_directions_agree_with_acted_clips(model: ExpressionModel, clips_dir: Path) -> None:
    """Each acted clip's median face minus the mean of the six, against the model likewise.

    Different actors play each emotion, so identity differences remain: only clear agreement
    is asked for (the build script prints the full table).
    """
    emotions = ("happy", "sad", "surprised", "fear", "disgusted", "contempt")
    medians = {
        e: np.median(_clip_faces(clips_dir / "mead_emotions" / f"{e}.mp4"), 0) for e in emotions
    }
    mean_face = np.mean(list(medians.values()), axis=0)
    model_disp = {e: disp(model, e).double().numpy() for e in emotions}
    mean_disp = np.mean(list(model_disp.values()), axis=0)
    t = model.template.double().numpy()
    upper = np.flatnonzero(t[:, 1] < 0.8)
    upper = np.setdiff1d(upper, list(FACE_OVAL) + list(range(468, 478)))
    corners = [RIGHT_CORNER, LEFT_CORNER]
    for e in emotions:
        real, ours = medians[e] - mean_face, model_disp[e] - mean_disp
        assert _cosine(ours[upper], real[upper]) > 0.15, e
        if e in ("happy", "sad", "surprised", "disgusted"):
            assert _cosine(ours[corners], real[corners]) > 0.5, e
