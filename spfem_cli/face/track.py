"""A face track over a whole video: landmarks per frame, smoothed in time, stored on disk.

Memory stays flat however long the video is: per-frame landmarks live in memory-mapped files
in a working folder, and every pass over them goes in chunks.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

from spfem_cli.face import mesh
from spfem_cli.face.mesh import N_LANDMARKS, FaceFrame
from spfem_cli.face.pose import frontal_face_frame, head_turn, reference_shape
from spfem_cli.face.shots import CUT, cut_score, shot_ranges, thumbnail
from spfem_cli.face.tracker import LARGEST_FACE, FacePick, LandmarkTracker, another_face

CHUNK = 1024
REFERENCE_SAMPLES = 300
# Lip points keep their raw positions: speech moves them faster than any smoothing could follow.
_MOUTH = np.array(sorted(set(mesh.LIPS_INNER) | set(mesh.LIPS_OUTER)))


def run_segments(jobs: Sequence[Callable[[threading.Event], int]]) -> list[int]:
    """Run each job (a pass over one segment of a video) in a thread of its own, and return
    their results in order. Each job is given an Event it checks before each frame and stops
    at once when it is set: it is set when the caller is interrupted (Ctrl-C) or a job fails,
    where the other thread would otherwise go on to the end of its segment (on a long video,
    minutes) before the error or the interruption could leave."""
    stop = threading.Event()
    if len(jobs) == 1:
        return [jobs[0](stop)]
    pool = ThreadPoolExecutor(max_workers=len(jobs))
    try:
        futures = [pool.submit(job, stop) for job in jobs]
        return [f.result() for f in futures]
    finally:
        stop.set()
        pool.shutdown(wait=True)


@dataclass
class FaceTrack:
    """Per-frame face geometry of one video.

    valid: (T,) bool, a face was found; n_faces: (T,) int16 faces seen;
    params: (T, 4) float64 smoothed face frame (origin x, y in pixels, angle in radians,
    IOD in pixels; see `mesh.FaceFrame`); norm: (T, 478, 2) float32 memmap of the smoothed
    landmarks in the normalised face frame (IOD units); frontal: (T, 478, 2) float32 memmap of
    the same with the head's pose taken out (every frame seen in the clip's reference pose,
    see `face.pose`), for estimating expressions; reference: (478, 3) float64, that pose's 3D
    shape (pixels and MediaPipe's relative depth), None when no frame has a face; turn: the
    head's median turn over the clip, degrees, positive when the subject's right side is
    nearer the camera (`face.pose.head_turn`; 0 when no frame has a face); cuts: (T,) bool,
    True where a new shot starts (`face.shots`; None: one shot). Rows of frames without a
    face are 0. raw: (T, 478, 2) float32 memmap of the landmarks as FaceMesh found them, the
    video's pixels, unsmoothed, NaN rows without a face (None: not kept); the speech check
    compares an edit's lips with them (`speech_check.check_speech`'s input_lm).
    """

    valid: np.ndarray
    n_faces: np.ndarray
    params: np.ndarray
    norm: np.ndarray
    frontal: np.ndarray
    reference: np.ndarray | None = None
    turn: float = 0.0
    cuts: np.ndarray | None = None
    raw: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.valid.shape[0])

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())

    def frame(self, t: int) -> FaceFrame:
        return FaceFrame.from_params(self.params[t])

    def landmarks_px(self, t: int) -> np.ndarray:
        """(478, 2) smoothed landmarks of frame t in image pixels."""
        return self.frame(t).to_image(self.norm[t].astype(np.float64))

    def shots(self) -> list[tuple[int, int]]:
        """The video's shots, [start, end) frame ranges in order (`face.shots.shot_ranges`)."""
        if self.cuts is None:
            return [(0, self.n_frames)] if self.n_frames else []
        return shot_ranges(self.cuts)

    def part(self, start: int, end: int) -> FaceTrack:
        """Frames [start, end) as a track of their own (views, not copies), one shot."""
        return FaceTrack(
            valid=self.valid[start:end],
            n_faces=self.n_faces[start:end],
            params=self.params[start:end],
            norm=self.norm[start:end],
            frontal=self.frontal[start:end],
            reference=self.reference,
            turn=self.turn,
            raw=None if self.raw is None else self.raw[start:end],
        )

    def median_frontal(self, *, max_samples: int = 3000) -> np.ndarray:
        """Per-landmark median of the pose-free face over (up to max_samples) valid frames.

        Returns (478, 2) float64 in the normalised face frame.
        """
        idx = _samples(self.valid, max_samples)
        return np.median(np.asarray(self.frontal[idx], dtype=np.float64), axis=0)


def _samples(valid: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to `count` valid frames spread evenly over the clip."""
    idx = np.flatnonzero(valid)
    if idx.size > count:
        idx = idx[np.linspace(0, idx.size - 1, count).astype(int)]
    return idx


def _memmap(path: Path, n_frames: int) -> np.memmap:
    return np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(max(n_frames, 1), N_LANDMARKS, 2)
    )


def smooth_valid(x: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 that ignores invalid rows (normalised convolution).

    x: (T, ...) values; valid: (T,) bool; sigma in frames. Invalid rows come back as 0.
    """
    if sigma <= 0:
        return np.where(valid.reshape((-1,) + (1,) * (x.ndim - 1)), x, 0)
    w = valid.astype(np.float64)
    shape = (-1,) + (1,) * (x.ndim - 1)
    num = gaussian_filter1d(x * w.reshape(shape), sigma, axis=0, mode="nearest")
    den = gaussian_filter1d(w, sigma, mode="nearest").reshape(shape)
    out = np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0)
    return np.where(valid.reshape(shape), out, 0.0)


def median_valid(x: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """Running median along axis 0 over `size` consecutive valid rows, which drops what
    lasts under half of it (a blink) whatever its depth; x: (T,) values, valid: (T,) bool.
    Invalid rows come back as 0."""
    out = np.zeros(len(x))
    if valid.any():
        out[valid] = median_filter(np.asarray(x, np.float64)[valid], size=size, mode="nearest")
    return out


def smooth_shots(
    x: np.ndarray, valid: np.ndarray, shots: list[tuple[int, int]], sigma: float
) -> np.ndarray:
    """`smooth_valid` within each shot [start, end) of x's rows, so that no frame takes
    anything from the other side of a cut."""
    out = np.zeros(x.shape, dtype=np.float64)
    for a, b in shots:
        out[a:b] = smooth_valid(x[a:b], valid[a:b], sigma)
    return out


def _unwrap_angles(params: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = params.copy()
    if valid.any():
        out[valid, 2] = np.unwrap(params[valid, 2])
    return out


def chunks(n: int, size: int = CHUNK) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def mend_segments(
    firsts: Sequence[int],
    *,
    landmarks: np.ndarray,
    cuts: np.ndarray,
    count: int,
    again: Callable[[int, int, np.ndarray], None],
) -> list[int]:
    """Track again, in order, each segment (by its first frame, `firsts`) whose tracker took
    up another face than the one the segment before it ended on, within one shot:
    again(k, first, follow) tracks segment k into `landmarks` (T, 478, 2) pixels, NaN without
    a face, following the face `follow` (478, 2) pixels found on the frame before it. cuts:
    (T,) bool, a new shot starts there (where a tracker takes up a face afresh anyway); count:
    the frames tracked. Returns the segments tracked again."""
    mended = []
    for k, first in enumerate(firsts):
        if k == 0 or not 0 < first < count or cuts[first]:
            continue
        before, after = landmarks[first - 1], landmarks[first]
        if np.isnan(before).any() or np.isnan(after).any():
            continue
        if another_face(np.asarray(before), np.asarray(after)):
            again(k, first, np.array(before, dtype=np.float32))
            mended.append(k)
    return mended


def track_frames(
    sources: Sequence[tuple[int, Iterable[np.ndarray]]],
    *,
    n_frames: int,
    workdir: Path,
    sigma_frames: float = 1.0,
    pixel_scale: tuple[float, float] = (1.0, 1.0),
    on_frame: Callable[[], None] | None = None,
    on_face: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    reopen: Callable[[int], AbstractContextManager[Iterable[np.ndarray]]] | None = None,
    pick: FacePick = LARGEST_FACE,
) -> FaceTrack:
    """Detect landmarks on every frame and smooth them in time.

    sources: (index of the first frame, iterable of (H, W, 3) uint8 RGB frames) for each
    consecutive segment of the video; segments are tracked at the same time, one thread and
    one MediaPipe graph each (MediaPipe works outside the GIL). n_frames: the video's frame
    count (an upper bound is fine; the track is cut to what came); workdir: a folder for the
    memory-mapped arrays; sigma_frames: temporal smoothing of the face frame and of the
    non-lip landmarks, in frames; pixel_scale: (x, y) factors from the frames' pixels to the
    video's, when the frames were decoded smaller for speed. The track is in the video's pixels,
    cut into shots where the picture changes at once (`face.shots`). on_face(t, frame,
    landmarks) is called, from the segment's thread, with each frame where a face was found
    and its (478, 2) landmarks in that frame's pixels.

    reopen(k): segment k's frames read again, from its first (a context manager). A segment's
    tracker starts on the face `pick` takes up, and where the segment before it ended on
    another face, in the same shot, the segment is tracked again following that one
    (`mend_segments`): otherwise an edit of one of two people switched to the other halfway
    through. None: no segment is tracked again. pick: which face a tracker takes up where it
    follows none.
    """
    scale = np.asarray(pixel_scale, dtype=np.float32)
    raw = _memmap(workdir / "landmarks_raw.npy", n_frames)
    depth = np.lib.format.open_memmap(
        workdir / "depth_raw.npy",
        mode="w+",
        dtype=np.float32,
        shape=(max(n_frames, 1), N_LANDMARKS),
    )
    valid = np.zeros(n_frames, dtype=bool)
    n_faces = np.zeros(n_frames, dtype=np.int16)
    params = np.zeros((n_frames, 4), dtype=np.float64)
    cuts = np.zeros(n_frames, dtype=bool)
    # Each segment's first and last thumbnails, by frame index: the first frame's and the
    # index after the last's, so that a cut where one segment meets the next is seen.
    firsts: dict[int, np.ndarray] = {}
    lasts: dict[int, np.ndarray] = {}

    def track_segment(
        first: int,
        frames: Iterable[np.ndarray],
        stop: threading.Event,
        follow: np.ndarray | None = None,
        counted: bool = True,
    ) -> int:
        """Track one segment into the shared arrays, following the face `follow` (478, 2)
        frame pixels into its first frame (None: the one `pick` takes up); returns the index
        after its last frame. counted: each frame is told to on_frame (a segment tracked
        again is not: the progress bar's total holds each frame once)."""
        end = first
        before = None
        with LandmarkTracker(follow=follow, pick=pick) as tracker:
            for t, frame in enumerate(frames, start=first):
                if t >= n_frames or stop.is_set():
                    break
                thumb = thumbnail(frame)
                if before is None:
                    firsts[t] = thumb
                elif cut_score(before, thumb) > CUT:
                    cuts[t] = True
                    tracker.forget()
                before = thumb
                det = tracker.detect(frame)
                if det is not None:
                    landmarks = det.landmarks * scale
                    raw[t] = landmarks
                    depth[t] = det.depth * scale[0]
                    valid[t] = True
                    n_faces[t] = det.n_faces
                    params[t] = FaceFrame.from_landmarks(landmarks).params
                    if on_face is not None:
                        on_face(t, frame, det.landmarks)
                else:
                    raw[t] = np.nan
                end = t + 1
                if on_frame is not None and counted:
                    on_frame()
        if before is not None:
            lasts[end] = before
        return end

    count = max(
        run_segments([functools.partial(track_segment, first, frames) for first, frames in sources])
    )
    for t, thumb in firsts.items():
        if t in lasts:
            cuts[t] = cut_score(lasts[t], thumb) > CUT
    if reopen is not None:

        def again(k: int, first: int, follow: np.ndarray) -> None:
            with reopen(k) as frames:
                track_segment(first, frames, threading.Event(), follow / scale, counted=False)

        mend_segments(
            [first for first, _ in sources], landmarks=raw, cuts=cuts, count=count, again=again
        )
    valid, n_faces, params, cuts = valid[:count], n_faces[:count], params[:count], cuts[:count]
    shots = shot_ranges(cuts)
    params = smooth_shots(_unwrap_angles(params, valid), valid, shots, sigma_frames)
    norm = _memmap(workdir / "landmarks_norm.npy", count)
    margin = int(4 * sigma_frames) + 1
    for start, end in chunks(count):
        lo, hi = max(0, start - margin), min(count, end + margin)
        pts = np.zeros((hi - lo, N_LANDMARKS, 2))
        for t in range(lo, hi):
            if valid[t]:
                pts[t - lo] = FaceFrame.from_params(params[t]).to_face(raw[t].astype(np.float64))
        within = [(max(a, lo) - lo, min(b, hi) - lo) for a, b in shots if a < hi and b > lo]
        smooth = smooth_shots(pts, valid[lo:hi], within, sigma_frames)
        smooth[:, _MOUTH] = pts[:, _MOUTH]
        norm[start:end] = smooth[start - lo : end - lo]
    norm.flush()
    frontal = _memmap(workdir / "landmarks_frontal.npy", count)
    reference, turn = None, 0.0
    if valid.any():
        idx = _samples(valid, REFERENCE_SAMPLES)
        samples = np.concatenate([raw[idx], depth[idx, :, None]], axis=-1).astype(np.float64)
        reference = reference_shape(samples)
        turn = float(np.median(head_turn(samples)))
        for t in np.flatnonzero(valid):
            pts = np.concatenate([raw[t], depth[t, :, None]], axis=-1).astype(np.float64)
            frontal[t] = frontal_face_frame(pts, reference)
    frontal.flush()
    return FaceTrack(
        valid=valid,
        n_faces=n_faces,
        params=params,
        norm=norm[:count],
        frontal=frontal[:count],
        reference=reference,
        turn=turn,
        cuts=cuts,
        raw=raw[:count],
    )
