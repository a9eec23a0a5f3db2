"""Calibrate the FACS expression model on real faces: checkpoint ``facs-v2`` from ``facs-v1``.

    python scripts/calibrate_expressions.py [--clips DIR] [--cache DIR] [--out FILE]
                                            [--no-write] [--no-manifest]

The AU displacement fields of facs-v1 (authored from FACS by ``scripts/build_facs_weights.py``)
keep their directions. Calibrated are: the size of each upper-face AU field (to the size of
real full expressions) and each emotion's AU activations (its prototype, fitted to acted
faces). Deterministic given the clips; about half a minute on two cores from scratch.

Landmarks
    MediaPipe FaceMesh with its depth output on every frame. Each frame goes to the
    normalised face frame (`FaceFrame`: IOD units, y down) and is *frontalised*: a 3-D
    similarity fit on landmarks that expressions barely move (eye corners, nose ridge,
    forehead, temples) onto a symmetric reference face; then only x, y are kept and the face
    frame is applied again. A turned or nodding head otherwise leaks into the 2-D frame (yaw
    shifts points sideways in proportion to their depth, pitch vertically); in the acted clips
    the nodding moved the nose tip more than the emotion moved the brows. Frames with a blink
    (eyes under 60% of the clip's median opening) are dropped: a blink is the largest upper-face
    motion of most clips and no emotion.

Upper face (`upper_face`): the model's `estimate_mask` above the upper lip (y < 0.8 IOD):
brows, eyes, nose, upper cheeks. Cosines are over these landmarks' (dx, dy).

Two measurements of each acted emotion (``mead_emotions/*.mp4``, one actor per emotion)
    within: the issue's definition, the pattern relative to the same person's calmer frames.
        Offsets from the clip's mean face; the part linearly explained by the lip shape (the
        first `SPEECH_MODES` principal components of the lip landmarks) is regressed out,
        because speech moves the nose base, cheeks and lower lids more than these actors'
        emotion does (lip shape explains over half the within-clip variance of 131 of the 285
        upper-face landmarks); symmetrised for the bilateral emotions, which also cancels
        first-order yaw. Frames are ranked along the first principal component over the upper
        face, its sign taken from the EMFACS prior; the pattern is the mean of the top quartile
        minus the mean of the bottom quartile.
    held: the clip's median face minus a population neutral face (the symmetrised mean of
        eleven calm faces of other people, `NEUTRAL_CLIPS`), symmetrised for the bilateral
        emotions. MEAD actors hold the emotion from the first frame to the last, so this is
        the measurement that sees the whole expression; it also carries the actor's identity
        (about 0.03 IOD per landmark), which is why the fit below only leans on it.

    The within measurement is weak in these clips, and the table says how weak (``spread``:
    the pattern's largest displacement, IOD; full expressions move 0.1). The actors barely
    change their upper face while speaking (brows and lids vary by at most 0.02 IOD in the sad,
    surprised, fear, disgusted and contempt clips, close to tracking noise), so the first
    component is residual speech or pose there, and in the happy clip a conversational brow
    flash. Such a component is nearly orthogonal to the prior, so its sign, and with it the
    pattern, is undetermined: the fit uses a within pattern only when its cosine with the prior
    is at least `DIRECTED_COSINE` in size (here only disgusted's: its nose wrinkle does come
    and go with the speech there).

Magnitude: full-expression levels
    The within difference underestimates a full expression (the actor is never neutral) and
    the held pattern's size mixes in identity, so the size comes from the ``expr_d*`` clips,
    where people go from calm to strong expressions. Per feature (brow, inner and outer brow
    raise, brow lowering, upper and lower lid raise, cheek raise, nose raise: mean dy of a
    landmark group, both sides) and clip, the excursion from the clip's median to its 2nd or
    98th percentile in the feature's direction; the level is the mean over the three clips
    where it is largest (the people who make that movement at all). A clip's median is not a
    neutral face, so the levels are conservative; the held patterns of the surprised and fear
    actors agree with them (brows 0.08-0.10 IOD, upper lids 0.03). Each upper-face AU field is
    scaled so that its own feature (`AU_FEATURE`) reaches the level at activation 1, never down
    (a field already that strong keeps its size).

Prototypes
    The mouth AUs (AU10, AU12, AU14, AU15, AU20, AU23, AU12R, AU14R) keep their EMFACS
    activations: they act mostly inside the lips, which no measurement here can read apart from
    speech (the table shows whether the lip corners agree with the held faces). The upper-face
    AUs (AU1, AU2, AU4, AU5, AU6, AU7, AU9), in the scaled fields, are a non-negative
    least-squares fit over the upper face of

        |B a - held|^2 + MU |P B a|^2 + sum_k LAMBDA_k |B_k|^2 (a_k - c r_k)^2

    B: the AU fields on the upper face (the mouth AUs' share is taken off the target first);
    P: projection away from the within pattern (asks for its direction, not its small size;
    only when its sign is determined); r: the EMFACS recipe, c its least-squares scale onto the
    held pattern (at least `RECIPE_MIN_SCALE`); LAMBDA_k is `LAMBDA` for the recipe's AUs and
    `LAMBDA_EXTRA` for others, which need more evidence. Each defining AU stays at least
    `DEFINING_FLOOR` of c r_k. If the fit loses one of the emotion's signature features
    (`SIGNATURE`, e.g. sad's inner brow raise; the data may reshape an emotion, not turn it
    into another), the pull toward the recipe is doubled until it keeps them.
    Size: the fitted upper-face part is scaled to the size of the recipe's (norm over the upper
    face, scaled fields); a signature feature still weaker than in facs-v1 (which reads weakly
    on video) is raised to facs-v1's level with the AU that moves it most; nothing on the upper
    face moves more than `MAX_DISPLACEMENT`. Angry, without a clip, keeps its recipe in the
    scaled fields, so it grows with them.
    One-sided: contempt, the one-sided emotion, also gets the one-sided brow lowerer and lid
    tightener (AU4R, AU7R, scaled as AU4 and AU7) that best give the one-sided part of its held
    face (the right side's dy against the left's over the upper face, the face's roll taken off:
    `one_sided_fit`, non-negative least squares), the larger brought down to `ONE_SIDED_MAX`.
    The report prints the same fit for every acted clip: the others' are their faces' own
    asymmetry.

Writes ``weights/facs_v2.safetensors`` (facs-v1's tensors with the new ``au_basis`` and
``prototypes``; config with a ``calibration`` entry: the before/after comparison, the feature
levels, the AU scales, the fit parameters and the clips used) and its manifest entry.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls

from spfem_cli.errors import SpfemError
from spfem_cli.face.mesh import LIP_CORNERS, LIPS_INNER, LIPS_OUTER, N_LANDMARKS, FaceFrame
from spfem_cli.generator.checkpoint import (
    load_checkpoint,
    manifest_file_name,
    save_checkpoint,
    update_manifest,
)
from spfem_cli.generator.expression import ExpressionModel

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = REPO.parent / "shared" / "clips"
BASE = "facs-v1"
NAME = "facs-v2"
OUT_FILE = "facs_v2.safetensors"

MEAD_EMOTIONS = ("happy", "sad", "surprised", "fear", "disgusted", "contempt")
# Calm faces of people other than the MEAD actors: (clip, frames used; None = all).
# portrait_s29 (smiling), talk_s32 (smiling) and talk_mead_sad (sad) are not calm.
NEUTRAL_CLIPS: tuple[tuple[str, int | None], ...] = (
    ("talk_s18_1280x720.mp4", None),
    ("talk_s20_480x908.mp4", None),
    ("speech_obama_450x450.mp4", None),
    ("speech_man_256x256.mp4", None),
    ("expr_d0.mp4", 12),
    ("expr_d3.mp4", 12),
    ("expr_d9.mp4", 12),
    ("expr_d12.mp4", 12),
    ("expr_d14.mp4", 12),
    ("expr_d18.mp4", 12),
    ("expr_d19.mp4", 12),
)
EXPR_CLIPS = tuple(f"expr_d{i}.mp4" for i in (0, 3, 9, 10, 12, 14, 18, 19))

# Landmarks that expressions barely move, used to find the head's rotation: eye corners, nose
# ridge and tip, forehead, temples.
RIGID = (33, 133, 263, 362, 168, 6, 197, 195, 5, 4, 1, 10, 151, 109, 338, 67, 297,
         21, 251, 54, 284, 162, 389, 127, 356, 234, 454)  # fmt: skip
BLINK_FRACTION = 0.6
SPEECH_MODES = 4
QUANTILE = 0.25
UPPER_FACE_MAX_Y = 0.8  # IOD below the eye line: just above the upper lip

UPPER_AUS = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9")
# The upper-face AUs that define each emotion (EMFACS); the mouth AUs keep their recipe anyway.
DEFINING_UPPER = {
    "angry": ("AU4", "AU5", "AU7"),
    "contempt": (),
    "disgusted": ("AU9",),
    "fear": ("AU1", "AU2", "AU4", "AU5", "AU7"),
    "happy": ("AU6",),
    "sad": ("AU1", "AU4"),
    "surprised": ("AU1", "AU2", "AU5"),
}
# Fit weights (see the module docstring). One actor per emotion carries identity into the held
# pattern, so the recipe pull is as strong as the data term and AUs outside the recipe pay more.
MU = 1.0
LAMBDA = 1.0
LAMBDA_EXTRA = 3.0
MAX_STRENGTH = 64.0  # largest multiple of the recipe pull tried before falling back to it
DEFINING_FLOOR = 0.5
RECIPE_MIN_SCALE = 0.5
DIRECTED_COSINE = 0.3
# A landmark moved further than this on the upper face looks like a different face, not an
# expression; real full expressions in the clips stay near 0.12 at the inner brows.
MAX_DISPLACEMENT = 0.15
LEVEL_PERCENTILE = 2.0  # robust to single-frame tracking glitches, unlike the extreme frame
LEVEL_TOP_CLIPS = 3

# Feature: landmarks on the subject's right side (mirrored to the left too) and the sign of dy
# that is the feature's direction (y points down the face, so -1 is "up").
FEATURES: dict[str, tuple[tuple[int, ...], int]] = {
    "brow raise": ((107, 66, 55, 65, 105, 52, 70, 63, 46, 53), -1),
    "inner brow raise": ((107, 66, 55, 65), -1),
    "outer brow raise": ((70, 63, 46, 53), -1),
    "brow lower": ((107, 66, 55, 65), 1),
    "upper lid raise": ((159, 160, 158), -1),
    "lower lid raise": ((145, 144, 153), -1),
    "cheek raise": ((117, 118, 119, 100, 101, 50), -1),
    "nose raise": ((64, 48, 98), -1),
}
# The upper-face features that make each emotion what it is (EMFACS); contempt's are all in
# the mouth.
SIGNATURE: dict[str, tuple[str, ...]] = {
    "angry": ("brow lower",),
    "contempt": (),
    "disgusted": ("nose raise",),
    "fear": ("inner brow raise", "upper lid raise"),
    "happy": ("cheek raise", "lower lid raise"),
    "sad": ("inner brow raise",),
    "surprised": ("brow raise", "upper lid raise"),
}
# The feature that measures each upper-face AU's strength.
AU_FEATURE = {
    "AU1": "inner brow raise",
    "AU2": "outer brow raise",
    "AU4": "brow lower",
    "AU5": "upper lid raise",
    "AU6": "cheek raise",
    "AU7": "lower lid raise",
    "AU9": "nose raise",
}
# One-sided upper-face AUs and the bilateral AU each is the right half of: they are scaled as
# that AU is, and only contempt, the one-sided emotion, is fitted with them (`one_sided_fit`).
ONE_SIDED = {"AU4R": "AU4", "AU7R": "AU7"}
ONE_SIDED_EMOTIONS = ("contempt",)
# The largest one-sided activation a prototype gets: the acted contempt squints one eye
# nearly shut (1.8 of the lid tightener), which on a speaking face reads as a wink.
ONE_SIDED_MAX = 1.0
UPPER_LIDS = ((159, 145), (386, 374))  # (upper, lower) lid midpoints, right then left eye


# --- landmarks -------------------------------------------------------------------------------


def read_landmarks_3d(path: Path, *, max_frames: int | None = None) -> np.ndarray:
    """MediaPipe landmarks with depth: (T, 478, 3) float32, x and y in pixels, z in the same
    pixel units (MediaPipe's z times the frame width); NaN rows where no face was found."""
    import mediapipe as mp

    from spfem_cli.media import FrameReader, probe

    rows: list[np.ndarray] = []
    with (
        FrameReader(probe(path)) as reader,
        mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True
        ) as mesh,
    ):
        for t, frame in enumerate(reader):
            if max_frames is not None and t >= max_frames:
                break
            height, width = frame.shape[:2]
            result = mesh.process(frame)
            if not result.multi_face_landmarks:
                rows.append(np.full((N_LANDMARKS, 3), np.nan, np.float32))
                continue
            lms = result.multi_face_landmarks[0].landmark
            rows.append(
                np.array([(p.x * width, p.y * height, p.z * width) for p in lms], np.float32)
            )
    return np.stack(rows) if rows else np.zeros((0, N_LANDMARKS, 3), np.float32)


def clip_landmarks(
    clips_dir: Path, clip: str, *, cache_dir: Path | None = None, max_frames: int | None = None
) -> np.ndarray:
    """`read_landmarks_3d` of ``clips_dir / clip``, kept in ``cache_dir`` when one is given.

    The cache key includes the file's size and modification time, so a changed clip is read
    again.
    """
    path = clips_dir / clip
    if cache_dir is None:
        return read_landmarks_3d(path, max_frames=max_frames)
    stat = path.stat()
    key = f"{clip}|{stat.st_size}|{stat.st_mtime_ns}|{max_frames}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    cached = cache_dir / f"{Path(clip).stem}-{digest}.npy"
    if cached.is_file():
        return np.load(cached)
    landmarks = read_landmarks_3d(path, max_frames=max_frames)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cached, landmarks)
    return landmarks


def to_face_3d(landmarks: np.ndarray) -> np.ndarray:
    """(T, 478, 3) pixels -> (T', 478, 3) in the normalised face frame, faceless frames dropped.

    x, y as `FaceFrame.to_face`; z relative to the mean depth of the four eye corners, in IOD.
    """
    out = []
    for lm in landmarks:
        if np.isnan(lm).any():
            continue
        frame = FaceFrame.from_landmarks(lm[:, :2].astype(np.float64))
        xy = frame.to_face(lm[:, :2].astype(np.float64))
        z = (lm[:, 2] - lm[[33, 133, 263, 362], 2].mean()) / frame.iod
        out.append(np.concatenate([xy, z[:, None]], axis=1))
    return np.stack(out) if out else np.zeros((0, N_LANDMARKS, 3))


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Rotation R (3, 3), scale s and shift t (3,) with s * src @ R + t closest to dst (N, 3)."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - src_mean, dst - dst_mean
    u, sv, vt = np.linalg.svd(a.T @ b)
    # A reflection is never a head pose.
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = float((sv * np.diag(d)).sum() / (a**2).sum())
    return rot, scale, dst_mean - scale * src_mean @ rot


def frontalise(faces: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Faces (T, 478, 3) from `to_face_3d` turned to face the camera like ``reference``
    (478, 3); returns (T, 478, 2) in the normalised face frame, IOD units."""
    out = np.empty(faces.shape[:2] + (2,))
    rigid = list(RIGID)
    for t, face in enumerate(faces):
        rot, scale, shift = similarity_fit(face[rigid], reference[rigid])
        xy = (scale * face @ rot + shift)[:, :2]
        out[t] = FaceFrame.from_landmarks(xy).to_face(xy)
    return out


def eye_opening(faces: np.ndarray) -> np.ndarray:
    """(T,) mean distance between the upper and lower lid midpoints of both eyes, IOD."""
    gaps = [faces[:, lower, 1] - faces[:, upper, 1] for upper, lower in UPPER_LIDS]
    return 0.5 * (gaps[0] + gaps[1])


def drop_blinks(faces: np.ndarray) -> np.ndarray:
    """Faces (T, 478, 2) without the frames whose eyes are under `BLINK_FRACTION` open."""
    opening = eye_opening(faces)
    return faces[opening > BLINK_FRACTION * np.median(opening)]


# --- geometry helpers ------------------------------------------------------------------------


def symmetrise(field: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Mirror-symmetric part (..., 478, 2) of a face or displacement field."""
    return 0.5 * (field + field[..., mirror, :] * np.array([-1.0, 1.0]))


def upper_face(model: ExpressionModel) -> np.ndarray:
    """Indices of the upper-face landmarks: the estimate mask above `UPPER_FACE_MAX_Y`."""
    template = model.template.double().numpy()
    mask = model.estimate_mask.numpy() & (template[:, 1] < UPPER_FACE_MAX_Y)
    return np.flatnonzero(mask)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two flattened arrays; 0 when either is zero."""
    a, b = np.ravel(a), np.ravel(b)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom > 1e-12 else 0.0


def feature_values(field: np.ndarray, mirror: np.ndarray) -> dict[str, float]:
    """Each feature of a displacement field (478, 2): mean dy of its landmarks, both sides, in
    the feature's direction (positive = the feature happens), IOD."""
    out = {}
    for name, (right, sign) in FEATURES.items():
        idx = list(right) + [int(mirror[i]) for i in right]
        out[name] = sign * float(field[idx, 1].mean())
    return out


# --- measurements ----------------------------------------------------------------------------


@dataclass
class Clip:
    """Frontalised, blink-free faces (T, 478, 2) of one clip, IOD units."""

    name: str
    faces: np.ndarray


def load_faces(
    clips_dir: Path,
    clip: str,
    *,
    reference: np.ndarray,
    cache_dir: Path | None = None,
    max_frames: int | None = None,
) -> Clip:
    """Read, normalise, frontalise and de-blink one clip."""
    faces3d = to_face_3d(
        clip_landmarks(clips_dir, clip, cache_dir=cache_dir, max_frames=max_frames)
    )
    return Clip(clip, drop_blinks(frontalise(faces3d, reference)))


def reference_face(
    clips_dir: Path, mirror: np.ndarray, *, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The frontalisation reference (478, 3) and the population neutral face (478, 2).

    Reference: symmetrised median of the calm clips' median 3-D faces (they face the camera
    roughly; only its rough shape matters). Neutral: symmetrised mean over people of each calm
    clip's median frontalised face. Returns them and the clips used.
    """
    used = [(c, n) for c, n in NEUTRAL_CLIPS if (clips_dir / c).is_file()]
    if not used:
        raise RuntimeError(f"none of the calm clips is in {clips_dir}")
    faces3d = [
        to_face_3d(clip_landmarks(clips_dir, c, cache_dir=cache_dir, max_frames=n)) for c, n in used
    ]
    medians = np.stack([np.median(f, axis=0) for f in faces3d])
    reference = np.median(medians, axis=0)
    reference = 0.5 * (reference + reference[mirror] * np.array([-1.0, 1.0, 1.0]))
    neutral = np.mean(
        [np.median(drop_blinks(frontalise(f, reference)), axis=0) for f in faces3d], axis=0
    )
    return reference, symmetrise(neutral, mirror), [c for c, _ in used]


def remove_speech(offsets: np.ndarray, modes: int = SPEECH_MODES) -> np.ndarray:
    """Offsets (T, 478, 2) less their least-squares fit on the first ``modes`` principal
    components of the lip landmarks' motion (the speech)."""
    lips = list(LIPS_OUTER) + list(LIPS_INNER)
    centred = offsets - offsets.mean(axis=0)
    u, _, _ = np.linalg.svd(centred[:, lips].reshape(len(offsets), -1), full_matrices=False)
    z = u[:, :modes]
    return centred - np.einsum("tk,kld->tld", z, np.einsum("tk,tld->kld", z, centred))


def within_pattern(
    faces: np.ndarray,
    *,
    prior: np.ndarray,
    idx: np.ndarray,
    mirror: np.ndarray | None,
    quantile: float = QUANTILE,
) -> np.ndarray:
    """Within-clip expression pattern (478, 2), IOD: strongest minus weakest frames.

    faces: (T, 478, 2) frontalised, blink-free; prior: (478, 2) the model's displacement for
    the emotion, used only for the sign; idx: upper-face landmarks that rank the frames;
    mirror: symmetrise with this mirror map (None for one-sided emotions). See the module
    docstring for the steps.
    """
    offsets = remove_speech(faces - faces.mean(axis=0))
    if mirror is not None:
        offsets = symmetrise(offsets, mirror)
    x = offsets[:, idx].reshape(len(offsets), -1)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    sign = 1.0 if float(vt[0] @ prior[idx].ravel()) >= 0 else -1.0
    score = sign * (x @ vt[0])
    lo, hi = np.quantile(score, [quantile, 1.0 - quantile])
    return offsets[score >= hi].mean(axis=0) - offsets[score <= lo].mean(axis=0)


def held_pattern(
    faces: np.ndarray, *, neutral: np.ndarray, mirror: np.ndarray | None
) -> np.ndarray:
    """The clip's median face minus the population neutral face (478, 2), IOD; symmetrised
    with ``mirror`` unless it is None."""
    pattern = np.median(faces, axis=0) - neutral
    return symmetrise(pattern, mirror) if mirror is not None else pattern


def feature_levels(clips: Sequence[Clip], mirror: np.ndarray) -> dict[str, float]:
    """Full-expression level of each feature (IOD) from clips that go from calm to strong.

    Per clip, the excursion of the feature's mean dy from its median to the
    `LEVEL_PERCENTILE`-th percentile in the feature's direction; the level is the mean of the
    `LEVEL_TOP_CLIPS` largest excursions.
    """
    levels = {}
    for name, (right, sign) in FEATURES.items():
        idx = list(right) + [int(mirror[i]) for i in right]
        excursions = []
        for clip in clips:
            y = clip.faces[:, idx, 1].mean(axis=1)
            q = 100.0 - LEVEL_PERCENTILE if sign > 0 else LEVEL_PERCENTILE
            excursions.append(sign * float(np.percentile(y, q) - np.median(y)))
        levels[name] = float(np.mean(sorted(excursions)[-LEVEL_TOP_CLIPS:]))
    return levels


@dataclass
class Measured:
    """Real patterns (478, 2) of one acted emotion, IOD."""

    within: np.ndarray
    held: np.ndarray
    sides: np.ndarray  # the held pattern before symmetrising: its one-sided part


def measure_emotions(
    clips: dict[str, Clip],
    *,
    base: ExpressionModel,
    mirror: np.ndarray,
    neutral: np.ndarray,
) -> dict[str, Measured]:
    """Within and held patterns of each acted emotion in ``clips`` (emotion -> Clip)."""
    idx = upper_face(base)
    out = {}
    for emotion, clip in clips.items():
        prior = base.emotion_displacement(emotion).double().numpy()
        sym = None if emotion == "contempt" else mirror
        out[emotion] = Measured(
            within=within_pattern(clip.faces, prior=prior, idx=idx, mirror=sym),
            held=held_pattern(clip.faces, neutral=neutral, mirror=sym),
            sides=held_pattern(clip.faces, neutral=neutral, mirror=None),
        )
    return out


# --- calibration -----------------------------------------------------------------------------


def recipe_vector(model: ExpressionModel, emotion: str) -> np.ndarray:
    """(K,) the model's activations of ``emotion`` (for facs-v1: its EMFACS recipe)."""
    return model.emotion_vector(emotion).double().numpy()


def activation_features(
    model: ExpressionModel, activations: np.ndarray, mirror: np.ndarray
) -> dict[str, float]:
    """`feature_values` of the displacement of ``activations`` (K,)."""
    basis = model.au_basis.double().numpy()
    return feature_values(np.einsum("k,kld->ld", activations, basis), mirror)


def au_level_scales(
    model: ExpressionModel, levels: dict[str, float], mirror: np.ndarray
) -> np.ndarray:
    """(K,) factor for each AU field so that its main feature (`AU_FEATURE`) reaches the
    full-expression level at activation 1; never below 1 (only fields too small for real
    faces grow), 1 for the mouth AUs."""
    scales = np.ones(model.num_aus)
    for k, name in enumerate(model.au_names):
        if name in AU_FEATURE:
            unit = np.zeros(model.num_aus)
            unit[k] = 1.0
            own = activation_features(model, unit, mirror)[AU_FEATURE[name]]
            scales[k] = max(1.0, levels[AU_FEATURE[name]] / own)
    # A one-sided field's features, the mean of both sides, are half its side's motion.
    for name, both in ONE_SIDED.items():
        if name in model.au_names:
            scales[model.au_names.index(name)] = scales[model.au_names.index(both)]
    return scales


def fit_direction(
    model: ExpressionModel,
    emotion: str,
    measured: Measured,
    idx: np.ndarray,
    *,
    strength: float = 1.0,
) -> np.ndarray:
    """Activations (K,) whose upper-face displacement follows the measured patterns.

    Mouth AUs keep the recipe; the upper-face AUs minimise the objective of the module
    docstring (non-negative, defining AUs bounded below), solved as one NNLS problem. The
    within term is left out when the within pattern's sign is undetermined (see
    `within_is_directed`). ``strength`` multiplies the pull toward the recipe.
    """
    names = list(model.au_names)
    basis = model.au_basis.double().numpy()
    recipe = recipe_vector(model, emotion)
    up = [names.index(n) for n in UPPER_AUS]
    mouth = recipe.copy()
    mouth[up] = 0.0
    mouth_disp = np.einsum("k,kld->ld", mouth, basis)[idx].ravel()
    a_up = basis[up][:, idx].reshape(len(up), -1).T  # (2N, k)
    norms = np.linalg.norm(a_up, axis=0)
    target = measured.held[idx].ravel() - mouth_disp
    r = recipe[up]
    shape = a_up @ r
    c = float(shape @ target) / float(shape @ shape) if r.any() else 0.0
    # The recipe keeps a size of its own when the held pattern disagrees with it.
    c = max(c, RECIPE_MIN_SCALE)
    rho = c * r
    # AUs outside the recipe need more evidence than a recipe AU needs to change its level.
    weight = strength * np.where(r > 0, LAMBDA, LAMBDA_EXTRA) * norms**2
    lower = np.zeros(len(up))
    for au in DEFINING_UPPER[emotion]:
        k = UPPER_AUS.index(au)
        lower[k] = DEFINING_FLOOR * rho[k]
    blocks = [a_up, np.diag(np.sqrt(weight))]
    rhs_blocks = [target, np.sqrt(weight) * rho]
    prior = model.emotion_displacement(emotion).double().numpy()
    if within_is_directed(measured, prior, idx):
        w = measured.within[idx].ravel()
        w = w / float(np.linalg.norm(w))
        # |P m| is the part of the model pattern m that points away from the within pattern:
        # penalising it asks for the within direction without asking for its (small) size.
        blocks.append(np.sqrt(MU) * (a_up - np.outer(w, w @ a_up)))
        rhs_blocks.append(-np.sqrt(MU) * (mouth_disp - w * float(w @ mouth_disp)))
    lhs = np.vstack(blocks)
    # a = lower + b with b >= 0 turns the lower bounds into plain non-negativity.
    rhs = np.concatenate(rhs_blocks) - lhs @ lower
    b, _ = nnls(lhs, rhs, maxiter=50 * lhs.shape[1])
    out = mouth.copy()
    out[up] = lower + b
    # Activations under 0.01 move nothing visible (under 0.001 IOD) and only clutter the recipe.
    out[out < 0.01] = 0.0
    return out


def one_sided_dy(field: np.ndarray, *, template: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """The left-right antisymmetric dy (478,) of a field (478, 2), less the face's slight roll.

    dy only, because a turned head shifts every landmark sideways; the best-fit rotation
    (dy = angle * x) goes, because a squinting eye moves the eye corners that frontalisation
    aligns on and tilts the face by a degree or two."""
    dy = 0.5 * (field[:, 1] - field[mirror, 1])
    x = template[:, 0]
    return dy - x * float(dy @ x) / float(x @ x)


def one_sided_fit(
    model: ExpressionModel, sides: np.ndarray, idx: np.ndarray, mirror: np.ndarray
) -> np.ndarray:
    """Activations (len(ONE_SIDED),) of the one-sided AUs that best give the one-sided part of
    a held pattern ``sides`` (478, 2) over the upper face ``idx``: non-negative least squares.
    The mouth's one-sided AUs are not fitted (the speech owns the lips) and barely reach the
    upper face."""
    template = model.template.double().numpy()
    basis = model.au_basis.double().numpy()
    lhs = np.stack(
        [
            one_sided_dy(basis[model.au_names.index(n)], template=template, mirror=mirror)[idx]
            for n in ONE_SIDED
        ],
        axis=1,
    )
    rhs = one_sided_dy(sides, template=template, mirror=mirror)[idx]
    acts, _ = nnls(lhs, rhs)
    return acts


def within_is_directed(measured: Measured, prior: np.ndarray, idx: np.ndarray) -> bool:
    """Whether the within pattern's sign is determined: its cosine with the EMFACS prior
    over the upper face is at least `DIRECTED_COSINE` in size. A first component orthogonal
    to the prior (a brow flash in a smiling clip, residual pose) is oriented by chance, so it
    says nothing about the emotion's direction."""
    return abs(cosine(measured.within[idx], prior[idx])) >= DIRECTED_COSINE


def keeps_signature(
    model: ExpressionModel, emotion: str, activations: np.ndarray, mirror: np.ndarray
) -> bool:
    """Whether every signature feature of ``emotion`` happens (is positive)."""
    feats = activation_features(model, activations, mirror)
    return all(feats[f] > 0 for f in SIGNATURE[emotion])


def resize(
    model: ExpressionModel,
    activations: np.ndarray,
    *,
    emotion: str,
    idx: np.ndarray,
    floor: dict[str, float],
    mirror: np.ndarray,
) -> np.ndarray:
    """Give the upper-face AUs of ``activations`` (K,) their full-expression size.

    1. Scale them to the size of the recipe's (norm of their displacement over the upper
       face, in the level-calibrated fields).
    2. Raise any signature feature that is still below ``floor`` (facs-v1's value, which
       reads weakly on video) with the AU that moves it most, preferring the recipe's AUs.
    3. Scale down if an upper-face landmark moves more than `MAX_DISPLACEMENT` IOD.
    """
    names = list(model.au_names)
    basis = model.au_basis.double().numpy()
    up = [names.index(n) for n in UPPER_AUS]
    upper, mouth = np.zeros_like(activations), activations.copy()
    upper[up], mouth[up] = activations[up], 0.0
    recipe = recipe_vector(model, emotion)
    recipe_upper = np.zeros_like(activations)
    recipe_upper[up] = recipe[up]
    have = float(np.linalg.norm(np.einsum("k,kld->ld", upper, basis[:, idx])))
    want = float(np.linalg.norm(np.einsum("k,kld->ld", recipe_upper, basis[:, idx])))
    upper *= want / have if have > 1e-12 else 0.0

    for feature in SIGNATURE[emotion]:
        short = floor[feature] - activation_features(model, mouth + upper, mirror)[feature]
        if short <= 0:
            continue
        effects = {}
        for k in up:
            unit = np.zeros_like(activations)
            unit[k] = 1.0
            effects[k] = activation_features(model, unit, mirror)[feature]
        mine = [k for k in up if recipe[k] > 0 and effects[k] > 0]
        k = max(mine or up, key=lambda j: effects[j])
        upper[k] += short / effects[k]

    def peak(s: float) -> float:
        d = np.einsum("k,kld->ld", mouth + s * upper, basis[:, idx])
        return float(np.linalg.norm(d, axis=1).max())

    scale = 1.0
    if peak(scale) > MAX_DISPLACEMENT:
        # Bisection: with the mouth AUs' share added the peak is not linear in the scale.
        lo, hi = 0.0, scale
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if peak(mid) <= MAX_DISPLACEMENT else (lo, mid)
        scale = lo
    return mouth + scale * upper


def calibrate(
    base: ExpressionModel,
    measured: dict[str, Measured],
    *,
    levels: dict[str, float],
    mirror: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """New prototypes (E, K), per-AU field scales (K,) and the recipe pull each emotion needed.

    The AU fields are scaled to the full-expression levels (`au_level_scales`); in those
    fields each acted emotion is fitted (`fit_direction`), and when the fit loses one of the
    emotion's EMFACS signature features (the data may reshape an emotion, not turn it into
    another) the pull toward the recipe is doubled until it keeps them. Each emotion's
    upper-face part is then given the size of its recipe (`resize`); angry, without a clip,
    keeps its recipe.
    """
    idx = upper_face(base)
    au_scale = au_level_scales(base, levels, mirror)
    scaled = build_model(base, base.prototypes.double().numpy(), au_scale)
    prototypes = scaled.prototypes.double().numpy().copy()
    strengths: dict[str, float] = {}
    for e, emotion in enumerate(base.emotions):
        if emotion not in measured:
            continue
        strength = 1.0
        acts = fit_direction(scaled, emotion, measured[emotion], idx, strength=strength)
        while not keeps_signature(scaled, emotion, acts, mirror) and strength < MAX_STRENGTH:
            strength *= 2.0
            acts = fit_direction(scaled, emotion, measured[emotion], idx, strength=strength)
        if not keeps_signature(scaled, emotion, acts, mirror):
            acts, strength = recipe_vector(scaled, emotion), float("inf")
        strengths[emotion] = strength
        floor = activation_features(base, recipe_vector(base, emotion), mirror)
        prototypes[e] = resize(scaled, acts, emotion=emotion, idx=idx, floor=floor, mirror=mirror)
        if emotion in ONE_SIDED_EMOTIONS:
            sided = one_sided_fit(scaled, measured[emotion].sides, idx, mirror)
            sided *= min(1.0, ONE_SIDED_MAX / max(float(sided.max()), 1e-12))
            for name, value in zip(ONE_SIDED, sided, strict=True):
                prototypes[e, scaled.au_names.index(name)] = value if value >= 0.01 else 0.0
    return prototypes, au_scale, strengths


def build_model(
    base: ExpressionModel, prototypes: np.ndarray, au_scale: np.ndarray
) -> ExpressionModel:
    """facs-v1's tensors with ``prototypes`` (E, K) and each AU field times ``au_scale`` (K,)."""
    return ExpressionModel(
        template=base.template,
        au_basis=base.au_basis * torch.from_numpy(au_scale).float()[:, None, None],
        prototypes=torch.from_numpy(prototypes).float(),
        au_names=base.au_names,
        emotions=base.emotions,
        estimate_mask=base.estimate_mask,
        config=base.config,
    )


# --- report ----------------------------------------------------------------------------------


def magnitudes(field: np.ndarray, idx: np.ndarray) -> tuple[float, float]:
    """Largest and mean landmark displacement (IOD) of a field (478, 2) over ``idx``."""
    norms = np.linalg.norm(field[idx], axis=1)
    return float(norms.max()), float(norms.mean())


def corner_agreement(
    model_disp: np.ndarray, real: np.ndarray, mirror: np.ndarray, *, one_sided: bool
) -> float | None:
    """Cosine of the lip-corner displacements (61, 291) of the model and of a real pattern,
    (478, 2) each: their mirror-symmetric parts, or for a one-sided emotion their
    antisymmetric parts (which corner rises relative to the other). None when the model
    barely moves the corners (under 0.005 IOD)."""
    sign = -1.0 if one_sided else 1.0
    corners = list(LIP_CORNERS)

    def part(field: np.ndarray) -> np.ndarray:
        return 0.5 * (field + sign * field[mirror] * np.array([-1.0, 1.0]))[corners]

    ours = part(model_disp)
    if np.linalg.norm(ours, axis=1).max() < 0.005:
        return None
    return cosine(ours, part(real))


def comparison(
    models: dict[str, ExpressionModel],
    measured: dict[str, Measured],
    *,
    mirror: np.ndarray,
) -> dict[str, dict[str, float | None]]:
    """Per emotion: cosines of each model (e.g. "v1", "v2") with the real patterns over the
    upper face, lip-corner agreement with the held pattern, magnitudes and features. Keys like
    ``within_v1``, ``held_v2``, ``corners_v2``, ``max_v1``, ``brow raise_v2``, and for the
    acted emotions ``within_spread``, ``within_directed`` (1 or 0) and the held pattern's
    features (``brow raise_held``) and one-sided activations in the last model's fields
    (``AU7R_sides``); emotions without a clip get magnitudes only."""
    some = next(iter(models.values()))
    newest = list(models.values())[-1]  # the one-sided activations are read in its fields
    idx = upper_face(some)
    rows: dict[str, dict[str, float | None]] = {}
    for emotion in some.emotions[1:]:
        row: dict[str, float | None] = {}
        for tag, model in models.items():
            d = model.emotion_displacement(emotion).double().numpy()
            row[f"max_{tag}"], row[f"mean_{tag}"] = magnitudes(d, idx)
            for name, value in feature_values(d, mirror).items():
                row[f"{name}_{tag}"] = value
            if emotion in measured:
                real = measured[emotion]
                row[f"within_{tag}"] = cosine(d[idx], real.within[idx])
                row[f"held_{tag}"] = cosine(d[idx], real.held[idx])
                row[f"corners_{tag}"] = corner_agreement(
                    d, real.held, mirror, one_sided=emotion == "contempt"
                )
        if emotion in measured:
            real = measured[emotion]
            prior = some.emotion_displacement(emotion).double().numpy()
            row["within_spread"] = magnitudes(real.within, idx)[0]
            row["within_directed"] = float(within_is_directed(real, prior, idx))
            for name, value in feature_values(real.held, mirror).items():
                row[f"{name}_held"] = value
            sided = one_sided_fit(newest, real.sides, idx, mirror)
            for name, value in zip(ONE_SIDED, sided, strict=True):
                row[f"{name}_sides"] = float(value)
        rows[emotion] = row
    return rows


FEATURE_LABELS = {
    "brow raise": "brow up",
    "inner brow raise": "inner up",
    "outer brow raise": "outer up",
    "brow lower": "brow down",
    "upper lid raise": "uplid up",
    "lower lid raise": "lowlid up",
    "cheek raise": "cheek up",
    "nose raise": "nose up",
}


def print_report(
    rows: dict[str, dict[str, float | None]],
    *,
    levels: dict[str, float],
    strengths: dict[str, float],
    au_scale: np.ndarray,
    au_names: Sequence[str],
) -> None:
    """The before/after tables."""

    def num(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    def pair(row: dict[str, float | None], key: str, fmt: str = "+.2f") -> str:
        if f"{key}_v1" not in row:
            return "-"
        return f"{num(row[f'{key}_v1'], fmt)} > {num(row[f'{key}_v2'], fmt)}"

    print("\nfacs-v1 > facs-v2 against the acted clips (mead_emotions). within, held: cosine over")
    print("the upper face with the within-clip and the held pattern; * = the within pattern's")
    print("sign is determined and the fit used it. corners: cosine of the lip-corner")
    print("displacements with the held pattern's. max, mean: displacement over the upper face,")
    print("IOD. spread: the within pattern's largest displacement, IOD.")
    head = (
        f"{'emotion':10s} {'within':>14s} {'held':>13s} {'corners':>13s} "
        f"{'max':>13s} {'mean':>13s} {'spread':>7s}"
    )
    print(head)
    print("-" * len(head))
    for emotion, row in rows.items():
        spread = num(row.get("within_spread"), ".3f") if "within_spread" in row else "-"
        star = "*" if row.get("within_directed") else " "
        print(
            f"{emotion:10s} {pair(row, 'within'):>13s}{star} {pair(row, 'held'):>13s} "
            f"{pair(row, 'corners'):>13s} {pair(row, 'max', '.3f'):>13s} "
            f"{pair(row, 'mean', '.3f'):>13s} {spread:>7s}"
        )
    print("\nFeatures: mean dy of a landmark group, both sides, IOD, + = the movement happens;")
    print("level: full-expression level from the expr_d* clips; held: the acted clip's.")
    print(f"{'emotion':10s} {'':5s}" + "".join(f"{FEATURE_LABELS[n]:>10s}" for n in FEATURES))
    print(f"{'level':10s} {'':5s}" + "".join(f"{levels[n]:>10.3f}" for n in FEATURES))
    for emotion, row in rows.items():
        for tag in ("v1", "v2", "held"):
            if f"brow raise_{tag}" not in row:
                continue
            cells = "".join(f"{num(row[f'{n}_{tag}'], '+.3f'):>10s}" for n in FEATURES)
            print(f"{emotion if tag == 'v1' else '':10s} {tag:5s}{cells}")
    print("\nOne-sided part of each acted clip's held face (the subject's right side against the")
    print("left, over the upper face), as activations of the one-sided AUs; contempt's prototype")
    print(f"takes its own, the largest brought down to {ONE_SIDED_MAX:g}. The other actors' are")
    print("their faces' own asymmetry.")
    print(f"{'emotion':10s}" + "".join(f"{n:>8s}" for n in ONE_SIDED))
    for emotion, row in rows.items():
        if f"{next(iter(ONE_SIDED))}_sides" in row:
            print(f"{emotion:10s}" + "".join(f"{row[f'{n}_sides']:>8.2f}" for n in ONE_SIDED))
    pulls = ", ".join(f"{e} x{v:g}" for e, v in strengths.items() if v != 1.0)
    print("\nRecipe pull raised to keep the EMFACS signature: " + (pulls or "none"))
    scaled = [f"{n} x{s:.2f}" for n, s in zip(au_names, au_scale, strict=True) if s > 1.0]
    print("AU fields scaled up to the full-expression levels: " + (", ".join(scaled) or "none"))


def print_prototypes(model: ExpressionModel) -> None:
    """Each emotion's non-zero activations."""
    print("\nfacs-v2 prototypes (activations at intensity 1):")
    for e, emotion in enumerate(model.emotions[1:], start=1):
        acts = model.prototypes[e].tolist()
        cells = ", ".join(
            f"{n} {a:.2f}" for n, a in zip(model.au_names, acts, strict=True) if a > 0
        )
        print(f"  {emotion:10s} {cells}")


# --- main ------------------------------------------------------------------------------------


@dataclass
class Calibration:
    """Everything the script computes: both models, the real patterns and the report rows."""

    base: ExpressionModel
    model: ExpressionModel
    measured: dict[str, Measured]
    levels: dict[str, float]
    strengths: dict[str, float]
    au_scale: np.ndarray
    rows: dict[str, dict[str, float | None]]
    clips_used: dict[str, list[str]]


def load_mirror(weights_dir: Path | None = None) -> np.ndarray:
    """(478,) the mesh's mirror map, stored in facs-v1."""
    ckpt = load_checkpoint(BASE, weights_dir=weights_dir)
    return ckpt.tensors["mirror"].numpy().astype(np.int64)


def measure_clips(
    clips_dir: Path,
    *,
    base: ExpressionModel,
    mirror: np.ndarray,
    cache_dir: Path | None = None,
    emotions: Sequence[str] = MEAD_EMOTIONS,
) -> tuple[dict[str, Measured], np.ndarray, dict[str, list[str]]]:
    """Read the calm and acted clips: real patterns per emotion, the frontalisation reference
    (478, 3) and the clips used."""
    reference, neutral, calm_used = reference_face(clips_dir, mirror, cache_dir=cache_dir)
    acted = {
        e: load_faces(clips_dir, f"mead_emotions/{e}.mp4", reference=reference, cache_dir=cache_dir)
        for e in emotions
        if (clips_dir / "mead_emotions" / f"{e}.mp4").is_file()
    }
    if not acted:
        raise RuntimeError(f"no acted clips under {clips_dir / 'mead_emotions'}")
    measured = measure_emotions(acted, base=base, mirror=mirror, neutral=neutral)
    used = {"calm": calm_used, "acted": [c.name for c in acted.values()]}
    return measured, reference, used


def run(clips_dir: Path, *, cache_dir: Path | None = None) -> Calibration:
    """Measure, calibrate and compare; prints nothing."""
    base = ExpressionModel.load(BASE)
    mirror = load_mirror()
    measured, reference, used = measure_clips(
        clips_dir, base=base, mirror=mirror, cache_dir=cache_dir
    )
    expr = [
        load_faces(clips_dir, c, reference=reference, cache_dir=cache_dir)
        for c in EXPR_CLIPS
        if (clips_dir / c).is_file()
    ]
    if len(expr) < LEVEL_TOP_CLIPS:
        raise RuntimeError(f"need at least {LEVEL_TOP_CLIPS} expr_d* clips in {clips_dir}")
    used["levels"] = [c.name for c in expr]
    levels = feature_levels(expr, mirror)
    prototypes, au_scale, strengths = calibrate(base, measured, levels=levels, mirror=mirror)
    model = build_model(base, prototypes, au_scale)
    rows = comparison({"v1": base, "v2": model}, measured, mirror=mirror)
    return Calibration(base, model, measured, levels, strengths, au_scale, rows, used)


def checkpoint_config(cal: Calibration) -> dict:
    """facs-v1's config with the new name, prototypes and the calibration record."""
    config = dict(cal.base.config)
    names = list(cal.model.au_names)
    protos = cal.model.prototypes.double().numpy()
    config["name"] = NAME
    config["prototypes"] = {
        emotion: {n: round(float(a), 4) for n, a in zip(names, protos[e], strict=True) if a > 0}
        for e, emotion in enumerate(cal.model.emotions)
    }
    config.pop("sanity_cosines", None)
    config["authoring"] = (
        "scripts/build_facs_weights.py (AU fields, EMFACS), calibrated on real faces by "
        "scripts/calibrate_expressions.py"
    )
    config["calibration"] = {
        "base": BASE,
        "script": "scripts/calibrate_expressions.py",
        "clips": cal.clips_used,
        "comparison": {
            e: {k: None if v is None else round(v, 4) for k, v in row.items()}
            for e, row in cal.rows.items()
        },
        "feature_levels": {k: round(v, 4) for k, v in cal.levels.items()},
        # inf (the fit gave way to the plain recipe) is not JSON: stored as null.
        "recipe_pull": {e: v if np.isfinite(v) else None for e, v in cal.strengths.items()},
        "au_scale": {n: round(float(s), 4) for n, s in zip(names, cal.au_scale, strict=True)},
        "params": {
            "mu": MU,
            "lambda": LAMBDA,
            "defining_floor": DEFINING_FLOOR,
            "speech_modes": SPEECH_MODES,
            "blink_fraction": BLINK_FRACTION,
            "quantile": QUANTILE,
            "level_percentile": LEVEL_PERCENTILE,
            "level_top_clips": LEVEL_TOP_CLIPS,
            "upper_face_max_y": UPPER_FACE_MAX_Y,
        },
    }
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS, help="real clips folder")
    parser.add_argument(
        "--cache", type=Path, default=None, help="folder to keep landmark arrays in (optional)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "weights" / OUT_FILE, help="checkpoint to write"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the tables only; write no checkpoint"
    )
    parser.add_argument("--no-manifest", action="store_true", help="do not touch the manifest")
    args = parser.parse_args(argv)
    if not (args.no_manifest or args.no_write):
        try:
            manifest_file_name(args.out)
        except SpfemError as exc:
            parser.error(str(exc))

    cal = run(args.clips, cache_dir=args.cache)
    print_report(
        cal.rows,
        levels=cal.levels,
        strengths=cal.strengths,
        au_scale=cal.au_scale,
        au_names=cal.model.au_names,
    )
    print_prototypes(cal.model)
    if args.no_write:
        return 0
    tensors = dict(load_checkpoint(BASE).tensors)
    tensors["au_basis"] = cal.model.au_basis.clone()
    tensors["prototypes"] = cal.model.prototypes.clone()
    sha = save_checkpoint(args.out, tensors=tensors, config=checkpoint_config(cal))
    print(f"\nwrote {args.out} ({args.out.stat().st_size} bytes, sha256 {sha})")
    if args.no_manifest:
        return 0
    update_manifest(
        name=NAME,
        path=args.out,
        description="FACS prior calibrated on real faces: facs-v1's AU fields (some rescaled), "
        "emotion prototypes fitted to acted MEAD clips, magnitudes from calm-to-strong clips",
        weights_dir=args.out.parent,
    )
    print(f"updated {args.out.parent / 'manifest.json'} entry {NAME!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
