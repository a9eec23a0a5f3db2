"""Head pose removed from landmarks: every frame seen from the clip's own average pose.

Expression estimates compare a face with itself over time; when the head turns or nods, the
2D landmarks move as if the expression changed (brows "rise" when the head tilts back). With
MediaPipe's relative depth, each frame's 3D landmarks are rotated onto the clip's reference
shape by a similarity fit on points that expressions hardly move, and then read in 2D.
"""

from __future__ import annotations

import numpy as np

from spfem_cli.face.mesh import FaceFrame

# Points that no expression moves much: eye corners, the nose, the sides of the face. Not the
# forehead: raising the brows drags its skin (and MediaPipe's forehead points) up with them.
STABLE = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 234, 454, 127, 356, 93, 323)
# Pairs of points, (subject's right, left), far apart across the face and at the same depth
# in a frontal face: the outer eye corners and the cheeks beside them.
_ACROSS = ((33, 263), (234, 454))


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Rotation R (3, 3), scale s and shift t (3,) minimising |s R src + t - dst|^2 (Umeyama).

    src, dst: (N, 3) corresponding points.
    """
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, 1.0, d])
    rot = u @ fix @ vt
    scale = float((sig * np.diag(fix)).sum() / max((a * a).sum(), 1e-12))
    return rot, scale, mu_d - scale * rot @ mu_s


def align(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """points (478, 3) moved onto `reference` (478, 3) by the similarity fit on STABLE."""
    rot, scale, shift = similarity_fit(points[list(STABLE)], reference[list(STABLE)])
    return scale * points @ rot.T + shift


def frontal_face_frame(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """One frame's 3D landmarks (478, 3), pixels, seen in the reference pose: (478, 2) in the
    normalised face frame (IOD units)."""
    flat = align(points, reference)[:, :2]
    return FaceFrame.from_landmarks(flat).to_face(flat)


def reference_shape(samples: np.ndarray) -> np.ndarray:
    """The clip's reference 3D shape (478, 3) from sample frames (S, 478, 3): every sample
    aligned to the first, then the per-point median."""
    first = samples[0].astype(np.float64)
    aligned = np.stack([align(p.astype(np.float64), first) for p in samples])
    return np.median(aligned, axis=0)


def head_turn(points: np.ndarray) -> np.ndarray:
    """How far the head is turned, degrees: positive when the subject's right side is nearer
    the camera (the head turned to their left), 0 for a frontal face.

    points: (..., 478, 3) pixels and MediaPipe's relative depth (larger is farther, in the
    pixels' scale). Returns (...) the angle of the line across the face (eye corners and
    cheeks, `_ACROSS`) out of the image plane.
    """
    right = points[..., [r for r, _ in _ACROSS], :].mean(axis=-2)
    left = points[..., [left for _, left in _ACROSS], :].mean(axis=-2)
    d = left - right
    return np.degrees(np.arctan2(d[..., 2], np.hypot(d[..., 0], d[..., 1])))
