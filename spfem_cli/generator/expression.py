"""The expression model: a FACS prior on the MediaPipe landmark mesh.

Each facial action unit (AU) is a displacement field on the 478 landmarks, in the normalised face
frame of `spfem_cli.face.mesh.FaceFrame` (x from the subject's right eye to the left eye, y down
the face, unit = inter-ocular distance, IOD). An emotion is a vector of AU activations (EMFACS);
its displacement is the activation-weighted sum of the AU fields. The inner-lip contour and the
jaw line never move in any AU: the speech owns them.

The tensors come from a checkpoint (``facs-v1`` is authored by ``scripts/build_facs_weights.py``)
so a calibrated or learned model can replace the authored one without code changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import torch
from scipy.optimize import nnls

from spfem_cli.errors import SpfemError
from spfem_cli.face import mesh
from spfem_cli.face.mesh import JAW, LIPS_INNER, LIPS_OUTER, N_LANDMARKS
from spfem_cli.generator.checkpoint import Checkpoint, load_checkpoint
from spfem_cli.generator.warp import iris_radius, lid_lines

CHECKPOINT_KIND = "expression"
CHECKPOINT_VERSION = 1
# The expression model `spfem edit` uses unless told otherwise: FACS-authored, calibrated on
# real faces (scripts/calibrate_expressions.py).
DEFAULT_MODEL = "facs-v2"

EMOTIONS = ("neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")

EMOTION_DESCRIPTIONS = MappingProxyType(
    {
        "neutral": "no expression: removes the expression the face already shows",
        "angry": "brows lowered and drawn together, furrows between them, glaring eyes, lids "
        "tense, lips pressed thin",
        "contempt": "one-sided sneer: one lip corner tightened and pulled up with a dimple beside "
        "it, that eye narrowed, its brow lowered and that side of the nose wrinkled (on the side "
        "nearer the camera, or the right; --side)",
        "disgusted": "nose wrinkled, upper lip raised, lip corners pulled down",
        "fear": "brows raised and drawn together, lines across the forehead, eyes wide and "
        "tense, lips stretched sideways",
        "happy": "smile: lip corners up and out, cheeks raised, eyes narrowed by the cheeks, "
        "crow's feet beside them and a groove under them",
        "sad": "inner brows raised and drawn together, furrows between them and lines in the "
        "middle of the forehead, lip corners pulled down",
        "surprised": "brows raised high, lines across the forehead, upper lids raised so the eyes "
        "open wide",
    }
)

ACTION_UNITS = MappingProxyType(
    {
        "AU1": "inner brow raiser",
        "AU2": "outer brow raiser",
        "AU4": "brow lowerer",
        "AU5": "upper lid raiser",
        "AU6": "cheek raiser",
        "AU7": "lid tightener",
        "AU9": "nose wrinkler",
        "AU10": "upper lip raiser",
        "AU12": "lip corner puller",
        "AU14": "dimpler",
        "AU15": "lip corner depressor",
        "AU20": "lip stretcher",
        "AU23": "lip tightener",
        "AU12R": "lip corner puller, subject's right side only",
        "AU14R": "dimpler, subject's right side only",
        "AU4R": "brow lowerer, subject's right side only",
        "AU7R": "lid tightener, subject's right side only",
    }
)

_ALIASES = MappingProxyType(
    {
        "anger": "angry",
        "disgust": "disgusted",
        "surprise": "surprised",
        "happiness": "happy",
        "sadness": "sad",
        "afraid": "fear",
        "fearful": "fear",
    }
)

# Landmarks whose motion is speech: never used to read an expression off a face.
SPEECH_LANDMARKS = tuple(sorted(set(LIPS_INNER) | set(LIPS_OUTER) | set(JAW)))

# Reading the expression already on a face (`present_expression`).
# The AUs whose present level is estimated and replaced: brows, lids, cheeks. The mouth AUs
# show outside the lips only faintly and the speech moves that skin all the time, and the nose
# wrinkler's estimate follows head pitch and face shape, so their estimates are mostly noise;
# the target's levels of those AUs are added, not swapped.
REPLACED_AUS = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7")
# One-sided upper-face AUs are played, never read off a face: to a fit, one side's unit is half
# of both sides' unit, so reading them would split every uneven frown or squint between the two
# and change what is taken off. Contempt plays them on top of what the face shows.
PLAYED_ONLY_AUS = ("AU4R", "AU7R")
# The units authored on one side of the face, the subject's right. On a head turned so that
# its left side is nearer the camera they are played on the left, by their fields' mirror
# images, where they show (`ExpressionModel.displacement`): a sneer on the far side of a
# turned head is half hidden.
ONE_SIDED_AUS = ("AU12R", "AU14R", "AU4R", "AU7R")
Side = Literal["right", "left"]
SIDES: tuple[Side, ...] = ("right", "left")
# The person's rest is their calmest state in the clip: each AU's REST_PERCENTILE-th percentile.
REST_PERCENTILE = 10.0
# ...except the upper lid raiser's, whose rest is the lid's usual place: lids lower than that
# are blinks or the squint of AU6 and AU7, which are read on their own, and taking them as the
# rest would read every moment of open eyes as a wide-eyed expression to remove.
REST_PERCENTILE_BY_AU: Mapping[str, float] = MappingProxyType({"AU5": 50.0})
# Estimates below this are indistinguishable from landmark noise and head motion (measured on
# calm clips); they are not worth a warp.
NOISE_FLOOR = 0.15
# What FaceMesh reads back of a warped AU: row j is the change of each AU in
# DETECTOR_GAIN_AUS read off the landmarks when AU j alone is warped by one activation unit in
# the direction of removal, over the change asked (1 on the diagonal and 0 elsewhere would be
# a perfect reader). Measured with scripts/measure_detector_gain.py: the mean over 27 frames of
# nine real clips. FaceMesh's lid points follow a warped lid by only 15-40%, and a brow's motion
# is read partly as the other brow AUs: taking off a brow lowering (AU4), which lifts the
# brows, reads more as an inner brow raise (0.34) than as less lowering (0.28). An expression
# read off the landmarks is turned back into the activations that would read so
# (`undo_detector_gain`), so that an edit removes, as FaceMesh reads it, what FaceMesh reads
# on the input. Not in the matrix: the cheek raise, of which nothing comes back (0.04; AU6 is
# read only through what it shares with the lids), and the upper lid raiser (0.28). Only the
# brows' block is undone (GAIN_BLOCKS): the lid units are read off the lids themselves, as far
# as a real lid moves (LID_READINGS), which FaceMesh sees in full. The result is capped at
# MAX_PRESENT.
DETECTOR_GAIN_AUS = ("AU1", "AU2", "AU4", "AU7")
DETECTOR_GAIN: tuple[tuple[float, ...], ...] = (
    (0.71, 0.22, -0.29, -0.02),
    (0.01, 0.31, -0.16, -0.17),
    (-0.34, -0.13, 0.28, 0.03),
    (-0.03, -0.01, 0.01, 0.08),
)
# The brows' part of the matrix is far from orthogonal: its exact inverse multiplies a reading
# of AU4 by 10. A ridge of GAIN_RIDGE times the square of the block's largest gain keeps the
# amplification (the largest singular value of the solve's map) at 5.0, below 1 / MIN_GAIN;
# relative to the block's scale, so that it barely shrinks a block of one small gain.
GAIN_RIDGE = 0.02
# Solved together: the brow AUs, which FaceMesh reads as one another. The lid AUs are not
# corrected: they are read off the lids themselves (LID_READINGS), as far as a real lid moved.
GAIN_BLOCKS = (("AU1", "AU2", "AU4"),)
# No AU's own gain is taken below MIN_GAIN (the lid tightener's, 0.08 when measured again, was
# undone at this when it was read off the fit: undone at 0.08, the lid tightening read into
# calm speakers doubled).
MIN_GAIN = 0.16
MAX_PRESENT = 1.5


# The lid AUs are read off where the lids stand, not off the fit of all the landmarks
# (`ExpressionModel.estimate`), in the units of their own fields (a real lid moved as far as
# the field moves it at activation 1 reads 1), so no detector gain is undone for them. The fit
# read a wide-eyed look (expr_d14 frame 70, lids 0.05 IOD above their usual place) as 0.3 of
# the upper lid raiser, the rest taken by the brow raisers and a negative lid tightener, and
# once smoothed, a blink averaged in, as 0.08. Its lid tightener, undone through FaceMesh's
# small gain on warped lids (8-16%), read calm speakers' lid noise as up to 1.5 units of
# squint (talk_s20, one frame in ten), which an edit then took off, opening calm eyes.
# The upper lid is read against the iris: it follows the eye when it looks up or down, so the
# white above the iris does not. The lower lid follows the eye less: in a look down the iris
# sinks behind it and the lid reads as raised against the iris alone (portrait_s29: 0.6 of a
# lid tightening), so it counts as raised only as far as it is raised both against the iris
# and against the line through the eye's corners, which a look does not move but whose
# reading is noisier. AU -> the `lid_heights` columns it is read from (the least reading of
# them counts).
LID_READINGS: Mapping[str, tuple[int, ...]] = MappingProxyType({"AU5": (0,), "AU7": (1, 2)})
# An eye open less than this many iris radii at the iris is shut: a blink or a wink.
CLOSED_EYE = 0.6


def lid_heights(points: np.ndarray) -> np.ndarray:
    """(T, 3) float64, the mean of both eyes, in IOD, measured at the iris's centre: how far
    the upper lid stands above the top of the iris, the lower lid below its bottom (both
    positive where white shows beyond the iris, negative where the lid covers it), and the
    lower lid below the line through the eye's corners. NaN where either eye is shut (open
    less than CLOSED_EYE iris radii), since FaceMesh then guesses the iris beyond the shut
    lids. points: (T, 478, 2) landmarks in the face frame (y down)."""
    points = np.asarray(points, dtype=np.float64)
    out = np.zeros((len(points), 3))
    for ring_idx, iris_idx in ((mesh.RIGHT_EYE, mesh.RIGHT_IRIS), (mesh.LEFT_EYE, mesh.LEFT_IRIS)):
        rings, irises = points[:, list(ring_idx)], points[:, list(iris_idx)]
        for t, (ring, iris) in enumerate(zip(rings, irises, strict=True)):
            centre, radius = iris[0], iris_radius(iris)
            upper, lower, _ = lid_lines(ring, centre[:1])
            ends = ring[[0, 8]][np.argsort(ring[[0, 8], 0])]  # the eye's corners
            corners = np.interp(centre[0], ends[:, 0], ends[:, 1])
            if lower[0] - upper[0] < CLOSED_EYE * radius:
                out[t] = np.nan
            else:
                top, bottom = centre[1] - radius, centre[1] + radius
                out[t] += 0.5 * np.array([top - upper[0], lower[0] - bottom, lower[0] - corners])
    return out


def undo_detector_gain(readings: np.ndarray, *, au_names: tuple[str, ...]) -> np.ndarray:
    """The non-negative activations whose warp FaceMesh reads closest to `readings`: (T, K)
    float64, K = len(au_names), for readings (T, K) >= 0 of the same AUs. Each block of
    GAIN_BLOCKS (its AUs among `au_names`) is solved through its part of DETECTOR_GAIN by
    non-negative ridge least squares (GAIN_RIDGE, relative to the block's largest gain; no
    gain on the diagonal below MIN_GAIN);
    every other AU is taken as read. Non-negative, because an expression is taken off, never
    put on: solved freely, a frown's reading was explained partly by a negative outer brow
    raise, and clipping that to 0 after the fact left the frown's own removal out of
    balance."""
    readings = np.asarray(readings, dtype=np.float64)
    out = readings.copy()
    for block in GAIN_BLOCKS:
        names = [n for n in block if n in au_names]
        if not names:
            continue
        rows = [DETECTOR_GAIN_AUS.index(n) for n in names]
        gain = np.asarray(DETECTOR_GAIN, dtype=np.float64)[np.ix_(rows, rows)]
        np.fill_diagonal(gain, np.maximum(np.diag(gain), MIN_GAIN))
        cols = [au_names.index(n) for n in names]
        # reading = activation @ gain: minimise |a @ gain - r|^2 + ridge |a|^2 over a >= 0.
        ridge = GAIN_RIDGE * float(np.abs(gain).max()) ** 2
        system = np.vstack([gain.T, math.sqrt(ridge) * np.eye(len(names))])
        pad = np.zeros(len(names))
        for t, r in enumerate(readings[:, cols]):
            out[t, cols] = nnls(system, np.concatenate([r, pad]))[0] if r.any() else 0.0
    return out


def present_expression(
    acts: np.ndarray,
    *,
    au_names: tuple[str, ...],
    valid: np.ndarray | None = None,
    noise_floor: float = NOISE_FLOOR,
    calm: np.ndarray | None = None,
) -> np.ndarray:
    """The expression already on each frame, as an edit replaces it: (T, K) float64 in
    [0, MAX_PRESENT], 0 for AUs outside REPLACED_AUS and for rows that are not `valid`.

    acts: (T, K) signed AU activations of each frame relative to one face of the same person
    (the clip's median), as FaceMesh reads them; valid: (T,) bool, the rows with a face (all by
    default); calm: (K,) the same person's calm face read the same way (`--rest`), NaN for
    the AUs it cannot tell (the lids of a single photo: `pipeline.rest_activations`), or
    None. Each AU counts from the person's rest, less `noise_floor` (activation units), and is
    turned into what was warped to read so (`undo_detector_gain`). The rest is the person's
    calmest moments in the clip (REST_PERCENTILE, REST_PERCENTILE_BY_AU), or the calm face
    where it shows less of an AU: a face given as calm can reveal an expression held all
    through the clip, never add one."""
    acts = np.asarray(acts, dtype=np.float64)
    ok = np.ones(len(acts), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    current = np.zeros_like(acts)
    if not ok.any():
        return current
    pct = [REST_PERCENTILE_BY_AU.get(name, REST_PERCENTILE) for name in au_names]
    rest = np.array([np.percentile(acts[ok, k], q) for k, q in enumerate(pct)])
    if calm is not None:
        rest = np.fmin(rest, np.asarray(calm, dtype=np.float64))
    excess = np.clip(acts[ok] - rest - noise_floor, 0.0, None)
    current[ok] = np.clip(undo_detector_gain(excess, au_names=au_names), 0.0, MAX_PRESENT)
    current[:, [k for k, name in enumerate(au_names) if name not in REPLACED_AUS]] = 0.0
    return current


def _left_basis(
    basis: torch.Tensor, mirror: torch.Tensor, *, one_sided: torch.Tensor
) -> torch.Tensor:
    """basis (K, 478, 2) with the fields flagged in one_sided (K,) bool replaced by their
    mirror images: landmark i moves as its mirror image mirror[i] (478,) did, x reversed."""
    mirror = mirror.long()
    if mirror.shape != (N_LANDMARKS,) or not torch.equal(mirror[mirror], torch.arange(N_LANDMARKS)):
        raise SpfemError("an expression model's mirror map must pair the 478 landmarks")
    left = basis.clone()
    left[one_sided] = basis[one_sided][:, mirror] * torch.tensor([-1.0, 1.0])
    return left


def canonical_emotion(emotion: str) -> str:
    """The name in `EMOTIONS` for ``emotion`` (case-insensitive, a few aliases accepted)."""
    key = emotion.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in EMOTIONS:
        raise SpfemError(f"unknown emotion {emotion!r}; choose one of: {', '.join(EMOTIONS)}")
    return key


class ExpressionModel(torch.nn.Module):
    """AU displacement fields and EMFACS emotion prototypes on the 478-landmark mesh.

    Buffers (float32 unless noted):
        template: (478, 2) neutral reference face in the normalised frame, IOD units.
        au_basis: (K, 478, 2) displacement per unit activation of each AU, IOD units.
        prototypes: (E, K) activations of each emotion at intensity 1; neutral is all zeros.
        estimate_mask: (478,) bool, landmarks used by `estimate` (outside the mouth and jaw).
        left_basis: (K, 478, 2) au_basis with the fields of ONE_SIDED_AUS mirrored onto the
            subject's left side; None for a model without a mirror map.
    """

    template: torch.Tensor
    au_basis: torch.Tensor
    prototypes: torch.Tensor
    estimate_mask: torch.Tensor
    left_basis: torch.Tensor | None

    def __init__(
        self,
        *,
        template: torch.Tensor,
        au_basis: torch.Tensor,
        prototypes: torch.Tensor,
        au_names: tuple[str, ...] | list[str],
        emotions: tuple[str, ...] | list[str],
        estimate_mask: torch.Tensor | None = None,
        mirror: torch.Tensor | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        """mirror: (478,) int, the index of each landmark's mirror image across the face's
        midline (x -> -x), which plays the one-sided units on the left; None: on the right
        only."""
        super().__init__()
        k = len(au_names)
        if template.shape != (N_LANDMARKS, 2):
            raise SpfemError(f"expression template must be (478, 2), got {tuple(template.shape)}")
        if au_basis.shape != (k, N_LANDMARKS, 2):
            raise SpfemError(
                f"au_basis must be ({k}, 478, 2) for {k} AU names, got {tuple(au_basis.shape)}"
            )
        if prototypes.shape != (len(emotions), k):
            raise SpfemError(
                f"prototypes must be ({len(emotions)}, {k}), got {tuple(prototypes.shape)}"
            )
        if estimate_mask is None:
            estimate_mask = torch.ones(N_LANDMARKS, dtype=torch.bool)
            estimate_mask[list(SPEECH_LANDMARKS)] = False
        if estimate_mask.shape != (N_LANDMARKS,):
            raise SpfemError(f"estimate_mask must be (478,), got {tuple(estimate_mask.shape)}")
        self.au_names = tuple(au_names)
        self.emotions = tuple(emotions)
        self.config = dict(config or {})
        self.register_buffer("template", template.float().clone())
        basis = au_basis.float().clone()
        # Subnormal floats make CPU arithmetic slow; at 1e-9 IOD nothing visible is lost.
        basis[basis.abs() < 1e-9] = 0.0
        self.register_buffer("au_basis", basis)
        self.register_buffer(
            "left_basis",
            None if mirror is None else _left_basis(basis, mirror, one_sided=self.one_sided),
        )
        self.register_buffer("prototypes", prototypes.float().clone())
        # The speech landmarks never inform the estimate, whatever the checkpoint says.
        mask = estimate_mask.bool().clone()
        mask[list(SPEECH_LANDMARKS)] = False
        self.register_buffer("estimate_mask", mask)

    @property
    def num_aus(self) -> int:
        """K, the number of action units."""
        return len(self.au_names)

    @property
    def read_aus(self) -> torch.Tensor:
        """(K,) bool: the AUs read off faces (`estimate`, and the pipeline's readings); the
        others (PLAYED_ONLY_AUS) read as 0."""
        return torch.tensor([n not in PLAYED_ONLY_AUS for n in self.au_names])

    @property
    def one_sided(self) -> torch.Tensor:
        """(K,) bool: the units drawn on one side of the face (ONE_SIDED_AUS), which
        `displacement` plays on either side."""
        return torch.tensor([n in ONE_SIDED_AUS for n in self.au_names])

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> ExpressionModel:
        """Build the model from a checkpoint of kind ``"expression"``."""
        cfg = ckpt.config
        if cfg.get("kind") != CHECKPOINT_KIND:
            raise SpfemError(
                f"{ckpt.path} holds a {cfg.get('kind')!r} checkpoint, not an expression model"
            )
        if cfg.get("version") != CHECKPOINT_VERSION:
            raise SpfemError(
                f"{ckpt.path}: expression checkpoint version {cfg.get('version')!r} is not "
                f"supported (this spfem reads version {CHECKPOINT_VERSION})"
            )
        missing = [n for n in ("template", "au_basis", "prototypes") if n not in ckpt.tensors]
        if missing or "au_names" not in cfg or "emotions" not in cfg:
            raise SpfemError(
                f"{ckpt.path}: expression checkpoint lacks {missing or 'au_names/emotions'}"
            )
        return cls(
            template=ckpt.tensors["template"],
            au_basis=ckpt.tensors["au_basis"],
            prototypes=ckpt.tensors["prototypes"],
            au_names=cfg["au_names"],
            emotions=cfg["emotions"],
            estimate_mask=ckpt.tensors.get("estimate_mask"),
            mirror=ckpt.tensors.get("mirror"),
            config=cfg,
        )

    @classmethod
    def load(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL,
        *,
        weights_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> ExpressionModel:
        """Load by manifest name or checkpoint path (see `load_checkpoint`)."""
        ckpt = load_checkpoint(name_or_path, weights_dir=weights_dir, cache_dir=cache_dir)
        return cls.from_checkpoint(ckpt)

    def lid_motion(self, au: str) -> np.ndarray:
        """(3,) how far one unit of a lid AU (LID_READINGS) moves each of the template face's
        `lid_heights`, IOD; zeros when the model has no such AU."""
        if au not in self.au_names:
            return np.zeros(3)
        face = self.template.double().numpy()
        moved = face + self.au_basis[self.au_names.index(au)].double().numpy()
        return lid_heights(moved[None])[0] - lid_heights(face[None])[0]

    def emotion_vector(self, emotion: str, *, intensity: float = 1.0) -> torch.Tensor:
        """AU activations (K,) of ``emotion`` at ``intensity`` (1 = the prototype, 0 = none)."""
        name = canonical_emotion(emotion)
        if name not in self.emotions:
            raise SpfemError(
                f"emotion {name!r} is not in this expression model; it has: "
                f"{', '.join(self.emotions)}"
            )
        if not math.isfinite(intensity) or intensity < 0:
            raise SpfemError(f"intensity must be a finite number >= 0, got {intensity}")
        return self.prototypes[self.emotions.index(name)] * float(intensity)

    def displacement(self, activations: torch.Tensor, *, side: Side = "right") -> torch.Tensor:
        """Landmark displacement (..., 478, 2) in IOD units for activations (..., K), with the
        one-sided units (ONE_SIDED_AUS) played on the subject's `side`."""
        if activations.shape[-1] != self.num_aus:
            raise ValueError(
                f"activations must end in K={self.num_aus}, got {tuple(activations.shape)}"
            )
        if side not in SIDES:
            raise SpfemError(f"unknown side {side!r}; choose one of: {', '.join(SIDES)}")
        basis = self.au_basis
        if side == "left":
            if self.left_basis is None:
                raise SpfemError(
                    "this expression model has no mirror map: its one-sided units play on the "
                    "subject's right side only"
                )
            basis = self.left_basis
        return torch.einsum("...k,kld->...ld", activations.to(basis), basis)

    def emotion_displacement(self, emotion: str, *, intensity: float = 1.0) -> torch.Tensor:
        """Displacement (478, 2) in IOD units of ``emotion`` at ``intensity``."""
        return self.displacement(self.emotion_vector(emotion, intensity=intensity))

    def estimate(
        self,
        offsets: torch.Tensor,
        *,
        iterations: int = 300,
        max_activation: float | None = None,
    ) -> torch.Tensor:
        """Non-negative AU activations (T, K) that best explain landmark offsets (T, 478, 2).

        ``offsets`` are a face's normalised landmarks minus the same person's rest face, in IOD
        units. Only landmarks in `estimate_mask` count: the mouth and jaw move with speech.
        Solves min ||offsets - displacement(a)||^2 subject to a >= 0 for every frame at once
        (over the AUs in `read_aus`; the others get 0):
        accelerated projected gradient (FISTA) on the K x K normal equations, so one iteration
        costs one (T, K) x (K, K) product. A frame with NaN at a landmark the estimate uses gets
        NaN activations.
        ``max_activation`` optionally caps every activation too (a box constraint), which keeps
        noise or a wrong rest face from producing huge activations of weakly visible AUs.

        Mouth AUs show outside the mouth only through the skin around it, so AU23 and AU14 are
        the least certain; brow, lid and cheek AUs are well determined.
        """
        if offsets.ndim != 3 or offsets.shape[1:] != (N_LANDMARKS, 2):
            raise ValueError(f"offsets must be (T, 478, 2), got {tuple(offsets.shape)}")
        read = self.read_aus
        k = int(read.sum())
        basis = self.au_basis[read][:, self.estimate_mask].reshape(k, -1)
        gram = basis.double() @ basis.double().T
        # Unit-diagonal scaling keeps a >= 0 a box constraint and cuts the condition number by
        # orders of magnitude (AUs differ a lot in how much they move outside the mouth).
        scale = gram.diagonal().clamp_min(1e-12).rsqrt()
        gram = scale[:, None] * gram * scale[None, :]
        lipschitz = torch.linalg.eigvalsh(gram)[-1]
        eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
        # One gradient step x - (x G - c) / L is x @ (I - G / L) + c / L.
        step = (eye - gram / lipschitz).to(basis.dtype)
        x_obs = offsets.to(basis)[:, self.estimate_mask].reshape(offsets.shape[0], -1)
        rhs = (x_obs @ basis.T) * (scale / lipschitz).to(basis.dtype)
        # Bounds in the scaled coordinates x = a / scale.
        upper = None
        if max_activation is not None:
            upper = (max_activation / scale).to(basis.dtype).expand_as(rhs)
        x = torch.zeros_like(rhs)
        y = x
        t = 1.0
        for _ in range(iterations):
            # Values at or below 1e-12 become exact zeros: they would decay into subnormal
            # floats, which are slow on CPUs.
            x_next = torch.nn.functional.threshold(torch.addmm(rhs, y, step), 1e-12, 0.0)
            if upper is not None:
                x_next = torch.minimum(x_next, upper)
            t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
            y = torch.add(x_next, x_next - x, alpha=(t - 1.0) / t_next)
            x, t = x_next, t_next
        out = x.new_zeros(x.shape[0], self.num_aus)
        out[:, read] = x * scale.to(basis.dtype)
        out[torch.isnan(x_obs).any(dim=1)] = float("nan")
        return out

    def extra_repr(self) -> str:
        return f"aus={list(self.au_names)}, emotions={list(self.emotions)}"
