"""PCMECL stage two: the differentiable crop path, personal fine-tuning and its checkpoint, the
edit with a personal checkpoint, and open vocabulary.

Fast tests use the tiny CLIP of TINY_CONFIG (random weights saved to a file and loaded back, as
a user's weights would be), a small refiner on 64-pixel crops and synthetic frames (smooth
random texture under the expression model's neutral landmarks), so no MediaPipe is needed. The
direction loss's values (0 when the directions agree, 2 when opposite) and STCCL's zero for
identical videos are tested in tests/test_pcmecl.py; here they are tested where fine-tuning
relies on them: on the crop path.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import Result
from typer.testing import CliRunner

from spfem_cli import cli
from spfem_cli.errors import SpfemError
from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.device import torch_threads
from spfem_cli.generator.expression import EMOTIONS, ExpressionModel, present_expression
from spfem_cli.generator.generator import FaceGenerator, hold_mouth
from spfem_cli.generator.refiner import (
    CropGeometry,
    Refiner,
    RefinerConfig,
    crop_face_frame,
    regions,
    sample_crop,
    supersampled_points,
)
from spfem_cli.generator.warp import WarpConfig, sample_flow
from spfem_cli.pcmecl.clip import TINY_CONFIG, ClipBundle, load_clip
from spfem_cli.pcmecl.crop_edit import edit_crops, prepare_crops
from spfem_cli.pcmecl.finetune import (
    FinetuneConfig,
    FinetuneResult,
    PersonalTuner,
    partial_path,
    run_finetune,
)
from spfem_cli.pcmecl.losses import stccl_loss
from spfem_cli.pcmecl.open_vocab import OpenVocabConfig, displacement_size, text_to_aus
from spfem_cli.pcmecl.personal import (
    MAX_ACTIVATION,
    PersonalCheckpoint,
    load_personal,
)
from spfem_cli.pcmecl.prompts import PromptLearner, emotion_word, save_prompt_learner
from spfem_cli.pcmecl.teacher import Teacher
from spfem_cli.pipeline import Editor, edit_video
from spfem_cli.progress import Reporter
from spfem_cli.training.frames import ClipFrames
from tests.painted import painted_eyes

TINY = "spfem-tiny-clip"
SMALL = RefinerConfig(crop=CropGeometry(size=64), channels=(8, 8, 16))
CPU = torch.device("cpu")
runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny models: a second thread only adds hand-over cost.
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def model() -> ExpressionModel:
    return ExpressionModel.load()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    bundle = load_clip(arch=TINY, config=TINY_CONFIG)
    path = tmp_path_factory.mktemp("clip") / "tiny.pt"
    torch.save(bundle.model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_weights: Path) -> ClipBundle:
    return load_clip(arch=TINY, pretrained=tiny_weights, config=TINY_CONFIG)


@pytest.fixture(scope="module")
def learner(tiny: ClipBundle) -> PromptLearner:
    return PromptLearner(
        bundle=tiny, class_names=EMOTIONS, class_texts=[emotion_word(e) for e in EMOTIONS]
    ).eval()


@pytest.fixture(scope="module")
def prompts_file(learner: PromptLearner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.safetensors"
    save_prompt_learner(learner, path)
    return path


@pytest.fixture(scope="module")
def small_refiner_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("refiner") / "small.safetensors"
    _random_head(Refiner(SMALL)).save(path)
    return path


def _random_head(refiner: Refiner, seed: int = 0, scale: float = 0.05) -> Refiner:
    """A refiner that is not the identity (an untrained head is zero and passes no gradient
    back to the layers before it)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        refiner.head.weight.copy_(torch.randn(refiner.head.weight.shape, generator=gen) * scale)
    return refiner


def synthetic_frames(model: ExpressionModel, *, n: int = 10, size: int = 64) -> ClipFrames:
    """A 'clip' of n frames: smooth random texture, slowly drifting, under jittered neutral
    landmarks, with random AU activations; crops cut for a `size`-pixel crop (at twice it)."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 255, size=(1, 3, 8, 8))
    drift = rng.normal(0, 8, size=(n, 3, 8, 8)).cumsum(axis=0)
    coarse = torch.from_numpy((base + drift).clip(0, 255).astype(np.float32))
    crops = torch.nn.functional.interpolate(coarse, size=(2 * size, 2 * size), mode="bicubic")
    points = model.template.numpy()[None] + rng.normal(0, 0.005, size=(n, 478, 2))
    return ClipFrames(
        name="me.mp4",
        person="me",
        crops=crops.clamp(0, 255).round().numpy().astype(np.uint8),
        points=points.astype(np.float32),
        aus=rng.normal(0, 0.2, size=(n, model.num_aus)).astype(np.float32),
    )


def _config(**kw: object) -> FinetuneConfig:
    return FinetuneConfig(**{"steps": 4, "batch_size": 4, "save_every": 2, "log_every": 2, **kw})


def _meta(model: ExpressionModel) -> tuple[dict, dict]:
    expression = {
        "name": "facs-v2",
        "sha256": "e" * 64,
        "au_names": list(model.au_names),
        "emotions": list(model.emotions),
    }
    return expression, {"name": "small", "sha256": "r" * 64, "model": SMALL.to_dict()}


def _run(
    model: ExpressionModel,
    tiny: ClipBundle,
    learner: PromptLearner | None,
    output: Path,
    *,
    resume: bool = True,
    reporter: Reporter | None = None,
    frames: ClipFrames | None = None,
    **kw: object,
) -> FinetuneResult:
    expression_meta, refiner_meta = _meta(model)
    torch.manual_seed(0)
    return run_finetune(
        frames=synthetic_frames(model) if frames is None else frames,
        bundle=tiny,
        learner=learner,
        expression=model,
        expression_meta=expression_meta,
        refiner=_random_head(Refiner(SMALL)),
        refiner_meta=refiner_meta,
        output=output,
        config=_config(**kw),
        device=CPU,
        resume=resume,
        prompts_meta={"file": "prompts.safetensors", "sha256": "p" * 64},
        reporter=reporter,
    )


# --- the mouth rule and the crop path --------------------------------------------------------


@pytest.mark.parametrize("mode", ["natural", "strict"])
def test_hold_mouth_torch_matches_numpy_and_is_differentiable(mode: str) -> None:
    rng = np.random.default_rng(3)
    disp = rng.normal(0, 0.05, size=(2, 478, 2))
    pts = rng.normal(0, 0.5, size=(2, 478, 2))
    expected = np.stack(
        [hold_mouth(d, points=p, mode=mode) for d, p in zip(disp, pts, strict=True)]
    )  # type: ignore[arg-type]
    d = torch.from_numpy(disp).requires_grad_(True)
    out = hold_mouth(d, points=torch.from_numpy(pts), mode=mode)  # type: ignore[arg-type]
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-12)
    out.sum().backward()
    assert d.grad is not None and d.grad[:, 105].abs().sum() > 0  # a brow point moves
    assert torch.all(d.grad[:, 152] == 0)  # the chin (jaw) never does


def test_crop_path_zero_change_is_the_input(model: ExpressionModel) -> None:
    frames = synthetic_frames(model, n=4)
    batch = prepare_crops(frames.crops, frames.points, crop=SMALL.crop, mouth="natural")
    still = edit_crops(
        batch, torch.zeros(4, model.num_aus), expression=model, refiner=Refiner(SMALL),
        mouth="natural", crop=SMALL.crop,
    )  # fmt: skip
    torch.testing.assert_close(still.out, batch.source, atol=1e-5, rtol=0)
    # So the coherence loss of a no-op edit is zero, as fine-tuning's identity term expects.
    assert stccl_loss(batch.source, still.out).item() < 1e-6
    moved = edit_crops(
        batch, model.emotion_vector("surprised")[None].repeat(4, 1), expression=model,
        refiner=None, mouth="natural", crop=SMALL.crop,
    )  # fmt: skip
    assert (moved.out - batch.source).abs().max() > 0.05
    held = batch.maps[:, 0:1] > 0.999
    assert held.any() and torch.all(moved.flow.abs() * held < 1e-6)  # the mouth stays still


def _eye_window(face: FaceFrame, points: np.ndarray) -> tuple[slice, slice]:
    ring = face.to_image(points[list(mesh.RIGHT_EYE)])
    x0, y0 = np.floor(ring.min(axis=0)).astype(int) - 8
    x1, y1 = np.ceil(ring.max(axis=0)).astype(int) + 8
    return slice(y0, y1), slice(x0, x1)


def _iris_and_white(eye: np.ndarray) -> tuple[int, int]:
    """The painted iris's height and the white's area, pixels, in an eye's window (h, w, 3)."""
    ys, _ = np.nonzero(eye[..., 2] - eye[..., 0] > 60)
    return int(np.ptp(ys)) + 1, int((eye.min(axis=-1) > 200).sum())


def test_crop_edit_moves_the_eyes_as_the_frame_edit_does(model: ExpressionModel) -> None:
    """Fine-tuning learns through the edit `spfem edit` makes: on painted eyes in surprise,
    the crop path's eyes match the edited frame's crop (mean difference 1.6 levels over the
    eyes) and the iris stays round on both; the smooth crop flow alone, which the crop path
    used before, is 5.6 levels off (11 and an iris drawn 18 pixels tall instead of 13 before
    the flow was pinned where the landmarks land)."""
    crop = CropGeometry(size=192)
    pts = model.template.double().numpy()
    rows, cols = _eye_window(crop_face_frame(crop), pts)
    image = painted_eyes(pts, crop_face_frame(crop.fine), (2 * crop.size, 2 * crop.size))
    batch = prepare_crops(image.transpose(2, 0, 1)[None], pts[None], crop=crop, mouth="natural")
    delta = model.emotion_vector("surprised")[None]

    ff = FaceFrame(origin=np.array([200.0, 160.0]), angle=0.0, iod=120.0)
    edited = FaceGenerator(model=model, device=CPU, mouth="natural").edit_frame(
        painted_eyes(pts, ff, (420, 400)), face=ff, points=pts, delta=delta[0].double().numpy()
    )
    grid = torch.from_numpy(ff.to_image(supersampled_points(crop).double().numpy())).float()
    # The edited frame's crop, sampled as `refine_frame` samples it.
    truth = sample_crop(torch.from_numpy(edited).permute(2, 0, 1)[None].float(), grid)[0]
    truth = truth.permute(1, 2, 0).numpy()[rows, cols]

    def crop_path(warp: WarpConfig) -> tuple[int, float]:
        """The iris's height (pixels) and the eye's mean distance from the frame's (levels)."""
        out = edit_crops(
            batch, delta, expression=model, refiner=None, mouth="natural", crop=crop, warp=warp
        ).out
        eye = ((out[0] + 1) * 127.5).permute(1, 2, 0).numpy()[rows, cols]
        return _iris_and_white(eye)[0], float(np.abs(eye - truth).mean())

    height_smooth, off_smooth = crop_path(WarpConfig(eye_sigma=0.0, eyeballs=False))
    height, off = crop_path(WarpConfig())
    height_frame = _iris_and_white(truth)[0]
    assert off < 0.5 * off_smooth
    assert abs(height - height_frame) <= 1


def test_crop_edit_asks_the_mouth_for_what_expressive_mode_asks(
    model: ExpressionModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In expressive mode `spfem edit` asks the mouth AUs for more (`mouth_gain`); the crop
    path fine-tuning learns through asks the same."""
    from spfem_cli.generator import generator
    from spfem_cli.generator.generator import MouthMode, mouth_gain

    crop = CropGeometry(size=96)
    pts = model.template.double().numpy()
    image = painted_eyes(pts, crop_face_frame(crop.fine), (2 * crop.size, 2 * crop.size))
    batch = prepare_crops(image.transpose(2, 0, 1)[None], pts[None], crop=crop, mouth="expressive")
    smile = model.emotion_vector("happy")[None]
    gain = torch.from_numpy(mouth_gain(model.au_names, mode="expressive")).float()

    def out(delta: torch.Tensor, mouth: MouthMode) -> torch.Tensor:
        return edit_crops(batch, delta, expression=model, refiner=None, mouth=mouth, crop=crop).flow

    expressive = out(smile, "expressive")
    assert not torch.allclose(expressive, out(smile, "natural"), atol=1e-3)
    # Once the held maps are the same, natural and expressive differ only in the gain and in
    # the lip corners' sideways motion, which natural mode drops (`RISE_ONLY`; kept here).
    assert not torch.allclose(expressive, out(smile * gain, "natural"), atol=1e-3)
    monkeypatch.setattr(generator, "RISE_ONLY", (-2.0, -1.0))
    assert torch.allclose(expressive, out(smile * gain, "natural"), atol=1e-5)


def test_crop_edit_holds_the_mouth_as_the_frame_edit_does(model: ExpressionModel) -> None:
    """`spfem edit` lets go of the held mouth wider around a lip corner that moves alone (a
    smirk) and around a rising upper lip (`generator.hold_for`); the crop path fine-tuning and
    free text learn through cuts its held mouth again for such an edit. Its maps are those
    the frame edit's hold gives, and the flow within 0.06 of the eye distance of contempt's
    corner is 0.73 of the corner's asked motion (0.51 when both corners were let go alike),
    around the middle of disgust's upper lip 0.56 of its asked rise (none before). The batch's
    own maps, reused from step to step, stay as they were cut."""
    crop = CropGeometry(size=128)
    pts = model.template.double().numpy()
    image = painted_eyes(pts, crop_face_frame(crop.fine), (2 * crop.size, 2 * crop.size))
    batch = prepare_crops(image.transpose(2, 0, 1)[None], pts[None], crop=crop, mouth="natural")
    cut = batch.maps.clone()
    generator = FaceGenerator(model=model, device=CPU, mouth="natural")
    yy, xx = np.mgrid[0 : crop.size, 0 : crop.size]
    grid = np.stack([xx, yy], axis=-1).reshape(-1, 2).astype(np.float64)
    at = crop_face_frame(crop).to_face(grid).reshape(crop.size, crop.size, 2)
    for emotion, landmark in (("contempt", mesh.LIP_CORNERS[0]), ("disgusted", 0), ("happy", 0)):
        delta = model.emotion_vector(emotion)[None]
        edit = edit_crops(batch, delta, expression=model, refiner=None, mouth="natural", crop=crop)
        disp, hold = generator.sparse(points=pts, delta=delta[0].double().numpy())
        assert torch.allclose(edit.maps[0], regions(pts, hold, crop=crop), atol=1e-6)
        near = np.linalg.norm(at - pts[landmark], axis=-1) < 0.06
        moved = float(edit.flow[0].norm(dim=0).numpy()[near].mean())
        if emotion == "contempt":
            assert moved > 0.65 * np.linalg.norm(disp[landmark])
        elif emotion == "disgusted":
            assert moved > 0.45 * -disp[landmark, 1]
        else:  # a smile's corners move alike and its upper lip does not rise: nothing cut again
            assert edit.maps is batch.maps
    assert torch.equal(batch.maps, cut)


def test_crop_edit_plays_the_one_sided_units_on_the_side_asked() -> None:
    """Open vocabulary reads a text through the crop path on the side the edit will play the
    one-sided units (`Analysis.side`): on the left, the flow of a one-sided squint is the
    right side's mirrored."""
    model = ExpressionModel.load()
    crop = CropGeometry(size=96)
    pts = model.template.double().numpy()
    image = painted_eyes(pts, crop_face_frame(crop.fine), (2 * crop.size, 2 * crop.size))
    batch = prepare_crops(image.transpose(2, 0, 1)[None], pts[None], crop=crop, mouth="natural")
    squint = torch.zeros(1, model.num_aus)
    squint[0, model.au_names.index("AU7R")] = 1.0
    flows = {
        side: edit_crops(
            batch, squint, expression=model, refiner=None, mouth="natural", crop=crop, side=side
        ).flow[0]
        for side in ("right", "left")
    }  # (2, h, w) each
    size = {side: flow.norm(dim=0) for side, flow in flows.items()}
    half = size["right"].shape[1] // 2
    top = size["right"].max()
    # The subject's right eye is on the image's left.
    assert top > 0 and size["right"][:, half:].max() < 0.05 * top
    assert size["left"][:, :half].max() < 0.05 * top
    mirrored = size["right"].flip(-1)
    assert (size["left"] - mirrored).abs().max() < 0.1 * top


def test_the_lids_gradient_goes_through_the_eye_correction(model: ExpressionModel) -> None:
    """d(flow at the upper lids)/d(AU5) on the crop path is the lids' own displacement per
    unit of AU5 (the eye correction carries it), not the half the smooth flow gives."""
    crop = CropGeometry(size=128)
    pts = model.template.double().numpy()
    image = painted_eyes(pts, crop_face_frame(crop.fine), (2 * crop.size, 2 * crop.size))
    batch = prepare_crops(image.transpose(2, 0, 1)[None], pts[None], crop=crop, mouth="natural")
    k = model.au_names.index("AU5")
    lids = [mesh.RIGHT_EYE[12], mesh.LEFT_EYE[12]]
    unit = torch.zeros(1, model.num_aus)
    unit[0, k] = 1.0
    moved = model.displacement(unit)[0, lids].double().numpy()
    want = float(moved[:, 1].sum())
    # The flow where the lids land, which the output there shows (a backward map).
    at = torch.from_numpy(crop_face_frame(crop).to_image(pts[lids] + moved)).float()
    slopes = []
    for warp in (WarpConfig(eye_sigma=0.0, eyeballs=False), WarpConfig()):
        delta = unit.clone().requires_grad_(True)
        flow = edit_crops(
            batch, delta, expression=model, refiner=None, mouth="natural", crop=crop, warp=warp
        ).flow
        (grad,) = torch.autograd.grad(sample_flow(flow[0], at)[:, 1].sum(), delta)
        slopes.append(float(grad[0, k]) / want)
    assert slopes[0] < 0.6 and 0.9 < slopes[1] < 1.1


def test_activation_bound_is_the_intensity_bound() -> None:
    from spfem_cli.targets import MAX_INTENSITY

    assert MAX_ACTIVATION == MAX_INTENSITY


# --- training ----------------------------------------------------------------------------------


def test_gradients_reach_offsets_and_every_refiner_layer_not_clip(
    model: ExpressionModel, tiny: ClipBundle, learner: PromptLearner
) -> None:
    torch.manual_seed(0)
    tuner = PersonalTuner(
        frames=synthetic_frames(model), bundle=tiny, learner=learner, expression=model,
        refiner=_random_head(Refiner(SMALL)), config=_config(), device=CPU,
    )  # fmt: skip
    plan = tuner.sample()
    terms = tuner.losses(plan)
    assert set(terms) == {
        "direction", "coherence", "mouth", "identity", "reconstruction", "offsets", "total",
    }  # fmt: skip
    terms["total"].backward()
    for name, param in tuner.refiner.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert tuner.offsets.grad is not None
    for target in set(plan.targets.tolist()):
        assert tuner.offsets.grad[target].abs().sum() > 0, EMOTIONS[target]
    assert all(p.grad is None and not p.requires_grad for p in tiny.model.parameters())
    assert all(p.grad is None for p in learner.parameters())


def test_zero_shot_teacher_without_prompts(model: ExpressionModel, tiny: ClipBundle) -> None:
    tuner = PersonalTuner(
        frames=synthetic_frames(model), bundle=tiny, learner=None, expression=model,
        refiner=Refiner(SMALL), config=_config(), device=CPU,
    )  # fmt: skip
    assert set(tuner.source_names) <= set(EMOTIONS)
    assert all(np.isfinite(v) for v in tuner.step(1).values())


def test_direction_alone_moves_the_offsets(
    model: ExpressionModel, tiny: ClipBundle, learner: PromptLearner
) -> None:
    # The direction loss reaches the offsets through the warp and CLIP, not only through the
    # refiner's AU input: with every other term off and no refiner change, they still move.
    weights = {f"weight_{n}": 0.0 for n in ("coherence", "mouth", "identity", "reconstruction")}
    tuner = PersonalTuner(
        frames=synthetic_frames(model), bundle=tiny, learner=learner, expression=model,
        refiner=Refiner(SMALL), config=_config(weight_offsets=0.0, **weights), device=CPU,
    )  # fmt: skip
    tuner.step(1)
    assert tuner.offsets.detach().abs().sum() > 0


def test_the_tuner_replaces_the_expression_an_edit_would(
    model: ExpressionModel, tiny: ClipBundle, learner: PromptLearner
) -> None:
    """The AU change of each training edit is the target less the expression on the frame as
    `spfem edit` reads it (`ClipFrames.present`, from the analysis), not one read again from
    the frame's own AUs, which carry speech and blinks; frames without it read their AUs."""
    frames = synthetic_frames(model)
    present = np.zeros((len(frames), model.num_aus), np.float32)
    present[:, model.au_names.index("AU6")] = 0.4

    def current(clip: ClipFrames) -> np.ndarray:
        tuner = PersonalTuner(
            frames=clip, bundle=tiny, learner=learner, expression=model,
            refiner=Refiner(SMALL), config=_config(), device=CPU,
        )  # fmt: skip
        return tuner.current.cpu().numpy()

    np.testing.assert_array_equal(current(dataclasses.replace(frames, present=present)), present)
    read = present_expression(frames.aus, au_names=model.au_names)
    assert read.any()
    np.testing.assert_allclose(current(frames), read, atol=1e-6)


def test_short_finetune_lowers_the_loss(
    model: ExpressionModel, tiny: ClipBundle, learner: PromptLearner
) -> None:
    torch.manual_seed(0)
    tuner = PersonalTuner(
        frames=synthetic_frames(model), bundle=tiny, learner=learner, expression=model,
        refiner=_random_head(Refiner(SMALL)), config=_config(steps=30, lr=2e-3, seed=0),
        device=CPU,
    )  # fmt: skip
    plans = [tuner.sample() for _ in range(3)]  # fixed batches, scored before and after

    def score() -> float:
        with torch.no_grad():
            return sum(float(tuner.losses(p)["total"]) for p in plans) / len(plans)

    before = score()
    for step in range(1, 31):
        tuner.step(step)
    after = score()
    assert after < 0.9 * before, (before, after)


class Interrupt:
    """A reporter that stops the run (as Ctrl-C would) at the n-th step."""

    def __init__(self, at: int) -> None:
        self.at, self.count = at, 0
        self.notes: list[str] = []

    @contextmanager
    def stage(self, description: str, total: int) -> Iterator:
        def advance() -> None:
            self.count += 1
            if self.count == self.at:
                raise KeyboardInterrupt

        yield advance

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_resume_gives_the_uninterrupted_result(
    model: ExpressionModel, tiny: ClipBundle, learner: PromptLearner, tmp_path: Path
) -> None:
    straight = _run(model, tiny, learner, tmp_path / "straight.spfem")
    out = tmp_path / "me.spfem"
    with pytest.raises(KeyboardInterrupt):
        _run(model, tiny, learner, out, reporter=Interrupt(at=3))
    assert not out.exists() and partial_path(out).is_file()  # saved at step 2
    notes = Interrupt(at=-1)
    resumed = _run(model, tiny, learner, out, reporter=notes)
    assert resumed.resumed_from == 2 and "resuming from step 2 of 4" in notes.notes[0]
    assert not partial_path(out).exists()
    a, b = load_personal(tmp_path / "straight.spfem"), load_personal(out)
    torch.testing.assert_close(a.offsets, b.offsets, atol=0, rtol=0)
    for (name, pa), pb in zip(
        a.refiner.state_dict().items(), b.refiner.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(pa, pb, atol=0, rtol=0, msg=name)
    assert a.offsets.abs().sum() > 0  # it did learn something
    assert straight.last == resumed.last  # the loss history carried over too


def test_resume_refuses_other_settings_and_no_resume_starts_over(
    model: ExpressionModel, tiny: ClipBundle, learner: PromptLearner, tmp_path: Path
) -> None:
    out = tmp_path / "me.spfem"
    with pytest.raises(KeyboardInterrupt):
        _run(model, tiny, learner, out, reporter=Interrupt(at=3))
    with pytest.raises(SpfemError, match="other settings.*--no-resume"):
        _run(model, tiny, learner, out, lr=5e-4)
    result = _run(model, tiny, learner, out, resume=False, lr=5e-4)
    assert result.resumed_from == 0 and out.is_file() and not partial_path(out).exists()


def test_resume_refuses_another_calm_face(
    model: ExpressionModel, tiny: ClipBundle, learner: PromptLearner, tmp_path: Path
) -> None:
    """The expression on the frames is part of the data: a run interrupted without a calm face
    is not continued with one (the present expressions, and so the targets, differ)."""
    out = tmp_path / "me.spfem"
    with pytest.raises(KeyboardInterrupt):
        _run(model, tiny, learner, out, reporter=Interrupt(at=3))
    frames = synthetic_frames(model)
    present = np.zeros((len(frames), model.num_aus), np.float32)
    present[:, model.au_names.index("AU1")] = 0.5
    calm = dataclasses.replace(frames, present=present)
    with pytest.raises(SpfemError, match="other settings.*--no-resume"):
        _run(model, tiny, learner, out, frames=calm)
    assert _run(model, tiny, learner, out, frames=calm, resume=False).resumed_from == 0
    assert load_personal(out, expression=model).config["training"]["present"] == {"AU1": 0.5}


# --- the personal checkpoint -----------------------------------------------------------------


@pytest.fixture(scope="module")
def personal_file(
    model: ExpressionModel,
    tiny: ClipBundle,
    learner: PromptLearner,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    out = tmp_path_factory.mktemp("personal") / "me.spfem"
    _run(model, tiny, learner, out, save_every=0)
    return out


def test_personal_checkpoint_round_trip(
    personal_file: Path, model: ExpressionModel, tiny: ClipBundle
) -> None:
    personal = load_personal(personal_file, expression=model, refiner_config=SMALL)
    cfg = personal.config
    assert cfg["kind"] == "personal" and cfg["version"] == 1
    assert cfg["expression"]["au_names"] == list(model.au_names)
    assert cfg["expression"]["emotions"] == list(model.emotions)
    assert (
        cfg["refiner"]["sha256"] == "r" * 64
        and RefinerConfig.from_dict(cfg["refiner"]["model"]) == SMALL
    )
    assert cfg["clip"]["arch"] == TINY and cfg["clip"]["weights"] == tiny.pretrained
    assert cfg["prompts"]["sha256"] == "p" * 64
    assert cfg["training"]["steps"] == 4 and cfg["training"]["history"][-1]["step"] == 4
    assert personal.offsets.shape == (len(EMOTIONS), model.num_aus)
    assert personal.person_feature.shape == (tiny.embed_dim,)
    assert personal.refiner.config == SMALL
    happy = personal.emotion_vector(model, "happy", intensity=0.5)
    expected = (model.emotion_vector("happy") + personal.offsets[EMOTIONS.index("happy")]).clamp(
        0, MAX_ACTIVATION
    ) * 0.5
    torch.testing.assert_close(happy, expected)


def _renamed(model: ExpressionModel, *, au_names=None, emotions=None) -> ExpressionModel:  # noqa: ANN001
    return ExpressionModel(
        template=model.template,
        au_basis=model.au_basis,
        prototypes=model.prototypes,
        au_names=au_names or model.au_names,
        emotions=emotions or model.emotions,
    )


def test_personal_checkpoint_refuses_what_does_not_fit(
    personal_file: Path, model: ExpressionModel, small_refiner_file: Path, tmp_path: Path
) -> None:
    other_aus = _renamed(model, au_names=[f"X{i}" for i in range(model.num_aus)])
    # The hint names the model's file by its hash: a model of the same name may have changed.
    with pytest.raises(
        SpfemError,
        match=r"now has X0.*fine-tune again.*sha256 [0-9a-f]{12}",
    ):
        load_personal(personal_file, expression=other_aus)
    other_emotions = _renamed(model, emotions=[*model.emotions[:-1], "bored"])
    with pytest.raises(SpfemError, match="emotions .* but the model loaded now has .*bored"):
        load_personal(personal_file, expression=other_emotions)
    with pytest.raises(SpfemError, match=r"channels \[8, 8, 16\] .* expects channels \[24"):
        load_personal(personal_file, expression=model, refiner_config=RefinerConfig())
    with pytest.raises(SpfemError, match="holds a 'refiner' checkpoint, not a personal one"):
        load_personal(small_refiner_file)
    with pytest.raises(SpfemError, match="not found"):
        load_personal(tmp_path / "nobody.spfem")
    for error in (SpfemError,):
        try:
            load_personal(personal_file, expression=other_aus)
        except error as exc:
            assert "\n" not in str(exc) and exc.exit_code == 2


def test_untrained_base_refiner_is_the_identity() -> None:
    from spfem_cli.pcmecl.personal import load_base_refiner

    refiner, meta = load_base_refiner("none")
    assert meta["name"] == "none" and meta["sha256"] is None
    assert meta["model"] == RefinerConfig().to_dict()
    inputs = torch.rand(2, 10, 128, 128) * 2 - 1
    residual, _ = refiner(inputs, torch.rand(2, RefinerConfig().n_aus))
    assert float(residual.detach().abs().max()) == 0.0


def test_editor_uses_the_persons_emotions_and_refiner(
    personal_file: Path, model: ExpressionModel
) -> None:
    editor = Editor.load(
        model="facs-v2", device="cpu", mouth="natural", generator="refiner",
        checkpoint=personal_file,
    )  # fmt: skip
    personal = editor.personal
    assert isinstance(personal, PersonalCheckpoint)
    assert editor.generator.refiner is personal.refiner
    # With no generator named, a personal checkpoint brings the person's refiner.
    default = Editor.load(model="facs-v2", device="cpu", mouth="natural", checkpoint=personal_file)
    assert default.generator.refiner is default.personal.refiner
    from spfem_cli.targets import Part

    sad = editor.vector_of(Part(name="sad", weight=1.0, is_text=False))
    np.testing.assert_allclose(sad, personal.emotion_vector(model, "sad").double().numpy())
    warp_only = Editor.load(
        model="facs-v2", device="cpu", mouth="natural", generator="warp", checkpoint=personal_file
    )
    assert warp_only.generator.refiner is None
    np.testing.assert_allclose(warp_only.emotion_vector("sad"), sad)
    from spfem_cli.generator.checkpoint import load_checkpoint

    facs = load_checkpoint("facs-v1").path
    with pytest.raises(SpfemError, match="holds a 'expression' checkpoint, not a personal"):
        Editor.load(model="facs-v2", device="cpu", mouth="natural", checkpoint=facs)


# --- open vocabulary -----------------------------------------------------------------------------


def test_open_vocabulary_returns_a_bounded_vector(
    model: ExpressionModel, tiny: ClipBundle, learner: PromptLearner
) -> None:
    frames = synthetic_frames(model, n=3)
    batch = prepare_crops(frames.crops, frames.points, crop=SMALL.crop, mouth="natural")
    person = torch.nn.functional.normalize(torch.randn(tiny.embed_dim), dim=-1)
    refiner = _random_head(Refiner(SMALL))
    flags = [p.requires_grad for p in refiner.parameters()]

    def read(teacher: Teacher) -> np.ndarray:
        result = text_to_aus(
            "smug", batch=batch, present=torch.zeros(3, model.num_aus), teacher=teacher,
            expression=model, prototypes=model.prototypes, refiner=refiner, mouth="natural",
            crop=SMALL.crop, config=OpenVocabConfig(steps=4),
        )  # fmt: skip
        assert result.loss <= result.loss_start
        assert result.start in EMOTIONS and result.source in EMOTIONS
        assert "'smug' read by CLIP as" in result.describe(model.au_names)
        return result.vector

    personalised = read(Teacher(bundle=tiny, learner=learner, person=person))
    assert personalised.shape == (model.num_aus,)
    assert personalised.min() >= 0 and personalised.max() <= MAX_ACTIVATION
    # As strong as a labelled emotion (the mean size of the prototypes), within the clipping.
    size = float(displacement_size(model, torch.from_numpy(personalised).float()))
    labelled = model.prototypes[1:]
    assert size == pytest.approx(float(displacement_size(model, labelled).mean()), rel=0.05)
    assert np.array_equal(read(Teacher(bundle=tiny, learner=learner, person=person)), personalised)
    zero_shot = read(Teacher(bundle=tiny, learner=None, person=person))
    assert zero_shot.min() >= 0 and zero_shot.max() <= MAX_ACTIVATION
    assert [p.requires_grad for p in refiner.parameters()] == flags  # frozen only while it ran


def _one_line_error(result, message: str) -> None:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("spfem: error: ")]
    assert len(errors) == 1 and len(lines) == 1, result.output
    assert re.search(message, errors[0]), errors[0]
    assert "Traceback" not in result.output


def test_free_text_without_clip_refuses_before_tracking(make_clip, tmp_path: Path) -> None:  # noqa: ANN001
    clip = make_clip("talk.mp4", duration=0.5)
    out = tmp_path / "out.mp4"
    with pytest.raises(SpfemError, match="'smug' is not one of .*pass --clip-weights"):
        edit_video(input_path=clip, emotion="0-1:smug", output_path=out, generator="warp")
    result = runner.invoke(
        cli.app, ["edit", str(clip), "-e", "smug", "-o", str(out)], env={"COLUMNS": "400"}
    )
    _one_line_error(result, "free text needs CLIP weights: pass --clip-weights")
    assert not out.exists()


def test_free_text_on_a_video_without_a_face_passes_it_through(
    make_clip,
    tmp_path: Path,
    tiny_weights: Path,
    personal_file: Path,  # noqa: ANN001
) -> None:
    clip = make_clip("noface.mp4", duration=0.4)
    report = edit_video(
        input_path=clip, emotion="smug", output_path=tmp_path / "out.mp4", device="cpu",
        checkpoint=personal_file, clip_weights=tiny_weights, clip_arch=TINY,
        clip_config=TINY_CONFIG,
    )  # fmt: skip
    assert report.n_edited == 0 and report.output.is_file()


# --- command line errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing clip", "nope.mp4 does not exist"),
        ("steps", "--steps must be at least 1"),
        ("batch", "--batch-size must be at least 2"),
        ("lr", "--lr must be a positive number"),
        ("exists", "exists; pass --overwrite"),
        ("prompts", "prompt file not found"),
        ("mouth", "unknown mouth mode 'wide'"),
        ("rest", "calm.png does not exist"),
        ("rest span", "5-6 s is past the end of"),
        ("no weights", "spfem finetune needs CLIP weights: --clip-weights openai .* random"),
        ("face", "--face must be largest, left, right or X,Y"),
    ],
)
def test_finetune_cli_errors(
    case: str,
    message: str,
    make_clip,
    tmp_path: Path,
    tiny_weights: Path,  # noqa: ANN001
) -> None:
    clip = make_clip("me.mp4", duration=0.2)
    out = tmp_path / "me.spfem"
    args = [
        "finetune", str(clip), "-o", str(out), "--clip-arch", TINY, "--clip-config",
        str(TINY_CONFIG), "--clip-weights", str(tiny_weights), "--device", "cpu",
    ]  # fmt: skip
    if case == "missing clip":
        args[1] = str(tmp_path / "nope.mp4")
    elif case == "steps":
        args += ["--steps", "0"]
    elif case == "batch":
        args += ["--batch-size", "1"]
    elif case == "lr":
        args += ["--lr", "-1"]
    elif case == "exists":
        out.write_bytes(b"keep me")
    elif case == "prompts":
        args += ["--prompts", str(tmp_path / "nope.safetensors")]
    elif case == "mouth":
        args += ["--mouth", "wide"]
    elif case == "rest":
        args += ["--rest", str(tmp_path / "calm.png")]
    elif case == "rest span":
        args += ["--rest", "5-6"]
    elif case == "face":
        args += ["--face", "top"]
    elif case == "no weights":
        at = args.index("--clip-weights")
        del args[at : at + 2]
    result = runner.invoke(cli.app, args, env={"COLUMNS": "400"})
    _one_line_error(result, message)
    if case == "exists":
        assert out.read_bytes() == b"keep me"
    else:
        assert not out.exists()
    assert not partial_path(out).exists()


def test_finetune_cli_interrupt_keeps_the_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import spfem_cli.pcmecl.finetune as finetune_module

    out = tmp_path / "me.spfem"

    def interrupted(**kwargs: object) -> None:
        partial_path(out).write_bytes(b"state")
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune_module, "finetune", interrupted)
    args = ["finetune", str(tmp_path / "me.mp4"), "-o", str(out), "--clip-weights", "random"]
    result = runner.invoke(cli.app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 130, result.output
    assert "spfem: interrupted: the last saved state is kept in" in result.output
    assert "me.spfem.partial; run the same command again to resume" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "personal checkpoint not found"),
        ("kind", "holds a 'expression' checkpoint, not a personal one"),
        ("bad file", "not a valid checkpoint file"),
    ],
)
def test_edit_checkpoint_cli_errors(case: str, message: str, make_clip, tmp_path: Path) -> None:  # noqa: ANN001
    clip = make_clip("talk.mp4", duration=0.2)
    checkpoint = tmp_path / "me.spfem"
    if case == "kind":
        from spfem_cli.generator.checkpoint import load_checkpoint

        checkpoint = load_checkpoint("facs-v2").path
    elif case == "bad file":
        checkpoint.write_bytes(b"not a checkpoint")
    out = tmp_path / "out.mp4"
    result = runner.invoke(
        cli.app,
        ["edit", str(clip), "-e", "happy", "-o", str(out), "--checkpoint", str(checkpoint)],
        env={"COLUMNS": "400"},
    )
    _one_line_error(result, message)
    assert not out.exists()


# --- real clips ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_cut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1.2 s of a real talking face (skips without ../shared/clips)."""
    from tests.conftest import run_ffmpeg_checked

    source = Path(__file__).resolve().parents[2] / "shared" / "clips" / "speech_man_256x256.mp4"
    if not source.is_file():
        pytest.skip(f"real clip not found at {source}")
    out = tmp_path_factory.mktemp("real") / "man.mp4"
    run_ffmpeg_checked(
        "-i", str(source), "-t", "1.2", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
        str(out),
    )  # fmt: skip
    return out


def _finetune_real_cut(
    clip: Path, out: Path, *extra: str, tiny_weights: Path, refiner_file: Path
) -> Result:
    """`spfem finetune CLIP -o OUT EXTRA...` for a quick run on a real cut: the tiny CLIP, the
    small refiner, 12 frames, pairs of 2, one thread on the CPU. Returns the CLI's result."""
    args = [
        "finetune", str(clip), "-o", str(out), *extra, "--clip-arch", TINY, "--clip-weights",
        str(tiny_weights), "--clip-config", str(TINY_CONFIG), "--batch-size", "2", "--device",
        "cpu", "--refiner", str(refiner_file), "--max-frames", "12",
    ]  # fmt: skip
    with torch_threads(1):
        return runner.invoke(cli.app, args, env={"COLUMNS": "400"})


@pytest.fixture(scope="module")
def real_personal(
    real_cut: Path,
    tiny_weights: Path,
    prompts_file: Path,
    small_refiner_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """`spfem finetune` on the real cut with the tiny CLIP: a couple of steps."""
    out = tmp_path_factory.mktemp("real-personal") / "man.spfem"
    result = _finetune_real_cut(
        real_cut, out, "--prompts", str(prompts_file), "--steps", "2", "--save-every", "1",
        tiny_weights=tiny_weights, refiner_file=small_refiner_file,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and "2 steps on 12 frames" in result.output
    return out


@pytest.mark.clips
def test_finetune_on_a_real_clip(real_personal: Path, model: ExpressionModel) -> None:
    personal = load_personal(real_personal, expression=model)
    record = personal.config["training"]
    assert record["clip"] == "man.mp4" and record["steps"] == 2
    assert set(record["source_emotions"]) <= set(EMOTIONS)
    assert json.dumps(personal.config)  # all JSON
    assert not partial_path(real_personal).exists()


@pytest.mark.clips
def test_edit_with_checkpoint_on_a_real_clip(
    real_cut: Path, real_personal: Path, tmp_path: Path
) -> None:
    from spfem_cli.media import probe

    out = tmp_path / "man.happy.mp4"
    result = runner.invoke(
        cli.app,
        [
            "edit",
            str(real_cut),
            "-e",
            "happy",
            "--checkpoint",
            str(real_personal),
            "--end",
            "1",
            "-o",
            str(out),
            "--device",
            "cpu",
        ],  # fmt: skip
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 0, result.output
    a, b = probe(real_cut), probe(out)
    assert (b.width, b.height, b.n_frames, b.fps) == (a.width, a.height, a.n_frames, a.fps)
    assert b.has_audio == a.has_audio


@pytest.mark.clips
def test_open_vocabulary_edit_on_a_real_clip(
    real_cut: Path, real_personal: Path, tiny_weights: Path, prompts_file: Path, tmp_path: Path
) -> None:
    from spfem_cli.media import probe

    out = tmp_path / "man.smug.mp4"
    result = runner.invoke(
        cli.app,
        [
            "edit",
            str(real_cut),
            "-e",
            "smug",
            "--checkpoint",
            str(real_personal),
            "--clip-weights",
            str(tiny_weights),
            "--clip-arch",
            TINY,
            "--clip-config",
            str(TINY_CONFIG),
            "--prompts",
            str(prompts_file),
            "-o",
            str(out),
            "--device",
            "cpu",
        ],  # fmt: skip
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 0, result.output
    assert "'smug' read by CLIP as" in result.output
    assert probe(out).n_frames == probe(real_cut).n_frames


# --- the full-size architecture, through the user's route -----------------------------------------


def test_full_size_clip_from_a_local_file_drives_a_finetuning_step(
    model: ExpressionModel, tmp_path: Path
) -> None:
    """ViT-B-32 at random initialisation, saved to a file and loaded back the way a user's
    `--clip-weights vit-b-32.pt` is: one fine-tuning step with the default refiner
    architecture (128-pixel crops) reaches the offsets and the refiner, never CLIP."""
    torch.manual_seed(0)
    full = load_clip(arch="ViT-B-32")
    path = tmp_path / "vit-b-32-random.pt"
    torch.save(full.model.state_dict(), path)
    del full
    bundle = load_clip(arch="ViT-B-32", pretrained=path)
    assert bundle.arch == "ViT-B-32" and bundle.embed_dim == 512
    learner = PromptLearner(
        bundle=bundle, class_names=EMOTIONS, class_texts=[emotion_word(e) for e in EMOTIONS]
    ).eval()
    frames = synthetic_frames(model, size=128)
    tuner = PersonalTuner(
        frames=frames, bundle=bundle, learner=learner, expression=model,
        refiner=_random_head(Refiner(RefinerConfig())), config=_config(batch_size=2), device=CPU,
    )  # fmt: skip
    terms = tuner.losses(tuner.sample())
    assert all(torch.isfinite(v) for v in terms.values())
    terms["total"].backward()
    assert tuner.offsets.grad is not None and tuner.offsets.grad.abs().sum() > 0
    assert tuner.refiner.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in bundle.model.parameters())


@pytest.mark.clips
def test_finetune_with_a_calm_face_learns_to_replace_a_held_expression(
    clips_dir: Path,
    tiny_weights: Path,
    small_refiner_file: Path,
    model: ExpressionModel,
    tiny: ClipBundle,
    tmp_path: Path,
) -> None:
    """`spfem finetune --rest` on expr_d10's first 2.5 s, whose brows are raised from the
    first frame to the last, with a calm frame of the same person from later in the video
    (frame 140, looked at): against the calm face the raise is on the face, and the tuner's
    edits replace it, as `spfem edit --rest` would (brow raisers 1.66 activation units on
    average; 0.11 without the calm face, where the raise is the clip's rest; measured)."""
    import imageio.v3 as iio

    from spfem_cli.pipeline import read_rest_face
    from spfem_cli.training import frames as frames_mod
    from tests.conftest import run_ffmpeg_checked, video_frame

    source = clips_dir / "expr_d10.mp4"
    cut, calm, cache = tmp_path / "held.mp4", tmp_path / "calm.png", tmp_path / "cache"
    run_ffmpeg_checked("-i", str(source), "-t", "2.5", "-an", "-c:v", "libx264", str(cut))
    iio.imwrite(calm, video_frame(source, 140))
    out = tmp_path / "d10.spfem"
    result = _finetune_real_cut(
        cut, out, "--rest", str(calm), "--cache", str(cache), "--steps", "1",
        tiny_weights=tiny_weights, refiner_file=small_refiner_file,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "the calm face is read from one frame" in " ".join(result.output.split())
    recorded = load_personal(out, expression=model).config["training"]["present"]
    assert recorded["AU1"] + recorded.get("AU2", 0.0) > 1.0
    brows = [model.au_names.index(name) for name in ("AU1", "AU2")]

    def brow_raise(rest: Path | None) -> float:
        frames = frames_mod.load_clip_frames(
            cut, person="d10", name=cut.name, model=model, crop=SMALL.crop, max_frames=12,
            cache_dir=cache, rest_face=None if rest is None else read_rest_face(rest),
        )  # fmt: skip
        assert frames is not None
        tuner = PersonalTuner(
            frames=frames, bundle=tiny, learner=None, expression=model,
            refiner=Refiner(SMALL), config=_config(), device=CPU,
        )  # fmt: skip
        return float(tuner.current[:, brows].sum(dim=1).mean())

    assert brow_raise(calm) > 1.0
    assert brow_raise(None) < 0.3
