"""The refiner: geometry, the edit path's guarantees, checkpoints and the training pieces.

Synthetic data only (no video, no MediaPipe): landmarks are the expression model's neutral
template placed in a frame of random texture.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spfem_cli.cli import app
from spfem_cli.errors import SpfemError
from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.expression import ExpressionModel
from spfem_cli.generator.generator import FaceGenerator, build_generator, mouth_hold
from spfem_cli.generator.refiner import (
    FACE_FEATHER,
    FACE_MARGIN,
    FLOW_SCALE,
    CropGeometry,
    Refiner,
    RefinerConfig,
    crop_face_frame,
    crop_flow,
    refine_frame,
    regions,
    sample_crop,
    supersampled_points,
    warp_crop,
)
from spfem_cli.generator.warp import HoldRegion, WarpConfig, Warper, hold_weight
from spfem_cli.training.frames import (
    ClipFrames,
    fine_crop_from_frame,
    load_clip_frames,
    person_of,
)
from spfem_cli.training.refiner import (
    TrainConfig,
    make_batch,
    mirror_batch,
    reconstruction_losses,
    sample_pairs,
    split_people,
    total_loss,
)
from tests.painted import painted_eyes, raise_upper_lids, template_face

CPU = torch.device("cpu")
SMALL = RefinerConfig(crop=CropGeometry(size=64), channels=(8, 8, 16))


@pytest.fixture(scope="module")
def model() -> ExpressionModel:
    return ExpressionModel.load()


@pytest.fixture(scope="module")
def scene(model: ExpressionModel) -> tuple[np.ndarray, FaceFrame, np.ndarray]:
    """(frame (240, 320, 3) uint8 of smooth random texture, its face frame, landmarks
    (478, 2) in the face frame)."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, size=(30, 40, 3)).astype(np.float32)
    frame = (
        torch.nn.functional.interpolate(
            torch.from_numpy(coarse).permute(2, 0, 1)[None], size=(240, 320), mode="bicubic"
        )[0]
        .permute(1, 2, 0)
        .clamp(0, 255)
        .round()
        .numpy()
        .astype(np.uint8)
    )
    face = FaceFrame(origin=np.array([160.0, 100.0]), angle=0.05, iod=55.0)
    return frame, face, model.template.double().numpy()


def _random_head(refiner: Refiner, seed: int = 0) -> Refiner:
    """A refiner whose output is far from the identity (random last layer)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        refiner.head.weight.copy_(torch.randn(refiner.head.weight.shape, generator=gen) * 0.5)
        refiner.head.bias.copy_(torch.randn(refiner.head.bias.shape, generator=gen))
    return refiner.eval()


def _edit_inputs(
    model: ExpressionModel, points: np.ndarray
) -> tuple[np.ndarray, HoldRegion, np.ndarray]:
    gen = FaceGenerator(model=model, device=CPU, mouth="natural")
    delta = model.emotion_vector("surprised").double().numpy()
    disp, hold = gen.sparse(points=points, delta=delta)
    return disp, hold, delta


def test_untrained_refiner_is_the_warp(model, scene) -> None:
    frame, face, points = scene
    disp, hold, delta = _edit_inputs(model, points)
    warper = Warper(device=CPU)
    plain = warper.apply(
        frame, face=face, points=points, values=disp, landmarks_px=face.to_image(points), hold=hold
    )
    refined = refine_frame(
        frame, warper=warper, refiner=Refiner(SMALL).eval(), face=face, points=points,
        values=disp, hold=hold, delta=delta,
    )  # fmt: skip
    diff = np.abs(refined.astype(int) - plain.astype(int))
    assert not np.array_equal(plain, frame)  # the warp did something
    # Same warp, normalised over a larger box: at most a rounding step apart, rarely.
    assert diff.max() <= 1
    assert (diff > 0).mean() < 1e-3


def test_refiner_leaves_held_mouth_and_background_alone(model, scene) -> None:
    frame, face, points = scene
    disp, hold, delta = _edit_inputs(model, points)
    warper = Warper(device=CPU)
    plain = warper.apply(
        frame, face=face, points=points, values=disp, landmarks_px=face.to_image(points), hold=hold
    )
    refined = refine_frame(
        frame, warper=warper, refiner=_random_head(Refiner(SMALL)), face=face, points=points,
        values=disp, hold=hold, delta=delta,
    )  # fmt: skip
    changed = np.abs(refined.astype(int) - plain.astype(int)).max(axis=-1) > 1
    assert changed.mean() > 0.05  # the random head does change the face
    ys, xs = np.mgrid[0:240, 0:320]
    pix = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float64)
    local = torch.from_numpy(face.to_face(pix)).float()
    held = hold_weight(local, hold).reshape(240, 320).numpy()
    assert not changed[held > 0.999].any()
    oval = torch.from_numpy(points[list(mesh.FACE_OVAL)]).float()
    from spfem_cli.generator.warp import polygon_distance

    dist = polygon_distance(local, oval).reshape(240, 320).numpy()
    # Off the face the refiner adds nothing to the warp, and far off it nothing changes.
    off = dist > FACE_MARGIN + FACE_FEATHER
    assert np.abs(refined[off].astype(int) - plain[off].astype(int)).max() <= 1
    far = dist > 0.6
    assert np.array_equal(refined[far], frame[far])


def test_zero_change_returns_the_frame(model, scene) -> None:
    frame, face, points = scene
    gen = FaceGenerator(model=model, device=CPU, refiner=_random_head(Refiner(SMALL)))
    out = gen.edit_frame(frame, face=face, points=points, delta=np.zeros(model.num_aus))
    assert np.array_equal(out, frame)


def test_the_refiner_is_told_of_the_one_sided_units_only_on_the_right(
    model: ExpressionModel,
    scene: tuple[np.ndarray, FaceFrame, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The refiner learned the one-sided units on the right only (training zeroes them on
    mirrored pairs): played on the left, it gets the change without them; the warp still
    moves the left side."""
    from spfem_cli.generator import generator as generator_mod
    from spfem_cli.generator.expression import ONE_SIDED_AUS

    told: dict[str, np.ndarray] = {}

    def fake_refine(frame: np.ndarray, **kw: object) -> np.ndarray:
        told["delta"], told["values"] = np.asarray(kw["delta"]), np.asarray(kw["values"])
        return frame

    monkeypatch.setattr(generator_mod, "refine_frame", fake_refine)
    frame, face, points = scene
    gen = FaceGenerator(model=model, device=CPU, refiner=_random_head(Refiner(SMALL)))
    delta = model.emotion_vector("contempt").double().numpy()
    one_sided = [model.au_names.index(n) for n in ONE_SIDED_AUS]
    gen.edit_frame(frame, face=face, points=points, delta=delta, side="right")
    assert np.array_equal(told["delta"], delta)
    gen.edit_frame(frame, face=face, points=points, delta=delta, side="left")
    assert not told["delta"][one_sided].any()
    others = [k for k in range(model.num_aus) if k not in one_sided]
    assert np.array_equal(told["delta"][others], delta[others])
    moved = np.linalg.norm(told["values"], axis=-1)
    assert moved[list(mesh.LEFT_EYEBROW)].mean() > 10 * moved[list(mesh.RIGHT_EYEBROW)].mean()


def test_crop_flow_follows_the_landmarks_and_zero_is_identity(model) -> None:
    crop = CropGeometry(size=64)
    pts = model.template[None].float()
    vals = torch.zeros_like(pts)
    vals[0, list(mesh.RIGHT_EYEBROW), 1] = -0.05  # brow up
    flow = crop_flow(pts, vals, crop=crop, warp=WarpConfig())
    assert flow.shape == (1, 2, 64, 64)

    # At the brow, the crop's flow is close to the brow's displacement.
    def at(point: torch.Tensor) -> torch.Tensor:
        col, row = ((crop.to_unit(point) + 1) / 2 * 63).round().long()
        return flow[0, :, row, col]

    # Up at the brow (the flow is a smoothed mean of the brow and the still eye below it),
    # nothing at the chin.
    assert at(pts[0, 105])[1] < -0.02
    assert at(pts[0, 152]).abs().max() < 0.005
    image = torch.rand(1, 3, 64, 64)
    still = warp_crop(image, torch.zeros(1, 2, 64, 64), crop=crop)
    assert torch.allclose(still, image, atol=1e-5)


def test_regions_hold_the_mouth_and_allow_the_face(model) -> None:
    points = model.template.double().numpy()
    crop = CropGeometry(size=64)
    maps = regions(points, mouth_hold(points, mode="natural"), crop=crop)

    def at(xy: list[float]) -> torch.Tensor:
        col, row = ((crop.to_unit(torch.tensor(xy)) + 1) / 2 * 63).round().long()
        return maps[:, row, col]

    mouth = points[[13, 14]].mean(axis=0).tolist()
    cheek = [0.6, 0.6]
    corner = [crop.left + 0.01, crop.top + 0.01]
    assert at(mouth)[0] > 0.99 and at(mouth)[1] < 0.01
    assert at(cheek)[0] < 0.01 and at(cheek)[1] > 0.99
    assert at(corner)[1] < 0.01


def test_checkpoint_round_trip_fp16_and_refusals(tmp_path: Path) -> None:
    net = _random_head(Refiner(SMALL), seed=3)
    path = tmp_path / "r.safetensors"
    sha = net.save(path)
    assert len(sha) == 64
    back = Refiner.load(path)
    assert back.config == SMALL
    x, a = torch.rand(2, 10, 64, 64) * 2 - 1, torch.randn(2, SMALL.n_aus) * 0.3
    with torch.no_grad():
        r1, m1 = net(x, a)
        r2, m2 = back(x, a)
    assert torch.allclose(r1, r2, atol=2e-2) and torch.allclose(m1, m2, atol=1e-2)
    assert path.stat().st_size < 200_000  # fp16
    # A file whose tensors do not fit its config is refused with a clear error.
    other = Refiner(RefinerConfig(crop=CropGeometry(size=64), channels=(8, 8, 8)))
    bad = tmp_path / "bad.safetensors"
    from spfem_cli.generator.checkpoint import save_checkpoint

    save_checkpoint(
        bad,
        tensors=dict(other.state_dict()),
        config={"kind": "refiner", "version": 1, "model": SMALL.to_dict()},
    )
    with pytest.raises(SpfemError, match="do not fit"):
        Refiner.load(bad)
    with pytest.raises(SpfemError, match="not a refiner"):
        Refiner.load("facs-v2")


def test_build_generator_kinds(model) -> None:
    assert build_generator(model=model, device=CPU, kind="warp").refiner is None
    with pytest.raises(SpfemError, match="unknown generator"):
        build_generator(model=model, device=CPU, kind="gan")


def test_refiner_generator_without_shipped_refiner_says_what_to_do(
    model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "manifest.json").write_text('{"checkpoints": {}}')
    monkeypatch.setenv("SPFEM_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(SpfemError, match="no pre-trained refiner .* use --generator warp") as exc:
        build_generator(model=model, device=CPU, kind="refiner")
    assert "\n" not in str(exc.value)
    net = Refiner(RefinerConfig(crop=CropGeometry(size=64), channels=(8, 8, 16)))
    net.save(tmp_path / "mine.safetensors")
    # A refiner file of one's own needs no manifest entry.
    gen = build_generator(
        model=model, device=CPU, kind="refiner", refiner=tmp_path / "mine.safetensors"
    )
    assert gen.refiner is not None


def _synthetic_clips(model: ExpressionModel, n_people: int = 3) -> list[ClipFrames]:
    """Clips whose 'frames' are smooth random images and jittered template landmarks."""
    rng = np.random.default_rng(1)
    clips = []
    for p in range(n_people):
        n = 12
        coarse = torch.from_numpy(rng.uniform(0, 255, size=(n, 3, 8, 8)).astype(np.float32))
        crops = torch.nn.functional.interpolate(coarse, size=(128, 128), mode="bilinear")
        points = model.template.numpy()[None] + rng.normal(0, 0.01, size=(n, 478, 2))
        clips.append(
            ClipFrames(
                name=f"p{p}.mp4",
                person=f"p{p}",
                crops=crops.round().numpy().astype(np.uint8),
                points=points.astype(np.float32),
                aus=rng.normal(0, 0.2, size=(n, model.num_aus)).astype(np.float32),
            )
        )
    return clips


def test_training_step_lowers_the_loss_and_reaches_every_layer(model) -> None:
    torch.manual_seed(0)
    clips = _synthetic_clips(model)
    cfg = TrainConfig()
    pairs = sample_pairs(clips, 6, rng=np.random.default_rng(0), config=cfg)
    batch = make_batch(clips, pairs, crop=SMALL.crop, warp=WarpConfig())
    net = Refiner(SMALL)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for step in range(80):
        residual, mask = net(batch.inputs, batch.aus)
        out = (batch.warped + mask * residual * batch.allow).clamp(-1, 1)
        loss = total_loss(
            reconstruction_losses(out, batch.target, batch.allow), mask, batch.allow, cfg, residual
        )
        opt.zero_grad()
        loss.backward()
        if step == 1:
            # After one step the zero head has moved, and gradient reaches every layer.
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


def test_pairs_respect_the_gap_limits(model) -> None:
    clips = _synthetic_clips(model)
    cfg = TrainConfig(min_gap_frames=2, max_gap_frames=3, pose_tolerance=10.0)
    pairs = sample_pairs(clips, 200, rng=np.random.default_rng(3), config=cfg)
    gaps = {abs(a - b) for _, a, b in pairs}
    assert gaps <= {2, 3} and gaps == {2, 3}


def painted_pair(pts: np.ndarray, values: np.ndarray, *, crop: CropGeometry) -> ClipFrames:
    """A two-frame clip of the painted face for training pairs: frame 0 at `pts` (478, 2),
    frame 1's landmarks moved by `values` (478, 2), both crops the same painting, cut at
    twice the crop's size as training cuts them."""
    fine = painted_eyes(pts, crop_face_frame(crop.fine), (2 * crop.size, 2 * crop.size))
    return ClipFrames(
        name="painted.mp4",
        person="painted",
        crops=np.stack([fine, fine]).transpose(0, 3, 1, 2).copy(),
        points=np.stack([pts, pts + values]).astype(np.float32),
        aus=np.zeros((2, RefinerConfig().n_aus), dtype=np.float32),
    )


def test_training_warps_crops_as_the_generator_warps_frames() -> None:
    """The pairs the refiner learns from are warped as the generator edits: a raised upper
    lid is raised on the crop as on a frame (the eyes' own correction and the eyeball drawn
    in place): the crop's eye matches the edited frame's. The smooth flow alone, which training
    used before, moves the lid less, and without the eyeballs the iris is drawn out tall."""
    crop = CropGeometry(size=192)
    pts = template_face()
    raise_by = raise_upper_lids(pts, 0.07)
    clip = painted_pair(pts, raise_by, crop=crop)
    # The same face as a frame, edited by the generator's warp and cut to the crop.
    ff = FaceFrame(origin=np.array([200.0, 160.0]), angle=0.0, iod=120.0)
    frame = Warper(device=CPU).apply(
        painted_eyes(pts, ff, (420, 400)), face=ff, points=pts, values=raise_by,
        landmarks_px=ff.to_image(pts),
    )  # fmt: skip
    grid = torch.from_numpy(ff.to_image(supersampled_points(crop).double().numpy())).float()
    edited = sample_crop(torch.from_numpy(frame).permute(2, 0, 1)[None].float(), grid)[0]
    ring = crop_face_frame(crop).to_image(pts[list(mesh.RIGHT_EYE) + list(mesh.LEFT_EYE)])
    x0, y0 = np.floor(ring.min(axis=0)).astype(int) - 8
    x1, y1 = np.ceil(ring.max(axis=0)).astype(int) + 8
    diameter = 2 * np.linalg.norm(pts[469:473] - pts[468], axis=1).mean() * (crop.pixels_per_iod)

    def warped(warp: WarpConfig) -> tuple[float, int]:
        """How far the crop's eyes are from the edited frame's (mean levels), and the
        iris's height (pixels)."""
        batch = make_batch([clip], [(0, 0, 1)], crop=crop, warp=warp)
        out = ((batch.warped[0] + 1) * 127.5)[:, y0:y1, x0:x1]
        ys, _ = np.nonzero((out[2] - out[0] > 60).numpy())
        return float((out - edited[:, y0:y1, x0:x1]).abs().mean()), int(np.ptp(ys)) + 1

    off_smooth, _ = warped(SMOOTH_WARP)
    _, stretched = warped(WarpConfig(eyeballs=False))
    off, height = warped(WarpConfig())
    assert off < 0.5 * off_smooth
    assert stretched > diameter + 1 and height <= diameter + 1


def test_refiner_sees_at_edit_time_what_it_was_trained_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The network's ten input channels (warped crop, source crop, flow, held mouth, allowed
    region) for a brow raise and lid raise on a painted face are the same whether a training
    pair builds them (`make_batch`) or an edit of the frame does (`refine_frame`): a refiner
    that fails on edits does not fail for a mismatch of its inputs."""
    import spfem_cli.generator.refiner as refiner_module

    crop = CropGeometry(size=128)
    pts = template_face()
    values = np.zeros_like(pts)
    values[list(mesh.RIGHT_EYEBROW) + list(mesh.LEFT_EYEBROW), 1] = -0.06
    values += raise_upper_lids(pts, 0.04)
    clip = painted_pair(pts, values, crop=crop)
    trained = make_batch([clip], [(0, 0, 1)], crop=crop, warp=WarpConfig()).inputs[0]

    seen: list[torch.Tensor] = []
    build = refiner_module.network_inputs

    def keep(**kwargs: torch.Tensor) -> torch.Tensor:
        seen.append(build(**kwargs))
        return seen[-1]

    monkeypatch.setattr(refiner_module, "network_inputs", keep)
    ff = FaceFrame(origin=np.array([200.0, 160.0]), angle=0.0, iod=120.0)
    refine_frame(
        painted_eyes(pts, ff, (420, 400)), warper=Warper(device=CPU),
        refiner=Refiner(RefinerConfig(crop=crop)), face=ff, points=pts, values=values,
        hold=mouth_hold(pts, mode="natural"), delta=np.ones(RefinerConfig().n_aus),
    )  # fmt: skip
    edited = seen[0][0]
    assert trained[7].abs().mean() > 0.01  # the flow is there to compare
    per_channel = (trained - edited).abs().mean(dim=(1, 2))
    assert per_channel.max() < 0.005, per_channel


def test_training_crops_are_cut_at_twice_the_size_and_pool_to_the_crop() -> None:
    """`CropGeometry.fine` is the supersampled grid the crop is pooled from; the training
    crops are cut on it and pool, to rounding, to the crop an edit samples (`sample_crop`)."""
    crop = CropGeometry(size=24, left=-1.3, top=-1.0, side=2.8)
    torch.testing.assert_close(
        crop.fine.face_points(), supersampled_points(crop), atol=1e-5, rtol=0
    )
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.uniform(0, 255, size=(1, 3, 12, 16)).astype(np.float32))
    frame = torch.nn.functional.interpolate(coarse, size=(120, 160), mode="bicubic")
    frame = frame[0].permute(1, 2, 0).clamp(0, 255).round().numpy().astype(np.uint8)
    ff = FaceFrame(origin=np.array([80.0, 55.0]), angle=0.1, iod=30.0)
    pixels = ff.to_image(supersampled_points(crop).double().numpy())
    fine = fine_crop_from_frame(frame, pixels)
    assert fine.shape == (3, 48, 48)
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(fine[None]).float(), 2)[0]
    pooled = pooled.round().numpy()
    whole = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    edited = sample_crop(whole, torch.from_numpy(pixels).float())[0].round().numpy()
    assert np.abs(pooled - edited).max() <= 1


# The smooth flow mirrors exactly; the eyes' correction is fitted on a pixel window whose
# rounding is not mirror-symmetric (its flow then differs by up to about 0.006 IOD, a third of
# a pixel here, since the correction also keeps the lids where the landmarks land), and the
# eyeballs are drawn from the pixels that correction picks.
SMOOTH_WARP = WarpConfig(eye_sigma=0.0, eyeballs=False)


@pytest.mark.parametrize("warp", [SMOOTH_WARP, WarpConfig()], ids=["smooth", "generator"])
def test_mirrored_pair_is_the_pair_of_mirrored_faces(model, warp: WarpConfig) -> None:
    """Mirroring a built batch must equal building the batch from mirrored faces: flipped
    crops and landmarks with x negated give the flipped warp and the negated x flow."""
    clips = _synthetic_clips(model, n_people=1)
    pairs = [(0, 0, 5), (0, 3, 7)]
    batch = make_batch(clips, pairs, crop=SMALL.crop, warp=warp)
    flipped = [
        ClipFrames(
            name=c.name,
            person=c.person,
            crops=np.ascontiguousarray(c.crops[..., ::-1]),
            points=c.points * np.array([-1.0, 1.0], dtype=np.float32),
            aus=c.aus,
        )
        for c in clips
    ]
    direct = make_batch(flipped, pairs, crop=SMALL.crop, warp=warp)
    one_sided = [i for i, n in enumerate(model.au_names) if n.endswith("R")]
    mirrored = mirror_batch(batch, which=torch.tensor([True, True]), one_sided=one_sided)
    torch.testing.assert_close(mirrored.target, direct.target, atol=2e-3, rtol=0)
    if warp == SMOOTH_WARP:
        torch.testing.assert_close(mirrored.warped, direct.warped, atol=2e-3, rtol=0)
        torch.testing.assert_close(mirrored.inputs[:, :8], direct.inputs[:, :8], atol=2e-3, rtol=0)
    else:
        off = (mirrored.warped - direct.warped).abs()
        assert float(off.mean()) < 2e-4 and float((off > 0.01).float().mean()) < 0.003
        flow_off = (mirrored.inputs[:, 6:8] - direct.inputs[:, 6:8]).abs() / FLOW_SCALE
        assert float(flow_off.max()) < 0.008
    # The region maps are rasterised polygons: mirrored, edge pixels may fall the other way.
    differ = (mirrored.inputs[:, 8:] - direct.inputs[:, 8:]).abs() > 0.05
    assert float(differ.float().mean()) < 0.002
    assert float(mirrored.aus[:, one_sided].abs().max()) == 0.0
    # Only the flagged pairs change.
    half = mirror_batch(batch, which=torch.tensor([False, True]), one_sided=one_sided)
    torch.testing.assert_close(half.inputs[0], batch.inputs[0])
    torch.testing.assert_close(half.inputs[1], mirrored.inputs[1])


def test_split_people_keeps_people_apart(model) -> None:
    clips = _synthetic_clips(model, n_people=4)
    train, val = split_people(clips, TrainConfig(seed=5))
    assert set(train).isdisjoint(val) and set(train) | set(val) == {"p0", "p1", "p2", "p3"}
    assert split_people(clips, TrainConfig(val_people=["p2"])) == (["p0", "p1", "p3"], ["p2"])
    with pytest.raises(SpfemError, match="not in the collection"):
        split_people(clips, TrainConfig(val_people=["nobody"]))
    with pytest.raises(SpfemError, match="at least two people"):
        split_people(clips[:1], TrainConfig())


def test_person_of(tmp_path: Path) -> None:
    root = tmp_path
    assert person_of(root / "ann" / "a.mp4", root=root, people={}) == "ann"
    assert person_of(root / "bob.mp4", root=root, people={}) == "bob"
    assert person_of(root / "x" / "c.mp4", root=root, people={"x/c.mp4": "cy"}) == "cy"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "video folder not found"),
        (["{empty}"], "no videos"),
        (["{empty}", "--steps", "0"], "--steps must be at least 1"),
        (["{empty}", "--workers", "-1"], "--workers must be 0 or more"),
        (["{empty}", "--minutes", "0"], "--minutes must be more than 0"),
        (["{empty}", "--minutes", "1", "--steps", "5"], "give --steps or --minutes, not both"),
        (["{empty}", "--config", "{badconfig}"], "unknown training settings"),
        (["{empty}", "--face", "top"], "--face must be largest, left, right or X,Y"),
        (["{empty}", "--config", "{badface}"], "--face must be largest, left, right or X,Y"),
    ],
)
def test_train_cli_errors(tmp_path: Path, args: list[str], message: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    badconfig = tmp_path / "c.json"
    badconfig.write_text('{"stepz": 3}')
    badface = tmp_path / "f.json"
    badface.write_text('{"face": "top"}')
    names = {
        "missing": tmp_path / "nope",
        "empty": empty,
        "badconfig": badconfig,
        "badface": badface,
    }
    argv = ["train", "refiner", *[a.format(**names) for a in args], "-o", str(tmp_path / "o.st")]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.st").exists()


def test_the_face_asked_for_reaches_the_crops_and_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`spfem train refiner --face right` overrides the config's face, and the videos are
    read from that face (the config, with it, is what the checkpoint stores)."""
    from spfem_cli.face.tracker import FacePick
    from spfem_cli.training import refiner as training

    seen = {}

    def reading(root: Path, **kwargs: Any) -> list:
        seen["face"] = kwargs["face"]
        raise SpfemError("stop here")

    monkeypatch.setattr(training, "load_collection", reading)
    config = tmp_path / "c.json"
    config.write_text('{"face": "left"}')
    argv = ["train", "refiner", str(tmp_path), "--config", str(config), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "stop here" in result.output
    assert seen["face"] == FacePick.parse("left")
    result = CliRunner().invoke(app, [*argv, "--face", "0.75,0.4"])
    assert result.exit_code == 2 and "stop here" in result.output
    assert seen["face"] == FacePick.parse("0.75,0.4")
    assert asdict(TrainConfig(face="right"))["face"] == "right"


def test_cached_crops_are_read_from_disk_and_reused(
    tmp_path: Path, model: ExpressionModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a cache folder the crops are a read-only memory map of the cache file (RAM does
    not grow with the collection), equal to the crops cut in RAM without one; a second load
    reads the cache and does not track the video again."""
    from spfem_cli import demo
    from spfem_cli.media import FrameWriter
    from spfem_cli.training import frames as frames_mod

    video = tmp_path / "face.mp4"
    with FrameWriter(video, width=demo.SIZE, height=demo.SIZE, fps=demo.FPS) as writer:
        for frame in demo.portrait_frames(n_frames=8):
            writer.write(frame)
    kwargs = {"person": "ann", "name": "face.mp4", "model": model, "crop": SMALL.crop}
    in_ram = load_clip_frames(video, max_frames=6, **kwargs)
    cache = tmp_path / "cache"
    cached = load_clip_frames(video, max_frames=6, cache_dir=cache, **kwargs)
    assert in_ram is not None and cached is not None
    assert isinstance(cached.crops, np.memmap) and not cached.crops.flags.writeable
    assert not isinstance(in_ram.crops, np.memmap)
    assert cached.crops.shape == (6, 3, 128, 128)
    np.testing.assert_array_equal(cached.crops, in_ram.crops)
    np.testing.assert_array_equal(cached.points, in_ram.points)
    assert cached.side == in_ram.side == "right"  # the painted portrait faces the camera
    assert sorted(p.name.split(".", 1)[1] for p in cache.iterdir()) == ["crops.npy", "npz"]

    def no_tracking(*args: object, **kw: object) -> None:
        raise AssertionError("tracked again although cached")

    monkeypatch.setattr(frames_mod, "analyse_video", no_tracking)
    again = load_clip_frames(video, max_frames=6, cache_dir=cache, **kwargs)
    assert again is not None and isinstance(again.crops, np.memmap)
    np.testing.assert_array_equal(again.crops, in_ram.crops)
    np.testing.assert_array_equal(again.aus, in_ram.aus)
    assert again.side == "right"
    # Another frame count is another entry, so it is cut anew.
    with pytest.raises(AssertionError, match="tracked again"):
        load_clip_frames(video, max_frames=5, cache_dir=cache, **kwargs)


def test_the_cache_keeps_the_side_an_edit_plays_the_one_sided_units_on(tmp_path: Path) -> None:
    """Fine-tuning renders a clip's one-sided units where `spfem edit` would play them: the
    side read when the clip was tracked comes back from the cache."""
    from spfem_cli.training import frames as frames_mod

    entry = tmp_path / "entry"
    crops = np.lib.format.open_memmap(
        frames_mod._crops_path(entry, partial=True), "w+", np.uint8, (2, 3, 8, 8)
    )
    points, aus = np.zeros((2, 478, 2), np.float32), np.zeros((2, 17), np.float32)
    frames_mod._store_entry(entry, crops=crops, points=points, aus=aus, present=aus, side="left")
    found, frames = frames_mod._load_entry(entry, name="a", person="p")
    assert found and frames is not None and frames.side == "left"


def test_frames_carry_the_expression_an_edit_replaces_and_cache_it_per_calm_face(
    tmp_path: Path, model: ExpressionModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ClipFrames.present` is what `spfem edit` would take off each frame (the analysis's
    present expression, against the calm face of `--rest` when one is given), and it is kept
    in the cache entry, which is another one for each calm face (and none)."""
    from spfem_cli import demo
    from spfem_cli.media import FrameWriter, probe
    from spfem_cli.pipeline import analyse_video, read_rest_face
    from spfem_cli.progress import SilentReporter
    from spfem_cli.training import frames as frames_mod

    video = tmp_path / "face.mp4"
    with FrameWriter(video, width=demo.SIZE, height=demo.SIZE, fps=demo.FPS) as writer:
        for frame in demo.portrait_frames(n_frames=8):
            writer.write(frame)
    # A calm face with the brows lower than the clip ever has them (by 0.03 of its height):
    # against it, the clip's brows read as raised.
    calm = read_rest_face(video)
    brows = list(mesh.RIGHT_EYEBROW) + list(mesh.LEFT_EYEBROW)
    calm.shape[brows, 1] += 0.03 * np.ptp(calm.shape[:, 1])
    kwargs = {"person": "ann", "name": "face.mp4", "model": model, "crop": SMALL.crop}
    cache = tmp_path / "cache"
    alone = load_clip_frames(video, max_frames=8, cache_dir=cache, **kwargs)
    given = load_clip_frames(video, max_frames=8, cache_dir=cache, rest_face=calm, **kwargs)
    assert alone is not None and given is not None
    assert alone.present is not None and given.present is not None
    for frames, rest in ((alone, None), (given, calm)):
        analysis = analyse_video(
            probe(video), model=model, workdir=tmp_path, reporter=SilentReporter(), rest_face=rest
        )
        assert frames.present.shape == (8, model.num_aus) and frames.present.dtype == np.float32
        np.testing.assert_allclose(frames.present, analysis.current, atol=1e-6)
    au1 = model.au_names.index("AU1")
    assert given.present[:, au1].mean() > alone.present[:, au1].mean() + 0.2

    def no_tracking(*args: object, **kw: object) -> None:
        raise AssertionError("tracked again although cached")

    monkeypatch.setattr(frames_mod, "analyse_video", no_tracking)
    for frames, rest in ((alone, None), (given, calm)):
        again = load_clip_frames(video, max_frames=8, cache_dir=cache, rest_face=rest, **kwargs)
        assert again is not None and again.present is not None
        np.testing.assert_array_equal(again.present, frames.present)
    other = replace(calm, shape=calm.shape.copy())
    other.shape[brows, 1] += 0.01
    with pytest.raises(AssertionError, match="tracked again"):
        load_clip_frames(video, max_frames=8, cache_dir=cache, rest_face=other, **kwargs)


def test_training_without_a_cache_folder_spills_crops_to_a_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --cache the crops still go to disk (memory mapped), in a temporary folder that
    is gone when training ends."""
    import tempfile

    from spfem_cli import demo
    from spfem_cli.media import FrameWriter
    from spfem_cli.training import refiner as training

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("ann.mp4", "bob.mp4"):
        with FrameWriter(videos / name, width=demo.SIZE, height=demo.SIZE, fps=demo.FPS) as w:
            for frame in demo.portrait_frames(n_frames=6):
                w.write(frame)
    config = tmp_path / "c.json"
    config.write_text(
        '{"steps": 2, "batch_size": 2, "crop_size": 64, "channels": [8, 8, 16], '
        '"val_people": ["bob"], "val_pairs": 2, "val_every": 2, "log_every": 1, "seed": 1}'
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen: list[bool] = []
    real_load = training.load_collection

    def spying_load(*args: object, **kw: object) -> list[ClipFrames]:
        clips = real_load(*args, **kw)
        seen.extend(isinstance(c.crops, np.memmap) for c in clips)
        return clips

    monkeypatch.setattr(training, "load_collection", spying_load)
    out = tmp_path / "r.safetensors"
    training.train_refiner(video_dir=videos, output=out, config=TrainConfig.from_file(config))
    assert out.is_file() and seen == [True, True]
    assert not [p for p in scratch.iterdir() if p.name.startswith("spfem-crops-")]


@pytest.mark.clips
def test_train_refiner_on_real_clips(tmp_path: Path, clips_dir: Path, ffmpeg_checked) -> None:
    """End to end on two short real clips of two people: tracks, crops, trains a few steps,
    validates on the other person, writes a loadable checkpoint and a log."""
    videos = tmp_path / "videos"
    (videos / "ann").mkdir(parents=True)
    ffmpeg_checked("-i", str(clips_dir / "mead_emotions" / "happy.mp4"), "-t", "1.2",
                   "-an", str(videos / "ann" / "a.mp4"))  # fmt: skip
    ffmpeg_checked("-i", str(clips_dir / "speech_man_256x256.mp4"), "-t", "1.2",
                   "-an", str(videos / "bob.mp4"))  # fmt: skip
    config = tmp_path / "c.json"
    config.write_text(
        '{"steps": 6, "batch_size": 2, "crop_size": 64, "channels": [8, 8, 16], '
        '"val_people": ["bob"], "val_pairs": 4, "val_every": 3, "log_every": 2, "seed": 1, '
        '"mirror": true, "max_gap_frames": 10}'
    )
    out = tmp_path / "r.safetensors"
    result = CliRunner().invoke(
        app, ["train", "refiner", str(videos), "-o", str(out), "--config", str(config),
              "--cache", str(tmp_path / "cache")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "held-out people bob" in said
    # The change against the warp is said as a size and a direction, never "-0.9% lower".
    import re

    assert re.search(r"warp alone \(\d+\.\d% (lower|higher)\)", said), said
    net = Refiner.load(out)
    assert net.config.crop.size == 64
    import json

    lines = [json.loads(x) for x in (tmp_path / "r.safetensors.log.jsonl").read_text().splitlines()]
    assert lines[0]["train_people"] == ["ann"] and lines[0]["val_people"] == ["bob"]
    assert [x["step"] for x in lines[1:] if "val" in x] == [0, 3, 6]
    assert all(np.isfinite(x["loss"]) for x in lines[1:] if "loss" in x)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    assert len(list((tmp_path / "cache").glob("*.crops.npy"))) == 2
    # A user's own refiner drives `spfem edit --generator refiner --refiner FILE`.
    edited = tmp_path / "bob.happy.mp4"
    result = CliRunner().invoke(
        app, ["edit", str(videos / "bob.mp4"), "-e", "happy", "--generator", "refiner",
              "--refiner", str(out), "-o", str(edited), "--device", "cpu", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from spfem_cli.media import probe

    assert probe(edited).n_frames == probe(videos / "bob.mp4").n_frames
    result = CliRunner().invoke(
        app, ["edit", str(videos / "bob.mp4"), "-e", "happy", "--generator", "refiner",
              "--refiner", str(tmp_path / "nope.safetensors"), "-o", str(tmp_path / "x.mp4")],
    )  # fmt: skip
    assert result.exit_code == 2 and "checkpoint file not found" in result.output
    assert not (tmp_path / "x.mp4").exists()


def test_pair_workers_hand_out_their_batches_in_step_order(model) -> None:
    """With workers, worker w builds steps w, w + n, ... from its own seeded stream, and the
    loader returns them in step order: the same batches on every run."""
    from torch.utils.data import DataLoader

    from spfem_cli.training.refiner import PairStream

    clips = _synthetic_clips(model)
    cfg = TrainConfig(steps=5, batch_size=2, crop_size=64, channels=(8, 8, 16), workers=2)
    stream = PairStream(clips, config=cfg, warp=WarpConfig(), one_sided=[])
    loaded = list(DataLoader(stream, batch_size=None, num_workers=2))
    assert len(loaded) == 5
    for w in range(2):
        own = stream.batches(np.random.default_rng([cfg.seed, w + 1]), first=w, every=2)
        for step, batch in zip(range(w, 5, 2), own, strict=True):
            torch.testing.assert_close(loaded[step].inputs, batch.inputs)
            torch.testing.assert_close(loaded[step].target, batch.target)
    # Different steps are different pairs, not one worker's batch repeated.
    assert not torch.equal(loaded[0].target, loaded[1].target)


def test_training_with_pair_workers_is_reproducible(model, tmp_path: Path) -> None:
    from spfem_cli.training.refiner import train_on_clips

    clips = _synthetic_clips(model)
    cfg = TrainConfig(
        steps=4, batch_size=2, crop_size=64, channels=(8, 8, 16), val_people=["p2"],
        val_pairs=2, val_every=4, log_every=2, workers=2, lr=1e-2,
    )  # fmt: skip
    results = [
        train_on_clips(clips, output=tmp_path / f"{k}.safetensors", config=cfg, expression=model)
        for k in range(2)
    ]
    first, second = (Refiner.load(r.output).state_dict() for r in results)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(v.abs().sum() > 0 for k, v in first.items() if k.startswith("head"))
    assert Refiner.load(results[0].output).config.channels == (8, 8, 16)


def test_a_stopped_training_run_keeps_its_last_validated_weights(
    model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights are saved at each validation under their own name; a run that stops before
    its last step leaves them (complete, with their step) and nothing under the output name."""
    from spfem_cli.generator.checkpoint import load_checkpoint
    from spfem_cli.training import refiner as training

    clips = _synthetic_clips(model)
    cfg = TrainConfig(
        steps=6, batch_size=2, crop_size=64, channels=(8, 8, 16), val_people=["p2"],
        val_pairs=2, val_every=2, log_every=1,
    )  # fmt: skip
    real_loss, calls = training.total_loss, []

    def loss_then_stop(*args: object, **kw: object) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_loss(*args, **kw)

    monkeypatch.setattr(training, "total_loss", loss_then_stop)
    out = tmp_path / "r.safetensors"
    with pytest.raises(KeyboardInterrupt):
        training.train_on_clips(clips, output=out, config=cfg, expression=model)
    last = training.last_checkpoint_path(out)
    assert last == tmp_path / "r.last.safetensors"
    assert not out.exists() and last.is_file()
    assert load_checkpoint(last).config["training"]["step"] == 4
    assert Refiner.load(last).config.channels == (8, 8, 16)
    # A run that ends removes it.
    monkeypatch.setattr(training, "total_loss", real_loss)
    training.train_on_clips(clips, output=out, config=cfg, expression=model)
    assert out.is_file() and not last.exists()
    assert load_checkpoint(out).config["training"]["step"] == 6


def test_cached_clips_travel_to_workers_as_their_cache_file(model, tmp_path: Path) -> None:
    """Pickled (as for workers started by spawn), a clip whose crops are mapped from a cache
    file carries the file's name, not the crops; a part of such a file travels as data."""
    import pickle

    from torch.utils.data import DataLoader

    from spfem_cli.training.refiner import PairStream

    clips = _synthetic_clips(model)
    cached = []
    for clip in clips:
        path = tmp_path / f"{clip.person}.crops.npy"
        np.save(path, clip.crops)
        mapped = np.load(path, mmap_mode="r")
        cached.append(ClipFrames(clip.name, clip.person, mapped, clip.points, clip.aus))
    blob = pickle.dumps(cached[0])
    assert len(blob) < cached[0].crops.nbytes / 4
    back = pickle.loads(blob)
    assert isinstance(back.crops, np.memmap)
    np.testing.assert_array_equal(back.crops, clips[0].crops)
    part = ClipFrames("p", "p", cached[0].crops[2:5], clips[0].points[2:5], clips[0].aus[2:5])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(part)).crops, clips[0].crops[2:5])
    # Spawned workers build the same batches as forked ones.
    cfg = TrainConfig(steps=2, batch_size=2, crop_size=64, channels=(8, 8, 16), workers=1)
    stream = PairStream(cached, config=cfg, warp=WarpConfig(), one_sided=[])
    spawned = list(
        DataLoader(stream, batch_size=None, num_workers=1, multiprocessing_context="spawn")
    )
    forked = list(
        DataLoader(stream, batch_size=None, num_workers=1, multiprocessing_context="fork")
    )
    for a, b in zip(spawned, forked, strict=True):
        torch.testing.assert_close(a.inputs, b.inputs)


def test_steps_for_budget_counts_steps_validations_and_a_margin() -> None:
    from spfem_cli.training.refiner import steps_for_budget

    # 100 s, 1 s a validation kept for the last one: 99 s of 0.1 s steps plus a validation
    # every 10 steps (0.2 s a step in all), 90% of that.
    assert steps_for_budget(seconds_left=100, step_s=0.1, val_s=1.0, val_every=10) == 445
    assert steps_for_budget(seconds_left=100, step_s=0.1, val_s=0.0, val_every=10) == 900
    assert steps_for_budget(seconds_left=-5, step_s=0.1, val_s=1.0, val_every=10) == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_a_time_budget_sets_the_steps_and_that_config_repeats_the_run(
    model, tmp_path: Path, workers: int
) -> None:
    """With a time budget the steps come from the pace; the checkpoint stores them, and a run
    of that many steps is the same run (the probe trains a copy, from another stream)."""
    import time

    from spfem_cli.generator.checkpoint import load_checkpoint
    from spfem_cli.training.refiner import train_on_clips

    clips = _synthetic_clips(model)
    cfg = TrainConfig(
        steps=10**6, batch_size=2, crop_size=64, channels=(8, 8, 16), val_people=["p2"],
        val_pairs=2, val_every=10**6, log_every=1, workers=workers,
    )  # fmt: skip
    budget = 3.0
    t0 = time.perf_counter()
    timed = train_on_clips(
        clips, output=tmp_path / "t.safetensors", config=cfg, expression=model,
        time_budget_s=budget,
    )  # fmt: skip
    took = time.perf_counter() - t0
    steps = load_checkpoint(timed.output).config["training"]["config"]["steps"]
    assert timed.steps == steps and 1 <= steps < 10**6
    # Loose: the budget is kept to within a factor, not to the second, on a loaded machine.
    assert took < 3 * budget + 10
    again = train_on_clips(
        clips, output=tmp_path / "s.safetensors",
        config=TrainConfig(**{**cfg.__dict__, "steps": steps}), expression=model,
    )  # fmt: skip
    first, second = (Refiner.load(r.output).state_dict() for r in (timed, again))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_generator_benchmark_runs_from_saved_landmarks_without_the_clips(
    model, tmp_path: Path
) -> None:
    """`scripts/benchmark_generator.py --landmarks` times the generator where neither MediaPipe
    nor the clips are (a GPU box): on frames of random texture of the saved size."""
    import re
    import subprocess
    import sys

    face = FaceFrame(origin=np.array([160.0, 110.0]), angle=0.02, iod=60.0)
    marks = np.stack([face.to_image(model.template.double().numpy())] * 3).astype(np.float32)
    saved = tmp_path / "lm.npz"
    np.savez(saved, **{"nowhere.mp4/landmarks": marks, "nowhere.mp4/size": np.array([240, 320])})
    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_generator.py"
    run = subprocess.run(
        [sys.executable, str(script), "--landmarks", str(saved), "--clips", "nowhere.mp4",
         "--frames", "3", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("nowhere.mp4"))
    assert "(320x240, 3 frames, frames of random texture)" in line
    fps = [float(v) for v in re.findall(r"generate/\w+ ([\d.]+) fps", line)]
    assert len(fps) == 2 and all(v > 0 for v in fps)
    assert re.search(r"batch 32: [\d.]+ ms a frame", run.stdout)
