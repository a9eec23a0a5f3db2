"""Author the FACS expression model (checkpoint ``facs-v1``) from real clips.

    python scripts/build_facs_weights.py [--clips DIR] [--out weights/facs_v1.safetensors]

Steps, all deterministic given the clips:

1. Mirror map: which landmark is the mirror image of which. Found by matching each frontal
   reference face to its own reflection (Hungarian assignment) over several clips of frontal
   faces, and checked: it must be an involution and map known left/right pairs onto each other.
2. Template: MediaPipe FaceMesh over ``talk_s18_1280x720.mp4`` (a calm face), every frame taken to
   the normalised face frame, per-landmark median. The head in that clip is turned about 15-20
   degrees, so the median is averaged with its own mirror image: under a near-orthographic view
   this cancels the first-order effect of yaw and gives a symmetric neutral face.
3. AU fields: each AU is a few control landmarks with a displacement (IOD units, given for the
   subject's right side and mirrored to the left, except in the one-sided units AU12R, AU14R,
   AU4R and AU7R), spread over the mesh with a Gaussian falloff of distance on the template.
   Inner lips, jaw line and irises are held at zero.
4. EMFACS prototypes: each emotion's activations at intensity 1.
5. Sanity table: cosine similarity between each emotion's displacement and the offset measured on
   the acted clips in ``mead_emotions/``, over the upper face and over the lip corners, three
   ways (see `sanity_table`). MEAD actors hold the emotion from the first frame, so no clip has a
   truly calm rest; the table is a check of directions, not a calibration.

Writes the checkpoint (tensors ``template`` (478, 2), ``au_basis`` (K, 478, 2), ``prototypes``
(E, K), ``estimate_mask`` (478,) bool, ``mirror`` (478,) int64; config with AU and emotion names,
the EMFACS recipes and the sanity cosines) and its entry in ``weights/manifest.json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spfem_cli.errors import SpfemError
from spfem_cli.face.mesh import (
    FACE_OVAL,
    JAW,
    LEFT_EYE_CORNERS,
    LEFT_EYEBROW,
    LEFT_IRIS,
    LIP_CORNERS,
    LIPS_INNER,
    LIPS_OUTER,
    N_LANDMARKS,
    RIGHT_EYE_CORNERS,
    RIGHT_EYEBROW,
    RIGHT_IRIS,
    FaceFrame,
)
from spfem_cli.generator.checkpoint import manifest_file_name, save_checkpoint, update_manifest
from spfem_cli.generator.expression import (
    ACTION_UNITS,
    CHECKPOINT_KIND,
    CHECKPOINT_VERSION,
    EMOTIONS,
    ExpressionModel,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = REPO.parent / "shared" / "clips"
TEMPLATE_CLIP = "talk_s18_1280x720.mp4"
# Frontal faces used only to find the mirror map of the mesh.
MIRROR_CLIPS = (
    "mead_emotions/disgusted.mp4",
    "mead_emotions/fear.mp4",
    "mead_emotions/contempt.mp4",
    "speech_obama_450x450.mp4",
    "talk_mead_sad_1920x1080.mp4",
)
SANITY_EMOTIONS = ("happy", "sad", "surprised", "fear", "disgusted", "contempt")
NAME = "facs-v1"

# Landmark groups on the subject's right side (negative x); the left side is their mirror image.
BROW_INNER = (107, 66, 55, 65)
BROW_MIDDLE = (105, 52)
BROW_OUTER = (70, 63, 46, 53)
UPPER_LID_MID = (160, 159, 158)
UPPER_LID_ENDS = (246, 161, 157, 173)
LOWER_LID_MID = (144, 145, 153)
LOWER_LID_ENDS = (7, 163, 154, 155)
LID_FOLD = (30, 29, 27, 28, 56)  # skin fold just above the upper lid
UNDER_EYE = (25, 110, 24, 23, 22, 26)  # ring just below the lower lid
CROWS_FEET = (33, 130, 226, 35, 143, 111, 31)
CHEEK = (117, 118, 119, 100, 101, 50, 36, 205)
NOSE_SIDE = (64, 48, 98, 240, 219, 129, 209, 131)
NOSE_BRIDGE = (6, 197, 195, 122, 196, 3, 188, 174)
NASOLABIAL = (203, 206, 165, 92, 167)
UPPER_LIP_OUTER = (0, 37, 39, 40, 185)
LOWER_LIP_OUTER = (17, 84, 181, 91, 146)
LOWER_LIP_SIDE = (146, 91)
CORNER = (61,)
BESIDE_CORNER = (57, 212, 186, 214)
CHIN_SIDE = (43, 202, 106, 204)
EYE_CONTOUR = UPPER_LID_MID + UPPER_LID_ENDS + LOWER_LID_MID + LOWER_LID_ENDS + (33, 133)


@dataclass(frozen=True)
class Pull:
    """Control landmarks moved by ``vec`` (dx, dy in IOD, subject's right side), falloff sigma."""

    idx: tuple[int, ...]
    vec: tuple[float, float]
    sigma: float


@dataclass(frozen=True)
class AUSpec:
    """One action unit: pulls, landmarks pinned in place (with their pin radius), symmetry."""

    name: str
    pulls: tuple[Pull, ...]
    pins: tuple[int, ...] = ()
    pin_sigma: float = 0.035
    bilateral: bool = True


def au_specs() -> list[AUSpec]:
    """The authored AUs. Directions follow FACS; y points down the face, so "up" is -dy."""
    brow_pins = EYE_CONTOUR
    au4 = (
        Pull(BROW_INNER, (0.045, 0.075), 0.12),
        Pull(BROW_MIDDLE, (0.025, 0.045), 0.12),
        Pull(BROW_OUTER, (0.01, 0.02), 0.12),
        Pull((9,), (0.0, 0.02), 0.08),
    )
    au7 = (
        Pull(LOWER_LID_MID, (0.0, -0.03), 0.05),
        Pull(LOWER_LID_ENDS[1:3], (0.0, -0.02), 0.05),
        Pull(UPPER_LID_MID, (0.0, 0.008), 0.05),
        Pull((33,), (0.006, 0.0), 0.04),
        Pull(UNDER_EYE[1:5], (0.0, -0.015), 0.06),
    )
    au12 = (
        Pull(CORNER, (-0.045, -0.06), 0.09),
        Pull(BESIDE_CORNER, (-0.03, -0.045), 0.1),
        Pull(CHEEK[4:] + (207, 187), (-0.01, -0.025), 0.14),
        Pull((206, 216), (-0.02, -0.035), 0.1),
    )
    # The dimple: the corner is drawn in and the skin beside it bunches toward it.
    au14 = (
        Pull(CORNER, (0.03, -0.012), 0.07),
        Pull((57, 212, 186), (0.022, -0.008), 0.1),
    )
    return [
        AUSpec(
            "AU1",
            (
                Pull(BROW_INNER, (0.01, -0.085), 0.11),
                Pull(BROW_MIDDLE, (0.0, -0.035), 0.12),
            ),
            pins=brow_pins,
        ),
        AUSpec(
            "AU2",
            (
                Pull(BROW_OUTER, (-0.01, -0.08), 0.11),
                Pull(BROW_MIDDLE, (0.0, -0.04), 0.12),
            ),
            pins=brow_pins,
        ),
        AUSpec("AU4", au4, pins=brow_pins),
        AUSpec(
            "AU5",
            (
                Pull(UPPER_LID_MID, (0.0, -0.035), 0.05),
                Pull(UPPER_LID_ENDS, (0.0, -0.022), 0.05),
                Pull(LID_FOLD, (0.0, -0.015), 0.05),
            ),
            pins=LOWER_LID_MID + LOWER_LID_ENDS + (33, 133),
            pin_sigma=0.03,
        ),
        AUSpec(
            "AU6",
            (
                Pull(CHEEK, (-0.005, -0.05), 0.14),
                Pull(UNDER_EYE, (0.0, -0.03), 0.07),
                Pull(LOWER_LID_MID + LOWER_LID_ENDS[1:3], (0.0, -0.02), 0.05),
                Pull(CROWS_FEET, (-0.012, -0.012), 0.08),
            ),
        ),
        AUSpec("AU7", au7),
        AUSpec(
            "AU9",
            (
                Pull(NOSE_SIDE, (0.008, -0.04), 0.1),
                Pull(NOSE_BRIDGE, (0.0, -0.025), 0.1),
                Pull(BROW_INNER, (0.01, 0.025), 0.1),
                Pull((1, 4), (0.0, -0.015), 0.08),
            ),
        ),
        AUSpec(
            "AU10",
            (
                Pull(UPPER_LIP_OUTER[:4], (0.0, -0.06), 0.07),
                Pull((185,), (0.0, -0.04), 0.06),
                Pull(NASOLABIAL, (0.0, -0.035), 0.1),
                Pull((64, 98, 240), (0.0, -0.015), 0.08),
            ),
            # The upper lip rises in a curve; the corners themselves stay nearly put.
            pins=CORNER,
            pin_sigma=0.04,
        ),
        AUSpec("AU12", au12),
        AUSpec("AU14", au14),
        AUSpec(
            "AU15",
            (
                Pull(CORNER, (-0.005, 0.08), 0.09),
                Pull(LOWER_LIP_SIDE, (0.0, 0.035), 0.07),
                Pull(CHIN_SIDE, (0.0, 0.03), 0.1),
            ),
        ),
        AUSpec(
            "AU20",
            (
                Pull(CORNER, (-0.1, 0.02), 0.09),
                Pull(BESIDE_CORNER[:2] + (214,), (-0.03, 0.01), 0.1),
                Pull(LOWER_LIP_SIDE, (-0.02, 0.01), 0.07),
            ),
        ),
        AUSpec(
            "AU23",
            (
                Pull(UPPER_LIP_OUTER, (0.0, 0.025), 0.045),
                Pull(LOWER_LIP_OUTER, (0.0, -0.025), 0.045),
                Pull(CORNER, (0.012, 0.0), 0.04),
                # The tightened ring of muscle drags the skin next to the lips toward them.
                Pull((164, 167, 165), (0.0, 0.012), 0.07),
                Pull((18, 83, 182), (0.0, -0.012), 0.07),
            ),
        ),
        AUSpec("AU12R", au12, bilateral=False),
        AUSpec("AU14R", au14, bilateral=False),
        # Contempt's sneer on the smirk's side (the acted contempt clip squints and lowers the
        # brow on that side alone; scripts/calibrate_expressions.py measures how much).
        AUSpec("AU4R", au4, pins=brow_pins, bilateral=False),
        AUSpec("AU7R", au7, bilateral=False),
    ]


def emfacs_prototypes() -> dict[str, dict[str, float]]:
    """EMFACS prototypes: each emotion's AU activations at intensity 1.

    AU4 is weaker than AU1 in sad and fear so that the inner brows still rise (1+4 together is
    the oblique "worried" brow, not a frown). AU26 (jaw drop) is left out of surprise on purpose:
    the jaw follows the speech.
    """
    return {
        "neutral": {},
        "angry": {"AU4": 1.0, "AU5": 0.6, "AU7": 0.8, "AU23": 1.0},
        "contempt": {"AU12R": 0.7, "AU14R": 1.0},
        "disgusted": {"AU9": 1.0, "AU10": 1.0, "AU15": 0.8},
        "fear": {"AU1": 1.0, "AU2": 0.6, "AU4": 0.5, "AU5": 1.0, "AU7": 0.5, "AU20": 1.0},
        "happy": {"AU6": 0.8, "AU12": 1.0},
        "sad": {"AU1": 1.0, "AU4": 0.5, "AU15": 1.0},
        "surprised": {"AU1": 1.0, "AU2": 1.0, "AU5": 1.0},
    }


def read_landmarks(path: Path) -> np.ndarray:
    """MediaPipe landmarks of every frame: (T, 478, 2) pixels, NaN where no face was found."""
    import imageio.v3 as iio
    import mediapipe as mp

    frames: list[np.ndarray] = []
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=False, max_num_faces=1, refine_landmarks=True
    ) as mesh:
        for frame in iio.imiter(path):
            rgb = np.ascontiguousarray(frame[..., :3])
            height, width = rgb.shape[:2]
            result = mesh.process(rgb)
            if not result.multi_face_landmarks:
                frames.append(np.full((N_LANDMARKS, 2), np.nan))
                continue
            lms = result.multi_face_landmarks[0].landmark
            frames.append(np.array([[p.x * width, p.y * height] for p in lms]))
    return np.stack(frames)


def faces_of_clip(path: Path, cache: dict[str, np.ndarray]) -> np.ndarray:
    """Normalised faces (T, 478, 2) of a clip, computed once per run and kept in ``cache``."""
    key = str(path)
    if key not in cache:
        cache[key] = normalise(read_landmarks(path))
    return cache[key]


def normalise(landmarks: np.ndarray) -> np.ndarray:
    """(T, 478, 2) pixels -> (T', 478, 2) normalised face frame, frames without a face dropped."""
    keep = ~np.isnan(landmarks).any(axis=(1, 2))
    return np.stack([FaceFrame.from_landmarks(lm).to_face(lm) for lm in landmarks[keep]])


def mirror_map(faces: Iterable[np.ndarray]) -> np.ndarray:
    """(478,) index of each landmark's mirror image, from frontal faces (478, 2) in the frame."""
    from scipy.optimize import linear_sum_assignment

    cost = np.zeros((N_LANDMARKS, N_LANDMARKS))
    for face in faces:
        reflected = face * np.array([-1.0, 1.0])
        cost += np.linalg.norm(face[:, None, :] - reflected[None, :, :], axis=-1)
    _, mirror = linear_sum_assignment(cost)
    if not np.array_equal(mirror[mirror], np.arange(N_LANDMARKS)):
        raise RuntimeError("mirror map is not an involution")
    pairs = list(zip(RIGHT_EYEBROW, LEFT_EYEBROW, strict=True))
    pairs += [LIP_CORNERS, (RIGHT_EYE_CORNERS[0], LEFT_EYE_CORNERS[0])]
    pairs += [(RIGHT_EYE_CORNERS[1], LEFT_EYE_CORNERS[1])]
    pairs += list(zip(RIGHT_IRIS, LEFT_IRIS, strict=True))[:1]
    for right, left in pairs:
        if mirror[right] != left:
            raise RuntimeError(f"mirror map sends {right} to {mirror[right]}, expected {left}")
    return mirror


def symmetrise(face: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Average of a face (478, 2) and its mirror image: exactly left-right symmetric."""
    return 0.5 * (face + face[mirror] * np.array([-1.0, 1.0]))


def au_field(spec: AUSpec, *, template: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Displacement field (478, 2) in IOD units of one AU at activation 1.

    Each control point spreads its vector with a Gaussian of distance on the template. Where
    control points crowd together their weights are normalised (divided by their sum once it
    exceeds 1), so a cluster moves by its vector rather than by a multiple of it.
    """
    pulls = list(spec.pulls)
    if spec.bilateral:
        for pull in spec.pulls:
            mirrored = tuple(int(mirror[i]) for i in pull.idx)
            pulls.append(Pull(mirrored, (-pull.vec[0], pull.vec[1]), pull.sigma))
    num = np.zeros((N_LANDMARKS, 2))
    den = np.zeros(N_LANDMARKS)
    for pull in pulls:
        for i in pull.idx:
            dist2 = ((template - template[i]) ** 2).sum(axis=1)
            weight = np.exp(-dist2 / (2.0 * pull.sigma**2))
            num += weight[:, None] * np.array(pull.vec)
            den += weight
    field = num / np.maximum(den, 1.0)[:, None]
    pins = list(spec.pins)
    if spec.bilateral:
        pins += [int(mirror[i]) for i in spec.pins]
    for i in pins:
        dist2 = ((template - template[i]) ** 2).sum(axis=1)
        field *= (1.0 - np.exp(-dist2 / (2.0 * spec.pin_sigma**2)))[:, None]
    # Speech owns the inner lips and the jaw; gaze owns the irises; the face outline barely moves.
    field[list(FACE_OVAL)] *= 0.2
    field[list(LIPS_INNER) + list(JAW) + list(RIGHT_IRIS) + list(LEFT_IRIS)] = 0.0
    # Gaussian tails far from the controls are invisible, and as float32 they would include
    # subnormal numbers, which make every product with the basis slow.
    field[np.abs(field) < 1e-6] = 0.0
    return field


def point_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: (N,) bool for points (N, 2) inside the closed polygon (M, 2)."""
    inside = np.zeros(len(points), dtype=bool)
    x, y = points[:, 0], points[:, 1]
    for (x0, y0), (x1, y1) in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < x_cross)
    return inside


def estimate_mask(template: np.ndarray) -> np.ndarray:
    """(478,) bool: landmarks that may inform the AU estimate.

    Leaves out the whole lip region (both lip contours and every landmark between them), the jaw
    line and the face outline (both follow speech and head turns), and the irises (gaze).
    """
    mouth = point_in_polygon(template, template[list(LIPS_OUTER)])
    mask = ~mouth
    mask[list(LIPS_OUTER) + list(LIPS_INNER) + list(JAW) + list(FACE_OVAL)] = False
    mask[list(RIGHT_IRIS) + list(LEFT_IRIS)] = False
    return mask


def cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cosine similarity of two flattened arrays; None when either is zero."""
    a, b = a.ravel(), b.ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom > 1e-12 else None


def fmt(value: float | None, width: int) -> str:
    """A signed cosine, or n/a."""
    return f"{value:>+{width}.2f}" if value is not None else f"{'n/a':>{width}s}"


def region_indices(template: np.ndarray) -> dict[str, np.ndarray]:
    """Landmark sets compared in the sanity table."""
    upper = template[:, 1] < 0.8  # brows, eyes, nose down to its base, upper cheeks
    upper[list(FACE_OVAL) + list(RIGHT_IRIS) + list(LEFT_IRIS)] = False
    return {"upper": np.flatnonzero(upper), "corners": np.array(LIP_CORNERS)}


def antisymmetric(field: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """The part (478, 2) of a displacement field that its mirror image cancels."""
    return 0.5 * (field - field[mirror] * np.array([-1.0, 1.0]))


def asymmetry(
    field: np.ndarray, *, template: np.ndarray, mirror: np.ndarray, idx: np.ndarray
) -> np.ndarray:
    """Left-right antisymmetric dy (len(idx),) of a field, less any slight roll of the face.

    dy only, because a turned head moves every landmark sideways; and the best-fit rotation
    (dy = angle * x) is removed, because a squinting eye shifts the eye line that defines the
    frame and tilts the whole face by a degree or two.
    """
    dy = antisymmetric(field, mirror)[idx, 1]
    x = template[idx, 0]
    return dy - x * float(dy @ x) / float(x @ x)


def within_clip_offset(faces: np.ndarray, *, upper: np.ndarray, rest_frames: int) -> np.ndarray:
    """Offset (478, 2): median of the most expressive third of frames minus the rest face.

    rest = median of the first ``rest_frames`` frames. Frames are ranked by their distance from
    rest over the upper face only, so that speech does not pick them.
    """
    rest = np.median(faces[:rest_frames], axis=0)
    dist = np.linalg.norm((faces[:, upper] - rest[upper]).reshape(len(faces), -1), axis=1)
    top = np.argsort(dist)[-max(1, len(faces) // 3) :]
    return np.median(faces[top], axis=0) - rest


def sanity_table(
    model: ExpressionModel,
    *,
    clips_dir: Path,
    template: np.ndarray,
    mirror: np.ndarray,
    faces_of: dict[str, np.ndarray],
    rest_frames: int = 8,
) -> dict[str, dict[str, float | None]]:
    """Print and return cosines between model displacements and offsets measured on real clips.

    Three measurements of each acted clip, none of them clean, so they are read together:
    ``within``: expressive frames minus the clip's first frames (MEAD actors hold the emotion
    from the first frame, so this sees mostly changes of intensity); ``centred``: the clip's
    median face minus the mean of the six clips' median faces, against the model's emotion minus
    the mean of its six emotions (identity differences between actors remain); ``template``:
    the clip's median minus the calm template (another person: identity dominates).
    """
    regions = region_indices(template)
    emotions = [e for e in SANITY_EMOTIONS if (clips_dir / "mead_emotions" / f"{e}.mp4").is_file()]
    if not emotions:
        print(f"no acted clips under {clips_dir / 'mead_emotions'}; sanity table skipped")
        return {}
    faces = {e: faces_of_clip(clips_dir / "mead_emotions" / f"{e}.mp4", faces_of) for e in emotions}
    medians = {e: np.median(f, axis=0) for e, f in faces.items()}
    mean_face = np.mean(list(medians.values()), axis=0)
    model_disp = {e: model.emotion_displacement(e).double().numpy() for e in emotions}
    mean_disp = np.mean(list(model_disp.values()), axis=0)
    offsets = {
        "within": {
            e: within_clip_offset(f, upper=regions["upper"], rest_frames=rest_frames)
            for e, f in faces.items()
        },
        "centred": {e: medians[e] - mean_face for e in emotions},
        "template": {e: medians[e] - template for e in emotions},
    }
    models = {
        "within": model_disp,
        "centred": {e: model_disp[e] - mean_disp for e in emotions},
        "template": model_disp,
    }
    both = np.concatenate([regions["upper"], regions["corners"]])
    print("cosine(model emotion displacement, measured offset); asym = the left-right")
    print("antisymmetric parts of dy over upper face + corners (meaningful for contempt only)")
    line = f"{'':10s}"
    for label in offsets:
        line += f" | {label:^26s}"
    print(line)
    print(f"{'emotion':10s}" + f" | {'upper':>7s} {'corners':>8s} {'asym':>8s}" * len(offsets))
    rows: dict[str, dict[str, float | None]] = {}
    for e in emotions:
        row: dict[str, float | None] = {}
        line = f"{e:10s}"
        for label in offsets:
            off, mod = offsets[label][e], models[label][e]
            up = cosine(mod[regions["upper"]], off[regions["upper"]])
            co = cosine(mod[regions["corners"]], off[regions["corners"]])
            asym = cosine(
                asymmetry(mod, template=template, mirror=mirror, idx=both),
                asymmetry(off, template=template, mirror=mirror, idx=both),
            )
            row |= {f"{label}_upper": up, f"{label}_corners": co, f"{label}_asym": asym}
            line += f" | {fmt(up, 7)} {fmt(co, 8)} {fmt(asym, 8)}"
        rows[e] = row
        print(line)
    feats = {
        "inner brow": BROW_INNER,
        "outer brow": BROW_OUTER,
        "upper lid": UPPER_LID_MID,
        "lower lid": LOWER_LID_MID,
        "lip corner": CORNER,
    }
    print("\nmean dy (IOD, + = down) of both sides; for contempt, right side minus left side")
    cols = ("model", "within", "model-mean", "centred", "template")
    print(f"{'emotion':10s} {'group':11s}" + "".join(f"{c:>11s}" for c in cols))
    for e in emotions:
        fields = (
            model_disp[e],
            offsets["within"][e],
            models["centred"][e],
            offsets["centred"][e],
            offsets["template"][e],
        )
        for feat, idx in feats.items():
            right, left = list(idx), [int(mirror[i]) for i in idx]
            if e == "contempt":
                values = [f[right, 1].mean() - f[left, 1].mean() for f in fields]
            else:
                values = [f[right + left, 1].mean() for f in fields]
            print(f"{e:10s} {feat:11s}" + "".join(f"{v:>+11.3f}" for v in values))
        if e != "contempt":
            # Outward is -x on the subject's right side and +x on the left.
            values = [0.5 * (f[291, 0] - f[61, 0]) for f in fields]
            print(f"{e:10s} {'corner out':11s}" + "".join(f"{v:>+11.3f}" for v in values))
    return rows


def build(
    *, clips_dir: Path, faces_of: dict[str, np.ndarray]
) -> tuple[dict[str, torch.Tensor], dict, np.ndarray]:
    """Author the model: tensors, config and the mirror map (478,)."""
    ref_faces = [np.median(faces_of_clip(clips_dir / c, faces_of), axis=0) for c in MIRROR_CLIPS]
    mirror = mirror_map(ref_faces)
    calm = faces_of_clip(clips_dir / TEMPLATE_CLIP, faces_of)
    template = symmetrise(np.median(calm, axis=0), mirror)
    specs = au_specs()
    au_names = [s.name for s in specs]
    if set(au_names) != set(ACTION_UNITS):
        raise RuntimeError("AU specs and ACTION_UNITS disagree")
    basis = np.stack([au_field(s, template=template, mirror=mirror) for s in specs])
    recipes = emfacs_prototypes()
    prototypes = np.zeros((len(EMOTIONS), len(au_names)))
    for e, emotion in enumerate(EMOTIONS):
        for au, value in recipes[emotion].items():
            prototypes[e, au_names.index(au)] = value
    tensors = {
        "template": torch.from_numpy(template).float(),
        "au_basis": torch.from_numpy(basis).float(),
        "prototypes": torch.from_numpy(prototypes).float(),
        "estimate_mask": torch.from_numpy(estimate_mask(template)),
        "mirror": torch.from_numpy(mirror.astype(np.int64)),
    }
    config = {
        "kind": CHECKPOINT_KIND,
        "version": CHECKPOINT_VERSION,
        "name": NAME,
        "frame": "spfem_cli.face.mesh.FaceFrame (IOD units, y down)",
        "au_names": au_names,
        "au_descriptions": [ACTION_UNITS[n] for n in au_names],
        "emotions": list(EMOTIONS),
        "prototypes": recipes,
        "template_source": {"clip": TEMPLATE_CLIP, "frames": len(calm), "symmetrised": True},
        "authoring": "scripts/build_facs_weights.py: Gaussian-falloff AU fields, EMFACS",
    }
    return tensors, config, mirror


def summarise(model: ExpressionModel) -> None:
    """Print each AU's largest displacement and its displacement at a few landmarks."""
    norms = model.au_basis.norm(dim=-1)
    probes = {"corner": 61, "in brow": 107, "out brow": 70, "up lid": 159, "low lid": 145}
    print("AU displacement (dx, dy) in IOD at activation 1, subject's right side:")
    print(f"{'AU':6s} {'peak':>22s}" + "".join(f"{k:>16s}" for k in probes))
    for k, name in enumerate(model.au_names):
        i = int(norms[k].argmax())
        peak = f"{float(norms[k, i]):.3f} at {i:3d}"
        cells = "".join(
            "{:>+8.3f}{:>+8.3f}".format(*model.au_basis[k, j].tolist()) for j in probes.values()
        )
        print(f"{name:6s} {peak:>22s}{cells}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS, help="real clips folder")
    parser.add_argument(
        "--out", type=Path, default=REPO / "weights" / "facs_v1.safetensors", help="checkpoint"
    )
    parser.add_argument("--no-manifest", action="store_true", help="do not touch the manifest")
    args = parser.parse_args(argv)
    if not args.no_manifest:
        try:
            manifest_file_name(args.out)
        except SpfemError as exc:
            parser.error(str(exc))

    faces_of: dict[str, np.ndarray] = {}
    tensors, config, mirror = build(clips_dir=args.clips, faces_of=faces_of)
    model = ExpressionModel(
        template=tensors["template"],
        au_basis=tensors["au_basis"],
        prototypes=tensors["prototypes"],
        au_names=config["au_names"],
        emotions=config["emotions"],
        estimate_mask=tensors["estimate_mask"],
    )
    summarise(model)
    rows = sanity_table(
        model,
        clips_dir=args.clips,
        template=tensors["template"].double().numpy(),
        mirror=mirror,
        faces_of=faces_of,
    )
    config["sanity_cosines"] = {
        e: {k: None if v is None else round(v, 3) for k, v in r.items()} for e, r in rows.items()
    }
    sha = save_checkpoint(args.out, tensors=tensors, config=config)
    print(f"\nwrote {args.out} ({args.out.stat().st_size} bytes, sha256 {sha})")
    if not args.no_manifest:
        update_manifest(
            name=NAME,
            path=args.out,
            description=f"FACS prior: {len(config['au_names'])} authored AU displacement fields "
            "on the MediaPipe mesh, "
            "EMFACS emotion prototypes, neutral template from a calm real face",
            weights_dir=args.out.parent,
        )
        print(f"updated {args.out.parent / 'manifest.json'} entry {NAME!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
