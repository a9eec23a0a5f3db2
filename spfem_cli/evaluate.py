"""Measurements of an edit against its input: speech kept, no jitter, background untouched.

Used by the tests and by `scripts/measure_edit.py`; all distances are in units of the input's
inter-ocular distance (IOD) unless a name says pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spfem_cli.face import mesh
from spfem_cli.face.mesh import N_LANDMARKS, FaceFrame
from spfem_cli.face.tracker import LandmarkTracker
from spfem_cli.media import FrameReader, probe

# Inner-lip points facing each other across the mouth: upper (82, 13, 312), lower (87, 14, 317).
OPENING_PAIRS = ((82, 13, 312), (87, 14, 317))


def video_landmarks(path: str | Path, *, max_frames: int | None = None) -> np.ndarray:
    """Landmarks of the largest face in every frame: (T, 478, 2) pixels, NaN without a face."""
    info = probe(path)
    rows: list[np.ndarray] = []
    with FrameReader(info) as reader, LandmarkTracker() as tracker:
        for t, frame in enumerate(reader):
            if max_frames is not None and t >= max_frames:
                break
            det = tracker.detect(frame)
            rows.append(
                det.landmarks if det is not None else np.full((N_LANDMARKS, 2), np.nan, np.float32)
            )
    return np.stack(rows) if rows else np.zeros((0, N_LANDMARKS, 2), np.float32)


def _iod(lm: np.ndarray) -> np.ndarray:
    right, left = mesh.eye_centres(lm)
    return np.linalg.norm(left - right, axis=-1)


def mouth_opening(lm: np.ndarray, *, iod: np.ndarray | None = None) -> np.ndarray:
    """(T,) gap between the inner lips, in IOD units (of `lm`'s own eyes, or the given (T,)
    inter-ocular distances in pixels): the mean of three upper/lower point pairs across the
    middle of the mouth, which is steadier than the midpoints alone."""
    upper, lower = list(OPENING_PAIRS[0]), list(OPENING_PAIRS[1])
    gap = np.linalg.norm(lm[:, upper] - lm[:, lower], axis=-1).mean(axis=-1)
    return gap / (_iod(lm) if iod is None else iod)


def jitter(lm: np.ndarray, *, indices: Iterable[int] | None = None) -> float:
    """Mean frame-to-frame landmark motion (IOD units per frame) over consecutive frames that
    both have a face; `indices` restricts it to some landmarks."""
    pts = lm if indices is None else lm[:, list(indices)]
    step = np.linalg.norm(np.diff(pts, axis=0), axis=-1).mean(axis=-1) / _iod(lm[1:])
    return float(np.nanmean(step))


@dataclass(frozen=True)
class SpeechReport:
    """inner_lip_error: mean distance of the output's inner-lip landmarks from the input's;
    opening_corr: Pearson correlation of the mouth opening over time; jitter_in/out: mean
    frame-to-frame motion of all landmarks; frames: frames with a face in both videos."""

    inner_lip_error: float
    opening_corr: float
    jitter_in: float
    jitter_out: float
    frames: int


def compare_speech(input_lm: np.ndarray, output_lm: np.ndarray) -> SpeechReport:
    """input_lm, output_lm: (T, 478, 2) pixels from `video_landmarks`."""
    n = min(len(input_lm), len(output_lm))
    a, b = input_lm[:n].astype(np.float64), output_lm[:n].astype(np.float64)
    both = ~(np.isnan(a).any(axis=(1, 2)) | np.isnan(b).any(axis=(1, 2)))
    inner = list(mesh.LIPS_INNER)
    err = np.linalg.norm(a[both][:, inner] - b[both][:, inner], axis=-1).mean(axis=1)
    err = err / _iod(a[both])
    # Both openings are scaled by the input's eyes: an edit that widens the eyes must not
    # register as a change of the mouth.
    iod_a = _iod(a[both])
    oa, ob = mouth_opening(a[both], iod=iod_a), mouth_opening(b[both], iod=iod_a)
    corr = float(np.corrcoef(oa, ob)[0, 1]) if both.sum() > 2 and oa.std() > 0 else float("nan")
    a_j, b_j = a.copy(), b.copy()
    a_j[~both] = np.nan
    b_j[~both] = np.nan
    return SpeechReport(
        inner_lip_error=float(err.mean()) if err.size else float("nan"),
        opening_corr=corr,
        jitter_in=jitter(a_j),
        jitter_out=jitter(b_j),
        frames=int(both.sum()),
    )


def background_difference(
    input_path: str | Path, output_path: str | Path, *, input_lm: np.ndarray, margin: float = 0.6
) -> float:
    """Mean absolute difference (0-255 levels) between input and output pixels further than
    `margin` face sizes from the face's landmarks (the whole frame where there is no face)."""
    total, count = 0.0, 0
    with FrameReader(probe(input_path)) as ra, FrameReader(probe(output_path)) as rb:
        for t, (fa, fb) in enumerate(zip(ra, rb, strict=False)):
            keep = np.ones(fa.shape[:2], dtype=bool)
            if t < len(input_lm) and not np.isnan(input_lm[t]).any():
                lo, hi = input_lm[t].min(axis=0), input_lm[t].max(axis=0)
                pad = (hi - lo) * margin
                x0, y0 = np.maximum(np.floor(lo - pad).astype(int), 0)
                x1, y1 = np.ceil(hi + pad).astype(int)
                keep[y0:y1, x0:x1] = False
            diff = np.abs(fa.astype(np.int16) - fb.astype(np.int16))[keep]
            total += float(diff.sum())
            count += diff.size
    return total / max(count, 1)


def face_frame_landmarks(lm: np.ndarray) -> np.ndarray:
    """(T, 478, 2) pixels -> each frame in its own face frame (IOD units); NaN rows stay NaN."""
    out = np.full(lm.shape, np.nan)
    for t in range(len(lm)):
        if not np.isnan(lm[t]).any():
            out[t] = FaceFrame.from_landmarks(lm[t]).to_face(lm[t].astype(np.float64))
    return out
