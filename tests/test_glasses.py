"""Glasses: their rims are found, followed, and kept still while the face behind them moves."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from spfem_cli.face import mesh
from spfem_cli.face.glasses import (
    RIM_GAP_SECONDS,
    RIM_SCORE,
    RimFinder,
    RimLoop,
    Rims,
    SteadyRims,
    _line_distance,
    rim_layer,
    trace_rims,
)
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.expression import ExpressionModel
from spfem_cli.generator.generator import FaceGenerator
from spfem_cli.generator.warp import contour_distance
from tests.painted import SKIN_RGB, painted_eyes, pixels_in_face_frame, template_face

SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "clips"
needs_clips = pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason="../shared/clips is absent")

SHAPE = (300, 400)
FACE = FaceFrame.from_params(np.array([200.0, 140.0, 0.0, 120.0]))
RIM_RGB = (70, 70, 75)
BROW_RGB = (60, 45, 40)
LIGHT_BROW_RGB = (125, 100, 90)
RIM_HALF_WIDTH = 0.012  # IOD: 1.4 pixels at this face's 120
BROW_HALF_HEIGHT = 0.035


def true_loops(shift: tuple[float, float] = (0.0, 0.0)) -> tuple[RimLoop, RimLoop]:
    """Round rims around both eyes, well clear of the lids, their tops just under the brows
    (0.04-0.06 IOD under their lower edge, as on expr_d9 and expr_d19)."""
    dx, dy = shift
    return tuple(
        RimLoop(cx=x + dx, cy=0.05 + dy, rx=0.42, ry_bottom=0.38, ry_top=0.33, score=0.0)
        for x in (-0.5, 0.5)
    )  # type: ignore[return-value]


def true_arms(loops: tuple[RimLoop, ...], *, at_deg: float = 205.0) -> tuple[np.ndarray, ...]:
    """Per loop, an arm (2, 2): a straight segment, face frame, leaving the loop's outer side
    `at_deg` degrees round it (0 along x, 90 down) and running 0.3 IOD outward, level."""
    arms = []
    for loop, out in zip(loops, (-1.0, 1.0), strict=True):
        ang = np.deg2rad(at_deg if out < 0 else 180.0 - at_deg)
        start = np.array([loop.cx + loop.rx * np.cos(ang), loop.cy + loop.ry_top * np.sin(ang)])
        arms.append(np.stack([start, start + (0.3 * out, 0.0)]))
    return tuple(arms)


def distance_to_arms(arms: tuple[np.ndarray, ...]) -> np.ndarray:
    """(h, w) distance of each pixel's face-frame point to the nearest arm, IOD."""
    q = torch.from_numpy(pixels_in_face_frame(FACE, SHAPE))
    d = [_segment_distance(q, arm) for arm in arms]
    return torch.stack(d).min(dim=0).values.numpy().reshape(SHAPE)


def _segment_distance(q: torch.Tensor, segment: np.ndarray) -> torch.Tensor:
    a, b = torch.from_numpy(segment[0]), torch.from_numpy(segment[1])
    t = ((q - a) @ (b - a) / float((b - a) @ (b - a))).clamp(0, 1)
    return (q - a - t[:, None] * (b - a)).norm(dim=-1)


def distance_to(loops: tuple[RimLoop, ...], shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """(h, w) distance of each pixel's face-frame point to the nearest loop, IOD."""
    q = torch.from_numpy(pixels_in_face_frame(FACE, shape))
    d = torch.stack([contour_distance(q, torch.from_numpy(lp.polygon())) for lp in loops])
    return d.min(dim=0).values.numpy().reshape(shape)


def face_frame(
    *, seed: int, loops: tuple[RimLoop, ...] | None, arms: tuple[np.ndarray, ...] = ()
) -> np.ndarray:
    """A painted face: skin with a faint texture, eyes, brows over them, and, unless loops
    is None, dark rims along the loops, and the arms (`true_arms`) given."""
    rng = np.random.default_rng(seed)
    pts = template_face()
    img = painted_eyes(pts, FACE, SHAPE).astype(np.float64)
    q = pixels_in_face_frame(FACE, SHAPE).reshape(*SHAPE, 2)
    for brow in (mesh.RIGHT_EYEBROW_LOWER, mesh.LEFT_EYEBROW_LOWER):
        line = pts[list(brow)]
        order = np.argsort(line[:, 0])
        x, y = line[order, 0], line[order, 1]
        within = (q[..., 0] > x[0]) & (q[..., 0] < x[-1])
        centre = np.interp(q[..., 0], x, y) - BROW_HALF_HEIGHT
        img[within & (np.abs(q[..., 1] - centre) < BROW_HALF_HEIGHT)] = BROW_RGB
    from scipy.ndimage import gaussian_filter

    texture = gaussian_filter(rng.normal(0.0, 12.0, SHAPE), 1.5)
    img += texture[..., None]
    if loops is not None:
        img[distance_to(loops) < RIM_HALF_WIDTH] = RIM_RGB
    if arms:
        img[distance_to_arms(arms) < RIM_HALF_WIDTH] = RIM_RGB
    return img.clip(0, 255).astype(np.uint8)


def finder_over(frames: list[np.ndarray]) -> RimFinder:
    finder = RimFinder(n_frames=len(frames))
    landmarks = FACE.to_image(template_face())
    for t, frame in enumerate(frames):
        finder.offer(t, frame, landmarks)
    return finder


def eye_rings() -> tuple[np.ndarray, np.ndarray]:
    pts = template_face()
    return pts[list(mesh.RIGHT_EYE)], pts[list(mesh.LEFT_EYE)]


def test_rims_are_found_on_glasses_and_not_on_a_bare_face() -> None:
    worn = finder_over([face_frame(seed=s, loops=true_loops()) for s in range(4)])
    bare = finder_over([face_frame(seed=s, loops=None) for s in range(4)])
    rims = worn.rims()
    assert rims is not None and rims.score >= RIM_SCORE
    assert bare.rims() is None and bare.score() < RIM_SCORE
    for found, true in zip(rims.polygons(), true_loops(), strict=True):
        gap = contour_distance(torch.from_numpy(found), torch.from_numpy(true.polygon()))
        assert float(gap.median()) < 0.02 and float(gap.max()) < 0.08


def test_the_rims_are_followed_where_they_moved_against_the_eyes() -> None:
    """Glasses sit in front of the eyes: a head turn shifts them against the eye corners the
    face frame follows, so each frame's rims are looked for near the clip's."""
    rims = finder_over([face_frame(seed=s, loops=true_loops()) for s in range(4)]).rims()
    assert rims is not None
    moved = true_loops(shift=(0.05, -0.04))
    frame = face_frame(seed=9, loops=moved)
    for found, true, still in zip(rims.locate(frame, FACE), moved, true_loops(), strict=True):
        gap = contour_distance(torch.from_numpy(found), torch.from_numpy(true.polygon()))
        stale = contour_distance(torch.from_numpy(found), torch.from_numpy(still.polygon()))
        assert float(gap.median()) < 0.015 < float(stale.median())


def test_rims_are_painted_out_and_put_back_exactly_where_nothing_moved() -> None:
    loops = true_loops()
    frame = face_frame(seed=3, loops=loops)
    bare = face_frame(seed=3, loops=None)
    traced = trace_rims(frame, face=FACE, loops=tuple(lp.polygon() for lp in loops))
    layer = rim_layer(face=FACE, traced=traced, eyes=eye_rings())
    assert layer is not None
    x0, y0, x1, y1 = layer.window
    matte = np.zeros(SHAPE, dtype=bool)
    matte[y0:y1, x0:x1] = layer.matte
    rim = distance_to(loops) < RIM_HALF_WIDTH * 0.7
    assert matte[rim].mean() > 0.95
    assert matte.sum() < 4 * (distance_to(loops) < RIM_HALF_WIDTH).sum()
    painted = layer.paint_out(frame)
    # The rim is gone: where it was, the painted frame is the face without glasses.
    assert np.abs(painted[rim].astype(int) - bare[rim]).mean() < 12
    assert np.abs(frame[rim].astype(int) - bare[rim]).mean() > 60
    assert np.array_equal(painted[~matte], frame[~matte])
    assert np.array_equal(layer.put_back(painted, original=frame, painted=painted), frame)


def brow_raise_with_glasses() -> tuple[list[np.ndarray], Rims, FaceGenerator, np.ndarray]:
    """Painted frames of a face wearing the true loops, the rims found over them, a generator
    and a strong brow raise (AU1 and AU2 at 1.5)."""
    frames = [face_frame(seed=s, loops=true_loops()) for s in range(4)]
    rims = finder_over(frames).rims()
    assert rims is not None
    model = ExpressionModel.load()
    gen = FaceGenerator(model=model, device=torch.device("cpu"))
    delta = np.zeros(model.num_aus)
    delta[[model.au_names.index("AU1"), model.au_names.index("AU2")]] = 1.5
    return frames, rims, gen, delta


def test_an_edit_keeps_the_rims_still_and_moves_the_face_behind_them() -> None:
    """A brow raise on a face with glasses: along the rims' upper halves the output is the
    input (the rims stay where they were), where without the rims kept it is not (they bend
    with the brows); away from the rims both edits are the same edit."""
    loops = true_loops()
    frames, rims, gen, delta = brow_raise_with_glasses()
    frame, pts = frames[0], template_face()
    kept = gen.edit_frame(frame, face=FACE, points=pts, delta=delta, rims=rims)
    bent = gen.edit_frame(frame, face=FACE, points=pts, delta=delta)
    distance = distance_to(loops)
    q = pixels_in_face_frame(FACE, SHAPE).reshape(*SHAPE, 2)
    upper_rim = (distance < RIM_HALF_WIDTH * 0.7) & (q[..., 1] < 0.05 - 0.2)
    assert upper_rim.sum() > 100

    def change(out: np.ndarray, where: np.ndarray) -> float:
        return float(np.abs(out[where].astype(int) - frame[where]).mean())

    assert change(bent, upper_rim) > 25
    assert change(kept, upper_rim) < 0.25 * change(bent, upper_rim)
    # Farther from the rims than the brows move, the warp reads no painted-out pixel.
    away = distance > 0.15
    assert change(bent, away & (q[..., 1] < 0)) > 3  # the brows did move
    assert np.abs(kept[away].astype(int) - bent[away]).mean() < 0.5


def test_a_frame_edited_again_can_reuse_the_rims_traced_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An edit given the rims already traced on its frame (`Traced`, as `spfem preview` does
    for every emotion of a frame) is the edit given the clip's rims, without tracing again."""
    frames, rims, gen, delta = brow_raise_with_glasses()
    kw = {"face": FACE, "points": template_face(), "delta": delta}
    traced = rims.trace(frames[0], FACE)
    assert traced.lines
    expected = gen.edit_frame(frames[0], rims=rims, **kw)

    def no_trace(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("traced again")

    monkeypatch.setattr(type(rims), "trace", no_trace)
    assert np.array_equal(gen.edit_frame(frames[0], rims=traced, **kw), expected)


def test_a_brow_lying_along_a_rim_rises_off_it() -> None:
    """Where a brow lies right along a rim's top (expr_d19), only the rim's core is put back
    unmoved after a brow raise: beyond it the output shows the skin the edit moved there, not
    the brow's lower edge left behind with the rim (a band along it with a jagged edge, where
    everything in the matte that looked like the rim was put back)."""
    loops = true_loops()
    distance = distance_to(loops)
    q = pixels_in_face_frame(FACE, SHAPE).reshape(*SHAPE, 2)
    x, y = q[..., 0], q[..., 1]
    inside = np.zeros(SHAPE, dtype=bool)
    for lp in loops:
        inside |= ((x - lp.cx) / lp.rx) ** 2 + ((y - lp.cy) / lp.ry_top) ** 2 < 1
    top = y < 0.05 - 0.22
    # A light brow along the top of each rim, from its edge to 0.035 IOD above it: fainter
    # than the rim, so that the rim is traced on its own line.
    brow = top & ~inside & (distance >= RIM_HALF_WIDTH) & (distance < 0.035)
    frame = face_frame(seed=5, loops=None).astype(np.int16)
    frame[brow] = LIGHT_BROW_RGB
    frame[distance < RIM_HALF_WIDTH] = RIM_RGB
    frame = frame.astype(np.uint8)
    traced = trace_rims(frame, face=FACE, loops=tuple(lp.polygon() for lp in loops))
    layer = rim_layer(face=FACE, traced=traced, eyes=eye_rings())
    assert layer is not None
    model = ExpressionModel.load()
    gen = FaceGenerator(model=model, device=torch.device("cpu"))
    delta = np.zeros(model.num_aus)
    delta[[model.au_names.index("AU1"), model.au_names.index("AU2")]] = 1.5
    painted = layer.paint_out(frame)
    edited = gen.edit_frame(painted, face=FACE, points=template_face(), delta=delta)
    out = layer.put_back(edited, original=frame, painted=painted)

    def browish(image: np.ndarray) -> np.ndarray:
        """Per pixel, whether it is nearer the brow's colour than the skin's."""
        pixels = image.astype(float)
        to_brow = np.abs(pixels - LIGHT_BROW_RGB).sum(axis=-1)
        return np.abs(pixels - SKIN_RGB).sum(axis=-1) > to_brow

    # Beyond the rim's core, where the brow lay, the skin shows once it has risen.
    edge = brow & (distance > 2.5 * RIM_HALF_WIDTH)
    assert edge.sum() > 100 and browish(frame)[edge].all()
    assert browish(out)[edge].mean() < 0.1, browish(out)[edge].mean()
    # The rims themselves stay where they were.
    rim = top & (distance < RIM_HALF_WIDTH * 0.7)
    assert np.abs(out[rim].astype(int) - frame[rim]).mean() < 6


def test_the_core_is_measured_to_the_line_between_its_points_but_not_across_a_gap() -> None:
    """A pixel's distance to a traced rim is to the line through its points (so the core put
    back is as smooth as the line), except across a stretch where the rim did not show."""
    line = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0], [4.0, 2.0], [30.0, 2.0], [32.0, 2.0]])
    pixels = np.array([[3.0, 0.4], [4.5, 1.0], [17.0, 2.0], [31.0, 3.0]])
    away = _line_distance((line,), pixels)
    np.testing.assert_allclose(away, [0.4, 0.5, 13.0, 1.0], atol=1e-6)


def test_a_loop_followed_from_frame_to_frame_does_not_jump_to_lines_inside_the_lens() -> None:
    """On a frame where the rims fade and a stronger ring shows inside each lens (a brow and
    a lid crease seen through it, expr_d19 frame 154), a loop followed afresh jumps onto that
    ring; followed from the frame before, it stays within FOLLOW_STEP of the rim."""
    from spfem_cli.face.glasses import FOLLOW_STEP

    loops = true_loops()
    frames = [face_frame(seed=s, loops=loops) for s in range(4)]
    rims = finder_over(frames).rims()
    assert rims is not None
    clean = rims.follow(frames[0], FACE)
    inner = tuple(
        RimLoop(
            cx=lp.cx,
            cy=lp.cy + 0.04,
            rx=lp.rx * 0.85,
            ry_bottom=lp.ry_bottom * 0.85,
            ry_top=lp.ry_top * 0.85,
            score=0.0,
        )
        for lp in loops
    )
    busy = face_frame(seed=9, loops=None).astype(np.int16)
    faint = np.array(RIM_RGB) + 0.7 * (np.array(SKIN_RGB) - np.array(RIM_RGB))
    busy[distance_to(loops) < RIM_HALF_WIDTH] = faint
    busy[distance_to(inner) < 1.5 * RIM_HALF_WIDTH] = (40, 35, 35)
    busy = busy.clip(0, 255).astype(np.uint8)
    afresh = rims.follow(busy, FACE)
    steady = rims.follow(busy, FACE, near=clean)
    for was, jumped, kept, ring in zip(clean, afresh, steady, inner, strict=True):
        assert abs(jumped.rx - ring.rx) < abs(jumped.rx - was.rx)  # onto the inner ring
        assert abs(kept.cx - was.cx) <= FOLLOW_STEP[0] + 1e-9
        assert abs(kept.cy - was.cy) <= FOLLOW_STEP[0] + 1e-9
        assert abs(kept.rx / was.rx - 1) <= FOLLOW_STEP[1] + 0.01


def test_steady_rims_follow_each_loop_from_where_it_was_traced_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In an edit (`SteadyRims`), each time the rims are traced anew their loops are followed
    near those of the last trace (`Rims.follow(near=...)`, whose own test is the one above);
    after `skip` (a frame not edited) and on the first frame, afresh."""
    from spfem_cli.face.glasses import Rims

    loops = true_loops()
    frames = [face_frame(seed=s, loops=loops) for s in range(4)]
    rims = finder_over(frames).rims()
    assert rims is not None
    calls: list[tuple[RimLoop, ...] | None] = []
    results: list[tuple[RimLoop, ...]] = []
    follow = Rims.follow

    def recording(self: Rims, *args: Any, **kwargs: Any) -> tuple[RimLoop, ...]:
        calls.append(kwargs.get("near"))
        results.append(follow(self, *args, **kwargs))
        return results[-1]

    monkeypatch.setattr(Rims, "follow", recording)
    steady = SteadyRims(rims, fps=30.0)
    # A frame whose rims moved a little (the glasses slid): traced anew, not held.
    moved = face_frame(seed=5, loops=true_loops(shift=(0.03, 0.0)))
    for frame in (frames[0], moved):
        steady.trace(frame, FACE)
    steady.skip()
    steady.trace(moved, FACE)
    assert len(calls) == 3
    assert calls[0] is None and calls[2] is None
    assert calls[1] == results[0]


def test_the_arms_are_traced_and_kept_with_the_rims(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the arms leave the rims (the hinges), the brows' outer ends move: the arms are
    traced from each rim outward and kept still with it. With no arms traced, a brow raise
    moves them with the skin, off the rims kept still."""
    import spfem_cli.face.glasses as glasses

    loops = true_loops()
    arms = true_arms(loops)
    frames = [face_frame(seed=s, loops=loops, arms=arms) for s in range(4)]
    rims = finder_over(frames).rims()
    assert rims is not None
    frame = frames[0]
    traced = rims.trace(frame, FACE)
    assert len(traced.lines) == len(traced.arms) == 2
    for found, arm in zip(traced.arms, arms, strict=True):
        gap = _segment_distance(torch.from_numpy(FACE.to_face(found)), arm) * FACE.iod
        assert float(gap.median()) < 1.0, float(gap.median())
    model = ExpressionModel.load()
    gen = FaceGenerator(model=model, device=torch.device("cpu"))
    delta = np.zeros(model.num_aus)
    delta[[model.au_names.index("AU1"), model.au_names.index("AU2")]] = 1.5
    on_arms = (distance_to_arms(arms) < RIM_HALF_WIDTH * 0.7) & (distance_to(loops) > 0.03)

    def change(out: np.ndarray) -> float:
        return float(np.abs(out[on_arms].astype(int) - frame[on_arms]).mean())

    kept = gen.edit_frame(frame, face=FACE, points=template_face(), delta=delta, rims=rims)
    monkeypatch.setattr(glasses, "_arm", lambda *args, **kwargs: None)
    armless = gen.edit_frame(frame, face=FACE, points=template_face(), delta=delta, rims=rims)
    assert change(armless) > 10
    assert change(kept) < 0.25 * change(armless)


def test_an_edit_without_glasses_is_unchanged() -> None:
    """rims=None and a face without glasses give the plain edit, bit for bit."""
    model = ExpressionModel.load()
    gen = FaceGenerator(model=model, device=torch.device("cpu"))
    delta = np.zeros(model.num_aus)
    delta[model.au_names.index("AU1")] = 1.0
    frame = face_frame(seed=1, loops=None)
    rims = finder_over([face_frame(seed=s, loops=None) for s in range(4)]).rims()
    assert rims is None
    out = gen.edit_frame(frame, face=FACE, points=template_face(), delta=delta, rims=rims)
    assert np.array_equal(
        out, gen.edit_frame(frame, face=FACE, points=template_face(), delta=delta)
    )


def test_steady_rims_keep_the_line_before_until_the_rim_moves() -> None:
    """Frames in order: on a frame whose rims lie where they did (only the skin's texture
    differs) each rim keeps the line traced on the frame before, point for point; on a frame
    whose glasses slid 0.03 IOD (3.6 pixels) it is traced again where they now are."""
    loops = true_loops()
    rims = finder_over([face_frame(seed=s, loops=loops) for s in range(4)]).rims()
    assert rims is not None
    steady = SteadyRims(rims)
    first = steady.trace(face_frame(seed=10, loops=loops), FACE)
    again = face_frame(seed=11, loops=loops)
    second = steady.trace(again, FACE)
    assert len(first.lines) == len(second.lines) == 2
    for before, after in zip(first.lines, second.lines, strict=True):
        assert np.array_equal(before, after)
    # Traced on its own, that frame's line is not the same one, point for point.
    fresh = rims.trace(again, FACE)
    assert not all(np.array_equal(a, b) for a, b in zip(first.lines, fresh.lines, strict=True))
    moved = true_loops(shift=(0.03, 0.0))
    slid = face_frame(seed=12, loops=moved)
    third = steady.trace(slid, FACE)
    assert len(third.lines) == 2
    for line, anew, loop in zip(third.lines, rims.trace(slid, FACE).lines, moved, strict=True):
        assert np.array_equal(line, anew)
        gap = contour_distance(
            torch.from_numpy(FACE.to_face(line)), torch.from_numpy(loop.polygon())
        )
        assert float(gap.median()) * FACE.iod < 0.5


def _clip_finder(name: str) -> RimFinder:
    """The rim finder fed with a shared clip's frames as an edit feeds it."""
    from spfem_cli.media import FrameReader, probe

    info = probe(SHARED_CLIPS / name)
    finder = RimFinder(n_frames=info.n_frames)
    with FrameReader(info) as reader:
        finder.offer_frames(reader)
    return finder


@needs_clips
@pytest.mark.parametrize(
    ("clip", "glasses", "kept"),
    [
        ("expr_d9.mp4", True, True),
        ("expr_d19.mp4", True, True),
        # Clear plastic frames: seen, but traced on one sampled frame in twelve, so left to
        # the warp rather than kept on some frames and bent on the next.
        ("expr_d12.mp4", True, False),
        ("talk_s32_1280x720.mp4", False, False),
        ("speech_obama_450x450.mp4", False, False),
        ("speech_man_256x256.mp4", False, False),
        ("expr_d0.mp4", False, False),
        ("expr_d3.mp4", False, False),
    ],
)
def test_glasses_are_found_on_the_clips_that_wear_them(
    clip: str, glasses: bool, kept: bool
) -> None:
    """`scripts/measure_glasses.py` prints every clip's score and traced share: glasses 2.2,
    5.3 and 6.7, traced on 8%, 100% and 92% of the sampled frames; bare faces at most 1.4
    (the highest are here), traced on none."""
    finder = _clip_finder(clip)
    assert (finder.score() >= RIM_SCORE) == glasses, finder.score()
    assert (finder.rims() is not None) == kept, finder.traced_share()
    if not glasses:
        assert finder.traced_share() == 0.0


@needs_clips
@pytest.mark.parametrize("clip", ["expr_d19.mp4", "expr_d9.mp4"])
def test_a_surprised_edit_keeps_real_rims_in_place_and_raises_the_brows(clip: str) -> None:
    """On three frames of each clip edited to surprise, the rims' upper halves keep at least
    half their thin-line response in place and 0.2 more than when they are warped with the
    skin (`evaluate.rim_kept`; `scripts/measure_glasses.py --edit`: 1.02 against 0.41 on
    expr_d19, 0.79 against 0.25 on expr_d9), and FaceMesh reads the brows raised at least
    three quarters as far."""
    from spfem_cli.evaluate import brow_rise, rim_kept
    from spfem_cli.face.tracker import LandmarkTracker
    from spfem_cli.media import FrameReader, probe
    from spfem_cli.pipeline import analyse_video
    from spfem_cli.progress import SilentReporter

    info = probe(SHARED_CLIPS / clip)
    model = ExpressionModel.load()
    gen = FaceGenerator(model=model, device=torch.device("cpu"))
    target = model.emotion_vector("surprised").double().numpy()
    with tempfile.TemporaryDirectory(prefix="spfem-") as tmp:
        analysis = analyse_video(info, model=model, workdir=Path(tmp), reporter=SilentReporter())
        assert analysis.rims is not None
        track = analysis.track
        deltas = analysis.deltas(target=target, weights=np.ones(track.n_frames))
        picks = {track.n_frames // 4, track.n_frames // 2, 3 * track.n_frames // 4}
        kept, bent, rise_kept, rise_bent = [], [], [], []
        with FrameReader(info) as reader, LandmarkTracker(video_mode=False) as tracker:
            for t, frame in enumerate(reader):
                if t not in picks or not track.valid[t]:
                    continue
                face, pts = track.frame(t), np.asarray(track.norm[t], np.float64)
                traced = analysis.rims.trace(frame, face)
                with_rims = gen.edit_frame(
                    frame, face=face, points=pts, delta=deltas[t], rims=analysis.rims
                )
                plain = gen.edit_frame(frame, face=face, points=pts, delta=deltas[t])
                kept.append(rim_kept(traced, before=frame, after=with_rims))
                bent.append(rim_kept(traced, before=frame, after=plain))
                rise_kept.append(brow_rise(tracker, before=frame, after=with_rims))
                rise_bent.append(brow_rise(tracker, before=frame, after=plain))
    assert len(kept) == 3
    assert np.mean(kept) >= 0.5 and np.mean(kept) >= np.mean(bent) + 0.2, (kept, bent)
    assert np.mean(rise_bent) > 0.05
    assert np.mean(rise_kept) >= 0.75 * np.mean(rise_bent), (rise_kept, rise_bent)


# Over a minute on two cores (40 frames edited twice, the rims traced afresh on each): left to
# `-m slow`; the test_steady_rims_* tests check how the rims are held from frame to frame.
@pytest.mark.slow
@needs_clips
def test_rims_held_steady_change_from_frame_to_frame_about_as_the_input() -> None:
    """The first 40 frames of expr_d19 edited to surprise, in order: along the rims' upper
    halves the output changes from one frame to the next at most 1.4 times as much as the
    input does; traced afresh on every frame, the rims flickered (over 6.7 s,
    `scripts/measure_glasses.py --steadiness 6.7`: input 0.97 levels a frame, held steady
    1.08, traced afresh 2.25)."""
    from spfem_cli.evaluate import FrameChange, upper_rims
    from spfem_cli.media import FrameReader, probe
    from spfem_cli.pipeline import analyse_video
    from spfem_cli.progress import SilentReporter

    info = probe(SHARED_CLIPS / "expr_d19.mp4")
    model = ExpressionModel.load()
    gen = FaceGenerator(model=model, device=torch.device("cpu"))
    target = model.emotion_vector("surprised").double().numpy()
    with tempfile.TemporaryDirectory(prefix="spfem-") as tmp:
        analysis = analyse_video(info, model=model, workdir=Path(tmp), reporter=SilentReporter())
        rims, track = analysis.rims, analysis.track
        assert rims is not None
        deltas = analysis.deltas(target=target, weights=np.ones(track.n_frames))
        steady = SteadyRims(rims)
        change = {"input": FrameChange(), "steady": FrameChange(), "afresh": FrameChange()}
        with FrameReader(info) as reader:
            for t, frame in enumerate(itertools.islice(reader, 40)):
                assert track.valid[t]
                face, pts = track.frame(t), np.asarray(track.norm[t], np.float64)
                band = upper_rims(rims.trace(frame, face), frame.shape[:2])
                change["input"].add(frame, band)
                for name, way in (("steady", steady), ("afresh", rims)):
                    out = gen.edit_frame(frame, face=face, points=pts, delta=deltas[t], rims=way)
                    change[name].add(out, band)
    got = {name: c.mean() for name, c in change.items()}
    assert got["steady"] <= 1.4 * got["input"], got
    assert got["afresh"] > 1.6 * got["input"], got


@needs_clips
def test_spfem_edit_keeps_the_rims_of_glasses_still(tmp_path: Path) -> None:
    """The whole edit, analysis to encoded video: on the first two seconds of expr_d19 edited
    to surprise, the rims' upper halves keep at least 0.6 of their thin-line response in
    place on three frames (0.85-0.88 measured; with the rims warped with the skin, 0.41 is
    the clip's median), and along them the output changes from frame to frame over its
    first 1.5 s at most 1.4 times as much as the input (1.02 times measured; 2.3 times when
    the render traced the rims afresh on every frame)."""
    from spfem_cli.evaluate import FrameChange, rim_kept, upper_rims
    from spfem_cli.face.tracker import LandmarkTracker
    from spfem_cli.media import FrameReader, probe
    from spfem_cli.pipeline import edit_video

    clip = SHARED_CLIPS / "expr_d19.mp4"
    out = tmp_path / "surprised.mp4"
    report = edit_video(
        input_path=clip,
        emotion="surprised",
        output_path=out,
        end=2.0,
        device="cpu",
        keep_speech=False,
    )
    assert any(note.startswith("glasses found") for note in report.notes)
    info = probe(clip)
    finder = RimFinder(n_frames=info.n_frames)
    first: dict[int, tuple[np.ndarray, FaceFrame]] = {}
    with FrameReader(info) as reader, LandmarkTracker() as tracker:
        for t, frame in enumerate(reader):
            found = tracker.detect(frame)
            if found is not None:
                finder.offer(t, frame, found.landmarks)
                if t < 46:
                    first[t] = (frame, FaceFrame.from_landmarks(found.landmarks))
    rims = finder.rims()
    assert rims is not None and len(first) == 46
    with FrameReader(probe(out)) as reader:
        edited = dict(enumerate(itertools.islice(reader, 46)))
    before, after = FrameChange(), FrameChange()
    for t, (frame, face) in first.items():
        traced = rims.trace(frame, face)
        if t in (15, 30, 45):
            assert rim_kept(traced, before=frame, after=edited[t]) >= 0.6, t
        band = upper_rims(traced, frame.shape[:2])
        before.add(frame, band)
        after.add(edited[t], band)
    assert after.mean() <= 1.4 * before.mean(), (after.mean(), before.mean())


def test_steady_rims_carry_a_rim_over_a_few_blurred_frames() -> None:
    """A rim that does not show for a frame or two (blurred out of the trace; here not
    painted) stays where the head took it (here still) instead of being left out, for at most
    RIM_GAP_SECONDS; a frame that does not follow the last (`skip`) carries nothing over."""
    loops = true_loops()
    rims = finder_over([face_frame(seed=s, loops=loops) for s in range(4)]).rims()
    assert rims is not None
    blurred = [face_frame(seed=30 + i, loops=None) for i in range(5)]
    assert not rims.trace(blurred[0], FACE).lines  # traced on its own, it shows no rim
    steady = SteadyRims(rims, fps=20.0)
    assert steady.max_gap == round(20.0 * RIM_GAP_SECONDS) == 3
    clear = steady.trace(face_frame(seed=20, loops=loops), FACE)
    assert len(clear.lines) == 2
    for frame in blurred[: steady.max_gap]:
        carried = steady.trace(frame, FACE)
        assert len(carried.lines) == 2
        for line, before in zip(carried.lines, clear.lines, strict=True):
            assert np.abs(line - before).max() < 1e-6
    assert not steady.trace(blurred[steady.max_gap], FACE).lines
    steady.trace(face_frame(seed=21, loops=loops), FACE)
    steady.skip()
    assert not steady.trace(blurred[0], FACE).lines
