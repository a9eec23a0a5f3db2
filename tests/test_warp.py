"""The warp and the mouth rule, on synthetic data (no video, no model files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.generator import face_rules, hold_mouth
from spfem_cli.generator.warp import WarpConfig, Warper, min_jacobian_det, shepard_flow
from tests.painted import (
    PAINTED_IOD,
    SKIN_RGB,
    drop_lower_lids,
    painted_eyes,
    pixels_in_face_frame,
    raise_upper_lids,
    template_face,
    warp_painted_eyes,
)


def _grid_points(n: int = 22) -> np.ndarray:
    """(n*n, 2) points over a face-sized square in the face frame (IOD units)."""
    g = np.linspace(-1.0, 1.0, n)
    return np.stack(np.meshgrid(g, g * 1.3 + 0.6), axis=-1).reshape(-1, 2)


def _frame(h: int = 240, w: int = 320) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_face_frame_round_trip() -> None:
    rng = np.random.default_rng(1)
    lm = rng.uniform(50, 400, size=(mesh.N_LANDMARKS, 2))
    ff = FaceFrame.from_landmarks(lm)
    assert np.allclose(ff.to_image(ff.to_face(lm)), lm)
    right, left = mesh.eye_centres(lm)
    assert np.allclose(ff.to_face(np.stack([right, left])), [[-0.5, 0.0], [0.5, 0.0]])
    assert np.allclose(FaceFrame.from_params(ff.params).params, ff.params)


def test_shepard_flow_reproduces_uniform_shift_and_fades_far_away() -> None:
    pts = torch.from_numpy(_grid_points()).float()
    vals = torch.tensor([[0.05, -0.02]]).repeat(len(pts), 1)
    inside = shepard_flow(pts, vals, torch.tensor([[0.0, 0.5]]), sigma=0.12, background=0.25)
    far = shepard_flow(pts, vals, torch.tensor([[5.0, 5.0]]), sigma=0.12, background=0.25)
    assert torch.allclose(inside, vals[:1], atol=2e-3)
    assert far.abs().max() < 1e-6


def test_zero_displacement_is_identity() -> None:
    frame = _frame()
    ff = FaceFrame(origin=np.array([160.0, 100.0]), angle=0.1, iod=60.0)
    pts = _grid_points()
    out = Warper(device=torch.device("cpu")).apply(
        frame, face=ff, points=pts, values=np.zeros_like(pts), landmarks_px=ff.to_image(pts)
    )
    assert np.array_equal(out, frame)


def test_warp_moves_content_and_leaves_outside_untouched() -> None:
    frame = np.zeros((240, 320, 3), dtype=np.uint8)
    frame[:, ::8] = 255  # vertical stripes: a horizontal shift is visible
    ff = FaceFrame(origin=np.array([160.0, 90.0]), angle=0.0, iod=50.0)
    pts = _grid_points()
    vals = np.zeros_like(pts)
    centre = np.linalg.norm(pts - [0.0, 0.6], axis=1) < 0.35
    vals[centre] = [0.06, 0.0]  # 3 px to the right
    warper = Warper(device=torch.device("cpu"))
    out = warper.apply(frame, face=ff, points=pts, values=vals, landmarks_px=ff.to_image(pts))
    assert not np.array_equal(out, frame)
    changed = np.argwhere(np.any(out != frame, axis=-1))
    px = ff.to_image(pts)
    lo = px.min(0) - 0.25 * (px.max(0) - px.min(0)) - 1
    hi = px.max(0) + 0.25 * (px.max(0) - px.min(0)) + 1
    assert changed[:, 1].min() >= lo[0] and changed[:, 1].max() <= hi[0]
    assert changed[:, 0].min() >= max(lo[1], 0) and changed[:, 0].max() <= hi[1]
    # The bright column nearest the centre moved right by about 3 px.
    row = int(ff.to_image(np.array([0.0, 0.6]))[1])
    col = int(ff.to_image(np.array([0.0, 0.6]))[0]) // 8 * 8
    bright = np.flatnonzero(out[row, col - 4 : col + 8, 0] > 128) + col - 4
    assert np.any(np.abs(bright - (col + 3)) <= 1)


@pytest.mark.parametrize("amplitude", [0.05, 0.3, 2.0])
def test_flow_never_folds(amplitude: float) -> None:
    rng = np.random.default_rng(2)
    ff = FaceFrame(origin=np.array([160.0, 90.0]), angle=0.2, iod=50.0)
    pts = _grid_points()
    vals = rng.normal(0.0, amplitude, size=pts.shape)
    warper = Warper(device=torch.device("cpu"), config=WarpConfig(grid=48))
    box = (40, 10, 280, 230)
    flow = warper.box_flow(face=ff, points=pts, values=vals, box=box)
    step_x, step_y = (box[2] - 1 - box[0]) / 47, (box[3] - 1 - box[1]) / 47
    assert min_jacobian_det(flow, step_x=step_x, step_y=step_y) > 0.2


def test_hold_mouth_keeps_inner_lips_and_jaw() -> None:
    rng = np.random.default_rng(3)
    disp = rng.normal(0, 0.05, size=(mesh.N_LANDMARKS, 2))
    pts = rng.normal(0, 0.5, size=(mesh.N_LANDMARKS, 2))
    natural = hold_mouth(disp, points=pts, mode="natural")
    central = [i for i in mesh.LIPS_INNER if i not in (78, 191, 95, 308, 415, 324)]
    assert np.all(natural[central] == 0) and np.all(natural[list(mesh.JAW)] == 0)
    # The inner corners go part of the way with the outer corners; natural mode keeps only
    # the corners' rise and fall, expressive mode their sideways pull too.
    expressive = hold_mouth(disp, points=pts, mode="expressive")
    assert np.allclose(expressive[78], 0.6 * disp[61]) and np.allclose(expressive[61], disp[61])
    assert np.allclose(natural[78], [0.0, 0.6 * disp[61, 1]])
    assert np.allclose(natural[61], [0.0, disp[61, 1]])
    assert np.array_equal(natural[..., 1], expressive[..., 1])
    # Far from both corners the sideways motion is kept as it was.
    corners = pts[list(mesh.LIP_CORNERS)]
    far = np.linalg.norm(pts[:, None] - corners[None], axis=-1).min(axis=1) > 0.14
    far[list(mesh.LIPS_INNER)] = False  # the inner corners follow the outer ones
    assert far.sum() > 100 and np.array_equal(natural[far], expressive[far])
    strict = hold_mouth(disp, points=pts, mode="strict")
    lips = list(set(mesh.LIPS_INNER) | set(mesh.LIPS_OUTER))
    assert np.all(strict[lips] == 0)


def test_pose_alignment_removes_a_head_turn() -> None:
    from spfem_cli.face.pose import align, frontal_face_frame

    rng = np.random.default_rng(4)
    face = rng.normal(0, 50, size=(mesh.N_LANDMARKS, 3))
    a, b = 0.3, -0.2  # yaw and pitch, radians
    yaw = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    pitch = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    turned = 1.3 * face @ (yaw @ pitch).T + [200.0, 150.0, 10.0]
    assert np.allclose(align(turned, face), face, atol=1e-6)
    assert np.allclose(frontal_face_frame(turned, face), frontal_face_frame(face, face), atol=1e-6)


@pytest.mark.parametrize("amplitude", [0.05, 0.2])
def test_hold_never_makes_the_warp_fold(amplitude: float) -> None:
    from spfem_cli.generator.warp import HoldRegion, dense_min_jacobian_det

    ff = FaceFrame(origin=np.array([160.0, 90.0]), angle=0.0, iod=60.0)
    pts = _grid_points()
    mouth = np.array([[-0.3, 1.2], [0.0, 1.1], [0.3, 1.2], [0.0, 1.35]])
    vals = np.zeros_like(pts)
    # Everything just outside the mouth moves up hard; the mouth itself is held.
    ring = np.abs(np.linalg.norm(pts - [0.0, 1.22], axis=1) - 0.4) < 0.1
    vals[ring] = [0.0, -amplitude]
    hold = HoldRegion(polygon=mouth, band=0.04, feather=0.1, release=mouth[[0, 2]])
    warper = Warper(device=torch.device("cpu"))
    box = (40, 10, 280, 230)
    dense = warper.dense_flow(face=ff, points=pts, values=vals, box=box, hold=hold)
    assert dense.abs().max() > 1.0  # it still moves
    assert dense_min_jacobian_det(dense) > 0.2


@pytest.mark.parametrize("angle", [0.0, 0.3])
def test_lids_moving_apart_get_their_own_motion(angle: float) -> None:
    """Surprise lifts the upper lid while a squint lifts only the lower one: 0.1 IOD apart,
    too close for the face-wide flow alone; the eye correction delivers both."""
    pts = template_face()
    vals = np.zeros_like(pts)
    upper = [159, 160, 158, 386, 385, 387]
    lower = [145, 144, 153, 374, 373, 380]
    vals[upper] = [0.0, -0.03]  # up: y points down the face
    vals[lower] = [0.0, 0.0]
    ff = FaceFrame(origin=np.array([200.0, 150.0]), angle=angle, iod=120.0)
    box = (40, 40, 360, 420)

    def delivered(config: WarpConfig) -> tuple[float, float, float]:
        warper = Warper(device=torch.device("cpu"), config=config)
        dense = warper.dense_flow(face=ff, points=pts, values=vals, box=box)
        from spfem_cli.generator.warp import dense_min_jacobian_det, sample_flow

        def at(idx: list[int]) -> np.ndarray:
            # The flow where the points land: the output there shows them (a backward map).
            pix = torch.from_numpy(ff.to_image(pts[idx] + vals[idx]) - box[:2]).float()
            return sample_flow(dense, pix).double().numpy()

        want = ff.to_image(pts[upper] + vals[upper]) - ff.to_image(pts[upper])
        share = float((at(upper) * want).sum() / (want * want).sum())
        leak = float(np.linalg.norm(at(lower), axis=1).mean() / np.linalg.norm(want, axis=1).mean())
        return share, leak, dense_min_jacobian_det(dense)

    coarse_share, _, _ = delivered(WarpConfig(eye_sigma=0.0))
    share, leak, det = delivered(WarpConfig())
    assert coarse_share < 0.5  # the failure the correction is for
    assert share > 0.9 and leak < 0.1
    assert det > 0.0


def test_eye_correction_stays_on_the_eyes() -> None:
    pts = template_face()
    vals = np.zeros_like(pts)
    vals[[145, 144, 153, 374, 373, 380]] = [0.0, -0.03]
    ff = FaceFrame(origin=np.array([200.0, 150.0]), angle=0.0, iod=120.0)
    box = (40, 40, 360, 420)
    with_eyes = Warper(device=torch.device("cpu")).dense_flow(
        face=ff, points=pts, values=vals, box=box
    )
    without = Warper(device=torch.device("cpu"), config=WarpConfig(eye_sigma=0.0)).dense_flow(
        face=ff, points=pts, values=vals, box=box
    )
    changed = (with_eyes - without).norm(dim=0) > 0.05
    ys, xs = np.nonzero(changed.numpy())
    assert len(ys) > 0
    faces = ff.to_face(np.stack([xs + box[0], ys + box[1]], axis=-1).astype(np.float64))
    eyes = pts[list(mesh.RIGHT_EYE + mesh.LEFT_EYE)]
    nearest = np.linalg.norm(faces[:, None] - eyes[None], axis=-1).min(axis=1)
    assert nearest.max() < 0.12  # within the correction's reach (3 x 0.035 IOD)


def test_expressive_mode_lets_go_of_more_around_the_lip_corners() -> None:
    from spfem_cli.generator.generator import mouth_hold
    from spfem_cli.generator.warp import hold_weight

    pts = template_face()
    corner = pts[61]
    # Points 0.05 IOD from the right lip corner, toward the middle of the lips and up.
    probes = torch.from_numpy(corner + np.array([[0.05, 0.0], [0.0, -0.05], [0.035, -0.035]]))
    natural = hold_weight(probes, mouth_hold(pts, mode="natural"))
    expressive = hold_weight(probes, mouth_hold(pts, mode="expressive"))
    assert torch.all(expressive < natural - 0.2)
    # The middle of the lips stays held: fully in natural mode; in expressive mode the tail
    # of each corner's release (a Gaussian, 0.16 IOD) lets about 6% of the flow through there.
    middle = torch.from_numpy(pts[[13, 14]])
    assert torch.all(hold_weight(middle, mouth_hold(pts, mode="natural")) > 0.999)
    assert torch.all(hold_weight(middle, mouth_hold(pts, mode="expressive")) > 0.93)


def test_expressive_mode_asks_the_mouth_aus_for_more_and_nothing_else() -> None:
    from spfem_cli.generator.expression import DEFAULT_MODEL, ExpressionModel
    from spfem_cli.generator.generator import (
        EXPRESSIVE_MOUTH_AUS,
        EXPRESSIVE_MOUTH_GAIN,
        RISE_ONLY,
        FaceGenerator,
    )

    model = ExpressionModel.load(DEFAULT_MODEL)
    pts = template_face()
    gens = {
        mode: FaceGenerator(model=model, device=torch.device("cpu"), mouth=mode)
        for mode in ("natural", "expressive")
    }
    smile = model.emotion_vector("happy").numpy()
    stronger = smile.copy()
    stronger[model.au_names.index("AU12")] *= EXPRESSIVE_MOUTH_GAIN  # happy's one mouth AU
    assert "AU12" in EXPRESSIVE_MOUTH_AUS and "AU6" not in EXPRESSIVE_MOUTH_AUS
    expressive = gens["expressive"].displacement(smile, points=pts)
    # Natural mode also drops the lip corners' sideways motion (`RISE_ONLY`): the rest is the
    # same once the mouth AUs are asked for as much.
    like = gens["natural"].displacement(stronger, points=pts)
    assert np.allclose(expressive[:, 1], like[:, 1])
    sideways = like[:, 0] != expressive[:, 0]
    near = np.linalg.norm(pts[:, None] - pts[None, list(mesh.LIP_CORNERS)], axis=-1).min(axis=1)
    assert sideways.any() and np.all(near[sideways] < RISE_ONLY[1])
    corners = list(mesh.LIP_CORNERS)
    natural = gens["natural"].displacement(smile, points=pts)
    assert np.all(np.abs(expressive[corners, 1]) > 1.4 * np.abs(natural[corners, 1]))
    # Surprise has no mouth AU: the same displacement in both modes, but for natural mode's
    # dropping of sideways motion around the lip corners.
    wide = model.emotion_vector("surprised").numpy()
    natural, expressive = (gens[m].displacement(wide, points=pts) for m in gens)
    assert np.allclose(natural[near >= RISE_ONLY[1]], expressive[near >= RISE_ONLY[1]])
    assert np.allclose(natural[:, 1], expressive[:, 1])


def test_a_lip_corner_that_moves_alone_is_released_further() -> None:
    from spfem_cli.generator.expression import DEFAULT_MODEL, ExpressionModel
    from spfem_cli.generator.generator import (
        NATURAL_HOLD,
        FaceGenerator,
        corner_release_scale,
        mouth_hold,
    )
    from spfem_cli.generator.warp import hold_weight

    up = np.array([0.0, -0.05])
    assert np.allclose(corner_release_scale(None), [1, 1])
    assert np.allclose(corner_release_scale(np.zeros((2, 2))), [1, 1])
    assert np.allclose(corner_release_scale(np.stack([up, up * [-1, 1]])), [1, 1])
    assert np.allclose(corner_release_scale(np.stack([up, 0 * up])), [2, 1])
    assert np.allclose(corner_release_scale(np.stack([0.5 * up, 1.5 * up])), [1, 1.5])

    pts = template_face()
    gen = FaceGenerator(
        model=ExpressionModel.load(DEFAULT_MODEL), device=torch.device("cpu"), mouth="natural"
    )
    radius = NATURAL_HOLD["release_radius"]
    holds = {}
    for emotion in ("happy", "contempt"):
        delta = gen.model.emotion_vector(emotion).numpy()
        holds[emotion] = gen.sparse(points=pts, delta=delta)[1]
    assert np.allclose(holds["happy"].release_radii(), [radius, radius])
    # Contempt's smirk moves the subject's right corner (61) alone.
    assert np.allclose(holds["contempt"].release_radii(), [2 * radius, radius])
    probes = torch.from_numpy(pts[61] + np.array([[0.05, 0.0], [0.0, -0.05]]))
    assert torch.all(
        hold_weight(probes, holds["contempt"]) < hold_weight(probes, holds["happy"]) - 0.2
    )
    mirrored = torch.from_numpy(pts[291] + np.array([[-0.05, 0.0], [0.0, -0.05]]))
    assert torch.allclose(
        hold_weight(mirrored, holds["contempt"]),
        hold_weight(mirrored, mouth_hold(pts, mode="natural")),
    )


def test_a_raised_upper_lip_lets_go_of_its_top_edge_and_holds_the_inner_lips() -> None:
    from spfem_cli.generator.expression import DEFAULT_MODEL, ExpressionModel
    from spfem_cli.generator.generator import (
        _CORNER_TAPER,
        UPPER_LIP_RELEASE,
        UPPER_LIP_TOP,
        FaceGenerator,
        mouth_hold,
    )
    from spfem_cli.generator.warp import face_box, hold_weight

    pts = template_face()
    ff = FaceFrame(origin=np.array([200.0, 150.0]), angle=0.0, iod=120.0)
    gen = FaceGenerator(
        model=ExpressionModel.load(DEFAULT_MODEL), device=torch.device("cpu"), mouth="natural"
    )
    top = torch.from_numpy(pts[list(UPPER_LIP_TOP)])

    def moved(emotion: str) -> dict[str, np.ndarray]:
        """How far (IOD) the flow moves the top edge's three points and the inner lips."""
        disp, hold = gen.sparse(points=pts, delta=gen.model.emotion_vector(emotion).numpy())
        px = ff.to_image(pts)
        box = face_box(px, width=420, height=420, margin=gen.warper.config.margin)
        flow = gen.warper.dense_flow(face=ff, points=pts, values=disp, box=box, hold=hold)
        out = {}
        # The inner lips but their corners, which follow the outer corners (`_CORNER_TAPER`).
        inner = [i for i in mesh.LIPS_INNER if i not in {k for k, _, _ in _CORNER_TAPER}]
        for name, idx in (("top", list(UPPER_LIP_TOP)), ("inner", inner)):
            x, y = np.round(px[idx] - box[:2]).astype(int).T
            out[name] = flow[:, y, x].norm(dim=0).numpy() / ff.iod
        return out | {"radii": hold.release_radii()}

    disgust, happy = moved("disgusted"), moved("happy")
    # Disgust's upper lip raiser asks the top edge's middle to rise 0.057 IOD: the hold lets go
    # of it there (before, nothing moved it), and the inner lips, which the speech owns, stay.
    assert np.allclose(disgust["radii"][2:], UPPER_LIP_RELEASE * 0.057, atol=2e-3)
    assert np.all(disgust["top"] > 0.03), disgust
    assert np.all(disgust["inner"] < 0.003), disgust
    # Happy asks no rise there: held as before.
    assert len(happy["radii"]) == 2 and np.all(happy["top"] < 0.003), happy
    # A lowered lip (anger's press) lets go of nothing, nor does strict mode.
    assert len(mouth_hold(pts, mode="natural", lip_rise=-0.03).release_radii()) == 2
    strict = mouth_hold(pts, mode="strict", lip_rise=0.057)
    assert strict.release is None and torch.all(hold_weight(top, strict) == 1)


def test_a_raised_lid_shows_more_eyeball_instead_of_stretching_it() -> None:
    pts = template_face()
    ff = FaceFrame(origin=np.array([200.0, 150.0]), angle=0.0, iod=120.0)
    frame = painted_eyes(pts, ff, (420, 400))
    vals = raise_upper_lids(pts, 0.07)
    ring = ff.to_image(pts[list(mesh.RIGHT_EYE)])
    x0, y0 = np.floor(ring.min(axis=0)).astype(int) - 15
    x1, y1 = np.ceil(ring.max(axis=0)).astype(int) + 15
    diameter = 2 * np.linalg.norm(pts[469:473] - pts[468], axis=1).mean() * ff.iod
    # Columns of white beside the iris.
    sides = (ff.to_image(pts[468])[0] + np.array([0.6, 0.7, 0.8]) * diameter).astype(int)

    def look(eyeballs: bool | None) -> tuple[int, int, int, int]:
        out = frame
        if eyeballs is not None:
            warper = Warper(device=torch.device("cpu"), config=WarpConfig(eyeballs=eyeballs))
            out = warper.apply(
                frame, face=ff, points=pts, values=vals, landmarks_px=ff.to_image(pts)
            )
        eye = out[y0:y1, x0:x1].astype(int)
        ys, xs = np.nonzero(eye[..., 2] - eye[..., 0] > 60)
        lashes = int((out[y0:y1, sides].max(axis=-1) < 60).sum())
        white = int((eye.min(axis=-1) > 200).sum())
        return int(np.ptp(ys)) + 1, int(np.ptp(xs)) + 1, lashes, white

    height_in, width_in, lashes_in, white_in = look(None)
    assert height_in < diameter - 2  # the lid hides the top of the iris
    stretched, _, _, _ = look(False)
    assert stretched > diameter + 1  # the failure: the flow alone draws a tall iris
    height, width, lashes, white = look(True)
    assert height <= diameter + 1 and abs(width - width_in) <= 1  # a round iris, uncovered
    # The lash line moved with the lid as one piece: not drawn out, and not thinned either
    # (drawn as eyeball below its darkest line, it lost half its width: 4 pixels of 9 kept).
    assert lashes_in - 1 <= lashes <= lashes_in
    assert white > white_in * 1.1  # more of the white shows


def test_the_uncovered_white_is_white_without_copies_of_the_iris_rim() -> None:
    """The white a raised lid uncovers beside and above the iris is the eye's white, not the
    iris's dark rim copied round into arcs (as reading it at the same distance from the iris's
    centre did), shaded by the lid but never darker than its shadow allows."""
    from spfem_cli.generator.warp import LID_SHADE, SCLERA_CLEAR, lid_lines

    pts = template_face()
    vals = raise_upper_lids(pts, 0.07)
    out, q = warp_painted_eyes(pts, vals, limbus_px=3.0)
    checked = 0
    for ring_idx, iris_idx in ((mesh.RIGHT_EYE, mesh.RIGHT_IRIS), (mesh.LEFT_EYE, mesh.LEFT_IRIS)):
        ring, iris = pts[list(ring_idx)], pts[list(iris_idx)]
        radius = np.linalg.norm(iris[1:] - iris[0], axis=1).mean()
        upper, lower, within = lid_lines(ring, q[:, 0])
        raised = lid_lines(ring + vals[list(ring_idx)], q[:, 0])[0]
        r = np.linalg.norm(q - iris[0], axis=1)
        # Hidden by the source's lid (and its lash line), now open: 0.01 IOD clear of the
        # raised lid's edge, and beyond where the white takes over from the iris.
        uncovered = within & (q[:, 1] < upper) & (q[:, 1] > raised + 0.01 + 0.02)
        near = np.abs(q[:, 0] - iris[0, 0]) < 2 * radius  # the lid rises less at the corners
        region = uncovered & near & (r > SCLERA_CLEAR * radius + 1.0 / PAINTED_IOD)
        pixels = out.reshape(-1, 3)[region].astype(int)
        checked += len(pixels)
        # No dark arcs (at most the lid's shadow) and no iris blue; the odd pixel of lash at
        # the region's edge near a corner is allowed.
        assert np.percentile(pixels.min(axis=1), 2) >= LID_SHADE * 235 - 12
        assert np.percentile(np.abs(pixels[:, 2] - pixels[:, 0]), 98) <= 12
    assert checked > 100


def test_a_shut_eye_is_left_to_the_flow() -> None:
    pts = template_face().copy()
    for ring in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
        upper, lower = list(ring[9:]), list(ring[1:8])
        pts[lower] = pts[upper][::-1] + [0.0, 0.01]  # a blink: the lids 0.01 IOD apart
    ff = FaceFrame(origin=np.array([200.0, 150.0]), angle=0.0, iod=120.0)
    frame = painted_eyes(template_face(), ff, (420, 400))
    vals = raise_upper_lids(pts, 0.03)
    outs = [
        Warper(device=torch.device("cpu"), config=WarpConfig(eyeballs=on)).apply(
            frame, face=ff, points=pts, values=vals, landmarks_px=ff.to_image(pts)
        )
        for on in (False, True)
    ]
    assert np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], frame)


@pytest.mark.parametrize("drop", [0.005, 0.03])
def test_a_lower_lid_keeps_its_edge_in_place(drop: float) -> None:
    """Just beyond the source's lower lid line, inside the moved outline, the edge is read
    where it is, however far the lid dropped: read elsewhere, single pixels showed the iris or
    lashes as dark spots along the lower lid of a surprised real face (talk_s18), and a band
    of eyeball under FaceMesh's lower lid points, which can lie on the skin below the visible
    lid, a grey crescent (talk_s32 in neutral)."""
    from spfem_cli.generator.warp import EYEBALL_MARGIN, LidsAt, eyeball_source, lid_lines

    pts = template_face()
    ring, iris = pts[list(mesh.RIGHT_EYE)], pts[list(mesh.RIGHT_IRIS)]
    ring_out = ring.copy()
    ring_out[1:8, 1] += drop  # the lower lid between the corners; y points down
    x = np.linspace(ring[:, 0].min(), ring[:, 0].max(), 9)[2:-2]
    _, lower, _ = lid_lines(ring, x)
    query = np.stack([x, lower + 0.003], axis=1)
    lids = LidsAt.of(x, ring=ring, ring_out=ring_out)
    src, copied = eyeball_source(query, lids=lids, ring=ring, iris=iris, margin=EYEBALL_MARGIN)
    assert not copied.any()
    np.testing.assert_array_equal(src, query)


def test_lids_that_rise_together_move_the_slit_and_uncover_nothing() -> None:
    """Both lids lifted together by 0.02 IOD (a smile's cheeks lift the eye's corners and the
    lids beside them): every point of the moved slit is read where the source shows it, 0.02
    lower, as the flow would move it; none is filled from elsewhere. Only what the upper lid
    rises beyond the lower one uncovers eyeball."""
    from spfem_cli.generator.warp import EYEBALL_MARGIN, LidsAt, eyeball_source, lid_lines

    pts = template_face()
    ring, iris = pts[list(mesh.RIGHT_EYE)], pts[list(mesh.RIGHT_IRIS)]
    x = np.linspace(ring[:, 0].min(), ring[:, 0].max(), 15)[1:-1]
    lifted = ring - [0.0, 0.02]
    up, low, _ = lid_lines(lifted, x)
    query = np.concatenate([np.stack([x, y], axis=1) for y in (up + 0.002, 0.5 * (up + low))])
    lids = LidsAt.of(query[:, 0], ring=ring, ring_out=lifted)
    np.testing.assert_allclose(lids.shift, 0.02, atol=1e-9)
    src, copied = eyeball_source(query, lids=lids, ring=ring, iris=iris, margin=EYEBALL_MARGIN)
    assert not copied.any()
    np.testing.assert_allclose(src, query + [0.0, 0.02], atol=1e-9)
    # The upper lid 0.03 further up than that: the band it uncovers over the iris is filled.
    opened = lifted.copy()
    opened[list(mesh.EYE_RING_UPPER_LID[1:-1]), 1] -= 0.03
    lids = LidsAt.of(query[:, 0], ring=ring, ring_out=opened)
    src, copied = eyeball_source(query, lids=lids, ring=ring, iris=iris, margin=EYEBALL_MARGIN)
    uncovered = (np.abs(query[:, 0] - iris[0, 0]) < 0.03) & (query[:, 1] < np.tile(up, 2) + 0.01)
    assert uncovered.any() and copied[uncovered].all()


@pytest.mark.parametrize("emotion", ["happy", "angry"])
@pytest.mark.parametrize(("name", "t"), [("expr_d14.mp4", 30), ("speech_obama_450x450.mp4", 100)])
def test_lids_that_do_not_open_draw_no_light_streak_along_the_lashes(
    clips_dir: Path, name: str, t: int, emotion: str
) -> None:
    """Happy and angry lift the lower lids as far as the upper ones or further, so the eye
    opens nowhere and its drawing (`Warper.show_eyeballs`) should show what the flow alone
    shows along the upper lids. It filled the band between the source's lid and the moved one
    with the white of the eye, a grey streak along the lashes near the corners: 34-84 levels
    lighter than the flow's pixels there (99.5th percentile, the worse eye); now 15 at most."""
    from spfem_cli.generator.expression import ExpressionModel
    from spfem_cli.generator.generator import FaceGenerator
    from spfem_cli.generator.warp import lid_lines
    from tests.conftest import tracked_frame

    model = ExpressionModel.load()
    frame, face, pts = tracked_frame(clips_dir / name, t)
    kw = {"face": face, "points": pts, "delta": model.emotion_vector(emotion).double().numpy()}
    cpu = torch.device("cpu")
    drawn, flowed = (
        FaceGenerator(model=model, device=cpu, warp=WarpConfig(eyeballs=eyeballs))
        .edit_frame(frame, **kw)
        .reshape(-1, 3)
        .astype(float)
        .mean(axis=1)
        for eyeballs in (True, False)
    )
    assert not np.array_equal(drawn, flowed)
    q = pixels_in_face_frame(face, frame.shape[:2])
    for ring_idx, iris_idx in ((mesh.RIGHT_EYE, mesh.RIGHT_IRIS), (mesh.LEFT_EYE, mesh.LEFT_IRIS)):
        ring, iris = pts[list(ring_idx)], pts[list(iris_idx)]
        radius = np.linalg.norm(iris[1:] - iris[0], axis=1).mean()
        upper, _, within = lid_lines(ring, q[:, 0])
        # Along the upper lid beside the iris, from 0.04 IOD above it to 0.02 below.
        band = (
            within
            & (np.abs(q[:, 0] - iris[0, 0]) > radius)
            & (np.abs(q[:, 1] - upper + 0.01) < 0.03)
        )
        assert band.sum() > 100
        assert np.percentile(drawn[band] - flowed[band], 99.5) < 20


def test_a_dropping_lower_lid_draws_no_band_of_eyeball_under_the_eye() -> None:
    """Lower lids dropped by 0.04 IOD (a squint taken off) on painted eyes: below the source's
    lower lid the output shows skin, as the warp moves it, not white or a grey crescent."""
    from spfem_cli.generator.warp import lid_lines

    pts = template_face()
    out, q = warp_painted_eyes(pts, drop_lower_lids(pts, 0.04))
    checked = 0
    for ring_idx, iris_idx in ((mesh.RIGHT_EYE, mesh.RIGHT_IRIS), (mesh.LEFT_EYE, mesh.LEFT_IRIS)):
        ring, iris = pts[list(ring_idx)], pts[list(iris_idx)]
        _, lower, within = lid_lines(ring, q[:, 0])
        near = np.abs(q[:, 0] - iris[0, 0]) < 0.1  # the lid drops less toward the corners
        # The upper half of the band the lid leaves: inside the dropped outline wherever the
        # warp delivers half the drop or more.
        band = within & near & (q[:, 1] > lower + 0.004) & (q[:, 1] < lower + 0.02)
        pixels = out.reshape(-1, 3)[band].astype(int)
        checked += len(pixels)
        assert np.percentile(np.abs(pixels - np.array(SKIN_RGB)).max(axis=1), 95) <= 12
    assert checked > 50


@pytest.mark.parametrize("emotion", ["surprised", "fear"])
def test_lids_land_where_asked_under_lifted_brows(emotion: str) -> None:
    """The flow is a backward map, so a landmark shows where it is asked only when the flow
    is pinned where it lands: pinned where it starts, the brows' lift dragged the upper lids
    (0.03 IOD asked) up to 0.06-0.09 on real faces, and surprise drew a band of white above
    the iris. Where each upper lid point shows (the output pixel that reads it) is within 20%
    of where the expression model puts it, at full strength."""
    from spfem_cli.generator.expression import ExpressionModel
    from spfem_cli.generator.generator import FaceGenerator
    from spfem_cli.generator.warp import face_box, sample_flow

    model = ExpressionModel.load()
    gen = FaceGenerator(model=model, device=torch.device("cpu"), mouth="natural")
    pts = model.template.double().numpy()
    values, hold = gen.sparse(points=pts, delta=model.emotion_vector(emotion).double().numpy())
    ff = FaceFrame(origin=np.array([200.0, 160.0]), angle=0.1, iod=100.0)
    box = face_box(ff.to_image(pts), width=400, height=420, margin=gen.warper.config.margin)
    dense = gen.warper.dense_flow(face=ff, points=pts, values=values, box=box, hold=hold)
    for ring in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
        lid = [ring[k] for k in (11, 12, 13)]  # the upper lid over the iris
        start = ff.to_image(pts[lid]) - box[:2]
        moved = np.zeros_like(start)
        for _ in range(6):  # the output pixel x with x - flow(x) = start
            moved = sample_flow(dense, torch.from_numpy(start + moved).float()).double().numpy()
        shown = ff.to_face(start + moved + box[:2])
        asked = pts[lid] + values[lid]
        assert np.linalg.norm(values[lid], axis=1).min() > 0.02
        miss = np.linalg.norm(shown - asked, axis=1) / np.linalg.norm(values[lid], axis=1)
        assert miss.max() < 0.2, miss


def _shadow_height(pts: np.ndarray, vals: np.ndarray) -> float:
    """Mean height (IOD) of the painted shadow band (0.04) over the upper lids' middle, after
    the warp by vals (478, 2): 9 pixel columns within 0.08 IOD of each lid's top."""
    out, q = warp_painted_eyes(pts, vals, shadow=0.04)
    lum = out.reshape(-1, 3).mean(axis=1)
    heights = []
    for ring in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
        top = pts[ring[12]] + vals[ring[12]]
        for dx in np.linspace(-0.08, 0.08, 9):
            column = np.abs(q[:, 0] - top[0] - dx) < 0.5 / PAINTED_IOD
            above = column & (q[:, 1] < top[1]) & (q[:, 1] > top[1] - 0.25)
            # Darker than skin, lighter than the lashes: the shadow band.
            heights.append(((lum[above] > 60) & (lum[above] < 115)).sum() / PAINTED_IOD)
    return float(np.mean(heights))


@pytest.mark.parametrize("emotion", ["surprised", "fear"])
def test_the_skin_over_a_raised_lid_stretches_as_the_rest_up_to_the_brow(emotion: str) -> None:
    """Surprise lifts the lids 0.03 IOD and the brows 0.12, and the AU fields move the
    landmarks just over the lid with the brow (0.13): the band over the lashes (a crease,
    eyeshadow) was stretched twice its height, a grey smear toward the brow on large eyes
    (expr_d14). With the face rules, painted eyes with a shadow band over the lashes show it
    stretched about as much as the whole span from lid to brow (1.47 times its height in
    surprise, where the span stretches 1.35; fear 1.21 and 1.19); without, 2.07 and 1.51."""
    from spfem_cli.generator.expression import ExpressionModel

    model = ExpressionModel.load()
    pts = model.template.double().numpy()
    disp = model.emotion_displacement(emotion).double().numpy()
    lid, brow = 159, 52  # the middle of the right upper lid, and of the brow's lower edge
    span = pts[lid, 1] - pts[brow, 1]
    span_stretch = (span + disp[lid, 1] - disp[brow, 1]) / span
    before = _shadow_height(pts, np.zeros_like(pts))
    assert 0.035 < before < 0.05  # the band is found where it is painted
    after = _shadow_height(pts, face_rules(disp, points=pts, mode="natural"))
    assert after / before < 1.15 * span_stretch, (after / before, span_stretch)


@pytest.mark.parametrize("emotion", ["angry", "sad", "surprised"])
def test_the_brows_keep_their_motion_under_the_face_rules(emotion: str) -> None:
    """The smooth flow blends each brow with the landmarks under it: had the row under the
    brow been spread between lid and brow too, the brows would show 4-10% less of their
    motion (91% for angry). Where the flow shows the brow landmarks, on the template face, is
    at least 95% of their asked motion."""
    from spfem_cli.generator.expression import ExpressionModel
    from spfem_cli.generator.generator import mouth_hold
    from spfem_cli.generator.warp import face_box, sample_flow

    model = ExpressionModel.load()
    pts = model.template.double().numpy()
    values = face_rules(
        model.emotion_displacement(emotion).double().numpy(), points=pts, mode="natural"
    )
    ff = FaceFrame(origin=np.array([200.0, 160.0]), angle=0.0, iod=100.0)
    warper = Warper(device=torch.device("cpu"))
    box = face_box(ff.to_image(pts), width=400, height=420, margin=warper.config.margin)
    dense = warper.dense_flow(
        face=ff, points=pts, values=values, box=box, hold=mouth_hold(pts, mode="natural")
    )
    brows = list(mesh.RIGHT_EYEBROW + mesh.LEFT_EYEBROW)
    landed = ff.to_image(pts[brows] + values[brows]) - box[:2]
    shown = sample_flow(dense, torch.from_numpy(landed).float()).double().numpy() / ff.iod
    asked = values[brows]
    assert (shown * asked).sum() / (asked * asked).sum() > 0.95


def test_spread_lid_stretch_is_differentiable_and_batched() -> None:
    """The rule takes torch displacements with batch dimensions, as fine-tuning does, and
    agrees with the numpy path frame by frame."""
    from spfem_cli.generator.generator import spread_lid_stretch

    pts = template_face()
    rng = np.random.default_rng(3)
    disp = rng.normal(0.0, 0.02, size=(2, 478, 2))
    frames = np.stack([pts, pts + rng.normal(0.0, 0.005, size=pts.shape)])
    want = np.stack([spread_lid_stretch(d, points=p) for d, p in zip(disp, frames, strict=True)])
    d = torch.from_numpy(disp).requires_grad_(True)
    got = spread_lid_stretch(d, points=torch.from_numpy(frames))
    assert np.allclose(got.detach().numpy(), want)
    got[:, 27, 1].sum().backward()  # between the right lid and brow: moves with both
    assert d.grad is not None and d.grad[:, 159, 1].abs().min() > 0
    assert d.grad[:, 52, 1].abs().min() > 0
    # Everywhere else the displacement is passed through.
    between = list(mesh.RIGHT_OVER_LID + mesh.LEFT_OVER_LID)
    others = np.setdiff1d(np.arange(478), between)
    assert np.array_equal(want[:, others], disp[:, others])
    assert not np.allclose(want[:, between], disp[:, between])


def test_lid_motion_finds_where_the_warp_shows_a_point_under_a_steep_flow() -> None:
    """The eyeball is drawn between the lids where the warp shows them: the output pixel x
    with x - flow(x) at the lid point. Under lifted brows the flow steepens above the lids
    (on talk_s32 a fixed three steps left lids 1.9 px short); here the vertical flow grows by
    0.6 px per pixel upwards, and the point must land where the backward map puts it."""
    h, w = 80, 60
    ys = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    slope, ref = -0.6, 60.0
    dense = torch.stack([torch.zeros(h, w), slope * (ys - ref)])
    points = np.array([[30.0, 40.0], [20.0, 45.0]])
    moved = Warper(device=torch.device("cpu"))._lid_motion(dense, points)
    expected = slope * (points[:, 1] - ref) / (1 - slope)  # m = flow(p + m)
    assert np.abs(moved[:, 0]).max() < 1e-6
    np.testing.assert_allclose(moved[:, 1], expected, atol=0.05)


def test_the_lid_shadow_is_measured_from_the_white_under_the_lid() -> None:
    """On an eye painted white with a shadow under its upper lid (half the light at the lid's
    line, all of it 0.04 IOD below), `_lid_shade` reads that shadow back: the uncovered white
    is shaded as this eye shades its own. An eye too narrow to show its white below the lid
    gets the fixed ramp."""
    from spfem_cli.generator.warp import LidShade, _under_the_lid, lid_lines

    pts = template_face()
    ff = FaceFrame(origin=np.array([200.0, 150.0]), angle=0.0, iod=PAINTED_IOD)
    q = pixels_in_face_frame(ff, (420, 400))
    light = np.full(len(q), 0.75)
    for ring_idx in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
        upper, _, within = lid_lines(pts[list(ring_idx)], q[:, 0])
        depth = q[:, 1] - upper
        light = np.where(within & (depth > -0.02), 0.5 + 0.5 * np.clip(depth / 0.04, 0, 1), light)
    image = torch.from_numpy(np.repeat(200.0 * light[:, None], 3, axis=1).T.reshape(1, 3, 420, 400))
    region = (0, 0, 400, 420)
    for ring_idx, iris_idx in ((mesh.RIGHT_EYE, mesh.RIGHT_IRIS), (mesh.LEFT_EYE, mesh.LEFT_IRIS)):
        ring, iris = pts[list(ring_idx)], pts[list(iris_idx)]
        _, shade, ceiling = _under_the_lid(image.float(), ff, ring, iris, region)
        # Clipped at LID_SHADE (0.6) near the line, then the painted ramp, in every column.
        at = np.array([0.0, 0.02, 0.03, 0.04, 0.06])
        np.testing.assert_allclose(shade.at(at), [0.6, 0.75, 0.875, 1.0, 1.0], atol=0.03)
        for x in shade.x:
            np.testing.assert_allclose(
                shade.at(at, np.full(len(at), x)), [0.6, 0.75, 0.875, 1.0, 1.0], atol=0.03
            )
        assert ceiling is not None
        np.testing.assert_allclose(ceiling.level, 200.0, atol=3.0)
        narrow = ring.copy()
        low = list(mesh.EYE_RING_LOWER_LID)
        narrow[low, 1] = lid_lines(ring, ring[low, 0])[0] + 0.02
        _, flat, none = _under_the_lid(image.float(), ff, narrow, iris, region)
        np.testing.assert_allclose(flat.at(at), LidShade.flat().at(at))
        assert none is None


def test_the_lid_shadow_and_the_white_are_read_column_by_column() -> None:
    """Toward an eye's corner its white dims and the lid's shadow reaches deeper. On an eye
    painted so (the white from 200 beside the iris down to 140 at its outer columns, the
    shadow under the lid twice as deep there), the shadow is read in each column of white
    and the white's lightest with it (`WhiteCeiling`): a raised lid's uncovered white is
    shaded and lit there as the column shows its own, where the median of the columns painted
    a pale arc over the dimmer white of the corner (expr_d14 frame 40)."""
    from spfem_cli.generator.warp import _profile_columns, _under_the_lid, lid_lines

    pts = template_face()
    ff = FaceFrame(origin=np.array([200.0, 150.0]), angle=0.0, iod=PAINTED_IOD)
    q = pixels_in_face_frame(ff, (420, 400))
    ring, iris = pts[list(mesh.RIGHT_EYE)], pts[list(mesh.RIGHT_IRIS)]
    xs = np.sort(_profile_columns(ring, iris))
    # 0 beside the iris, 1 from the second column from the corner outward (the subject's
    # right eye: toward -x; the outermost is read too shallow to keep its own shadow).
    out = np.clip((iris[0, 0] - q[:, 0]) / (iris[0, 0] - xs[1]), 0.0, 1.0)
    level = 200.0 - 60.0 * out
    reach = 0.03 + 0.03 * out
    upper, _, within = lid_lines(ring, q[:, 0])
    depth = q[:, 1] - upper
    light = np.where(within & (depth > -0.02), 0.5 + 0.5 * np.clip(depth / reach, 0, 1), 0.75)
    image = torch.from_numpy(
        np.repeat((level * light)[:, None], 3, axis=1).T.reshape(1, 3, 420, 400)
    ).float()
    _, shade, ceiling = _under_the_lid(image, ff, ring, iris, (0, 0, 400, 420))
    assert ceiling is not None
    # Each column's shadow as painted there: 0.045 deep, 0.875 of the light in the outer
    # column, nearly all of it by the iris.
    for x in (xs[1], xs[2], xs[3]):
        share = np.clip((iris[0, 0] - x) / (iris[0, 0] - xs[1]), 0.0, 1.0)
        painted = 0.5 + 0.5 * min(0.045 / (0.03 + 0.03 * share), 1.0)
        assert abs(shade.at(np.array([0.045]), np.array([x]))[0] - painted) < 0.03
    # The smooth white is lit no more than each column's own white: 140 in the outer column,
    # as painted between, and untouched on the other side of the iris (200 there).
    white = torch.full((3, 3), 200.0)
    at = np.array([xs[1], xs[2], xs[5]])
    share = np.clip((iris[0, 0] - at) / (iris[0, 0] - xs[1]), 0.0, 1.0)
    limited = ceiling.limit(white, at).numpy()[0]
    np.testing.assert_allclose(limited, 200.0 - 60.0 * share, atol=6.0)


def test_a_copied_iris_top_stays_inside_an_iris_smaller_than_its_landmarks() -> None:
    """FaceMesh's iris circle can be wider than the iris the image shows (10-40% on one side
    on expr_d0 looking aside). Eyes painted with irises of the landmarks' radius are warped
    as if the landmarks' circle were 1.3 times as wide: as a raised lid uncovers the top of
    the iris, the copies between the painted iris and the wider circle read the white beside
    the iris and stay white, not blue (capped to the iris's colour, they drew a tab of iris
    out over the white)."""
    pts = template_face()
    ff = FaceFrame(origin=np.array([200.0, 150.0]), angle=0.0, iod=PAINTED_IOD)
    frame = painted_eyes(pts, ff, (420, 400))
    wide = pts.copy()
    for iris_idx in (mesh.RIGHT_IRIS, mesh.LEFT_IRIS):
        centre = pts[iris_idx[0]]
        wide[list(iris_idx[1:])] = centre + 1.3 * (pts[list(iris_idx[1:])] - centre)
    vals = raise_upper_lids(wide, 0.07)
    out = Warper(device=torch.device("cpu"), config=WarpConfig(eyeballs=True)).apply(
        frame, face=ff, points=wide, values=vals, landmarks_px=ff.to_image(wide)
    )
    q = pixels_in_face_frame(ff, (420, 400))
    pixels = out.reshape(-1, 3).astype(int)
    blue = pixels[:, 2] - pixels[:, 0] > 60
    for iris_idx in (mesh.RIGHT_IRIS, mesh.LEFT_IRIS):
        iris = pts[list(iris_idx)]
        radius = np.linalg.norm(iris[1:] - iris[0], axis=1).mean()
        r = np.linalg.norm(q - iris[0], axis=1)
        top = (q[:, 1] < iris[0, 1]) & (r < 2 * radius)
        assert (blue & top & (r < radius)).sum() > 100  # the iris's top is drawn
        assert (blue & top & (r > radius + 1.5 / PAINTED_IOD)).sum() <= 2
