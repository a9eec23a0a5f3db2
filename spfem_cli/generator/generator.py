"""The generator: expression model + speech-preserving warp, applied frame by frame."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch

from spfem_cli.errors import SpfemError
from spfem_cli.face import mesh
from spfem_cli.face.glasses import Rims, SteadyRims, Traced, rim_layer
from spfem_cli.face.lenses import lens_layer
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.checkpoint import default_weights_dir, read_manifest
from spfem_cli.generator.creases import lift_creases
from spfem_cli.generator.expression import ExpressionModel, Side
from spfem_cli.generator.kinds import DEFAULT_GENERATOR, DEFAULT_REFINER, GENERATORS
from spfem_cli.generator.refiner import Refiner, refine_frame
from spfem_cli.generator.shading import DEFAULT_SHADING, ShadingModel
from spfem_cli.generator.warp import HoldRegion, WarpConfig, Warper

MouthMode = Literal["natural", "strict", "expressive"]
MOUTH_MODES: tuple[str, ...] = ("natural", "strict", "expressive")
DispT = TypeVar("DispT", np.ndarray, torch.Tensor)


def check_mouth_mode(mouth: str) -> None:
    """SpfemError unless mouth is one of MOUTH_MODES."""
    if mouth not in MOUTH_MODES:
        raise SpfemError(f"unknown mouth mode {mouth!r}; choose one of: {', '.join(MOUTH_MODES)}")


_INNER = np.array(mesh.LIPS_INNER)
_LIPS = np.array(sorted(set(mesh.LIPS_INNER) | set(mesh.LIPS_OUTER)))
_JAW = np.array(mesh.JAW)
_OVAL = np.array(mesh.FACE_OVAL)
# In natural and expressive modes the inner lip corners go with the outer corners (in
# expressive mode a smile widens the mouth; in natural mode the corners only rise and fall,
# RISE_ONLY), tapering to zero within two points so the rest of the inner contour follows the
# speech.
_CORNER_TAPER: tuple[tuple[int, int, float], ...] = (
    (78, 61, 0.6), (191, 61, 0.25), (95, 61, 0.25),
    (308, 291, 0.6), (415, 291, 0.25), (324, 291, 0.25),
)  # fmt: skip
# In strict mode every point this close to the outer lip contour holds still (IOD units).
STRICT_RADIUS = 0.12
# The pixels of the mouth held still (IOD units): both modes hold the lips and a band around
# them; natural mode lets go at the lip corners (within about release_radius), which is as
# far as they can follow the emotion before the inner-lip contour reads as changed (measured
# by re-detecting landmarks on the output: see tests/test_edit_real.py).
NATURAL_HOLD = {"band": 0.04, "feather": 0.10, "release_radius": 0.05}
# In natural mode the lip corners and the skin around them move only up and down: their
# sideways motion is dropped within RISE_ONLY[0] IOD of a lip corner, fading back in by
# RISE_ONLY[1]. What the inner lips can give is best spent on the corners' rise and fall,
# which is what reads (a smile's corners up, sadness's down): re-detected on speech_obama,
# mouth only, happy's corners rose 0.019 IOD with the smile's sideways pull and 0.022 without
# it, while the inner-lip error fell from 1.00% to 0.95%; the release above was widened from
# 0.04 to 0.05 with what that saved (happy's rise 0.029 at 1.11%). A smile's widening and
# fear's sideways stretch are left to expressive mode.
RISE_ONLY = (0.10, 0.14)
STRICT_HOLD = {"band": 0.04, "feather": 0.10}
# Expressive mode moves the lip corners as far as a real expression does, at the price of the
# inner lips: it lets go of a wider area at each corner and asks the mouth AUs
# (EXPRESSIVE_MOUTH_AUS) for EXPRESSIVE_MOUTH_GAIN times their strength. A real acted smile
# lifts the corners 0.07-0.12 IOD, the model's happy asks 0.051, and a warp cannot carry a
# corner past the release (the flow is pinned where a landmark lands). Re-detected on
# speech_obama, mouth only (scripts/measure_expressions.py): happy's corners rise 0.078 IOD
# (natural mode 0.029, 0.020 before it kept only their rise; this mode before, with a
# release of 0.08 and no gain, 0.041), with an inner-lip error of 4.3% of the IOD and a
# mouth-opening correlation of 0.967.
EXPRESSIVE_HOLD = {"band": 0.04, "feather": 0.10, "release_radius": 0.16}
EXPRESSIVE_MOUTH_GAIN = 1.5
EXPRESSIVE_MOUTH_AUS = ("AU10", "AU12", "AU14", "AU15", "AU20", "AU23", "AU12R", "AU14R")
# The upper lip raiser (AU10) lifts the middle of the upper lip's top edge and bends it into an
# angle (FACS), and in natural and expressive modes the hold lets go around that edge's middle
# and the bow's two peaks, as far as the lift: UPPER_LIP_RELEASE IOD of radius per IOD of rise
# asked of the edge's middle. The lips' inner contour stays held, so the upper lip's red
# deepens upward, as an everted, raised lip does; disgust asks a rise of 0.057.
# Radii under UPPER_LIP_MIN_RADIUS let go of nothing a pixel grid would show, and are left out.
UPPER_LIP_TOP = (0, 37, 267)
UPPER_LIP_RELEASE = 0.9
UPPER_LIP_MIN_RADIUS = 0.005
# Per eye (subject's right, left): the upper lid from corner to corner, the lower edge of the
# brow, and the row of landmarks just over the lid.
_UPPER_LIDS = tuple(
    tuple(ring[i] for i in mesh.EYE_RING_UPPER_LID) for ring in (mesh.RIGHT_EYE, mesh.LEFT_EYE)
)
_BROWS_BELOW = (mesh.RIGHT_EYEBROW_LOWER, mesh.LEFT_EYEBROW_LOWER)
_OVER_LIDS = (mesh.RIGHT_OVER_LID, mesh.LEFT_OVER_LID)


def mouth_gain(au_names: tuple[str, ...] | list[str], *, mode: MouthMode) -> np.ndarray:
    """(K,) the factor on each AU's change in a mouth mode: EXPRESSIVE_MOUTH_GAIN for the
    mouth AUs in expressive mode, 1 otherwise."""
    scale = EXPRESSIVE_MOUTH_GAIN if mode == "expressive" else 1.0
    return np.array([scale if name in EXPRESSIVE_MOUTH_AUS else 1.0 for name in au_names])


def corner_release_scale(corner_motion: np.ndarray | None) -> np.ndarray:
    """(2,) how much wider each lip corner is released than when both move alike.

    corner_motion: (2, 2) the motion asked of the corners (IOD, `mesh.LIP_CORNERS` order).
    Re-detected on the output, the inner lips move in proportion to the corners' motion
    summed over both corners, whichever corner carries it (scripts/measure_expressions.py:
    contempt's one corner at twice the release costs the inner lips what happy's two corners
    cost at the natural one). So a one-sided motion (a smirk) may take the release both
    corners would share: a corner asked for all of the motion gets twice the radius, which
    carries about twice as far; a symmetric one gets 1 each.
    """
    if corner_motion is None:
        return np.ones(2)
    size = np.linalg.norm(np.asarray(corner_motion, np.float64), axis=-1)
    total = size.sum()
    if total < 1e-9:
        return np.ones(2)
    return 1.0 + np.clip(2.0 * size / total - 1.0, 0.0, 1.0)


def mouth_hold(
    points: np.ndarray,
    *,
    mode: MouthMode,
    corner_motion: np.ndarray | None = None,
    lip_rise: float = 0.0,
) -> HoldRegion:
    """The region held still for the speech. points: (478, 2) face-frame landmarks;
    corner_motion: (2, 2) the motion asked of the lip corners (IOD), which widens the release
    of a corner that moves alone (`corner_release_scale`); None: both alike; lip_rise: how far
    the middle of the upper lip's top edge is asked to rise (IOD, up positive), which lets go
    of the hold around it (`UPPER_LIP_RELEASE`; a lowering lets go of nothing)."""
    if mode == "strict":
        return HoldRegion(polygon=points[list(mesh.LIPS_OUTER)], **STRICT_HOLD)
    hold = EXPRESSIVE_HOLD if mode == "expressive" else NATURAL_HOLD
    release = points[list(mesh.LIP_CORNERS)]
    radii = hold["release_radius"] * corner_release_scale(corner_motion)
    lip_radius = UPPER_LIP_RELEASE * lip_rise
    if lip_radius >= UPPER_LIP_MIN_RADIUS:
        release = np.concatenate([release, points[list(UPPER_LIP_TOP)]])
        radii = np.concatenate([radii, np.full(len(UPPER_LIP_TOP), lip_radius)])
    return HoldRegion(
        polygon=points[list(mesh.LIPS_OUTER)],
        band=hold["band"],
        feather=hold["feather"],
        release=release,
        release_radius=radii,
    )


def hold_for(points: np.ndarray, disp: np.ndarray, *, mode: MouthMode) -> HoldRegion:
    """The region held still for the speech while the landmarks move by `disp`: `mouth_hold`
    with the lip corners' asked motion and the upper lip's asked rise read off disp.
    points, disp: (478, 2) face-frame landmarks and their forward displacements (IOD, the
    mouth mode's gain and the face rules applied)."""
    corners = disp[list(mesh.LIP_CORNERS)]
    rise = -float(disp[UPPER_LIP_TOP[0], 1])
    return mouth_hold(points, mode=mode, corner_motion=corners, lip_rise=rise)


def _interp_weights(x: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(M, L) weights that interpolate values given at xs (L,) linearly at x (M,), held flat
    beyond the ends: values_at_x = weights @ values."""
    order = np.argsort(xs)
    weights = np.zeros((len(x), len(xs)))
    for k, j in enumerate(order):
        weights[:, j] = np.interp(x, xs[order], np.eye(len(xs))[k])
    return weights


def _lid_to_brow_weights(points: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per eye, the weights (M, 9) on the upper lid's and (M, 5) on the brow's displacement
    that make the M landmarks of the row over the lid move in proportion to their height
    between the two. points: (478, 2) face-frame landmarks."""
    out = []
    for lid, brow, mid in zip(_UPPER_LIDS, _BROWS_BELOW, _OVER_LIDS, strict=True):
        x, y = points[list(mid), 0], points[list(mid), 1]
        on_lid = _interp_weights(x, points[list(lid), 0])
        on_brow = _interp_weights(x, points[list(brow), 0])
        lid_y, brow_y = on_lid @ points[list(lid), 1], on_brow @ points[list(brow), 1]
        share = np.clip((lid_y - y) / np.maximum(lid_y - brow_y, 1e-6), 0.0, 1.0)[:, None]
        out.append(((1.0 - share) * on_lid, share * on_brow))
    return out


def spread_lid_stretch(disp: DispT, *, points: np.ndarray | torch.Tensor) -> DispT:
    """The skin over each upper lid stretched (or folded) as much as the rest up to the brow.

    disp: (..., 478, 2) forward displacements (IOD), numpy or torch (then differentiable in
    it: the weights depend only on the landmarks); points: (..., 478, 2) face-frame landmarks.
    Returns a copy in which the row of landmarks just over each upper lid moves as the lid and
    the brow do, in proportion to its height between the two.

    The AU fields move that row with the brow (as FaceMesh reads real faces: surprise lifts it
    0.13 IOD, the brow 0.12, the lid 0.03), so all the stretch fell on the band just over the
    lid: the lash line and the lid's crease, which the warp smeared up toward the brow into a
    grey band on large eyes (expr_d14). The row under the brow still moves with the brow:
    moved too, it took 4-10% of the brows' motion away (the smooth flow blends the brows with
    it), for little less stretch over the lid.
    """
    pts = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else points
    frames = np.asarray(pts, np.float64).reshape(-1, mesh.N_LANDMARKS, 2)
    per_frame = [_lid_to_brow_weights(p) for p in frames]
    lead = tuple(disp.shape[:-2])
    out = disp.clone() if isinstance(disp, torch.Tensor) else disp.copy()
    for eye, mid in enumerate(_OVER_LIDS):
        parts = []
        for side, group in enumerate((_UPPER_LIDS[eye], _BROWS_BELOW[eye])):
            weights = np.stack([w[eye][side] for w in per_frame])
            weights = weights.reshape(*lead, len(mid), len(group))
            if isinstance(disp, torch.Tensor):
                weights = torch.from_numpy(weights).to(disp)
            parts.append(weights @ disp[..., list(group), :])
        out[..., list(mid), :] = parts[0] + parts[1]
    return out


def face_rules(disp: DispT, *, points: np.ndarray | torch.Tensor, mode: MouthMode) -> DispT:
    """The rules every edit applies to the expression model's displacement (..., 478, 2),
    IOD: the skin above the eyes stretched evenly (`spread_lid_stretch`), then the speech
    imposed (`hold_mouth`). points: (..., 478, 2) face-frame landmarks."""
    return hold_mouth(spread_lid_stretch(disp, points=points), points=points, mode=mode)


def _sideways_kept(points: np.ndarray | torch.Tensor) -> np.ndarray:
    """(..., 478) the share of each landmark's sideways motion natural mode keeps: 0 within
    RISE_ONLY[0] IOD of a lip corner, rising linearly to 1 at RISE_ONLY[1]. points:
    (..., 478, 2) face-frame landmarks (never differentiated)."""
    pts = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else points
    pts = np.asarray(pts, np.float64)
    corners = pts[..., None, list(mesh.LIP_CORNERS), :]
    near = np.linalg.norm(pts[..., :, None, :] - corners, axis=-1).min(axis=-1)
    lo, hi = RISE_ONLY
    return np.clip((near - lo) / (hi - lo), 0.0, 1.0)


def hold_mouth(disp: DispT, *, points: np.ndarray | torch.Tensor, mode: MouthMode) -> DispT:
    """Impose the speech on a displacement.

    disp: (..., 478, 2) forward displacements (IOD), a numpy array or a torch tensor (then the
    result is differentiable in it: a masked copy, plus the lip-corner taper, both linear);
    points: (..., 478, 2) the frames' landmarks in the face frame. Returns a copy with the jaw,
    face outline and inner lips held still (natural and expressive: they differ in the pixels
    held, `mouth_hold`; natural mode also drops the sideways motion around the lip corners,
    `RISE_ONLY`), or the whole mouth region held still (strict).
    """
    is_torch = isinstance(disp, torch.Tensor)
    out = disp.clone() if is_torch else disp.copy()
    out[..., _JAW, :] = 0.0
    out[..., _OVAL, :] = 0.0
    if mode == "strict":
        # Which points are near the lips only depends on the landmarks, never differentiated.
        pts = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else points
        lips = pts[..., None, list(mesh.LIPS_OUTER), :]
        near = np.linalg.norm(pts[..., :, None, :] - lips, axis=-1).min(axis=-1) < STRICT_RADIUS
        near[..., _LIPS] = True
        if is_torch:
            keep = torch.from_numpy(~near).to(device=out.device, dtype=out.dtype)
            return out * keep[..., None]
        out[near] = 0.0
        return out
    check_mouth_mode(mode)
    if mode == "natural":
        sideways = _sideways_kept(points)
        if is_torch:
            sideways = torch.from_numpy(sideways).to(device=out.device, dtype=out.dtype)
        out[..., 0] = out[..., 0] * sideways
    corners = {c: out[..., c, :] * 1.0 for c in mesh.LIP_CORNERS}  # copies, for both kinds
    out[..., _INNER, :] = 0.0
    for inner, corner, weight in _CORNER_TAPER:
        out[..., inner, :] = weight * corners[corner]
    return out


class FaceGenerator:
    """Turns a change of action-unit activations into an edited frame.

    The expression model maps AU activations to landmark displacements (IOD units); the
    mouth rule keeps the articulation; the warper moves the pixels; the refiner, when there
    is one, adds what moving pixels cannot (creases, shading, eye whites).
    """

    def __init__(
        self,
        *,
        model: ExpressionModel,
        device: torch.device,
        mouth: MouthMode = "natural",
        warp: WarpConfig | None = None,
        refiner: Refiner | None = None,
        shading: ShadingModel | None = None,
    ) -> None:
        check_mouth_mode(mouth)
        self.model = model
        self.mouth = mouth
        # (K,) the factor on each AU's change in this mouth mode, the same for every frame.
        self.gain = mouth_gain(model.au_names, mode=mouth)
        self._one_sided = model.one_sided.numpy()
        # (K,) which AUs are the mouth's (`EXPRESSIVE_MOUTH_AUS`), which mouth_scale scales.
        self.mouth_units = np.array([name in EXPRESSIVE_MOUTH_AUS for name in model.au_names])
        self.warper = Warper(device=device, config=warp)
        self.refiner = refiner.to(device).eval() if refiner is not None else None
        self.shading = shading

    def with_mouth(self, mouth: MouthMode) -> FaceGenerator:
        """This generator in another mouth mode, sharing its warper, refiner and shading."""
        check_mouth_mode(mouth)
        other = copy.copy(self)
        other.mouth = mouth
        other.gain = mouth_gain(self.model.au_names, mode=mouth)
        return other

    def displacement(
        self, delta: np.ndarray, *, points: np.ndarray, side: Side = "right"
    ) -> np.ndarray:
        """delta: (K,) change of AU activations; points: (478, 2) face-frame landmarks; side:
        the subject's side that plays the one-sided units. Returns (478, 2) forward
        displacements in IOD units, with the mouth mode's gain (`mouth_gain`) and the face
        rules applied."""
        delta = np.asarray(delta, np.float64) * self.gain
        with torch.no_grad():
            disp = self.model.displacement(torch.as_tensor(delta, dtype=torch.float32), side=side)
        return face_rules(disp.numpy().astype(np.float64), points=points, mode=self.mouth)

    def sparse(
        self, *, points: np.ndarray, delta: np.ndarray, side: Side = "right"
    ) -> tuple[np.ndarray, HoldRegion]:
        """The sparse forward displacements (478, 2), IOD units, and the held mouth region for
        one frame. points: (478, 2) landmarks in the face frame; delta: (K,) AU change; side:
        the subject's side that plays the one-sided units."""
        disp = self.displacement(delta, points=points, side=side)
        return disp, hold_for(points, disp, mode=self.mouth)

    def edit_frame(
        self,
        frame: np.ndarray,
        *,
        face: FaceFrame,
        points: np.ndarray,
        delta: np.ndarray,
        rims: Rims | SteadyRims | Traced | None = None,
        lenses: bool = False,
        present: np.ndarray | None = None,
        side: Side = "right",
        mouth_scale: float = 1.0,
        softness: float = 0.0,
    ) -> np.ndarray:
        """frame: (H, W, 3) uint8 RGB; face: its face frame; points: (478, 2) landmarks in
        the face frame (IOD); delta: (K,) AU activation change; rims: the glasses the face
        wears over the clip (`face.glasses.Rims`; `SteadyRims` when the frames come in
        order; `Traced`, the rims already traced on this frame, when it is edited several
        times): the face is edited behind them, and they are put back as they were;
        lenses: the face wears dark lenses over its eyes (`face.lenses.LensFinder`): they are
        found on the frame (`face.lenses.lens_layer`), and put back as they were too;
        present: (K,) the AU activations the face shows on this frame, relative to its rest
        (`pipeline.Analysis.current`): where the edit takes a frown off, its furrows are
        lifted too, where it takes a squint or a smile's narrowed eyes off, the lines under
        and beside the eyes, and where it lowers raised brows, the forehead's lines
        (`creases`); side: the subject's side that plays the
        one-sided units (`ExpressionModel.one_sided`: contempt's sneer); mouth_scale: a factor
        on how far the mouth AUs (`EXPRESSIVE_MOUTH_AUS`) move the face, while the shading
        (a smile's folds) is drawn as delta asks (`pipeline.render_edit`: the lip corners
        moving less keep the speech; the folds do not change how FaceMesh reads the lips);
        softness: how blurred the picture of the face is (IOD, `face.sharpness`): the
        shading's lines are blurred as much, as the picture blurs a real crease.
        Returns the edited frame."""
        if not np.any(delta):
            return frame
        layer = None
        if lenses:
            layer = lens_layer(frame, face=face, points=points)
        elif rims is not None:
            layer = rim_layer(
                face=face,
                traced=rims if isinstance(rims, Traced) else rims.trace(frame, face),
                eyes=(points[list(mesh.RIGHT_EYE)], points[list(mesh.LEFT_EYE)]),
            )
        edit = functools.partial(
            self._edit,
            face=face,
            points=points,
            delta=delta,
            present=present,
            side=side,
            mouth_scale=mouth_scale,
            softness=softness,
        )
        if layer is None:
            return edit(frame)
        painted = layer.paint_out(frame)
        edited = edit(painted)
        return layer.put_back(edited, original=frame, painted=painted)

    def _edit(
        self,
        frame: np.ndarray,
        *,
        face: FaceFrame,
        points: np.ndarray,
        delta: np.ndarray,
        present: np.ndarray | None = None,
        side: Side = "right",
        mouth_scale: float = 1.0,
        softness: float = 0.0,
    ) -> np.ndarray:
        """The edited frame, by the warp and, when there is one, the refiner (the mouth AUs'
        motion times mouth_scale); then the creases of what it takes off the expression
        present (K,) lifted, when that is given; then shaded as delta asks (the lift comes
        first, so that it does not take off the folds the shading draws, blurred by softness)."""
        moved = np.where(self.mouth_units, delta * mouth_scale, delta)
        disp, hold = self.sparse(points=points, delta=moved, side=side)
        # The refiner learned the one-sided units on the right side only (its training zeroes
        # them on mirrored pairs), so on the left it is not told of them.
        told = moved if side == "right" else np.where(self._one_sided, 0.0, moved)
        out = self._move(frame, face=face, points=points, delta=told, disp=disp, hold=hold)
        asked = delta * self.gain
        if present is not None:
            out = lift_creases(
                out,
                face=face,
                points=points + disp,
                delta=asked,
                present=present,
                au_names=self.model.au_names,
            )
        if self.shading is None:
            return out
        strengths = self.shading.strengths(asked, au_names=self.model.au_names)
        return self.shading.apply(
            out,
            face=face,
            points=points + disp,
            strengths=strengths,
            side=side,
            softness=softness,
        )

    def _move(
        self,
        frame: np.ndarray,
        *,
        face: FaceFrame,
        points: np.ndarray,
        delta: np.ndarray,
        disp: np.ndarray,
        hold: HoldRegion,
    ) -> np.ndarray:
        """The frame's pixels moved by the sparse displacement disp (478, 2), IOD: by the warp
        and, when there is one, the refiner."""
        if self.refiner is not None:
            return refine_frame(
                frame,
                warper=self.warper,
                refiner=self.refiner,
                face=face,
                points=points,
                values=disp,
                hold=hold,
                delta=delta,
            )
        return self.warper.apply(
            frame,
            face=face,
            points=points,
            values=disp,
            landmarks_px=face.to_image(points),
            hold=hold,
        )


def build_generator(
    *,
    model: ExpressionModel,
    device: torch.device,
    mouth: MouthMode = "natural",
    kind: str = DEFAULT_GENERATOR,
    refiner: str | Path = DEFAULT_REFINER,
) -> FaceGenerator:
    """The generator a command asks for: kind "refiner" (warp + the refiner checkpoint
    `refiner`, a manifest name or a path) or "warp" (the warp alone)."""
    if kind not in GENERATORS:
        raise SpfemError(f"unknown generator {kind!r}; choose one of: {', '.join(GENERATORS)}")
    shading = default_shading(model)
    if kind == "warp":
        return FaceGenerator(model=model, device=device, mouth=mouth, shading=shading)
    if str(refiner) == DEFAULT_REFINER and DEFAULT_REFINER not in read_manifest(
        default_weights_dir()
    ):
        raise SpfemError(
            f"no pre-trained refiner ({DEFAULT_REFINER}) in {default_weights_dir()}: use "
            "--generator warp, or --checkpoint with a personal checkpoint from spfem finetune "
            "(it carries the person's own refiner)"
        )
    net = Refiner.load(refiner)
    return FaceGenerator(model=model, device=device, mouth=mouth, refiner=net, shading=shading)


def default_shading(model: ExpressionModel) -> ShadingModel | None:
    """The shipped shading (`DEFAULT_SHADING`) when the model has every action unit that drives
    it (every model calibrated from the FACS prior has); None for a model with other units."""
    if DEFAULT_SHADING not in read_manifest(default_weights_dir()):
        return None
    shading = ShadingModel.load(DEFAULT_SHADING)
    return shading if set(shading.au_names) <= set(model.au_names) else None
