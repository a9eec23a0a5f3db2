"""Measurements of an edit against its input: speech kept, no jitter, background untouched.

Used by the tests and by `scripts/measure_edit.py`; all distances are in units of the input's
inter-ocular distance (IOD) unless a name says pixels.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt, map_coordinates

from spfem_cli.face import mesh
from spfem_cli.face.glasses import Traced, ridge_response
from spfem_cli.face.mesh import N_LANDMARKS, FaceFrame
from spfem_cli.face.track import mend_segments, run_segments, smooth_valid
from spfem_cli.face.tracker import LARGEST_FACE, FacePick, LandmarkTracker
from spfem_cli.generator.expression import REPLACED_AUS, ExpressionModel, lid_heights
from spfem_cli.generator.generator import FaceGenerator
from spfem_cli.generator.warp import contour_distance, iris_radius, polygon_distance
from spfem_cli.media import FrameReader, probe
from spfem_cli.pipeline import (
    EXPRESSION_SMOOTHING_S,
    held_in_step,
    measured_frames,
    signed_activations,
    tracking_readers,
)

# Inner-lip points facing each other across the mouth: upper (82, 13, 312), lower (87, 14, 317).
OPENING_PAIRS = ((82, 13, 312), (87, 14, 317))


def tracked_landmarks(
    paths: Sequence[str | Path],
    *,
    shown: Callable[[int, list[np.ndarray], np.ndarray], np.ndarray] | None = None,
    on_frame: Callable[[], None] | None = None,
    into: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    held: np.ndarray | None = None,
    follow: np.ndarray | None = None,
    pick: FacePick = LARGEST_FACE,
) -> np.ndarray:
    """Landmarks (T, 478, 2) of the face FaceMesh is shown in each frame, in the first
    video's pixels, NaN rows without a face; found as the edit's tracking pass finds them
    (`pipeline.tracking_readers`: decoded at analysis size, a long video's two halves at once,
    each tracked in video mode from its first frame), so that on an input they are the
    tracking's own (`FaceTrack.raw`).

    frames: (T,) bool, the frames whose landmarks are needed (a partial edit's): only they
    and the frames just before each run of them (`pipeline.measured_spans`) are shown to
    FaceMesh, the rest of the rows left NaN; their landmarks then differ from a whole pass's
    by what FaceMesh's tracking carries from earlier frames (0.04-0.13% of the eye distance
    on the inner lips, `pipeline.MEASURE_LEAD`).

    paths: videos of the same frames (an input and its edit), read alike; shown(t, frames,
    scale): the frame (h, w, 3) uint8 shown at index t, made of the videos' frames t as read
    (scale: (2,) from their pixels to the video's); None: the first video's, and only it is
    decoded (the others only shape how it is read: `pipeline.tracking_readers`). on_frame is
    called after each frame (a progress bar; from two threads at once); into: an array
    (N, 478, 2) to fill, whose first T rows are returned (frames past N are not read): a
    memory-mapped file keeps a long video's landmarks out of memory (3.8 KB a frame);
    held: (T,) bool, the frames of the first video that the others hold, in order (a try of
    a partial edit rendered alone; `pipeline.tracking_readers`, which refuses a pass showing
    a frame they do not hold).

    follow: (T, 478, 2) pixels, NaN without a face: the face to find (the input's, where an
    edit of it is measured), which each segment's tracker follows from its first frame;
    None: the face `pick` takes up (`--face`, the largest by default), and a segment that took
    up another face than the one the segment before it ended on is tracked again following
    that one (`face.track.mend_segments`), as the tracking pass does."""
    first, *others = [probe(p) for p in paths]
    segments, factors = tracking_readers(first, *others, frames=frames, held=held)
    scale = np.asarray(factors, dtype=np.float32)
    if into is None:
        n = (
            sum(readers[0].expected_frames for _, readers in segments)
            if frames is None
            else len(frames)
        )
        into = np.full((n, N_LANDMARKS, 2), np.nan, np.float32)
    # Which frames FaceMesh is shown: where a video is read whole though only some frames are
    # needed (a variable rate), the others are decoded and passed by.
    shows, last = None, len(into) - 1
    if frames is not None:
        asked = np.zeros(len(into), bool)
        asked[: len(frames)] = np.asarray(frames, bool)[: len(into)]
        shows = measured_frames(first, *others, frames=asked)
        # Nothing after the last frame shown needs decoding.
        last = int(np.flatnonzero(shows).max()) if shows.any() else -1

    def find(
        start: int,
        readers: list[FrameReader],
        stop: threading.Event,
        seed: np.ndarray | None = None,
        counted: bool = True,
    ) -> int:
        """Track one segment into `into`, following the face `seed` (478, 2) video pixels
        into its first frame (None: `follow`'s there, else the one `pick` takes up); returns
        the index after its last frame. counted: each frame shown is told to on_frame."""
        end = start
        read = readers if shown is not None else readers[:1]
        if seed is None and follow is not None and start < len(follow):
            seed = None if np.isnan(follow[start]).any() else np.asarray(follow[start])
        tracker = LandmarkTracker(follow=None if seed is None else seed / scale, pick=pick)
        with contextlib.ExitStack() as stack, tracker:
            decoded = held_in_step([stack.enter_context(r) for r in read], start=start, held=held)
            for t, got in enumerate(decoded, start=start):
                if t > last or stop.is_set():
                    break
                end = t + 1
                if shows is not None and not shows[t]:
                    continue  # its row is set to NaN below
                frame = got[0] if shown is None else shown(t, list(got), scale)
                det = tracker.detect(frame)
                # The tracking's own product (`track_frames`), so that they agree to the bit.
                into[t] = np.nan if det is None else det.landmarks * scale
                if on_frame is not None and counted:
                    on_frame()
        return end

    count = max(run_segments([functools.partial(find, *seg) for seg in segments]))
    if follow is None:

        def again(k: int, start: int, seed: np.ndarray) -> None:
            # A segment read again is read as the first time.
            readers = tracking_readers(first, *others, frames=frames, held=held)[0][k][1]
            find(start, readers, threading.Event(), seed, counted=False)

        mend_segments(
            [start for start, _ in segments],
            landmarks=into,
            # Cuts are not looked for here: where another shot starts on another face, the
            # segment tracked again follows nothing and takes up the same one.
            cuts=np.zeros(len(into), bool),
            count=count,
            again=again,
        )
    if frames is not None:
        # The rows of frames not read stay NaN: the whole video's rows are the answer.
        into[~shows] = np.nan
        return into
    return into[:count]


def video_landmarks(
    path: str | Path,
    *,
    alike: Sequence[str | Path] = (),
    on_frame: Callable[[], None] | None = None,
    into: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    follow: np.ndarray | None = None,
    pick: FacePick = LARGEST_FACE,
) -> np.ndarray:
    """Landmarks of the face in every frame: (T, 478, 2) pixels, NaN without a face, as the
    edit's tracking finds them (`tracked_landmarks`: the largest, followed). alike: videos of
    the same frames that `path` is to be read alike with (the edit it is measured against: a
    variable-rate edit makes both be read in one piece), not decoded; on_frame is called
    after each frame shown to FaceMesh; into: an array to fill; frames: (T,) bool, only those
    frames' are needed; follow: (T, 478, 2) pixels, the face to find (the input's, on its
    edit), or pick: the face to take up (`tracked_landmarks`)."""
    return tracked_landmarks(
        [path, *alike], on_frame=on_frame, into=into, frames=frames, follow=follow, pick=pick
    )


# The output shown around the lips when the mouth is measured on its own (`mouth_window`),
# and along the face outline when the outline is (`outline_window`): reach beyond the lip
# contour or either side of the outline, and the width of the blend into the input (IOD).
MOUTH_WINDOW = 0.35
OUTLINE_WINDOW = 0.12
WINDOW_FEATHER = 0.1
# The grid (IOD) the windows' distances are found on, interpolated between (`_window_box`):
# under 50 pixels between the eyes, every pixel.
WINDOW_STEP = 0.02


def _window_box(
    shape: tuple[int, int], landmarks: np.ndarray, contour: tuple[int, ...], *, inside: bool
) -> tuple[tuple[slice, slice], np.ndarray]:
    """The part of the frame (rows, columns) that a contour's window covers, and its weights
    there (h, w) in [0, 1]: 1 within the window of the contour's points (landmarks (478, 2)
    pixels), fading to 0 over `WINDOW_FEATHER`; inside: the area the contour encloses counts
    as on it. shape: the frame's (H, W)."""
    height, width = shape
    iod = float(_iod(landmarks[None])[0])
    reach = MOUTH_WINDOW if inside else OUTLINE_WINDOW
    poly = landmarks[list(contour)]
    pad = (reach + WINDOW_FEATHER) * iod
    x0, y0 = np.maximum(np.floor(poly.min(axis=0) - pad).astype(int), 0)
    x1 = max(x0, min(width, int(np.ceil(poly[:, 0].max() + pad)) + 1))
    y1 = max(y0, min(height, int(np.ceil(poly[:, 1].max() + pad)) + 1))
    box = (slice(y0, y1), slice(x0, x1))
    if x1 == x0 or y1 == y0:
        return box, np.zeros((y1 - y0, x1 - x0), np.float32)
    # The distance is found every `step` pixels and interpolated between: it changes by at
    # most a pixel a pixel, and on a 1080p face every pixel of the box took 48 ms a frame.
    step = max(1, int(WINDOW_STEP * iod))
    # From the box's first pixel to past its last, every step pixels.
    gx, gy = np.meshgrid(np.arange(x0, x1 - 1 + step, step), np.arange(y0, y1 - 1 + step, step))
    pix = torch.from_numpy(np.stack([gx, gy], axis=-1).reshape(-1, 2).astype(np.float64))
    measure = polygon_distance if inside else contour_distance
    d = measure(pix, torch.from_numpy(poly.astype(np.float64))).numpy().reshape(gx.shape) / iod
    if step > 1:
        rows, cols = np.mgrid[0 : y1 - y0, 0 : x1 - x0] / step
        d = map_coordinates(d, [rows, cols], order=1)
    return box, np.clip((reach + WINDOW_FEATHER - d) / WINDOW_FEATHER, 0, 1).astype(np.float32)


def _window(
    shape: tuple[int, int], landmarks: np.ndarray, contour: tuple[int, ...], *, inside: bool
) -> np.ndarray:
    """(H, W) the weights of `_window_box` over the whole frame, 0 outside its box."""
    box, part = _window_box(shape, landmarks, contour, inside=inside)
    weight = np.zeros(shape, np.float32)
    weight[box] = part
    return weight


def mouth_window(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """(H, W) weights: 1 within `MOUTH_WINDOW` of the outer lip contour of landmarks
    (478, 2) pixels (inside it too), fading to 0 over `WINDOW_FEATHER`."""
    return _window(shape, landmarks, mesh.LIPS_OUTER, inside=True)


def outline_window(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """(H, W) weights: 1 within `OUTLINE_WINDOW` of the face oval of landmarks (478, 2)
    pixels, either side, fading to 0 over `WINDOW_FEATHER`."""
    return _window(shape, landmarks, mesh.FACE_OVAL, inside=False)


# The windows `window_landmarks` pastes: the contour and whether its inside counts as on it.
WINDOWS = {"mouth": (mesh.LIPS_OUTER, True), "outline": (mesh.FACE_OVAL, False)}


def window_landmarks(
    input_path: str | Path,
    output_path: str | Path,
    *,
    input_lm: np.ndarray,
    window: str,
    on_frame: Callable[[], None] | None = None,
    into: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    held: np.ndarray | None = None,
) -> np.ndarray:
    """Landmarks (T, 478, 2) pixels found on each input frame with one region of the output
    pasted in (`WINDOWS`: around the lips, or along the face outline); NaN without a face.

    FaceMesh reads the whole face at once: wider eyes or raised brows move where it puts the
    lips and the outline even when not one pixel there changed (scripts/measure_expressions.py
    shows it with an edit of the eyes and brows alone). Showing it the output's region in the
    input's face measures what an edit did to that region by itself. input_lm: the input's
    landmarks as `video_landmarks` finds them (or the edit's tracking, `FaceTrack.raw`); both
    videos are read as the tracking reads them (`tracked_landmarks`). on_frame is called after
    each frame shown to FaceMesh; into: an array to fill; frames: (T,) bool, only those
    frames' are needed; held: the input's frames the output holds (`tracked_landmarks`)."""
    contour, inside = WINDOWS[window]

    def shown(t: int, frames: list[np.ndarray], scale: np.ndarray) -> np.ndarray:
        fa, fb = frames
        if t >= len(input_lm) or np.isnan(input_lm[t]).any():
            return fa
        # Blended within the window's box only: over whole frames the blend took as long as
        # FaceMesh.
        box, w = _window_box(fa.shape[:2], input_lm[t] / scale, contour, inside=inside)
        a, b = fa[box].astype(np.float32), fb[box].astype(np.float32)
        fa = fa.copy()
        fa[box] = np.round(a + (b - a) * w[..., None]).astype(np.uint8)
        return fa

    return tracked_landmarks(
        [input_path, output_path],
        shown=shown,
        on_frame=on_frame,
        into=into,
        frames=frames,
        held=held,
        # The input's face, which the edit changed: not another one in the frame.
        follow=input_lm,
    )


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


def corner_lift(lm: np.ndarray) -> np.ndarray:
    """(T,) height of the lip corners above the middle of the outer lips, IOD (+ = up), each
    frame in its own face frame, both corners' mean (`corner_lifts`). lm: (T, 478, 2) pixels."""
    return corner_lifts(lm).mean(axis=1)


def corner_lifts(lm: np.ndarray) -> np.ndarray:
    """(T, 2) height of each lip corner (`mesh.LIP_CORNERS` order) above the middle of the
    outer lips, IOD (+ = up), each frame in its own face frame. lm: (T, 478, 2) pixels."""
    face = face_frame_landmarks(lm)
    middle = 0.5 * (face[:, 0, 1] + face[:, 17, 1])
    return middle[:, None] - face[:, list(mesh.LIP_CORNERS), 1]


def jitter(lm: np.ndarray, *, indices: Iterable[int] | None = None) -> float:
    """Mean frame-to-frame landmark motion (IOD units per frame) over consecutive frames that
    both have a face; `indices` restricts it to some landmarks."""
    return float(np.nanmean(_steps(lm, indices=indices)))


def _steps(lm: np.ndarray, *, indices: Iterable[int] | None = None) -> np.ndarray:
    """(T-1,) mean motion of the landmarks (T, 478, 2) pixels from each frame to the next,
    IOD units; NaN where either frame has no face."""
    pts = lm if indices is None else lm[:, list(indices)]
    return np.linalg.norm(np.diff(pts, axis=0), axis=-1).mean(axis=-1) / _iod(lm[1:])


@dataclass(frozen=True)
class SpeechReport:
    """inner_lip_error: mean distance of the output's inner-lip landmarks from the input's;
    opening_corr: Pearson correlation of the mouth opening over time; jitter_in/out: mean
    frame-to-frame motion of all landmarks; frames: frames with a face in both videos (and
    among those measured); opening_error: the standard deviation over those frames of the
    output's mouth opening less the input's, IOD."""

    inner_lip_error: float
    opening_corr: float
    jitter_in: float
    jitter_out: float
    frames: int
    opening_error: float = float("nan")


# Frames of landmarks `compare_speech` reads at a time (7.6 KB each as float64).
SPEECH_CHUNK = 1024


def compare_speech(
    input_lm: np.ndarray, output_lm: np.ndarray, *, frames: np.ndarray | None = None
) -> SpeechReport:
    """input_lm, output_lm: (T, 478, 2) pixels from `video_landmarks` (memory-mapped files
    too: they are read `SPEECH_CHUNK` frames at a time, so memory stays flat); frames: (T,)
    bool, the frames to measure (an edit's edited frames: frames it passed through would
    dilute what it did to the others), as frames without a face are left out; None: all."""
    n = min(len(input_lm), len(output_lm))
    inner = list(mesh.LIPS_INNER)
    errs, open_a, open_b, steps_a, steps_b = [], [], [], [], []
    for start in range(0, n, SPEECH_CHUNK):
        # From the frame before the chunk, for the motion into its first frame.
        lo, end = max(0, start - 1), min(n, start + SPEECH_CHUNK)
        a, b = input_lm[lo:end].astype(np.float64), output_lm[lo:end].astype(np.float64)
        both = ~(np.isnan(a).any(axis=(1, 2)) | np.isnan(b).any(axis=(1, 2)))
        if frames is not None:
            both &= np.asarray(frames[lo:end], bool)
        a[~both] = np.nan
        b[~both] = np.nan
        steps_a.append(_steps(a))
        steps_b.append(_steps(b))
        keep = both[start - lo :]
        ca, cb = a[start - lo :][keep], b[start - lo :][keep]
        # Both openings are scaled by the input's eyes: an edit that widens the eyes must
        # not register as a change of the mouth.
        iod = _iod(ca)
        errs.append(np.linalg.norm(ca[:, inner] - cb[:, inner], axis=-1).mean(axis=1) / iod)
        open_a.append(mouth_opening(ca, iod=iod))
        open_b.append(mouth_opening(cb, iod=iod))
    err = np.concatenate(errs) if errs else np.zeros(0)
    oa = np.concatenate(open_a) if open_a else np.zeros(0)
    ob = np.concatenate(open_b) if open_b else np.zeros(0)
    corr = float(np.corrcoef(oa, ob)[0, 1]) if err.size > 2 and oa.std() > 0 else float("nan")
    gap = float(np.std(ob - oa)) if err.size > 2 else float("nan")

    def mean_step(steps: list[np.ndarray]) -> float:
        joined = np.concatenate(steps) if steps else np.zeros(0)
        return float(np.nanmean(joined)) if np.isfinite(joined).any() else float("nan")

    return SpeechReport(
        inner_lip_error=float(err.mean()) if err.size else float("nan"),
        opening_corr=corr,
        jitter_in=mean_step(steps_a),
        jitter_out=mean_step(steps_b),
        frames=int(err.size),
        opening_error=gap,
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


def landmark_activations(
    lm: np.ndarray, *, median: np.ndarray, model: ExpressionModel, names: tuple[str, ...]
) -> np.ndarray:
    """The named AUs' activations read off landmarks: (T', len(names)) float32 for the T'
    frames of lm (T, 478, 2) pixels that have a face, against `median` (478, 2), a face in the
    face frame (IOD units), by `signed_activations`."""
    norm = face_frame_landmarks(lm)
    norm = norm[~np.isnan(norm).any(axis=(1, 2))]
    with torch.no_grad():
        acts = signed_activations(model, torch.from_numpy(norm - median).float()).numpy()
    return acts[:, [model.au_names.index(name) for name in names]]


def slow_movement(
    lm_in: np.ndarray, lm_out: np.ndarray, *, fps: float, model: ExpressionModel
) -> tuple[np.ndarray, np.ndarray]:
    """How far the slow expression of the upper face rises above the person's calmest state,
    on the input and on an edit of it: two (K,) arrays, K = len(REPLACED_AUS), activation
    units, the mean over the frames with a face.

    lm_in, lm_out: (T, 478, 2) pixels (`video_landmarks`). Both are read against the input's
    median face (`landmark_activations`) and smoothed as an edit smooths them
    (EXPRESSION_SMOOTHING_S), as blinks are not an expression. The calm state is each AU's
    10th percentile on the input, the upper lid raiser's its median (lids lower than usual are
    a squint or a blink)."""
    median = np.nanmedian(face_frame_landmarks(lm_in), axis=0)

    def slow(lm: np.ndarray) -> np.ndarray:
        acts = landmark_activations(lm, median=median, model=model, names=REPLACED_AUS)
        return smooth_valid(acts, np.ones(len(acts), dtype=bool), EXPRESSION_SMOOTHING_S * fps)

    before, after = slow(lm_in), slow(lm_out)
    calm = np.percentile(before, 10, axis=0)
    lid = REPLACED_AUS.index("AU5")
    calm[lid] = np.median(before[:, lid])
    return (before - calm).clip(min=0).mean(axis=0), (after - calm).clip(min=0).mean(axis=0)


def detector_gain(
    frame: np.ndarray, *, generator: FaceGenerator, aus: tuple[str, ...], step: float
) -> np.ndarray | None:
    """How much of a warped AU change FaceMesh reports, on one real frame (H, W, 3) uint8.

    For each named AU alone, the frame is warped by `step` activation units and the AUs are
    re-estimated from landmarks found on the edited frame (both frames detected as still
    images, each in its own face frame, `signed_activations`). Returns (n, n) for n = len(aus):
    row j is the change re-estimated for each named AU when AU j is applied, over the change
    of AU j the warp asked for (the diagonal is 1 when FaceMesh sees all of it, the rest 0).
    None when no face is found.

    On real frames about a third of a lid's or an outer brow's change comes back on the
    diagonal, and nothing of a cheek raise, though the warp moves the pixels visibly
    (scripts/measure_detector_gain.py prints the numbers)."""
    model = generator.model
    cols = [model.au_names.index(name) for name in aus]
    rows = []
    with LandmarkTracker(video_mode=False) as tracker:
        base = tracker.detect(frame)
        if base is None:
            return None
        face = FaceFrame.from_landmarks(base.landmarks)
        points = face.to_face(base.landmarks.astype(np.float64))
        for k in cols:
            delta = np.zeros(model.num_aus)
            delta[k] = step
            edited = tracker.detect(
                generator.edit_frame(frame, face=face, points=points, delta=delta)
            )
            if edited is None:
                return None
            seen = face_frame_landmarks(edited.landmarks[None])[0] - points
            asked = generator.displacement(delta, points=points)
            with torch.no_grad():
                both = signed_activations(model, torch.from_numpy(np.stack([seen, asked])))
            rows.append(both[0, cols].numpy() / float(both[1, k]))
    return np.stack(rows)


def _upper_halves(traced: Traced) -> list[np.ndarray]:
    """Per traced rim, its points (P, 2) above the line's mean height (where the brows move
    the skin behind it), pixels of the frame."""
    return [line[line[:, 1] < line[:, 1].mean()] for line in traced.lines]


def rim_kept(traced: Traced, *, before: np.ndarray, after: np.ndarray) -> float:
    """How much of the glasses' rims stays in place from `before` to `after` (H, W, 3) uint8:
    the thin-line response (`face.glasses.ridge_response`) along the upper halves of the rims
    traced on `before` (`face.glasses.trace_rims`), on `after` over on `before`. 1: the rim
    is where it was, as sharp; a rim bent off its line leaves less (the upper halves, where
    the brows move it)."""
    points = np.concatenate(_upper_halves(traced))

    def along(frame: np.ndarray) -> float:
        response = ridge_response(frame.astype(np.float32).mean(axis=-1), sigma=traced.sigma)
        return float(map_coordinates(response, [points[:, 1], points[:, 0]], order=1).mean())

    return along(after) / max(along(before), 1e-6)


def upper_rims(traced: Traced, shape: tuple[int, int], *, reach: float = 4.0) -> np.ndarray:
    """(H, W) bool, the pixels of a frame of `shape` within `reach` pixels of the upper
    halves of the rims traced on it (where the brows move the skin behind them)."""
    drawn = np.zeros(shape, dtype=bool)
    for upper in _upper_halves(traced):
        at = np.round(upper).astype(int)
        drawn[at[:, 1].clip(0, shape[0] - 1), at[:, 0].clip(0, shape[1] - 1)] = True
    if not drawn.any():
        return drawn
    return distance_transform_edt(~drawn) <= reach


class FrameChange:
    """How much a video changes from one frame to the next within a region: frames and
    their regions are added in order (`add`); `mean` is the mean absolute change (RGB levels)
    over the pixels in either frame's region, averaged over the pairs of frames."""

    def __init__(self) -> None:
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        self._changes: list[float] = []

    def add(self, frame: np.ndarray, region: np.ndarray) -> None:
        """frame: (H, W, 3) uint8, the next frame; region: (H, W) bool."""
        if self._last is not None:
            last, last_region = self._last
            where = region | last_region
            if where.any():
                step = np.abs(frame[where].astype(np.float32) - last[where].astype(np.float32))
                self._changes.append(float(step.mean()))
        self._last = (frame, region)

    def mean(self) -> float:
        """The mean change (levels); NaN before two frames."""
        return float(np.mean(self._changes)) if self._changes else float("nan")


def brow_rise(tracker: LandmarkTracker, *, before: np.ndarray, after: np.ndarray) -> float:
    """How far the brows moved up from `before` to `after` (H, W, 3) uint8, IOD of `before`,
    as FaceMesh reads them (negative: down; NaN where it finds no face). tracker: a
    LandmarkTracker in image mode."""
    found = [tracker.detect(f) for f in (before, after)]
    if found[0] is None or found[1] is None:
        return float("nan")
    face = FaceFrame.from_landmarks(found[0].landmarks)
    brows = list(mesh.RIGHT_EYEBROW + mesh.LEFT_EYEBROW)
    y = [face.to_face(f.landmarks[brows].astype(np.float64))[:, 1] for f in found]
    return float(np.mean(y[0] - y[1]))


def lid_clearance_seen(tracker: LandmarkTracker, image: np.ndarray) -> float:
    """How far the upper lids stand above the irises in `image` (H, W, 3) uint8, IOD, as
    FaceMesh finds the face afresh (`expression.lid_heights`, in the image's own face frame);
    NaN where it finds no face or an eye is shut. tracker: a LandmarkTracker in image mode."""
    found = tracker.detect(image)
    if found is None:
        return float("nan")
    face = FaceFrame.from_landmarks(found.landmarks)
    return float(lid_heights(face.to_face(found.landmarks.astype(np.float64))[None])[0, 0])


# The lower lid is looked for up each column from this many iris radii below the iris's centre,
# in steps of this much (IOD), at these offsets from the centre (iris radii).
LOWER_LID_FROM = 2.4
LOWER_LID_STEP = 0.002
LOWER_LID_COLUMNS = (-0.5, 0.0, 0.5)


def lower_lids_seen(image: np.ndarray, *, face: FaceFrame, points: np.ndarray) -> np.ndarray:
    """(2,) how far (IOD) each eye's lower lid lies below its iris's centre in `image` (H, W, 3)
    uint8, read off the pixels, not off FaceMesh's lid points (which follow a lid only in
    part): up each of three columns through the iris, from skin below the eye, the first point
    whose colour is further from that skin than halfway to the iris's (the white or the iris
    above the lid); the median of the columns. NaN where no column finds it. points: (478, 2)
    the face's landmarks in `face`'s frame (IOD), from which the irises are taken; the subject's
    right eye first."""
    rgb = np.asarray(image, dtype=np.float64)

    def sample(at: np.ndarray) -> np.ndarray:
        px = face.to_image(at)
        return np.stack(
            [map_coordinates(rgb[..., c], [px[:, 1], px[:, 0]], order=1) for c in range(3)], -1
        )

    out = np.full(2, np.nan)
    for eye, iris_idx in enumerate((mesh.RIGHT_IRIS, mesh.LEFT_IRIS)):
        iris = np.asarray(points, dtype=np.float64)[list(iris_idx)]
        centre, radius = iris[0], iris_radius(iris)
        grid = np.stack(np.meshgrid(*[np.linspace(-0.4, 0.4, 5)] * 2), -1).reshape(-1, 2)
        iris_rgb = np.median(sample(centre + radius * grid), axis=0)
        below = np.arange(LOWER_LID_FROM * radius, 0.0, -LOWER_LID_STEP)
        found = []
        for dx in LOWER_LID_COLUMNS:
            xs = np.full_like(below, centre[0] + dx * radius)
            column = sample(np.stack([xs, centre[1] + below], axis=1))
            skin = np.median(column[:10], axis=0)
            far = np.linalg.norm(column - skin, axis=1) > 0.5 * np.linalg.norm(iris_rgb - skin)
            if far.any():
                found.append(below[int(np.argmax(far))])
        if found:
            out[eye] = float(np.median(found))
    return out
