"""The frown's furrows lifted when an edit takes the frown off (`generator.creases`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.creases import (
    CREASE_SCALE,
    MIN_PRESENT,
    SHADING_SCALE,
    frown_share,
    glabella_weight,
    lift_furrows,
)
from spfem_cli.generator.expression import ExpressionModel
from spfem_cli.generator.generator import FaceGenerator
from tests.conftest import video_frame
from tests.painted import SKIN_RGB, pixels_in_face_frame, template_face

SHAPE = (360, 400)
FACE = FaceFrame(origin=np.array([200.0, 200.0]), angle=0.0, iod=140.0)
AUS = ("AU1", "AU4", "AU6")


def vector(au4: float) -> np.ndarray:
    return np.array([0.0, au4, 0.0])


def test_the_share_of_the_frown_taken_off() -> None:
    assert frown_share(vector(-0.6), present=vector(0.6), au_names=AUS) == 1.0
    assert frown_share(vector(-0.3), present=vector(0.6), au_names=AUS) == pytest.approx(0.5)
    assert frown_share(vector(-2.0), present=vector(0.6), au_names=AUS) == 1.0
    assert frown_share(vector(0.2), present=vector(0.6), au_names=AUS) == 0.0  # angrier
    # A frown below the noise floor is no frown.
    low = MIN_PRESENT * 0.9
    assert frown_share(vector(-low), present=vector(low), au_names=AUS) == 0.0


def furrowed_face() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Even skin with faint grain, two dark brows, two vertical furrows between them (10%
    darker, 0.015 IOD wide) and a strand of hair across the forehead (55% darker). Returns the
    frame and where each lies (bool masks (H, W))."""
    pts = template_face()
    q = pixels_in_face_frame(FACE, SHAPE).reshape(*SHAPE, 2)
    rng = np.random.default_rng(0)
    img = np.broadcast_to(np.array(SKIN_RGB, np.float64), (*SHAPE, 3)).copy()
    img *= np.exp(gaussian_filter(rng.normal(0.0, 0.02, SHAPE), 0.7))[..., None]
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
    where["brows"] = np.zeros(SHAPE, bool)
    for brow in (mesh.RIGHT_EYEBROW, mesh.LEFT_EYEBROW):
        ring = pts[list(brow)]
        lo, hi = ring.min(axis=0), ring.max(axis=0)
        where["brows"] |= np.all((q >= lo) & (q <= hi), axis=-1)
    img[where["brows"]] = (60, 45, 40)
    where["below"] = q[..., 1] > top + 0.02
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), where


def test_the_furrows_between_the_brows_are_lifted_and_nothing_else() -> None:
    frame, where = furrowed_face()
    pts = template_face()
    assert lift_furrows(frame, face=FACE, points=pts, share=0.0) is frame
    out = lift_furrows(frame, face=FACE, points=pts, share=1.0)
    lum_in, lum_out = frame.astype(float).mean(axis=-1), out.astype(float).mean(axis=-1)
    q = pixels_in_face_frame(FACE, SHAPE)
    core = where["furrows"] & (glabella_weight(q, points=pts) > 0.9).reshape(SHAPE)
    assert core.sum() > 100
    # The furrows' 10% darkness against the skin beside them: more than half of it goes (the
    # skin's level around them is a blur that takes in a little of their own darkness).
    beside = ~where["furrows"] & (glabella_weight(q, points=pts) > 0.9).reshape(SHAPE)
    before = 1 - lum_in[core].mean() / lum_in[beside].mean()
    after = 1 - lum_out[core].mean() / lum_out[beside].mean()
    assert before > 0.08 and after < 0.5 * before, (before, after)
    # Half the frown taken off lifts about half of it.
    half = lift_furrows(frame, face=FACE, points=pts, share=0.5).astype(float).mean(axis=-1)
    mid = 1 - half[core].mean() / half[beside].mean()
    assert abs(mid - 0.5 * (before + after)) < 0.2 * before
    changed = np.any(out != frame, axis=-1)
    for name in ("strand", "brows", "below"):
        assert np.abs(lum_out[where[name]] - lum_in[where[name]]).max() <= 3, name
    assert not changed[where["below"]].any()


def crease_depth(frame: np.ndarray, face: FaceFrame, points: np.ndarray) -> float:
    """Mean darkness of the furrow band over the glabella (log luminance)."""
    h, w = frame.shape[:2]
    q = pixels_in_face_frame(face, (h, w))
    inside = (glabella_weight(q, points=points) > 0.5).reshape(h, w)
    lum = np.log(frame.astype(float) @ np.array([0.299, 0.587, 0.114]) + 1.0)
    band = gaussian_filter(lum, CREASE_SCALE * face.iod) - gaussian_filter(
        lum, SHADING_SCALE * face.iod
    )
    return float(np.maximum(-band[inside], 0.0).mean())


def test_a_real_frown_taken_off_loses_its_furrows(clips_dir: Path) -> None:
    """expr_d3 frowns hard at frame 134 (AU4 0.90 read, furrows between the brows). Edited to
    neutral with the expression present given, the furrows are lifted toward her calm
    frame's (frame 100, no frown read): the band's darkness over the glabella is 0.030 on the
    input, 0.023 after the warp alone (the brows drawn apart stretch the furrows), 0.014
    lifted, and 0.007 on the calm frame: the lift takes 54% of what the warp leaves above
    calm."""
    from spfem_cli.face.tracker import LandmarkTracker

    model = ExpressionModel.load()
    gen = FaceGenerator(model=model, device=torch.device("cpu"))
    depths = {}
    with LandmarkTracker(video_mode=False) as tracker:
        for t in (134, 100):
            frame = video_frame(clips_dir / "expr_d3.mp4", t)
            found = tracker.detect(frame)
            assert found is not None
            face = FaceFrame.from_landmarks(found.landmarks)
            pts = face.to_face(found.landmarks.astype(np.float64))
            if t == 100:
                depths["calm"] = crease_depth(frame, face, pts)
                continue
            present = np.zeros(model.num_aus)
            present[model.au_names.index("AU4")] = 0.9
            delta = -present
            moved = pts + gen.displacement(delta, points=pts)
            plain = gen.edit_frame(frame, face=face, points=pts, delta=delta)
            lifted = gen.edit_frame(frame, face=face, points=pts, delta=delta, present=present)
            depths["input"] = crease_depth(frame, face, pts)
            depths["plain"] = crease_depth(plain, face, moved)
            depths["lifted"] = crease_depth(lifted, face, moved)
            # Outside the glabella the lift changes nothing.
            q = pixels_in_face_frame(face, frame.shape[:2])
            outside = (glabella_weight(q, points=moved) == 0).reshape(frame.shape[:2])
            assert np.array_equal(lifted[outside], plain[outside])
    assert depths["plain"] > 0.6 * depths["input"]
    excess = depths["plain"] - depths["calm"]
    assert excess > 0.008, depths
    assert depths["lifted"] - depths["calm"] < 0.6 * excess, depths


def test_spfem_edit_lifts_the_furrows_of_a_frown_it_takes_off(
    clips_dir: Path, tmp_path: Path
) -> None:
    """Through `edit_video` (the analysis's present expression reaches every frame): expr_d3
    edited to neutral over 4-5 s, where she frowns. At frame 134 of the output the band's
    darkness over the glabella is 0.59 of the input's; 0.83 when `render_video` gave no
    present expression (the warp alone)."""
    from spfem_cli.face.tracker import LandmarkTracker
    from spfem_cli.pipeline import edit_video

    out = tmp_path / "neutral.mp4"
    edit_video(
        input_path=clips_dir / "expr_d3.mp4",
        emotion="neutral",
        output_path=out,
        start=4.0,
        end=5.0,
    )
    depths = []
    with LandmarkTracker(video_mode=False) as tracker:
        for path in (clips_dir / "expr_d3.mp4", out):
            frame = video_frame(path, 134)
            found = tracker.detect(frame)
            assert found is not None
            face = FaceFrame.from_landmarks(found.landmarks)
            depths.append(crease_depth(frame, face, face.to_face(found.landmarks.astype(float))))
    assert depths[1] < 0.7 * depths[0], depths
