"""`edit_video`: the whole path of `spfem edit` as a library call.

probe -> decode (streamed) -> landmarks on every frame -> temporal smoothing -> rest face and
AU estimate -> per frame: generate with the mouth held -> encode (streamed) -> remux the
original audio untouched. The output is written to a temporary file and renamed into place.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from spfem_cli.encoding import DEFAULT_CRF, DEFAULT_PRESET, check_encoding
from spfem_cli.errors import SpfemError
from spfem_cli.face.glasses import RimFinder, Rims, SteadyRims, Traced
from spfem_cli.face.lenses import LensFinder
from spfem_cli.face.pose import frontal_face_frame
from spfem_cli.face.rest import RestFace, held_smile, median_rest_face
from spfem_cli.face.sharpness import BlurFinder
from spfem_cli.face.track import FaceTrack, chunks, median_valid, smooth_valid, track_frames
from spfem_cli.face.tracker import LARGEST_FACE, FacePick
from spfem_cli.generator.device import resolve_device, torch_threads
from spfem_cli.generator.expression import (
    DEFAULT_MODEL,
    LID_READINGS,
    SIDES,
    ExpressionModel,
    Side,
    lid_heights,
    present_expression,
)
from spfem_cli.generator.generator import (
    FaceGenerator,
    MouthMode,
    build_generator,
    check_mouth_mode,
)
from spfem_cli.generator.kinds import DEFAULT_GENERATOR, DEFAULT_REFINER, keeps_speech
from spfem_cli.media import (
    FrameReader,
    FrameWriter,
    StillWriter,
    VideoInfo,
    atomic_output,
    check_output_path,
    check_still_output,
    default_output_path,
    given_output_path,
    is_image_output,
    left_out_note,
    mux_streams,
    output_pix_fmt,
    probe,
)
from spfem_cli.progress import Reporter, SilentReporter
from spfem_cli.targets import (
    Part,
    Resolver,
    Timeline,
    check_intensity,
    default_resolver,
    free_text_error,
    free_texts,
    parse_emotion,
    range_text,
    render,
    segment_name,
    segment_shares,
    with_range,
    within_reach,
)

if TYPE_CHECKING:
    from spfem_cli.pcmecl.personal import PersonalCheckpoint
    from spfem_cli.speech_check import SpeechCheck

# A rest face given as a clip is read from this many frames spread over it.
REST_SAMPLES = 30
# A calm face read from fewer frames than this says nothing of where the person's lids
# usually stand (`rest_activations`): given speech_obama's own frame 120 as calm, its lids
# moved the lid raise read on every frame by 0.46, the size of a wide-eyed look. The median
# of half a second of a 30 fps clip's frames leaves out blinks and glances.
REST_LID_FACES = 15
# `--rest` as a time range of the edited video, in seconds: "2-4.5".
_REST_SPAN = re.compile(r"\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*")
# The expression already on the face is estimated from a heavily smoothed signal, so that
# what is replaced is the slow expression, not the quick motions of speech.
EXPRESSION_SMOOTHING_S = 0.5
# The lids' readings (`slow_activations`): a running median over twice BLINK_FRACTION of the
# smoothing's sigma (9 frames at 30 fps) takes out a blink, whatever its depth; what is left
# is smoothed over LID_FRACTION of the sigma, enough for the lids' landmark noise.
BLINK_FRACTION = 0.25
LID_FRACTION = 0.3
# A lid AU that moves one of the lids' heights by less than this (IOD a unit) is not read there.
MIN_LID_MOTION = 0.005
ANALYSIS_MAX_SIDE = 1280
MIN_SEGMENT_FRAMES = 60
RIDGE = 0.2
# `--side`: where the one-sided units (contempt's sneer) play. "auto": on the side nearer the
# camera when the head is turned more than FRONTAL_TURN_DEG (`FaceTrack.turn`), else on the
# subject's right, where the model draws them. On the far side of a turned head the narrowed
# eye and the smirk are foreshortened and half hidden: talk_s20, turned 6.7 degrees to her
# right, showed little of a sneer on her right side. The expressive and MEAD clips here,
# filmed facing the camera, read as turned -4.5 to +5.1 degrees.
SIDE_CHOICES = ("auto", *SIDES)
FRONTAL_TURN_DEG = 5.0


@dataclass
class EditReport:
    """What `edit_video` did: counts of frames, timings per stage (seconds), notes for the user
    (what happened to this video) and hints (options that may serve the edit better)."""

    output: Path
    n_frames: int
    n_face_frames: int
    n_edited: int
    max_faces: int
    fps: Fraction
    width: int
    height: int
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    @property
    def n_without_face(self) -> int:
        return self.n_frames - self.n_face_frames


def signed_activations(
    model: ExpressionModel, offsets: torch.Tensor, *, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """AU activations (T, K) of landmark offsets (T, 478, 2) from the clip's median face,
    allowed to be negative (less of an AU than the median shows): ridge least squares over
    the landmarks in mask (478,) bool (default: those the model estimates from,
    `estimate_mask`: not the mouth or jaw), of the AUs it reads (`ExpressionModel.read_aus`;
    0 for the others)."""
    read = model.read_aus
    mask = model.estimate_mask if mask is None else mask
    basis = model.au_basis[read][:, mask].reshape(int(read.sum()), -1).double()
    gram = basis @ basis.T
    # A small ridge, relative to each AU's own energy, keeps near-collinear AUs (AU12 and
    # its one-sided AU12R) from trading off wildly.
    gram = gram + RIDGE * torch.diag(gram.diagonal())
    x = offsets[:, mask].reshape(offsets.shape[0], -1).double()
    out = basis.new_zeros(offsets.shape[0], model.num_aus)
    out[:, read] = torch.linalg.solve(gram, basis @ x.T).T
    out[torch.isnan(x).any(dim=1)] = float("nan")
    return out


def slow_activations(
    track: FaceTrack,
    *,
    model: ExpressionModel,
    sigma_frames: float,
    lids: np.ndarray | None = None,
) -> np.ndarray:
    """Signed AU activations (T, K) float64 of each frame relative to the clip's median face,
    smoothed in time (sigma_frames) so that what they show is the slow expression, not speech
    or blinks (`smooth_valid`, which ignores rows without a face and returns them as 0).

    The lid AUs (LID_READINGS: the upper lid raiser, the lid tightener) are read off where the
    lids stand instead (`slow_lid_heights`, over each AU's own motion of them,
    `ExpressionModel.lid_motion`; the least of an AU's readings): averaged in with the rest, a
    blink's closed lids read as lids lowered for a second around it, and a wide-eyed look a
    third of a second long was smoothed away. lids: the track's `track_lid_heights`, when
    already found."""
    k = int(model.au_basis.shape[0])
    acts = np.zeros((track.n_frames, k))
    median = torch.from_numpy(track.median_frontal()).float()
    for start, end in chunks(track.n_frames):
        frontal = np.asarray(track.frontal[start:end], dtype=np.float32)
        with torch.no_grad():
            acts[start:end] = signed_activations(model, torch.from_numpy(frontal) - median).numpy()
    acts = smooth_valid(acts, track.valid, sigma_frames)
    lids = track_lid_heights(track) if lids is None else lids
    slow = slow_lid_heights(lids, valid=track.valid, sigma_frames=sigma_frames)
    if slow is not None:
        for au, reading in lid_activations(slow, model=model).items():
            acts[:, model.au_names.index(au)] = reading
    return acts


def track_lid_heights(track: FaceTrack) -> np.ndarray:
    """`lid_heights` (T, 3) IOD of every frame of the track (NaN where an eye is shut and on
    rows without a face, whose landmarks are NaN)."""
    heights = np.zeros((track.n_frames, 3))
    for start, end in chunks(track.n_frames):
        heights[start:end] = lid_heights(np.asarray(track.frontal[start:end], dtype=np.float64))
    return heights


def lid_activations(heights: np.ndarray, *, model: ExpressionModel) -> dict[str, np.ndarray]:
    """The lid AUs (LID_READINGS) the model has, read off `lid_heights` (T, 3) relative to the
    person's usual lids (IOD): each AU's least reading over the heights its own field moves
    (`ExpressionModel.lid_motion`), in its units. AU -> (T,) activations."""
    out = {}
    for au, columns in LID_READINGS.items():
        motion = model.lid_motion(au)
        used = [j for j in columns if abs(motion[j]) > MIN_LID_MOTION]
        if used:
            out[au] = (heights[:, used] / motion[used]).min(axis=1)
    return out


def slow_lid_heights(
    heights: np.ndarray, *, valid: np.ndarray, sigma_frames: float
) -> np.ndarray | None:
    """The lids' slow place: `lid_heights` (T, 3) of every frame (NaN where an eye is shut),
    blinks taken out by a running median over twice BLINK_FRACTION of sigma_frames, shut eyes
    filled from the frames around them, smoothed over LID_FRACTION of it, relative to their
    median over the frames with a face (`valid`, (T,) bool). Returns (T, 3) IOD, 0 on rows
    without a face; None when no frame shows both eyes open."""
    seen = valid & np.isfinite(heights[:, 0])
    if not seen.any():
        return None
    size = 2 * max(1, round(BLINK_FRACTION * sigma_frames)) + 1
    t = np.arange(len(heights))
    slow = np.zeros_like(heights)
    for j in range(heights.shape[1]):
        column = median_valid(heights[:, j], seen, size)
        column = np.interp(t, t[seen], column[seen])
        column = smooth_valid(column, valid, LID_FRACTION * sigma_frames)
        slow[:, j] = np.where(valid, column - np.median(column[valid]), 0.0)
    return slow


def rest_span(rest: str | Path) -> tuple[float, float] | None:
    """(start, end) seconds when `rest` is a time range of the edited video itself, such as
    "0-2.5"; None when it names a file (a file of that name wins). Raises SpfemError for a
    range that ends before it starts."""
    text = str(rest)
    found = _REST_SPAN.fullmatch(text)
    if found is None or Path(text).exists():
        return None
    start, end = float(found[1]), float(found[2])
    if end <= start:
        raise SpfemError(f"rest face: the time range {text} s ends before it starts")
    return start, end


def read_rest_face(
    rest: str | Path, *, video: str | Path | None = None, pick: FacePick = LARGEST_FACE
) -> RestFace:
    """The calm face of `--rest` (`face.rest.median_rest_face`), from up to REST_SAMPLES
    frames spread over a photo or clip, or over a time range of
    `video` (the video being edited) when `rest` is one (`rest_span`), on each frame the face
    `pick` takes up (`--face`). Raises SpfemError when
    the file cannot be read, the range is past the video's end, or no frame shows a face."""
    span = rest_span(rest)
    if span is None:
        path = Path(rest)
        if not path.is_file():
            raise SpfemError(f"rest face {path} does not exist")
        try:
            info = probe(path)
        except SpfemError as exc:
            raise SpfemError(f"rest face: {exc}") from None
        first, count, where = 0, info.n_frames, str(path)
    else:
        if video is None:
            raise ValueError("a rest face given as a time range needs the video it is in")
        info = probe(Path(video))
        start, end = span
        # The frames shown from `start` up to, not including, `end`.
        first, last = (min(info.n_frames, math.ceil(t * info.fps - 1e-6)) for t in span)
        count = last - first
        if count < 1:
            raise SpfemError(
                f"rest face: {rest} s is past the end of {video} ({info.duration_s:.1f} s long)"
            )
        where = f"{video} from {start:g} to {end:g} s"
    stride = max(1, -(-count // REST_SAMPLES))  # ceil: at most REST_SAMPLES frames
    # A range of a constant-rate video is decoded from its first frame on; a variable-rate
    # video is resampled from its start, as the tracking pass reads it.
    segment = (first, count) if first > 0 and not info.variable_frame_rate else None
    skip = 0 if segment is not None else first
    # Decoded as small as the tracking pass decodes: the shape's scale does not matter, it is
    # fitted onto the clip's own pose.
    size = analysis_size(info.width, info.height)
    with FrameReader(info, size=size, segment=segment) as reader:
        face = median_rest_face(itertools.islice(reader, skip, skip + count, stride), pick=pick)
    if face is None:
        raise SpfemError(f"no face found in the rest face {where}")
    return face


def rest_activations(
    track: FaceTrack, rest_face: RestFace, *, model: ExpressionModel, lids: np.ndarray
) -> np.ndarray | None:
    """(K,) signed AU activations of a calm face (`read_rest_face`) relative to the clip's
    median face, both seen in the clip's reference pose, as `slow_activations` reads every
    frame: the lid AUs off the calm face's lids against the clip's median lids (the median of
    every frame's, the reference its slow readings are relative to, up to smoothing), NaN
    when the calm face is the median of fewer than REST_LID_FACES frames (a photo: one frame's
    lids may be mid-blink or following a glance). lids: the track's `track_lid_heights`.
    None when the clip has no face to compare it with."""
    if track.reference is None:
        return None
    calm = frontal_face_frame(np.asarray(rest_face.shape, np.float64), track.reference)
    offsets = torch.from_numpy(calm - track.median_frontal()).float()[None]
    with torch.no_grad():
        out = signed_activations(model, offsets).numpy()[0].astype(np.float64)
    usual = lids[track.valid]
    seen = np.isfinite(usual).all(axis=1)
    if rest_face.faces >= REST_LID_FACES and seen.any():
        relative = lid_heights(calm[None]) - np.median(usual[seen], axis=0)
    else:
        relative = np.full((1, usual.shape[1]), np.nan)  # every lid reading NaN
    for au, reading in lid_activations(relative, model=model).items():
        out[model.au_names.index(au)] = float(reading[0])
    return out


def estimate_expression(
    track: FaceTrack,
    *,
    model: ExpressionModel,
    sigma_frames: float,
    rest_face: RestFace | None = None,
) -> np.ndarray:
    """AU activations already on the face, relative to the person's rest face, smoothed in time
    (sigma_frames) so that what is replaced is the slow expression, not speech or blinks.

    Read from the clip's median face (`slow_activations`) and turned into the present
    expression by `present_expression`: the rest face is the person's calmest state in the
    clip, so a speaker who smiles more and less keeps only the smile above their calmest
    moments removed when the target replaces it; `rest_face`, the person's calm face
    (`read_rest_face`), shows an expression held through the whole clip. Each shot of the
    video (`FaceTrack.shots`) is read on its own, against its own median and calmest moments:
    a cut may bring another person, whose face would read as an expression against the
    first's (the calm face is read against each). Returns (T, K) float64 in [0, MAX_PRESENT];
    rows without a face and AUs outside REPLACED_AUS are 0.
    """
    current = np.zeros((track.n_frames, len(model.au_names)))
    for start, end in track.shots():
        shot = track.part(start, end)
        if not shot.valid.any():
            continue
        # Found once: both the clip's lids and the calm face's are read against them.
        lids = track_lid_heights(shot)
        acts = slow_activations(shot, model=model, sigma_frames=sigma_frames, lids=lids)
        calm = (
            None if rest_face is None else rest_activations(shot, rest_face, model=model, lids=lids)
        )
        current[start:end] = present_expression(
            acts, au_names=model.au_names, valid=shot.valid, calm=calm
        )
    return current


def tracking_segments(info: VideoInfo) -> list[tuple[int, int] | None]:
    """How the tracking pass is split: two halves tracked at once when the video is long
    enough to repay a second MediaPipe graph and has a constant frame rate (a resampled
    variable-rate video is read in one piece). None means the whole video."""
    if info.variable_frame_rate or info.n_frames < 2 * MIN_SEGMENT_FRAMES:
        return [None]
    half = info.n_frames // 2
    return [(0, half), (half, info.n_frames - half)]


# Frames FaceMesh is shown before each run of frames measured apart from the rest of the
# video (`measured_spans`: a partial edit's speech). Started afresh, its tracking settles
# within a few frames: on Obama and talk_s32 the inner lips found by a tracker started 5 or
# more frames early are 0.04-0.13% of the eye distance from a whole pass's on average (0.1-0.2%
# started on the frame itself, and 0.5-1.5% on that first frame).
MEASURE_LEAD = 10


def measured_spans(
    frames: np.ndarray, *, within: tuple[int, int] | None, lead: int = MEASURE_LEAD
) -> list[tuple[int, int]]:
    """The (first frame, count) spans a pass reads to find landmarks on the frames (T,) bool
    of a video, within the tracking segment `within` ((first, count); None: all T): each run
    of frames begun `lead` frames early, but not before the segment's start (where the
    tracking too starts afresh), spans that meet merged."""
    first, count = within if within is not None else (0, len(frames))
    inside = np.asarray(frames[first : first + count], bool)
    spans: list[tuple[int, int]] = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], inside.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        start, end = first + max(0, int(a) - lead), first + int(b)
        if spans and start <= spans[-1][0] + spans[-1][1]:
            start = spans.pop()[0]
        spans.append((start, end - start))
    return spans


def analysis_size(width: int, height: int) -> tuple[int, int] | None:
    """The size frames are decoded at for tracking: at most ANALYSIS_MAX_SIDE pixels on the
    long side (None: full size). MediaPipe reads the face through a 192-pixel crop, so a face
    loses nothing at this size, and decoding and tracking cost less."""
    side = max(width, height)
    if side <= ANALYSIS_MAX_SIDE:
        return None
    k = ANALYSIS_MAX_SIDE / side
    return max(2, round(width * k)), max(2, round(height * k))


def _reading_segments(
    info: VideoInfo, *others: VideoInfo, frames: np.ndarray | None = None
) -> list[tuple[int, int] | None]:
    """The segments `tracking_readers` reads (None: the whole video in one piece)."""
    if any(v.variable_frame_rate for v in (info, *others)):
        # A variable-rate video is resampled as it is read, which a segment cannot be.
        return [None]
    segments = tracking_segments(info)
    if frames is None:
        return segments
    return [span for seg in segments for span in measured_spans(frames, within=seg)]


def partial_frames(mask: np.ndarray, *, input_lm: np.ndarray | None) -> np.ndarray | None:
    """mask (T,) bool, the frames of an edit to measure; or None where it holds every frame
    with a face (the rows of input_lm (T, 478, 2) that are not NaN; None: every frame), and
    the whole clip is measured as such (`speech_check.check_speech_parts`)."""
    face = np.ones(len(mask), bool)
    if input_lm is not None:
        k = min(len(mask), len(input_lm))
        face[:k] = ~np.isnan(np.asarray(input_lm[:k, 0, 0]))
    return mask if (face & ~mask).any() else None


def measured_frames(info: VideoInfo, *others: VideoInfo, frames: np.ndarray) -> np.ndarray:
    """(T,) bool: the frames a pass over `frames` (T,) bool of the video `info` (read alike
    with `others`, as `tracking_readers` reads them) shows FaceMesh: the `measured_spans`
    of the segments it reads. A video read in one piece is decoded from its start (up to the
    last of those frames), and only those frames are shown."""
    n = len(frames)
    out = np.zeros(n, bool)
    for seg in _reading_segments(info, *others, frames=frames):
        if seg is None:
            for first, count in measured_spans(frames, within=None):
                out[first : first + count] = True
        else:
            out[seg[0] : seg[0] + seg[1]] = True
    return out


def tracking_readers(
    info: VideoInfo,
    *others: VideoInfo,
    frames: np.ndarray | None = None,
    held: np.ndarray | None = None,
) -> tuple[list[tuple[int, list[FrameReader]]], tuple[float, float]]:
    """How the tracking pass reads a video: for each of its `tracking_segments`, the index of
    its first frame and a FrameReader (not yet opened, decoded at `analysis_size`) of `info`
    and of each of `others`, videos of the same frames read alike (an edit of it); and the
    factors (x, y) from the readers' pixels to the video's. The speech check reads videos the
    same way (`evaluate.tracked_landmarks`), so that the landmarks the tracking found on an
    input are the ones the check would find on it.

    frames: (T,) bool, the frames a pass needs (a partial edit's): only their
    `measured_spans` are read, each a segment of its own; a video read in one piece (a
    variable rate) is still read whole.

    held: (T,) bool, the frames of `info` that each of `others` holds, in order (a try of a
    partial edit rendered alone, `render_video(frames=)`); every frame a pass over `frames`
    shows must be held (ValueError). Each segment of them is read where it lies among those;
    a video read in one piece is read whole beside the others, which then step only on held
    frames (`held_in_step`)."""
    size = analysis_size(info.width, info.height)
    segments = _reading_segments(info, *others, frames=frames)
    placed = [segments] * (1 + len(others))
    if held is not None:
        holds = np.zeros(len(held) if frames is None else len(frames), bool)
        holds[: len(held)] = np.asarray(held, bool)[: len(holds)]
        if frames is None or (measured_frames(info, *others, frames=frames) & ~holds).any():
            raise ValueError("a pass reads frames the other videos do not hold")
        if segments != [None]:
            rank = np.cumsum(holds) - holds
            placed[1:] = [[(int(rank[s[0]]), s[1]) for s in segments if s]] * len(others)
    readers = [
        (
            seg[0] if seg else 0,
            [
                FrameReader(v, size=size, segment=spans[i])
                for v, spans in zip((info, *others), placed, strict=True)
            ],
        )
        for i, seg in enumerate(segments)
    ]
    first = readers[0][1][0]
    return readers, (info.width / first.width, info.height / first.height)


def held_in_step(
    readers: Sequence[Iterable[np.ndarray]], *, start: int, held: np.ndarray | None
) -> Iterator[tuple[np.ndarray | None, ...]]:
    """The frames of videos read together, one tuple per frame of the first from its frame
    `start` on: the others step with it, or, with held ((T,) bool: the first video's frames
    that the others hold, in order; `tracking_readers`), only on held frames, and are None
    on the rest. Ends when a video needed runs out."""
    first, *others = (iter(r) for r in readers)
    for t, frame in enumerate(first, start=start):
        if held is not None and not (t < len(held) and held[t]):
            yield (frame, *(None for _ in others))
            continue
        rest = tuple(next(o, None) for o in others)
        if any(f is None for f in rest):
            return
        yield (frame, *rest)


@dataclass
class Analysis:
    """A video's face track and the expression already on the face.

    current: (T, K) AU activations relative to the person's rest face, smoothed in time;
    rims: the glasses the person wears, kept still by the edit; None when they wear none or
    their rims are too faint to trace on most frames (`face.glasses.RimFinder.rims`), and
    when they wear dark lenses; lenses: the person wears dark lenses over their eyes,
    kept still by the edit (`face.lenses`);
    side: the subject's side that plays the one-sided units, and side_reason why
    (`choose_side`); face: which face was taken up where there are several (`--face`);
    blur_px: how blurred the picture of the face is, a Gaussian's scale in the video's
    pixels (`face.sharpness.BlurFinder`; 0: not read), which the shading's lines take on.
    """

    info: VideoInfo
    track: FaceTrack
    current: np.ndarray
    rims: Rims | None = None
    lenses: bool = False
    side: Side = "right"
    side_reason: str = "where the model draws them"
    face: FacePick = LARGEST_FACE
    blur_px: float = 0.0

    def deltas(
        self, *, target: np.ndarray, weights: np.ndarray, removal: float = 1.0
    ) -> np.ndarray:
        """AU changes per frame (T, K) that replace the current expression with `target`
        (K,) or (T, K), scaled by the per-frame edit weight (T,); 0 where there is no face.

        removal in [0, 1]: how much of the current expression is taken away (1: replaced)."""
        full = np.broadcast_to(target, self.current.shape) - removal * self.current
        out = weights[:, None] * full
        out[~self.track.valid] = 0.0
        return out

    def edit_frame(
        self,
        frame: np.ndarray,
        t: int,
        *,
        generator: FaceGenerator,
        delta: np.ndarray,
        rims: SteadyRims | Traced | None = None,
        mouth_scale: float = 1.0,
    ) -> np.ndarray:
        """Frame t (H, W, 3) uint8 of the analysed video edited by the AU change delta (K,):
        on its tracked face, with the expression already on it (`current`, which lifts the
        creases of what the edit takes off: a frown's furrows, the lines a squint or a smile
        presses under and beside the eyes, raised brows' forehead lines; `generator.creases`),
        its shading blurred as the picture is (`blur_px`).
        rims and mouth_scale as `FaceGenerator.edit_frame` takes them."""
        face = self.track.frame(t)
        return generator.edit_frame(
            frame,
            face=face,
            points=np.asarray(self.track.norm[t], np.float64),
            delta=delta,
            rims=rims,
            lenses=self.lenses,
            present=self.current[t],
            side=self.side,
            mouth_scale=mouth_scale,
            softness=self.blur_px / face.iod,
        )

    def side_note(self, deltas: np.ndarray, *, model: ExpressionModel) -> str | None:
        """Which side an edit by deltas (T, K) of the AUs of `model` plays its one-sided units
        on, and why; None when it plays none."""
        if not np.any(deltas[:, model.one_sided.numpy()]):
            return None
        other = "left" if self.side == "right" else "right"
        return (
            f"the one-sided sneer is on the subject's {self.side} side ({self.side_reason}); "
            f"--side {other} puts it on the other"
        )


def near_side(turn: float) -> Side:
    """The side that plays the one-sided units on a head turned `turn` degrees (positive: the
    subject's right side nearer the camera): the nearer side, or on a frontal face
    (`FRONTAL_TURN_DEG`) the right."""
    return "left" if turn < -FRONTAL_TURN_DEG else "right"


def choose_side(asked: str, *, turn: float, mirrors: bool) -> tuple[Side, str]:
    """The side that plays the one-sided units, and why (for the edit's note): `asked` as
    `--side` takes it (SIDE_CHOICES), on a head turned `turn` degrees (`FaceTrack.turn`), with
    an expression model that can (mirrors) or cannot play them on the left."""
    if asked != "auto":
        return cast(Side, asked), "as --side asks"
    if not mirrors:
        return "right", "the expression model has no mirror map"
    if abs(turn) <= FRONTAL_TURN_DEG:
        return near_side(turn), "the face is frontal"
    toward = "left" if turn > 0 else "right"
    return near_side(turn), (
        f"the side nearer the camera: the head is turned {abs(turn):.0f} degrees to the "
        f"subject's {toward}"
    )


def analyse_video(
    info: VideoInfo,
    *,
    model: ExpressionModel,
    workdir: Path,
    reporter: Reporter,
    rest_face: RestFace | None = None,
    side: str = "auto",
    face: FacePick = LARGEST_FACE,
) -> Analysis:
    """Track the face on every frame (one streamed decode) and estimate its expression
    (against the person's calm face `rest_face`, when given: `estimate_expression`).
    side: where the one-sided units play (`SIDE_CHOICES`, decided by `choose_side`).
    face: which face is taken up and followed where there are several (`--face`).

    workdir holds the memory-mapped landmark arrays and must outlive the Analysis.
    """
    mirrors = model.left_basis is not None
    if side == "left" and not mirrors:
        # Refused before the tracking pass: the model could only play them on the right.
        raise SpfemError(
            "--side left needs an expression model with a mirror map; this one plays its "
            "one-sided units on the subject's right side only"
        )
    segments, scale = tracking_readers(info)
    with contextlib.ExitStack() as stack:
        sources = [(first, stack.enter_context(reader)) for first, (reader,) in segments]
        total = sum(r.expected_frames for _, r in sources)
        finder = RimFinder(n_frames=total)
        lens_finder = LensFinder(n_frames=total)
        blur_finder = BlurFinder(n_frames=total)

        def on_face(t: int, frame: np.ndarray, landmarks: np.ndarray) -> None:
            finder.offer(t, frame, landmarks)
            lens_finder.offer(t, frame, landmarks)
            blur_finder.offer(t, frame, landmarks)

        adv = stack.enter_context(reporter.stage("Tracking face", total))
        track = track_frames(
            sources,
            n_frames=total,
            workdir=workdir,
            pixel_scale=scale,
            on_frame=adv,
            on_face=on_face,
            # A segment read again is read as the first time.
            reopen=lambda k: tracking_readers(info)[0][k][1][0],
            pick=face,
        )
    current = np.zeros((track.n_frames, int(model.au_basis.shape[0])))
    if track.n_valid:
        current = estimate_expression(
            track,
            model=model,
            sigma_frames=EXPRESSION_SMOOTHING_S * float(info.fps),
            rest_face=rest_face,
        )
    chosen, reason = choose_side(side, turn=track.turn, mirrors=mirrors)
    lenses = lens_finder.found()
    return Analysis(
        info=info,
        track=track,
        current=current,
        rims=None if lenses else finder.rims(),
        lenses=lenses,
        side=chosen,
        side_reason=reason,
        face=face,
        blur_px=blur_finder.blur_px() * scale[0],
    )


def validate_options(
    *,
    info: VideoInfo,
    intensity: float,
    start: float | None,
    end: float | None,
    mouth: str,
    side: str = "auto",
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
) -> None:
    check_encoding(crf=crf, preset=preset)
    check_intensity(intensity)
    check_mouth_mode(mouth)
    check_side(side)
    check_time_range(start=start, end=end)
    if (start is not None or end is not None) and info.n_frames == 1:
        raise SpfemError(
            f"--start and --end choose a time range of a video; {info.path.name} is one frame"
        )
    if start is not None and start >= info.duration_s:
        raise SpfemError(
            f"--start {start} s is past the end of the video ({info.duration_s:.2f} s)"
        )


def check_time_range(*, start: float | None, end: float | None) -> None:
    """Refuse a `--start`/`--end` (seconds; None: open) that no video could hold: a negative
    start, an end at or before 0 or before the start. `spfem edit` and `spfem check` alike."""
    if start is not None and start < 0:
        raise SpfemError(f"--start must be >= 0 seconds, got {start}")
    if end is not None and start is not None and end <= start:
        raise SpfemError(f"--end ({end} s) must be after --start ({start} s)")
    if end is not None and end <= 0:
        raise SpfemError(f"--end must be > 0 seconds, got {end}")


def drop_late_segments(timeline: Timeline, *, info: VideoInfo) -> tuple[Timeline, list[str]]:
    """`timeline` without its segments that start at or after the video's end, which would
    play nothing, and a note naming them; SpfemError when that is all of them (nothing would
    change, as with a `--start` past the end)."""
    late = [s for s in timeline.segments if s.start is not None and s.start >= info.duration_s]
    if not late:
        return timeline, []
    shown = ", ".join(range_text(s) for s in late)
    where = f"past the end of the video ({info.duration_s:.2f} s)"
    if len(late) == len(timeline.segments):
        raise SpfemError(f"the timeline ({shown}) starts {where}: nothing would change")
    kept = tuple(s for s in timeline.segments if s not in late)
    verb = "start" if len(late) > 1 else "starts"
    return replace(timeline, segments=kept), [f"the timeline's {shown} {verb} {where}: not played"]


def check_side(side: str) -> None:
    """Refuse a `--side` that is not one of SIDE_CHOICES."""
    if side not in SIDE_CHOICES:
        raise SpfemError(f"unknown side {side!r}; choose one of: {', '.join(SIDE_CHOICES)}")


def edited_frames(track: FaceTrack, deltas: np.ndarray) -> np.ndarray:
    """(T,) bool: the frames `render_video` edits with the AU changes deltas (T, K): those
    with a face and a change."""
    return track.valid & np.any(deltas[: track.n_frames] != 0, axis=1)


def render_video(
    analysis: Analysis,
    *,
    generator: FaceGenerator,
    deltas: np.ndarray,
    output: Path,
    workdir: Path,
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
    reporter: Reporter | None = None,
    label: str = "",
    mouth_scale: float | np.ndarray = 1.0,
    frames: np.ndarray | None = None,
) -> int:
    """Decode the analysed video again, edit each frame by its AU change, encode, remux audio;
    or, for an image `output` (a photo's edit, `is_image_output`), write its one frame.

    deltas: (T, K) AU activation change per frame (0 rows pass through); mouth_scale: a factor
    on the mouth AUs' motion, not on their shading (`FaceGenerator.edit_frame`), for every
    frame or (T,) one per frame (a timeline's parts kept apart, `render_edit`); frames: (T,)
    bool, only these frames are written, in order and without audio (a try of a partial
    edit, measured alone: `render_edit`), each frame edited as in the whole video (but for
    a wearer's rims, traced afresh at each run of them); a constant-rate video decodes only
    their runs, a variable-rate one is resampled from its start up to the last of them. The
    result appears at `output` only when everything succeeded. Returns the number of frames
    edited.
    """
    rep = reporter or SilentReporter()
    info, track = analysis.info, analysis.track
    device = generator.warper.device
    n_edited = 0
    rims = None if analysis.rims is None else SteadyRims(analysis.rims, fps=float(info.fps))
    still = is_image_output(output)
    # The runs of frames decoded (first frame, reader's segment; None: the whole video).
    runs: list[tuple[int, tuple[int, int] | None]] = [(0, None)]
    if frames is not None and not info.variable_frame_rate:
        runs = [(span[0], span) for span in measured_spans(frames, within=None, lead=0)]
    # The frames a run writes (None: all it reads), and the last one any run needs.
    wanted = None if frames is None else np.asarray(frames, bool)
    last = track.n_frames if wanted is None else int(np.flatnonzero(wanted).max(initial=-1))
    follows = 0  # the frame that follows the last one written
    scales = np.broadcast_to(mouth_scale, (track.n_frames,))
    edited = edited_frames(track, deltas)
    with atomic_output(output) as final_tmp:
        video_tmp = final_tmp if frames is not None else workdir / f"video{output.suffix}"
        with (
            StillWriter(final_tmp, source=info.path)
            if still
            else FrameWriter(
                video_tmp,
                width=info.width,
                height=info.height,
                fps=FrameReader(info).fps,
                pix_fmt=output_pix_fmt(info),
                color=info.color,
                crf=crf,
                preset=preset,
            ) as writer,
            rep.stage(
                f"Editing ({label})" if label else "Editing",
                track.n_frames if frames is None else int(np.sum(frames)),
            ) as adv,
            torch_threads(1 if device.type == "cpu" else torch.get_num_threads()),
        ):
            for first, segment in runs:
                with FrameReader(info, segment=segment) as reader:
                    for t, frame in enumerate(reader, start=first):
                        if wanted is not None and not (t < len(wanted) and wanted[t]):
                            if t >= last:
                                break
                            continue
                        if rims is not None and t != follows:
                            # The frames before it are not rendered: the rims are traced
                            # afresh, as after frames passed through.
                            rims.skip()
                        follows = t + 1
                        if t < track.n_frames and edited[t]:
                            frame = analysis.edit_frame(
                                frame,
                                t,
                                generator=generator,
                                delta=deltas[t],
                                rims=rims,
                                mouth_scale=float(scales[t]),
                            )
                            n_edited += 1
                        elif rims is not None:
                            rims.skip()
                        writer.write(frame)
                        adv()
        if not still and frames is None:
            mux_streams(video_only=video_tmp, source=info, output=final_tmp)
    return n_edited


@dataclass
class Editor:
    """What turns a timeline into edited frames under one set of options: the expression
    model, the generator (with its mouth mode and device), the resolver of emotion names, and
    the person's checkpoint when one is used (`spfem finetune`)."""

    expression: ExpressionModel
    generator: FaceGenerator
    vector_of: Resolver
    personal: PersonalCheckpoint | None = None

    @classmethod
    def load(
        cls,
        *,
        model: str | Path,
        device: str,
        mouth: MouthMode,
        generator: str | None = None,
        checkpoint: str | Path | None = None,
        refiner: str | Path = DEFAULT_REFINER,
    ) -> Editor:
        """generator: "refiner" (warp + the shipped refiner) or "warp" (the warp alone); None:
        the refiner with a personal checkpoint (the person's own), else `DEFAULT_GENERATOR`.

        checkpoint: a personal checkpoint (`spfem finetune`): the emotions become the
        person's (prototypes plus their offsets) and, with the refiner generator, the refiner
        is the person's. It must fit the expression model `model`. refiner: the refiner of the
        refiner generator without a personal checkpoint (a manifest name or a file of
        `spfem train refiner`)."""
        expression = ExpressionModel.load(model).to("cpu")
        personal = None
        if checkpoint is not None:
            from spfem_cli.pcmecl.personal import load_personal

            personal = load_personal(checkpoint, expression=expression)
        if generator is None:
            generator = "refiner" if personal is not None else DEFAULT_GENERATOR
        if personal is not None and generator == "refiner":
            gen = FaceGenerator(
                model=expression,
                device=resolve_device(device),
                mouth=mouth,
                refiner=personal.refiner,
            )
        else:
            gen = build_generator(
                model=expression,
                device=resolve_device(device),
                mouth=mouth,
                kind=generator,
                refiner=refiner,
            )
        vector_of = default_resolver(functools.partial(_emotion_vector, expression, personal))
        return cls(expression=expression, generator=gen, vector_of=vector_of, personal=personal)

    def prototypes(self) -> torch.Tensor:
        """The emotion vectors (E, K) this editor plays: the model's, with the person's
        offsets when a personal checkpoint is loaded."""
        if self.personal is not None:
            return self.personal.prototypes(self.expression)
        return self.expression.prototypes.float().cpu()

    def emotion_vector(self, name: str) -> np.ndarray:
        """AU activations (K,) float64 of a known emotion at intensity 1."""
        return _emotion_vector(self.expression, self.personal, name)

    def with_mouth(self, mouth: MouthMode) -> Editor:
        """This editor with its generator in another mouth mode (`played_mouth`)."""
        if mouth == self.generator.mouth:
            return self
        return replace(self, generator=self.generator.with_mouth(mouth))

    def with_texts(self, vectors: Mapping[str, np.ndarray]) -> Editor:
        """This editor with free texts resolved to the given AU vectors (K,) (open
        vocabulary); a text not among them is refused as without CLIP."""
        known = {text: np.asarray(vec, dtype=np.float64) for text, vec in vectors.items()}

        def text_vector(text: str) -> np.ndarray:
            if text not in known:
                raise free_text_error(Part(name=text, weight=1.0, is_text=True))
            return known[text]

        return replace(
            self, vector_of=default_resolver(self.emotion_vector, text_vector=text_vector)
        )

    def deltas(self, analysis: Analysis, timeline: Timeline, *, intensity: float) -> np.ndarray:
        """(T, K) AU change per frame that plays `timeline` on the analysed video."""
        track = analysis.track
        targets, weights = render(
            timeline, n_frames=track.n_frames, fps=float(analysis.info.fps), resolve=self.vector_of
        )
        # Intensity scales the whole edit, removal of the present expression included, so
        # that 0 means no change at all.
        return analysis.deltas(
            target=self.within_reach(intensity * targets),
            weights=weights,
            removal=min(intensity, 1.0),
        )

    def within_reach(self, targets: np.ndarray) -> np.ndarray:
        """AU targets (T, K) or (K,) scaled down where a mixture plays an AU past the most
        this editor's emotions play it at MAX_INTENSITY (`targets.within_reach`)."""
        return within_reach(targets, prototypes=self.prototypes().double().numpy())


def edit_parts(analysis: Analysis, timeline: Timeline) -> EditParts | None:
    """The parts of a timeline's edit whose speech `render_edit` keeps each on its own: its
    segments; None for one segment (the whole edit is one part)."""
    if len(timeline.segments) == 1:
        return None
    shares = segment_shares(
        timeline, n_frames=analysis.track.n_frames, fps=float(analysis.info.fps)
    )
    return EditParts(shares=shares, names=tuple(segment_name(s) for s in timeline.segments))


def _emotion_vector(
    expression: ExpressionModel, personal: PersonalCheckpoint | None, name: str
) -> np.ndarray:
    """AU activations (K,) float64 of a known emotion at intensity 1, as the person shows it
    when there is a personal checkpoint."""
    if personal is not None:
        return personal.emotion_vector(expression, name).double().numpy()
    return expression.emotion_vector(name).double().numpy()


# The emotions that show much of themselves in the lips, which natural mode keeps near the
# speech and expressive mode moves further, as a real expression does: happy's and contempt's
# lip corners, and disgust's raised upper lip (re-detected on speech_obama, mouth only: its top
# edge rises 0.054 IOD in expressive mode, 0.026 in natural; scripts/measure_expressions.py
# and tests/test_edit_real.py).
MOUTH_EMOTIONS = ("happy", "contempt", "disgusted")


@dataclass(frozen=True)
class EditParts:
    """The parts of an edit whose speech is kept each on its own, a timeline's segments: one
    emotion's lip corners may change how the lips read where another's do not, and backing
    off every part for one would spend the others' expression for nothing. shares: (T, P) how
    much of each frame is each part's (`targets.segment_shares`: rows sum to 1 where the
    timeline plays, crossfading between touching parts); names: each part as the notes name
    it ("0-3 s happy")."""

    shares: np.ndarray
    names: tuple[str, ...]


@dataclass(frozen=True)
class Rendered:
    """What `render_edit` made: n_edited, the frames edited; notes, what was measured;
    mouth_scales, each part's factor on the mouth AUs' changes at the output (1: as asked;
    `KEEP_SPEECH_SCALES`); measuring_s: the seconds spent measuring, all tries together."""

    n_edited: int
    notes: list[str]
    mouth_scales: tuple[float, ...] = (1.0,)
    measuring_s: float = 0.0

    @property
    def mouth_scale(self) -> float:
        """The smallest part's factor on the mouth AUs' changes."""
        return min(self.mouth_scales)


def render_edit(
    analysis: Analysis,
    *,
    editor: Editor,
    deltas: np.ndarray,
    input_path: Path,
    output: Path,
    workdir: Path,
    crf: int,
    preset: str,
    reporter: Reporter,
    label: str,
    keep_speech: bool,
    parts: EditParts | None = None,
) -> Rendered:
    """`render_video` of the analysed video `input_path` to `output` by the editor's
    generator; with keep_speech, measured with `speech_check.check_speech_parts` on the frames
    it edits (frames passed through would dilute the verdict on a partial edit), each of the
    edit's `parts` on its own frames (None: one part), and rendered again with the mouth AUs'
    motion of the parts whose speech changed scaled down (`KEEP_SPEECH_SCALES`; their shading,
    a smile's folds, stays) until every part keeps the speech or holds its corners (only the
    last try appears at `output`, once measured). Where the parts that can move their
    corners less (those that move the mouth) are a short range of the video, the tries render
    and measure only that range (`tried_alone`); the video is then rendered with the corners'
    motion they found and measured in turn, every part. So are those still changed after
    the first try of the video, where they are a short range of it (a timeline's short part
    beside a long one that kept its speech)."""
    track = analysis.track
    # The frames render_video edits, which the speech is measured on.
    edited = edited_frames(track, deltas)
    shares = np.ones((len(deltas), 1)) if parts is None else parts.shares
    owner = np.argmax(shares[: track.n_frames], axis=1)
    masks = [edited & (owner == p) for p in range(shares.shape[1])]
    mouth = editor.generator.mouth_units
    n = track.n_frames
    # A part that leaves the mouth units be would render the same frames on every try.
    ladders = [
        KEEP_SPEECH_SCALES if keep_speech and np.any(deltas[:n][m][:, mouth]) else (1.0,)
        for m in masks
    ]
    levels = [0] * len(masks)
    # The tries are rendered in the workdir and measured there; only the last reaches output.
    target = workdir / f"speech-try{output.suffix}" if keep_speech else output
    # The parts tried on their own range: those whose own emotion moves the mouth (on frames
    # all theirs: a crossfade brings a neighbour's corners into an emotion that leaves the
    # mouth be). The others are measured on the video, and tried there where they must be.
    tried = [
        p
        for p, ladder in enumerate(ladders)
        if len(ladder) > 1 and np.any(deltas[:n][masks[p] & (shares[:n, p] >= 1.0)][:, mouth])
    ]
    alone = tried_alone(analysis, [masks[p] for p in tried]) if keep_speech else None
    # Whether the corners' motion is being, or has been, searched on a range alone: only once,
    # since after the video reads changed where the range read kept, another try of the range
    # would only read kept again.
    searched_alone = alone is not None
    n_edited, notes = 0, []
    measuring_s = 0.0

    def render(to: Path, *, scales: np.ndarray, frames: np.ndarray | None) -> int:
        """render_video to `to` with the parts' factors on the mouth's motion `scales`."""
        return render_video(
            analysis,
            generator=editor.generator,
            deltas=deltas,
            output=to,
            workdir=workdir,
            crf=crf,
            preset=preset,
            reporter=reporter,
            label=_try_label(label, scales, alone=frames is not None),
            mouth_scale=float(scales[0]) if parts is None else shares @ scales,
            frames=frames,
        )

    while True:
        scales = np.array([ladder[k] for ladder, k in zip(ladders, levels, strict=True)])
        n_edited = render(target, scales=scales, frames=alone)
        if not (keep_speech and n_edited):
            break
        # Imported here: speech_check measures with evaluate, which builds on this module.
        from spfem_cli.speech_check import check_speech_parts

        t0 = time.perf_counter()
        try:
            found = check_speech_parts(
                before=input_path,
                after=target,
                parts=masks if alone is None else [masks[p] for p in tried],
                reporter=reporter,
                # The tracking's landmarks are the check's own on the input.
                input_lm=track.raw,
                whole=False,
                workdir=workdir,
                held=alone,
            )
            if alone is not None:
                by_part: list[SpeechCheck | str] = ["not tried"] * len(masks)
                for p, check in zip(tried, found, strict=True):
                    by_part[p] = check
                found = by_part
        except SpfemError as exc:
            # The edit was made; only its measurement could not be (a face FaceMesh finds
            # too seldom, say), which is no reason to throw the edit away.
            notes.append(f"the speech was not measured: {exc}")
            break
        finally:
            measuring_s += time.perf_counter() - t0
        again = [
            p
            for p, check in enumerate(found)
            if not isinstance(check, str) and not check.kept and levels[p] < len(ladders[p]) - 1
        ]
        if not again and alone is not None:
            # The tries found the corners' motion; the video is rendered with it and measured
            # in turn: the encoder's noise differs between the two (1.8 levels a pixel on
            # speech_man) and moves FaceMesh's reading of a borderline mouth. Where the video
            # reads changed, it goes on down the ladder as a whole.
            alone = None
            continue
        if not again:
            names = ("",) * len(masks) if parts is None else tuple(f"{x}: " for x in parts.names)
            notes += [
                name + _part_said(check, scale=float(scale))
                for name, check, scale, mask in zip(names, found, scales, masks, strict=True)
                if mask.any()  # a part that edited no frame has nothing to say
            ]
            break
        for p in again:
            levels[p] += 1
        if not searched_alone and set(again) <= set(tried):
            # A long part kept its speech on the video and a short one did not (a timeline):
            # the short one is searched on its range alone, as if it had been alone from the
            # start; the parts kept stay as they are.
            tried = again
            alone = tried_alone(analysis, [masks[p] for p in tried])
            searched_alone = alone is not None
    if alone is not None:
        # Its measuring failed: the video is rendered, unmeasured, as the try was.
        n_edited = render(output, scales=scales, frames=None)
    elif target != output:
        with atomic_output(output) as final_tmp:
            shutil.copyfile(target, final_tmp)
    return Rendered(
        n_edited=n_edited,
        notes=notes,
        mouth_scales=tuple(float(x) for x in scales),
        measuring_s=measuring_s,
    )


def _try_label(label: str, scales: np.ndarray, *, alone: bool = False) -> str:
    """The progress bar's label of a try of `render_edit` with the parts' scales; alone: of
    the frames measured only (`tried_alone`)."""
    said = label
    if not np.all(scales == 1.0):
        said = f"{label}, lip corners at {'/'.join(f'{x:g}' for x in scales)}"
    return f"{said}, measured frames" if alone else said


# The most of a video, as a share of its frames, that a try of `render_edit` renders alone
# (`tried_alone`). The range is rendered once more with the whole video, so the tries pay
# for themselves where the video is the larger part: the edit of 2 s of a 100 s clip whose
# corners move less on a second try renders the 2 s three times and the 100 s once, not the
# 100 s twice.
ALONE_SHARE = 0.25


def tried_alone(analysis: Analysis, masks: Sequence[np.ndarray]) -> np.ndarray | None:
    """(T,) bool, the frames a try of `render_edit` renders (and `check_speech_parts` reads)
    when the frames `masks` ((T,) bool each) of the parts it tries are a short range of the
    video: their `measured_frames`, where those are at most `ALONE_SHARE` of the video's
    frames; None: the try renders the whole video (the parts hold every frame with a face,
    or a longer range). A variable-rate video is still decoded from its start up to them,
    but only they are edited, encoded and measured."""
    info, track = analysis.info, analysis.track
    n = FrameReader(info).expected_frames
    if not masks:
        return None
    union = np.zeros(n, bool)
    union[: track.n_frames] = np.logical_or.reduce(masks)[:n]
    if not union.any() or partial_frames(union, input_lm=track.raw) is None:
        return None
    shown = measured_frames(info, frames=union)
    return shown if shown.sum() <= ALONE_SHARE * n else None


def _part_said(check: SpeechCheck | str, *, scale: float) -> str:
    """The note of one part's last try in `render_edit`: its verdict, the corners' motion, and
    strict mode where the speech stayed changed; or why it was not measured."""
    if isinstance(check, str):
        return f"the speech was not measured: {check}"
    said = check.lines()[0] + _corners_said(scale)
    return said if check.kept else f"{said}; --mouth strict keeps the whole mouth region"


def _corners_said(scale: float) -> str:
    """How far the lip corners moved on a try of `render_edit`, for its note."""
    if scale == 1.0:
        return ""
    if scale == 0.0:
        return " with the lip corners held"
    share = {0.5: "half", 0.25: "a quarter"}.get(scale, f"{scale:g} times")
    return f" with the lip corners moving {share} as far"


# `render_edit(keep_speech=True)`: how far the lip corners move (a factor on the mouth AUs'
# motion, `EXPRESSIVE_MOUTH_AUS`) on each try, until the edit is measured to keep the speech
# (`speech_check`). Natural mode's corners change how FaceMesh reads some speakers' lips
# (speech_man's sad: opening correlation 0.960 at 1, 0.980 at a half). A quarter before none:
# speech_man's happy reads 0.979 at a half and 0.989 at a quarter, so it keeps a little smile
# for the same three tries that held its corners. The smile's folds stay at every try: drawn
# with the corners held they read 0.987 there (0.993 on Obama).
KEEP_SPEECH_SCALES = (1.0, 0.5, 0.25, 0.0)


# A photo has no speech for natural mode to keep its lips near: what `played_mouth` says.
PHOTO_MOUTH_NOTE = (
    "a photo has no speech: its lip corners move as far as in a real expression, as "
    "--mouth expressive moves them (natural mode keeps a video's lips near its speech); "
    "--mouth strict keeps the mouth as it is"
)


# A video whose mouth never moves has no speech either: what `played_mouth` says of it.
STILL_MOUTH_NOTE = (
    "the mouth does not move in this video (no speech to keep): its lip corners move as far as "
    "in a real expression, as --mouth expressive moves them (natural mode keeps a speaker's "
    "lips near the speech); --mouth strict keeps the mouth as it is"
)


def played_mouth(
    mouth: MouthMode, *, photo: bool, track: FaceTrack | None = None
) -> tuple[MouthMode, str | None]:
    """The mouth mode an edit plays, and a note when it is not the one asked: natural mode on
    a photo, or on a video whose mouth never moves (`mouth_is_still` on the track, once there
    is one: stock footage of a face that does not speak), is expressive mode. Natural mode
    holds the lips near the speech, so that FaceMesh finds the same inner lips and opening on
    the edit; a photo has no speech to keep, and its smile's corners, held so, rose a seventh
    to two fifths as far as expressive mode's (`scripts/measure_photos.py`); on a silent
    video the judge of `scripts/judge_emotions.py` read talk_s18's natural happy at 0.28 and
    its expressive happy at 0.75."""
    if mouth != "natural":
        return mouth, None
    if photo:
        return "expressive", PHOTO_MOUTH_NOTE
    if track is not None and mouth_is_still(track.raw):
        return "expressive", STILL_MOUTH_NOTE
    return mouth, None


def mouth_hint(timeline: Timeline | Sequence[Timeline], *, mouth: str) -> str | None:
    """A hint for an edit whose emotion shows much of itself in the lips, in natural mouth
    mode: the lips move only a little there, and `--mouth expressive` moves them further.
    timeline: the edit's, or several (a preview's columns). None when it does not apply."""
    if mouth != "natural":
        return None
    timelines = [timeline] if isinstance(timeline, Timeline) else list(timeline)
    names = sorted(
        {
            part.name
            for one in timelines
            for segment in one.segments
            for part in segment.parts
            if part.name in MOUTH_EMOTIONS and part.weight > 0
        }
    )
    if not names:
        return None
    one = len(names) == 1
    listed = names[0] if one else f"{', '.join(names[:-1])} and {names[-1]}"
    return (
        f"{listed} {'shows much of itself' if one else 'show much of themselves'} in the lips, "
        "which --mouth natural keeps close to the speech (they move a little); "
        "--mouth expressive moves them further, as a real expression does"
    )


# A mouth never moves where, besides its opening's spread being under
# `speech_check.STILL_MOUTH`, the opening's range between these quantiles over the clip is
# under STILL_RANGE (IOD): a few seconds of speech in a long silent clip hardly move the
# spread (a mouth open 0.15 IOD for 2 s of a minute: 0.027, for 1 s: 0.019), but they reach
# past the range's top. talk_s18 0.002, talk_s20 0.059; portrait_s29's smile parts her lips, 0.096;
# the speakers 0.276-0.488.
STILL_QUANTILES = (0.005, 0.995)
STILL_RANGE = 0.08


def mouth_is_still(landmarks: np.ndarray | None) -> bool:
    """Whether the mouth's opening barely varies over a video's frames with a face (its
    spread under `speech_check.STILL_MOUTH`, its range under STILL_RANGE): a face that does
    not speak, such as stock footage's. landmarks: (T, 478, 2) pixels as FaceMesh found them
    (`FaceTrack.raw`: NaN on the frames without a face), read a chunk at a time; None: not
    known, taken as speaking."""
    # Imported here: speech_check measures with evaluate, which builds on this module.
    from spfem_cli.speech_check import STILL_MOUTH, openings

    if landmarks is None:
        return False
    values = openings(landmarks)
    if values.size < 2:
        return False
    low, high = np.quantile(values, STILL_QUANTILES)
    return bool(values.std() < STILL_MOUTH and high - low < STILL_RANGE)


def analysis_notes(analysis: Analysis, *, rest_face: RestFace | None = None) -> list[str]:
    """What a user should know about the input and its faces, one line each, and of the calm
    face it was read against (`--rest`; None: none given): `rest_note`, `held_smile_note`."""
    info, track = analysis.info, analysis.track
    notes = []
    if info.variable_frame_rate:
        notes.append(f"variable frame rate input: written at a constant {float(info.fps):.3f} fps")
    shots = track.shots()
    if len(shots) > 1:
        times = ", ".join(f"{start / float(info.fps):.2f}" for start, _ in shots[1:6])
        more = ", ..." if len(shots) > 6 else ""
        notes.append(
            f"the video cuts {'once' if len(shots) == 2 else f'{len(shots) - 1} times'} (at "
            f"{times}{more} s): each shot's expression is read against its own calm face"
        )
    if track.n_valid == 0:
        notes.append("no face was found in any frame: the video passes through unchanged")
    elif track.n_valid < track.n_frames:
        notes.append(
            f"{track.n_frames - track.n_valid} of {track.n_frames} frames have no face "
            "and pass through unchanged"
        )
    max_faces = int(track.n_faces.max()) if track.n_frames else 0
    if max_faces > 1:
        notes.append(
            f"up to {max_faces} faces in a frame: one was edited, {analysis.face.described} "
            "where it first appears, followed from frame to frame"
        )
    if analysis.rims is not None:
        notes.append("glasses found: their rims are kept still and the face is edited behind them")
    if analysis.lenses:
        notes.append(
            "dark glasses found: the lenses are kept still and the face is edited around them"
        )
    for note in (rest_note(rest_face), held_smile_note(track, rest_face=rest_face)):
        if note:
            notes.append(note)
    return notes


def rest_note(rest_face: RestFace | None) -> str | None:
    """What the user should know of a calm face given (`--rest`; None: none given): that one
    read from fewer than REST_LID_FACES frames does not tell where the lids usually stand."""
    if rest_face is None or rest_face.faces >= REST_LID_FACES:
        return None
    frames = "one frame" if rest_face.faces == 1 else f"{rest_face.faces} frames"
    return (
        f"the calm face is read from {frames}: where the lids usually stand is read from the "
        f"video (a clip or time range of {REST_LID_FACES} frames or more would tell it)"
    )


def held_smile_note(track: FaceTrack, *, rest_face: RestFace | None) -> str | None:
    """What the user should know of a face that smiles throughout the video (`held_smile`),
    read without a calm face (`--rest`): the smile's upper-face signs stay under any emotion.
    None where there is no such smile, or a calm face was given."""
    if rest_face is not None:
        return None
    lift = held_smile(track.norm, track.valid)
    if lift is None:
        return None
    return (
        f"the face smiles throughout (its lip corners stay {lift:.2f} of the eye distance above "
        "the lips' middle at their lowest; calm faces 0.03 or less): "
        "its expression is read against its calmest moments, so the smile's raised cheeks and "
        "narrowed eyes stay under the emotion asked; --rest with a calm photo or clip of the "
        "person takes them off"
    )


def edit_video(
    *,
    input_path: str | Path,
    emotion: str,
    output_path: str | Path | None = None,
    intensity: float = 1.0,
    device: str = "auto",
    mouth: MouthMode = "natural",
    generator: str | None = None,
    start: float | None = None,
    end: float | None = None,
    overwrite: bool = False,
    model: str | Path = DEFAULT_MODEL,
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
    checkpoint: str | Path | None = None,
    refiner: str | Path = DEFAULT_REFINER,
    clip_arch: str = "ViT-B-32",
    clip_weights: str | Path | None = None,
    clip_config: str | Path | None = None,
    prompts: str | Path | None = None,
    rest: str | Path | None = None,
    rest_face: RestFace | None = None,
    side: str = "auto",
    face: str = "largest",
    keep_speech: bool | None = None,
    reporter: Reporter | None = None,
) -> EditReport:
    """Change the emotion on the face in a video, keeping speech, audio and timing.

    generator: "refiner" (the warp and the learned refiner) or "warp" (the warp alone); None:
    the person's refiner with `checkpoint`, else `DEFAULT_GENERATOR`.
    checkpoint: a personal checkpoint of `spfem finetune` (the person's emotions and refiner).
    refiner: the refiner of the refiner generator when there is no personal checkpoint.
    Free text in `emotion` ("smug"; open vocabulary, see `spfem_cli.pcmecl.open_vocab`) needs
    `clip_weights` (an open_clip tag, downloaded once, or a local file) for the CLIP
    architecture `clip_arch` (`clip_config`: a JSON config for one open_clip does not ship);
    `prompts` (of `spfem train-prompts`, same CLIP) personalises how CLIP reads it.
    rest: a photo or clip of the same person with a calm face, or a time range of the input
    where their face is calm ("0-2.5", seconds; `read_rest_face`), so that an expression held
    through the rest of the video is replaced too; rest_face: that calm face already read
    (`read_rest_face`), so that a batch reads it once.
    side: the subject's side for contempt's one-sided sneer (`SIDE_CHOICES`; "auto": the side
    nearer the camera, or the right on a frontal face).
    face: which face is edited where there are several (`FacePick.parse`: largest, left,
    right, or a point X,Y as fractions of the frame), taken up where it first appears and
    followed from frame to frame.
    crf, preset: x264's constant rate factor and preset for a video output
    (`spfem_cli.encoding`; checked before the tracking pass).
    keep_speech: measure the edit's speech as `spfem check` does (`speech_check`), and where
    it changed edit again with the lip corners moving less (`KEEP_SPEECH_SCALES`); the notes
    say what was measured. Videos only; None: in natural mouth mode on a video
    (`keeps_speech`).
    output_path: the file to write, or a folder to write it in under the name it would have
    beside the input (`default_output_path`); None: beside the input.

    Frames outside [start, end) seconds, frames without a face and pixels away from the face
    are passed through. The input file is never modified; nothing appears under the output
    name unless the whole run succeeds.
    """
    rep = reporter or SilentReporter()
    input_path = Path(input_path)
    info = probe(input_path)
    timeline = with_range(parse_emotion(emotion), start=start, end=end)
    out = given_output_path(output_path, default=default_output_path(input_path, timeline.label()))
    check_output_path(input_path=input_path, output_path=out, overwrite=overwrite)
    check_still_output(info=info, output_path=out)
    photo = info.n_frames == 1 or is_image_output(out)
    if keep_speech and photo:
        raise SpfemError("--keep-speech measures a video's speech; a photo has none")
    validate_options(
        info=info,
        intensity=intensity,
        start=start,
        end=end,
        mouth=mouth,
        side=side,
        crf=crf,
        preset=preset,
    )
    pick = FacePick.parse(face)
    timeline, late_notes = drop_late_segments(timeline, info=info)
    texts = free_texts(timeline)
    if texts and clip_weights is None:
        # Refused before the tracking pass, which is most of a run's time.
        raise free_text_error(Part(name=texts[0], weight=1.0, is_text=True))
    if rest_face is None and rest is not None:
        rest_face = read_rest_face(rest, video=input_path, pick=pick)
    editor = Editor.load(
        model=model,
        device=device,
        mouth=mouth,
        generator=generator,
        checkpoint=checkpoint,
        refiner=refiner,
    )
    notes: list[str] = []
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="spfem-") as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        analysis = analyse_video(
            info,
            model=editor.expression,
            workdir=workdir,
            reporter=rep,
            rest_face=rest_face,
            side=side,
            face=pick,
        )
        track = analysis.track
        seconds["track"] = time.perf_counter() - t0
        # A photo, or a video whose mouth never moves, has no speech for natural mode to keep.
        played, mouth_note = played_mouth(mouth, photo=photo, track=track)
        editor = editor.with_mouth(played)
        if texts and track.n_valid:
            from spfem_cli.pcmecl.open_vocab import resolve_texts

            t0 = time.perf_counter()
            assert clip_weights is not None
            read = resolve_texts(
                texts,
                analysis=analysis,
                editor=editor,
                clip_arch=clip_arch,
                clip_weights=clip_weights,
                clip_config=clip_config,
                prompts=prompts,
                device=editor.generator.warper.device,
                reporter=rep,
            )
            editor = editor.with_texts({text: tv.vector for text, tv in read.items()})
            notes += [tv.describe(editor.expression.au_names) for tv in read.values()]
            seconds["open-vocabulary"] = time.perf_counter() - t0
        elif texts:
            # No face anywhere: nothing is edited, so the texts need no vectors.
            editor = editor.with_texts(
                {text: np.zeros(editor.expression.num_aus) for text in texts}
            )
        deltas = editor.deltas(analysis, timeline, intensity=intensity)
        if note := analysis.side_note(deltas, model=editor.expression):
            notes.append(note)
        t0 = time.perf_counter()
        rendered = render_edit(
            analysis,
            editor=editor,
            deltas=deltas,
            input_path=input_path,
            output=out,
            workdir=workdir,
            crf=crf,
            preset=preset,
            reporter=rep,
            label=timeline.label(),
            keep_speech=keeps_speech(keep_speech, mouth=played) and not photo,
            parts=edit_parts(analysis, timeline),
        )
        n_edited = rendered.n_edited
        notes += rendered.notes
        if mouth_note and n_edited:
            notes.append(mouth_note)
        seconds["edit+encode+mux"] = time.perf_counter() - t0 - rendered.measuring_s
        if rendered.measuring_s:
            seconds["speech check"] = rendered.measuring_s
    max_faces = int(track.n_faces.max()) if track.n_frames else 0
    left_out = [note] if (note := left_out_note(info=info, output=out)) else []
    hint = mouth_hint(timeline, mouth=played) if n_edited else None
    return EditReport(
        output=out,
        n_frames=track.n_frames,
        n_face_frames=track.n_valid,
        n_edited=n_edited,
        max_faces=max_faces,
        fps=info.fps,
        width=info.width,
        height=info.height,
        seconds=seconds,
        notes=analysis_notes(analysis, rest_face=rest_face) + late_notes + notes + left_out,
        hints=[hint] if hint else [],
    )
