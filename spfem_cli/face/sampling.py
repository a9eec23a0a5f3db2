"""Frames spread over a clip, measured as they are tracked: what glasses and lenses are
found from (`face.glasses.RimFinder`, `face.lenses.LensFinder`)."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

import numpy as np

from spfem_cli.face.mesh import FaceFrame

T = TypeVar("T")


class FrameSampler(Generic[T]):
    """Measures frames spread over a clip as they are tracked (`offer`, from any thread): every
    `stride`-th frame, so that at most `samples` are measured whatever the clip's length, on
    which the face is `min_iod_px` or more between the eyes (smaller faces show too little).
    Subclasses say what is measured (`measure`); `results` holds it, in order of arrival."""

    def __init__(self, *, n_frames: int, samples: int, min_iod_px: float) -> None:
        self.stride = max(1, n_frames // samples)
        self.min_iod_px = min_iod_px
        self._results: list[T] = []
        self._lock = threading.Lock()

    def offer(self, t: int, frame: np.ndarray, landmarks: np.ndarray) -> None:
        """Frame t (H, W, 3) uint8 RGB with its landmarks (478, 2) in that frame's pixels."""
        if t % self.stride:
            return
        face = FaceFrame.from_landmarks(landmarks)
        if face.iod < self.min_iod_px:
            return
        result = self.measure(frame, face=face, landmarks=landmarks)
        with self._lock:
            self._results.append(result)

    def measure(self, frame: np.ndarray, *, face: FaceFrame, landmarks: np.ndarray) -> T:
        """What one frame (H, W, 3) uint8 RGB shows, with its face frame and (478, 2) pixel
        landmarks."""
        raise NotImplementedError

    def results(self) -> list[T]:
        """The measures of the frames used so far."""
        with self._lock:
            return list(self._results)
