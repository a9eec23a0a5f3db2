"""Frames spread over a clip, measured as they are tracked: what glasses, lenses and the
picture's blur are found from (`face.glasses.RimFinder`, `face.lenses.LensFinder`,
`face.sharpness.BlurFinder`)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

import numpy as np

from spfem_cli.face.mesh import FaceFrame
from spfem_cli.face.tracker import LandmarkTracker

T = TypeVar("T")


class FrameSampler(Generic[T]):
    """Measures frames spread over a clip as they are tracked (`offer`, from any thread): every
    `stride`-th frame (stride: n_frames // samples, so that from `samples` to twice as many are
    measured whatever the clip's length; all of a clip shorter than `samples`), on
    which the face is `min_iod_px` or more between the eyes (smaller faces show too little).
    Subclasses say what is measured (`measure`); `results` holds it, in order of the frames.
    A frame offered again (its segment tracked again, following another face) is measured
    again in place of what it showed before."""

    def __init__(self, *, n_frames: int, samples: int, min_iod_px: float) -> None:
        self.stride = max(1, n_frames // samples)
        self.min_iod_px = min_iod_px
        self._results: dict[int, T] = {}
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
            self._results[t] = result

    def offer_frames(self, frames: Iterable[np.ndarray]) -> None:
        """Offer a clip's frames ((H, W, 3) uint8 RGB, in order from its first) as the tracking
        pass does, without tracking the rest: each frame sampled, with the face FaceMesh finds
        on it alone. For measuring a clip outside an edit."""
        with LandmarkTracker(video_mode=False) as tracker:
            for t, frame in enumerate(frames):
                if t % self.stride == 0 and (found := tracker.detect(frame)) is not None:
                    self.offer(t, frame, found.landmarks)

    def measure(self, frame: np.ndarray, *, face: FaceFrame, landmarks: np.ndarray) -> T:
        """What one frame (H, W, 3) uint8 RGB shows, with its face frame and (478, 2) pixel
        landmarks."""
        raise NotImplementedError

    def results(self) -> list[T]:
        """The measures of the frames used so far."""
        with self._lock:
            return [self._results[t] for t in sorted(self._results)]
