"""Creases lifted when an edit takes off the expression that pressed them (`generator.creases`):
the frown's furrows, the lines under and beside the eyes of a squint or a smile, and the
lines raised brows press across the forehead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.creases import (
    EYE_LINES,
    FOREHEAD_LINES,
    FURROWS,
    MIN_PRESENT,
    Crease,
    crease_depth,
    crease_region,
    eye_line_weight,
    forehead_weight,
    glabella_weight,
    lift,
    share_taken_off,
)
from spfem_cli.generator.expression import ExpressionModel
from spfem_cli.generator.generator import FaceGenerator
from tests.conftest import video_frame
from tests.painted import SKIN_RGB, painted_eyes, pixels_in_face_frame, template_face

SHAPE = (360, 400)
FACE = FaceFrame(origin=np.array([200.0, 200.0]), angle=0.0, iod=140.0)
AUS = ("AU1", "AU4", "AU6", "AU7")


def vector(au4: float = 0.0, au6: float = 0.0, au7: float = 0.0) -> np.ndarray:
    return np.array([0.0, au4, au6, au7])


def frown_share(delta: np.ndarray, *, present: np.ndarray) -> float:
    return share_taken_off(delta, present=present, au_names=AUS, aus=FURROWS.aus)


def squint_share(delta: np.ndarray, *, present: np.ndarray) -> float:
    return share_taken_off(delta, present=present, au_names=AUS, aus=EYE_LINES.aus)


def test_the_share_of_the_frown_taken_off() -> None:
    assert frown_share(vector(-0.6), present=vector(0.6)) == 1.0
    assert frown_share(vector(-0.3), present=vector(0.6)) == pytest.approx(0.5)
    assert frown_share(vector(-2.0), present=vector(0.6)) == 1.0
    assert frown_share(vector(0.2), present=vector(0.6)) == 0.0  # angrier
    # A frown below the noise floor is no frown.
    low = MIN_PRESENT * 0.9
    assert frown_share(vector(-low), present=vector(low)) == 0.0


def test_the_share_of_a_squint_or_a_smiles_eyes_taken_off() -> None:
    # The cheek raiser and the lid tightener count together: FaceMesh reads a smile's eyes
    # as either, and both press the lines under the eyes.
    on = vector(au6=0.2, au7=0.4)
    assert squint_share(vector(au6=-0.2, au7=-0.4), present=on) == 1.0
    assert squint_share(vector(au6=-0.2, au7=-0.1), present=on) == pytest.approx(0.5)
    assert squint_share(vector(au7=-0.3), present=vector(au6=0.1, au7=0.08)) == pytest.approx(1)
    assert squint_share(vector(au6=-0.2, au7=0.3), present=on) == 0.0  # more squint, not less
    assert squint_share(vector(au4=-0.6), present=vector(au4=0.6, au7=0.4)) == 0.0


def skin_grain(rng: np.random.Generator) -> np.ndarray:
    """(H, W, 1) the skin's faint grain, a factor about 1 (2% spread, blurred over a pixel)."""
    return np.exp(gaussian_filter(rng.normal(0.0, 0.02, SHAPE), 0.7))[..., None]


def outside_of(outline: np.ndarray, *, q: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels whose face-frame points q (H, W, 2) lie outside the outline
    (M, 2), face frame."""
    from spfem_cli.generator.warp import polygon_distance

    distance = polygon_distance(torch.from_numpy(q.reshape(-1, 2)), torch.from_numpy(outline))
    return (distance > 0).numpy().reshape(q.shape[:2])


def paint_brows(img: np.ndarray, *, q: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Paint each brow's box dark brown on img (H, W, 3) in place; q (H, W, 2): the pixels'
    face-frame points, points (478, 2) the landmarks. Returns where the brows lie (H, W)."""
    brows = np.zeros(img.shape[:2], bool)
    for brow in (mesh.RIGHT_EYEBROW, mesh.LEFT_EYEBROW):
        ring = points[list(brow)]
        lo, hi = ring.min(axis=0), ring.max(axis=0)
        brows |= np.all((q >= lo) & (q <= hi), axis=-1)
    img[brows] = (60, 45, 40)
    return brows


def furrowed_face() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Even skin with faint grain, two dark brows, two vertical furrows between them (10%
    darker, 0.015 IOD wide) and a strand of hair across the forehead (55% darker). Returns the
    frame and where each lies (bool masks (H, W))."""
    pts = template_face()
    q = pixels_in_face_frame(FACE, SHAPE).reshape(*SHAPE, 2)
    rng = np.random.default_rng(0)
    img = np.broadcast_to(np.array(SKIN_RGB, np.float64), (*SHAPE, 3)).copy()
    img *= skin_grain(rng)
    heads = pts[[55, 285]]
    top = heads[:, 1].max()
    where = {}
    where["furrows"] = np.zeros(SHAPE, bool)
    for x in (-0.06, 0.06):
        where["furrows"] |= (np.abs(q[..., 0] - x) < 0.0075) & (q[..., 1] < top - 0.03)
        where["furrows"] &= q[..., 1] > top - 0.3
    img[where["furrows"]] *= 0.9
    where["strand"] = (np.abs(q[..., 1] - (top - 0.36)) < 0.01) & (np.abs(q[..., 0]) < 0.3)
    img[where["strand"]] *= 0.45
    where["brows"] = paint_brows(img, q=q, points=pts)
    where["below"] = q[..., 1] > top + 0.02
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), where


def test_the_furrows_between_the_brows_are_lifted_and_nothing_else() -> None:
    frame, where = furrowed_face()
    pts = template_face()
    assert lift(frame, crease=FURROWS, face=FACE, points=pts, share=0.0) is frame
    out = lift(frame, crease=FURROWS, face=FACE, points=pts, share=1.0)
    lum_in, lum_out = frame.astype(float).mean(axis=-1), out.astype(float).mean(axis=-1)
    glabella = glabella_weight(face=FACE, points=pts, origin=(0, 0), shape=SHAPE) > 0.9
    core = where["furrows"] & glabella
    assert core.sum() > 100
    # The furrows' 10% darkness against the skin beside them: more than half of it goes (the
    # skin's level around them is a blur that takes in a little of their own darkness).
    beside = ~where["furrows"] & glabella
    before = 1 - lum_in[core].mean() / lum_in[beside].mean()
    after = 1 - lum_out[core].mean() / lum_out[beside].mean()
    assert before > 0.08 and after < 0.5 * before, (before, after)
    # Half the frown taken off lifts about half of it.
    half = lift(frame, crease=FURROWS, face=FACE, points=pts, share=0.5).astype(float).mean(-1)
    mid = 1 - half[core].mean() / half[beside].mean()
    assert abs(mid - 0.5 * (before + after)) < 0.2 * before
    changed = np.any(out != frame, axis=-1)
    for name in ("strand", "brows", "below"):
        assert np.abs(lum_out[where[name]] - lum_in[where[name]]).max() <= 3, name
    assert not changed[where["below"]].any()


def lined_eyes() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Painted eyes (`painted_eyes`) on skin with faint grain, dark brows, two lines under
    each lower lid and three crow's feet fanning out from each outer corner (10% darker,
    0.012 IOD wide), and a darker background outside the face's outline. Returns the frame
    and where each lies (bool masks (H, W))."""
    pts = template_face()
    q = pixels_in_face_frame(FACE, SHAPE).reshape(*SHAPE, 2)
    rng = np.random.default_rng(1)
    img = painted_eyes(pts, FACE, SHAPE).astype(np.float64)
    img *= skin_grain(rng)
    where = {"lines": np.zeros(SHAPE, bool), "eyes": np.zeros(SHAPE, bool)}
    eyes = (
        (mesh.RIGHT_EYE, mesh.RIGHT_EYE_CORNERS[0], -1.0),
        (mesh.LEFT_EYE, mesh.LEFT_EYE_CORNERS[0], 1.0),
    )
    for ring, outer, outward in eyes:
        eye = pts[list(ring)]
        lo, hi = eye.min(axis=0), eye.max(axis=0)
        within = (q[..., 0] > lo[0]) & (q[..., 0] < hi[0])
        for below in (0.07, 0.14):
            where["lines"] |= within & (np.abs(q[..., 1] - (hi[1] + below)) < 0.006)
        corner = pts[outer]
        for angle in (-0.5, 0.0, 0.55):
            direction = np.array([outward * np.cos(angle), np.sin(angle)])
            along = (q - corner) @ direction
            across = np.abs((q - corner) @ np.array([-direction[1], direction[0]]))
            where["lines"] |= (along > 0.08) & (along < 0.22) & (across < 0.006)
        where["eyes"] |= ~outside_of(eye, q=q)
    where["outside"] = outside_of(pts[list(mesh.FACE_OVAL)], q=q)
    where["lines"] &= ~where["outside"] & ~where["eyes"]
    img[where["lines"]] *= 0.9
    img[where["outside"]] *= 0.6
    where["brows"] = paint_brows(img, q=q, points=pts)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), where


def test_the_lines_under_and_beside_the_eyes_are_lifted_and_nothing_else() -> None:
    """The painted lines, 10% darker than the skin beside them, are 4.5% darker after the
    lift (less than half: the lines lie close, and their shared darkening is what a broad
    blur sees as the skin's shading, which stays)."""
    frame, where = lined_eyes()
    pts = template_face()
    assert lift(frame, crease=EYE_LINES, face=FACE, points=pts, share=0.0) is frame
    out = lift(frame, crease=EYE_LINES, face=FACE, points=pts, share=1.0)
    lum_in, lum_out = frame.astype(float).mean(axis=-1), out.astype(float).mean(axis=-1)
    weight = eye_line_weight(face=FACE, points=pts, origin=(0, 0), shape=SHAPE)
    core = where["lines"] & (weight > 0.9)
    beside = ~where["lines"] & (weight > 0.9)
    assert core.sum() > 150
    before = 1 - lum_in[core].mean() / lum_in[beside].mean()
    after = 1 - lum_out[core].mean() / lum_out[beside].mean()
    assert before > 0.07 and after < 0.5 * before, (before, after)
    # The lines reach as far out as the crow's feet are painted on both sides.
    for half in (slice(0, SHAPE[1] // 2), slice(SHAPE[1] // 2, None)):
        assert core[:, half].sum() > 60
    for name in ("eyes", "brows"):
        assert np.abs(lum_out[where[name]] - lum_in[where[name]]).max() <= 3, name
    assert np.array_equal(out[where["outside"]], frame[where["outside"]])


def lined_forehead(
    *, fringe_above: float = 0.27, fringe_right_of: float = 0.2
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Skin with faint grain, dark brows, three lines across the forehead (10% darker, 0.012
    IOD wide), a fringe of hair (55% darker, with a coarse grain of its own) over all of it
    that lies more than fringe_above over the brows' tops and right of fringe_right_of (face
    frame, IOD), a strand hanging from it down across the lines (20% darker, 0.012 IOD wide),
    and a darker background outside the face's outline below the brows' tops. Returns the
    frame and where each lies (bool masks (H, W))."""
    pts = template_face()
    q = pixels_in_face_frame(FACE, SHAPE).reshape(*SHAPE, 2)
    rng = np.random.default_rng(2)
    img = np.broadcast_to(np.array(SKIN_RGB, np.float64), (*SHAPE, 3)).copy()
    img *= skin_grain(rng)
    top = pts[[*mesh.RIGHT_EYEBROW, *mesh.LEFT_EYEBROW], 1].min()
    where = {"lines": np.zeros(SHAPE, bool)}
    for above in (0.12, 0.22, 0.32):
        where["lines"] |= (np.abs(q[..., 1] - (top - above)) < 0.006) & (np.abs(q[..., 0]) < 0.4)
    where["fringe"] = (q[..., 0] > fringe_right_of) & (q[..., 1] < top - fringe_above)
    where["strand"] = (np.abs(q[..., 0] - 0.1) < 0.006) & (q[..., 1] < top - 0.05)
    where["strand"] &= ~where["fringe"]
    # FaceMesh's outline crosses the forehead well below the hairline: the skin goes on above.
    where["outside"] = outside_of(pts[list(mesh.FACE_OVAL)], q=q) & (q[..., 1] > top)
    where["lines"] &= ~where["fringe"] & ~where["strand"] & ~where["outside"]
    img[where["lines"]] *= 0.9
    img[where["strand"]] *= 0.8
    hair = np.exp(gaussian_filter(rng.normal(0.0, 0.15, SHAPE), (0.5, 2.0)))
    img[where["fringe"]] *= 0.45 * hair[where["fringe"]][:, None]
    img[where["outside"] & ~where["fringe"]] *= 0.6
    where["brows"] = paint_brows(img, q=q, points=pts)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), where


def test_the_lines_across_the_forehead_are_lifted_and_not_the_hair() -> None:
    """Raised brows press lines across the forehead; a fringe often hangs over it. The
    painted lines, 9.0% darker than the skin beside them, are 4.4% darker after the lift (the
    broad blur takes in some of their shared darkening, which stays); the fringe, the strand
    hanging from it across the lines (19.1% darker, 18.6% after; 10.9% without the blur
    along the lines) and the brows stay as they were."""
    frame, where = lined_forehead()
    pts = template_face()
    assert lift(frame, crease=FOREHEAD_LINES, face=FACE, points=pts, share=0.0) is frame
    out = lift(frame, crease=FOREHEAD_LINES, face=FACE, points=pts, share=1.0)
    lum_in, lum_out = frame.astype(float).mean(axis=-1), out.astype(float).mean(axis=-1)
    weight = forehead_weight(face=FACE, points=pts, origin=(0, 0), shape=SHAPE)
    core = where["lines"] & (weight > 0.9)
    beside = ~where["lines"] & ~where["strand"] & ~where["fringe"] & (weight > 0.9)
    assert core.sum() > 300
    before = 1 - lum_in[core].mean() / lum_in[beside].mean()
    after = 1 - lum_out[core].mean() / lum_out[beside].mean()
    assert before > 0.08 and after < 0.55 * before, (before, after)
    # All three lines, on both sides of the face.
    assert (core[:, : SHAPE[1] // 2].sum(), core[:, SHAPE[1] // 2 :].sum()) > (100, 100)
    rows = np.nonzero(core.any(axis=1))[0]
    assert np.count_nonzero(np.diff(rows) > 1) == 2
    strand = where["strand"] & (weight > 0.9)
    assert strand.sum() > 40
    # The strand: its darkness against the skin beside it stays.
    strand_in = 1 - lum_in[strand].mean() / lum_in[beside].mean()
    strand_out = 1 - lum_out[strand].mean() / lum_out[beside].mean()
    assert strand_out > 0.9 * strand_in, (strand_in, strand_out)
    change = np.abs(lum_out - lum_in)
    for name in ("brows", "fringe"):
        assert change[where[name]].max() <= 3, name
    assert np.array_equal(out[where["outside"]], frame[where["outside"]])


def test_a_fringe_over_most_of_the_forehead_is_left() -> None:
    """Where a fringe covers most of the forehead (here 80% of the region), the region's
    brighter pixels are hair, so the skin is taken as no darker than the nose's bridge less
    `BRIDGE_TO_FOREHEAD`: the hair stays (without that, its strands were lightened by up to
    12 levels)."""
    frame, where = lined_forehead(fringe_above=0.1, fringe_right_of=-2.0)
    pts = template_face()
    weight = forehead_weight(face=FACE, points=pts, origin=(0, 0), shape=SHAPE)
    assert where["fringe"][weight > 0.5].mean() > 0.75
    out = lift(frame, crease=FOREHEAD_LINES, face=FACE, points=pts, share=1.0)
    change = np.abs(out.astype(float).mean(axis=-1) - frame.astype(float).mean(axis=-1))
    assert change[where["fringe"]].max() <= 3
    assert change[where["fringe"]].mean() < 0.1


def depth_of(
    frame: np.ndarray, face: FaceFrame, points: np.ndarray, crease: Crease = FURROWS
) -> float:
    """`creases.crease_depth` over the crease's region on the face with landmarks points."""
    window, inside = crease_region(frame.shape, crease=crease, face=face, points=points)
    return crease_depth(frame, crease=crease, window=window, inside=inside, iod=face.iod)


@pytest.mark.parametrize("crease", [FURROWS, EYE_LINES, FOREHEAD_LINES], ids=lambda c: c.name)
def test_a_freckle_among_the_creases_is_kept(crease: Crease) -> None:
    """A round spot as dark as a crease or darker (a freckle, a small mole) is part of the
    person, not of the expression: painted among the furrows, under an eye or between the
    forehead's lines, it keeps its darkness while the lines beside it are lifted. Without
    `creases.spots` the lift took two thirds of such a spot's darkness."""
    pts = template_face()
    q = pixels_in_face_frame(FACE, SHAPE).reshape(*SHAPE, 2)
    if crease is FURROWS:
        frame, where = furrowed_face()
        lines = where["furrows"]
        centre = np.array([0.0, pts[[55, 285], 1].max() - 0.15])
    elif crease is EYE_LINES:
        frame, where = lined_eyes()
        lines = where["lines"]
        eye = pts[list(mesh.RIGHT_EYE)]
        centre = np.array([eye[:, 0].mean(), eye[:, 1].max() + 0.105])
    else:
        frame, where = lined_forehead()
        lines = where["lines"]
        top = pts[[*mesh.RIGHT_EYEBROW, *mesh.LEFT_EYEBROW], 1].min()
        centre = np.array([-0.2, top - 0.17])
    distance = np.linalg.norm(q - centre, axis=-1)
    spot, ring = distance < 0.013, (distance > 0.03) & (distance < 0.045) & ~lines
    assert not (lines & (distance < 0.025)).any()
    img = frame.astype(np.float64)
    img[spot] *= 0.82
    frame = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    weight = crease.weight(face=FACE, points=pts, origin=(0, 0), shape=SHAPE)
    assert weight[spot].min() > 0.9
    out = lift(frame, crease=crease, face=FACE, points=pts, share=1.0)
    lum_in, lum_out = frame.astype(float).mean(axis=-1), out.astype(float).mean(axis=-1)
    before = 1 - lum_in[spot].mean() / lum_in[ring].mean()
    after = 1 - lum_out[spot].mean() / lum_out[ring].mean()
    assert before > 0.15 and after > 0.95 * before, (before, after)
    lifted = lines & (weight > 0.9)
    assert lum_out[lifted].mean() > lum_in[lifted].mean() + 5


def real_lift_depths(
    path: Path, *, crease: Crease, taken: int, calm: int, present: dict[str, float]
) -> dict[str, float]:
    """The crease's depth (`depth_of`) on the calm frame of the clip at path, and on the
    frame taken: as it is (input), edited to take the AU activations `present` off without
    the lift (plain) and with it (lifted). Checks on the way that the lift changes nothing
    outside the crease's region."""
    from spfem_cli.face.tracker import LandmarkTracker

    model = ExpressionModel.load()
    gen = FaceGenerator(model=model, device=torch.device("cpu"))
    depths = {}
    with LandmarkTracker(video_mode=False) as tracker:
        for t in (taken, calm):
            frame = video_frame(path, t)
            found = tracker.detect(frame)
            assert found is not None
            face = FaceFrame.from_landmarks(found.landmarks)
            pts = face.to_face(found.landmarks.astype(np.float64))
            if t == calm:
                depths["calm"] = depth_of(frame, face, pts, crease)
                continue
            on = np.zeros(model.num_aus)
            for name, level in present.items():
                on[model.au_names.index(name)] = level
            delta = -on
            moved = pts + gen.displacement(delta, points=pts)
            plain = gen.edit_frame(frame, face=face, points=pts, delta=delta)
            lifted = gen.edit_frame(frame, face=face, points=pts, delta=delta, present=on)
            depths["input"] = depth_of(frame, face, pts, crease)
            depths["plain"] = depth_of(plain, face, moved, crease)
            depths["lifted"] = depth_of(lifted, face, moved, crease)
            region = crease.weight(face=face, points=moved, origin=(0, 0), shape=frame.shape[:2])
            assert np.array_equal(lifted[region == 0], plain[region == 0])
    return depths


def test_a_real_frown_taken_off_loses_its_furrows(clips_dir: Path) -> None:
    """expr_d3 frowns hard at frame 134 (AU4 0.90 read, furrows between the brows). Edited to
    neutral with the expression present given, the furrows are lifted toward her calm
    frame's (frame 100, no frown read): the band's darkness over the glabella is 0.030 on the
    input, 0.023 after the warp alone (the brows drawn apart stretch the furrows), 0.016
    lifted, and 0.007 on the calm frame: the lift takes 44% of what the warp leaves above
    calm (54% before freckles and moles were kept, `creases.spots`, and the glabella was
    drawn in pixels)."""
    depths = real_lift_depths(
        clips_dir / "expr_d3.mp4", crease=FURROWS, taken=134, calm=100, present={"AU4": 0.9}
    )
    assert depths["plain"] > 0.6 * depths["input"]
    excess = depths["plain"] - depths["calm"]
    assert excess > 0.008, depths
    assert depths["lifted"] - depths["calm"] < 0.6 * excess, depths


def test_a_real_smiles_eyes_taken_off_lose_their_lines(clips_dir: Path) -> None:
    """expr_d0 smiles at frame 40 (FaceMesh reads his narrowed eyes as a lid tightening of
    0.39 and a cheek raise of 0.08, and lines show under his eyes and beside them). Edited to
    neutral with the expression present given, the lines are lifted toward his calm frame's
    (frame 5): the band's darkness over them is 0.0143 on the input, 0.0138 after the warp
    alone, 0.0096 lifted, and 0.0089 on the calm frame: the lift takes 86% of what the warp
    leaves above calm."""
    depths = real_lift_depths(
        clips_dir / "expr_d0.mp4",
        crease=EYE_LINES,
        taken=40,
        calm=5,
        present={"AU6": 0.08, "AU7": 0.39},
    )
    excess = depths["plain"] - depths["calm"]
    assert excess > 0.003, depths
    assert depths["lifted"] - depths["calm"] < 0.3 * excess, depths


def test_real_raised_brows_taken_off_lose_their_forehead_lines(clips_dir: Path) -> None:
    """expr_d9 raises his brows at frame 471 (AU1 0.76, AU2 0.42 read) and lines cross his
    forehead, between the strands of his fringe. Edited to take the raise off, the lines are
    lifted toward his calmer frame's (frame 365, AU1 0.12): the darkness of the detail across
    the forehead's skin (`crease_depth`, the fringe left out) is 0.0113 on the input, 0.0091
    after the warp alone, 0.0063 lifted and 0.0030 on the calmer frame: the lift takes 45% of
    what the warp leaves above it. The lines beyond the brow's outer end and those among the
    strands, or within the shading's scale of the fringe, stay."""
    depths = real_lift_depths(
        clips_dir / "expr_d9.mp4",
        crease=FOREHEAD_LINES,
        taken=471,
        calm=365,
        present={"AU1": 0.76, "AU2": 0.42},
    )
    excess = depths["plain"] - depths["calm"]
    assert excess > 0.003, depths
    assert depths["lifted"] - depths["calm"] < 0.75 * excess, depths


def test_spfem_edit_lifts_the_furrows_of_a_frown_it_takes_off(
    clips_dir: Path, tmp_path: Path
) -> None:
    """Through `edit_video` (the analysis's present expression reaches every frame): expr_d3
    edited to neutral over 4-5 s, where she frowns. At frame 134 of the output the band's
    darkness over the glabella is 0.58 of the input's; 0.83 when `render_video` gave no
    present expression (the warp alone, measured when this test was written)."""
    from spfem_cli.face.tracker import LandmarkTracker
    from spfem_cli.pipeline import edit_video

    out = tmp_path / "neutral.mp4"
    edit_video(
        input_path=clips_dir / "expr_d3.mp4",
        emotion="neutral",
        output_path=out,
        start=4.0,
        end=5.0,
        keep_speech=False,
    )
    depths = []
    with LandmarkTracker(video_mode=False) as tracker:
        for path in (clips_dir / "expr_d3.mp4", out):
            frame = video_frame(path, 134)
            found = tracker.detect(frame)
            assert found is not None
            face = FaceFrame.from_landmarks(found.landmarks)
            depths.append(depth_of(frame, face, face.to_face(found.landmarks.astype(float))))
    assert depths[1] < 0.7 * depths[0], depths
