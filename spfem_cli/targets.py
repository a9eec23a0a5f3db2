"""Emotion targets over time: the `--emotion SPEC` grammar and per-frame AU targets.

A SPEC directs a performance. It is one of:

* a label: ``happy``, ``Surprise`` (case-insensitive, aliases as in `canonical_emotion`);
* a mixture: ``happy:0.6+surprised:0.4`` (weights are numbers from 0 to `MAX_INTENSITY`, a
  bare label weighs 1, weights need not sum to 1);
* a timeline: comma-separated ``START-END:MIXTURE`` segments in seconds, either end may be
  empty (``0-3:happy,3-:sad``, ``-2:neutral``); time outside every segment is left unedited;
* a path to a ``.json`` (or, with PyYAML, ``.yaml``/``.yml``) file:
  ``{"segments": [{"start": 0, "end": 3, "emotion": "happy"}, ...], "transition": 0.3}``.

Any part of a mixture that is not one of the eight emotions is kept as free text
(``Part(is_text=True)``); turning a part into action units is the caller's `Resolver`, so a
text encoder can resolve free text later without touching the grammar.

`render` turns a `Timeline` into per-frame AU targets (T, K) and edit weights (T,).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from spfem_cli.errors import SpfemError
from spfem_cli.generator.expression import EMOTIONS, canonical_emotion

# Seconds over which an edit fades in and out where it borders unedited time, and crossfades
# where two segments touch: short enough to follow a performance, long enough not to pop.
TRANSITION_S = 0.3
MAX_PARTS = 8
# How strong an emotion may be played: `--intensity`'s upper end, and a mixture weight's.
MAX_INTENSITY = 1.5
FILE_SUFFIXES = (".json", ".yaml", ".yml")

_TIME_RANGE = re.compile(r"^\s*([0-9.]*)\s*-\s*([0-9.]*)\s*:")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9.+_-]+")
_LABEL_MAX_CHARS = 80
_SEGMENT_KEYS = ("start", "end", "emotion")
_FILE_KEYS = ("segments", "transition")


@dataclass(frozen=True)
class Part:
    """One emotion in a mixture.

    name: the canonical emotion name (one of `EMOTIONS`), or the free text as given (with runs
        of whitespace collapsed) when ``is_text``.
    weight: how much of it, >= 0 (1 = the emotion's prototype activations).
    is_text: True for free text, which only a resolver that understands text can use.
    """

    name: str
    weight: float
    is_text: bool


@dataclass(frozen=True)
class Segment:
    """A mixture held over a time range [start, end) in seconds.

    start: None = from the beginning of the video. end: None = to its end.
    parts: the mixture, 1 to `MAX_PARTS` parts.
    """

    start: float | None
    end: float | None
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Timeline:
    """Segments sorted by start, never overlapping; `transition_s` is in seconds.

    A plain spec (a label or a mixture) is one segment with no time range.
    """

    segments: tuple[Segment, ...]
    transition_s: float = TRANSITION_S

    def __post_init__(self) -> None:
        # The parser gives users friendly errors; these guard programmatic construction.
        if not self.segments:
            raise ValueError("a timeline needs at least one segment")
        if not (math.isfinite(self.transition_s) and self.transition_s >= 0):
            raise ValueError(f"transition_s must be finite and >= 0, got {self.transition_s}")
        for seg in self.segments:
            if not 1 <= len(seg.parts) <= MAX_PARTS:
                raise ValueError(f"a segment needs 1 to {MAX_PARTS} parts, got {len(seg.parts)}")
            if seg.start is not None and seg.end is not None and seg.start >= seg.end:
                raise ValueError(f"segment start {seg.start} is not before its end {seg.end}")
        for prev, nxt in pairwise(self.segments):
            if prev.end is None or nxt.start is None or prev.end > nxt.start:
                raise ValueError("timeline segments must be sorted and must not overlap")

    def is_plain(self) -> bool:
        """True for one segment without a time range (a label or mixture over the whole video)."""
        seg = self.segments[0]
        return len(self.segments) == 1 and seg.start is None and seg.end is None

    def label(self) -> str:
        """A short file-name-safe label (only ``[A-Za-z0-9.+_-]``).

        ``"happy"``, ``"happy0.6+surprised0.4"``, free text with spaces as ``_``, also for one
        emotion over a time range (``--start``/``--end``: the edit shows that emotion);
        ``"timeline"`` for more than one segment.
        """
        if len(self.segments) > 1:
            return "timeline"
        pieces = []
        for part in self.segments[0].parts:
            name = _LABEL_UNSAFE.sub("_", part.name).strip("._-") or "text"
            pieces.append(name if part.weight == 1 else f"{name}{part.weight:.3g}")
        label = "+".join(pieces)
        if len(label) > _LABEL_MAX_CHARS:
            label = label[:_LABEL_MAX_CHARS].rstrip("._+-")
        return label


Resolver = Callable[[Part], np.ndarray]
"""Part -> (K,) AU activations of that part at weight 1 (`render` applies the weight)."""


FREE_TEXT_HINT = (
    "free text needs CLIP weights: pass --clip-weights to `spfem edit` (an open_clip tag such "
    "as 'openai', downloaded once, or a local weights file; see docs/pcmecl.md)"
)


def free_text_error(part: Part) -> SpfemError:
    """The error for free text that no text encoder is available to resolve."""
    return SpfemError(
        f"{part.name!r} is not one of the eight emotions ({', '.join(EMOTIONS)}); {FREE_TEXT_HINT}"
    )


def free_texts(timeline: Timeline) -> list[str]:
    """The distinct free-text parts of a timeline, in the order they first appear."""
    seen: dict[str, None] = {}
    for seg in timeline.segments:
        for part in seg.parts:
            if part.is_text:
                seen.setdefault(part.name, None)
    return list(seen)


def default_resolver(
    vector_of: Callable[[str], np.ndarray],
    *,
    text_vector: Callable[[str], np.ndarray] | None = None,
) -> Resolver:
    """A resolver for the eight emotions: a known Part maps to ``vector_of(name)`` (K,).

    A free-text Part maps to ``text_vector(text)`` (K,) when one is given (open vocabulary, see
    `spfem_cli.pcmecl.open_vocab`), and raises `SpfemError` (see `free_text_error`) otherwise."""

    def resolve(part: Part) -> np.ndarray:
        if part.is_text:
            if text_vector is None:
                raise free_text_error(part)
            return text_vector(part.name)
        return vector_of(part.name)

    return resolve


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_emotion(spec: str) -> Timeline:
    """Parse an ``--emotion`` SPEC: a label, a mixture, a timeline, or a .json/.yaml file path.

    Raises `SpfemError` with a one-line message quoting the bad part of the spec.
    """
    text = spec.strip()
    if not text:
        raise SpfemError(
            "the emotion spec is empty; give a label such as 'happy' (see `spfem emotions`)"
        )
    if text.lower().endswith(FILE_SUFFIXES):
        return _parse_file(Path(text).expanduser())
    if Path(text).is_file():
        raise SpfemError(
            f"emotion file {text!r} must end in .json (or .yaml/.yml with PyYAML installed)"
        )
    pieces = text.split(",")
    if not all(piece.strip() for piece in pieces):
        raise SpfemError(f"empty segment in {spec!r}: segments are separated by single commas")
    segments = [_parse_segment(p, spec=spec, timed_only=len(pieces) > 1) for p in pieces]
    return Timeline(segments=_checked_segments(segments, where=repr(spec)))


def mixture_vector(spec: str, *, resolve: Resolver) -> np.ndarray:
    """The AU activations (K,) float64 of a spec that is one emotion or a mixture
    (``"happy"``, ``"happy:0.6+surprised:0.4"``), for what shows one expression (a preview's
    column). A timeline or a time range is refused with a one-line `SpfemError`."""
    timeline = parse_emotion(spec)
    if not timeline.is_plain():
        raise SpfemError(
            f"{spec.strip()!r} has time ranges: give one emotion or mixture here "
            "(a timeline is for `spfem edit`)"
        )
    return _mixtures(timeline, resolve)[0]


def check_intensity(intensity: float) -> None:
    """Refuse (`SpfemError`) an `--intensity` outside 0 to MAX_INTENSITY."""
    if not 0.0 <= intensity <= MAX_INTENSITY:
        raise SpfemError(f"--intensity must be between 0 and {MAX_INTENSITY}, got {intensity}")


def within_reach(targets: np.ndarray, *, prototypes: np.ndarray) -> np.ndarray:
    """AU targets (T, K) or (K,) float64 scaled down, each frame's as a whole, so that no AU
    goes past MAX_INTENSITY times the most any emotion of `prototypes` (E, K) plays it (and
    MAX_INTENSITY for an AU none plays above 1).

    A mixture adds its parts' action units: `angry:1.5+disgusted:1.5+fear:1.5` at
    `--intensity 1.5` lowered the brows 3.7 times as far as anger does and wrinkled the nose
    2.5 times as far as disgust, and the warp squeezed the nose to a point. Scaling the
    frame's whole target, not each AU alone, keeps the mixture's proportions. Any one emotion
    at weight 1 and any intensity is within reach and returned as it is.
    """
    limits = MAX_INTENSITY * np.maximum(np.asarray(prototypes).max(axis=0), 1.0)
    over = np.max(np.asarray(targets) / limits, axis=-1, keepdims=True)
    return targets / np.maximum(over, 1.0)


def with_range(timeline: Timeline, *, start: float | None, end: float | None) -> Timeline:
    """Apply ``--start``/``--end`` (seconds, None = unbounded) to a plain (untimed) spec.

    With both None the timeline comes back unchanged, timed or not.
    """
    if start is None and end is None:
        return timeline
    if not timeline.is_plain():
        raise SpfemError("--start/--end cannot be combined with a timeline")
    for flag, value in (("--start", start), ("--end", end)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise SpfemError(f"{flag} must be a number of seconds >= 0, got {value}")
    if start is not None and end is not None and start >= end:
        raise SpfemError(f"--start ({start:g} s) must be before --end ({end:g} s)")
    segment = Segment(
        start=None if start is None else float(start),
        end=None if end is None else float(end),
        parts=timeline.segments[0].parts,
    )
    return Timeline(segments=(segment,), transition_s=timeline.transition_s)


def _parse_segment(piece: str, *, spec: str, timed_only: bool) -> Segment:
    """One comma-separated piece: ``START-END:MIXTURE`` or (alone in the spec) a MIXTURE."""
    match = _TIME_RANGE.match(piece)
    if match is None:
        if timed_only:
            raise SpfemError(
                f"segment {piece.strip()!r} in {spec!r} needs a time range, e.g. '0-3:happy'"
            )
        return Segment(start=None, end=None, parts=_parse_mixture(piece, where=repr(spec)))
    start = _parse_time(match.group(1), piece=piece, spec=spec)
    end = _parse_time(match.group(2), piece=piece, spec=spec)
    parts = _parse_mixture(piece[match.end() :], where=repr(spec))
    return Segment(start=start, end=end, parts=parts)


def _parse_time(text: str, *, piece: str, spec: str) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise SpfemError(
            f"time {text!r} in segment {piece.strip()!r} of {spec!r} is not a number of seconds"
        ) from None


def _parse_mixture(text: str, *, where: str) -> tuple[Part, ...]:
    """``a:0.6+b:0.4`` (a bare name weighs 1) -> parts, in the order written; ``where`` (the
    quoted spec, or a place in a file) goes into error messages."""
    if not text.strip():
        raise SpfemError(f"no emotion given in {where}")
    parts = []
    for raw in text.split("+"):
        if not raw.strip():
            raise SpfemError(f"empty part in {where}")
        name_text, sep, weight_text = raw.partition(":")
        if ":" in weight_text:
            raise SpfemError(f"part {raw.strip()!r} in {where} has more than one ':'")
        # The name first: '0-3:happy' where a mixture belongs is a misplaced time range, and
        # saying so helps more than calling 'happy' a bad weight.
        name, is_text = _part_name(name_text, where=where)
        weight = 1.0
        if sep:
            if not weight_text.strip():
                raise SpfemError(f"missing weight after {name_text.strip() + ':'!r} in {where}")
            try:
                weight = float(weight_text)
            except ValueError:
                raise SpfemError(
                    f"weight {weight_text.strip()!r} of {name!r} in {where} is not a number"
                ) from None
        parts.append(_make_part(name, is_text=is_text, weight=weight, where=where))
    return _checked_parts(parts, where=where)


def _part_name(text: str, *, where: str) -> tuple[str, bool]:
    """(canonical emotion name, False) or (free text with whitespace collapsed, True)."""
    name = " ".join(text.split())
    if not name:
        raise SpfemError(f"empty emotion name in {where}")
    try:
        return canonical_emotion(name), False
    except SpfemError:
        pass
    # Free text starts with a letter so that a mistyped time range ('-1-2:happy', '1-2 happy')
    # is reported as such instead of reaching the resolver as text.
    if not name[0].isalpha():
        raise SpfemError(
            f"{name!r} in {where} is neither an emotion nor free text (which starts with a "
            "letter); a timed segment is START-END:MIXTURE with seconds >= 0, e.g. '0-3:happy'"
        )
    if any(c in name for c in "+,:"):
        raise SpfemError(f"free text {name!r} in {where} cannot contain '+', ',' or ':'")
    return name, True


def _make_part(name: str, *, is_text: bool, weight: float, where: str) -> Part:
    if not (math.isfinite(weight) and 0 <= weight <= MAX_INTENSITY):
        raise SpfemError(
            f"weight of {name!r} in {where} must be between 0 and {MAX_INTENSITY:g} "
            f"(as --intensity), got {weight:g}"
        )
    return Part(name=name, weight=float(weight), is_text=is_text)


def _checked_parts(parts: list[Part], *, where: str) -> tuple[Part, ...]:
    if not parts:
        raise SpfemError(f"no emotion given in {where}")
    if len(parts) > MAX_PARTS:
        raise SpfemError(f"{where} mixes {len(parts)} emotions; at most {MAX_PARTS} are allowed")
    seen: set[str] = set()
    for part in parts:
        key = part.name.casefold()
        if key in seen:
            raise SpfemError(f"{part.name!r} appears twice in {where}; give it one weight")
        seen.add(key)
    return tuple(parts)


def _checked_segments(segments: list[Segment], *, where: str) -> tuple[Segment, ...]:
    """Validate times, sort by start, refuse overlaps."""
    for seg in segments:
        for value in (seg.start, seg.end):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise SpfemError(
                    f"segment '{range_text(seg)}' in {where}: times must be seconds >= 0, "
                    f"got {value:g}"
                )
        if seg.start is not None and seg.end is not None and seg.start >= seg.end:
            raise SpfemError(f"segment '{range_text(seg)}' in {where} must start before it ends")
    ordered = sorted(segments, key=lambda s: -math.inf if s.start is None else s.start)
    for prev, nxt in pairwise(ordered):
        if prev.end is None or nxt.start is None or prev.end > nxt.start:
            raise SpfemError(
                f"segments '{range_text(prev)}' and '{range_text(nxt)}' in {where} overlap"
            )
    return tuple(ordered)


def range_text(seg: Segment) -> str:
    """A segment's time range as a spec writes it: "3-4.5", "3-", "-2"."""

    def fmt(value: float | None) -> str:
        return "" if value is None else f"{value:g}"

    return f"{fmt(seg.start)}-{fmt(seg.end)}"


def segment_name(seg: Segment) -> str:
    """A segment as a note names it: its range and mixture, "0-3 s happy",
    "3- s happy:0.6+surprised:0.4", "- s 'smug'" for free text."""
    parts = "+".join(
        (f"'{p.name}'" if p.is_text else p.name) + ("" if p.weight == 1 else f":{p.weight:g}")
        for p in seg.parts
    )
    return f"{range_text(seg)} s {parts}"


# ---------------------------------------------------------------------------------------------
# Files


def _parse_file(path: Path) -> Timeline:
    """A .json/.yaml/.yml timeline file (see the module docstring for the format)."""
    where = repr(str(path))
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpfemError(f"emotion file {where} not found") from None
    except UnicodeDecodeError:
        raise SpfemError(f"emotion file {where} is not UTF-8 text") from None
    except OSError as exc:
        raise SpfemError(f"cannot read emotion file {where}: {exc.strerror or exc}") from None
    if path.suffix.lower() != ".json":
        return _timeline_from_data(_load_yaml(raw, where=where), where=where)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SpfemError(
            f"emotion file {where} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}"
        ) from None
    return _timeline_from_data(data, where=where)


def _load_yaml(raw: str, *, where: str) -> Any:
    try:
        import yaml  # optional: only YAML timeline files need it
    except ImportError:
        raise SpfemError(
            f"emotion file {where} is YAML but PyYAML is not installed; "
            "use a .json file or `pip install pyyaml`",
            exit_code=3,
        ) from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "cannot parse"
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpfemError(f"emotion file {where} is not valid YAML: {problem}{at}") from None


def _timeline_from_data(data: Any, *, where: str) -> Timeline:
    if not isinstance(data, Mapping):
        raise SpfemError(
            f"emotion file {where} must hold a mapping with a 'segments' list, not {_kind(data)}"
        )
    _check_keys(data, allowed=_FILE_KEYS, where=f"emotion file {where}")
    segments_data = data.get("segments")
    if not isinstance(segments_data, list) or not segments_data:
        raise SpfemError(f"emotion file {where} needs a non-empty 'segments' list")
    transition = data.get("transition", TRANSITION_S)
    if not _is_number(transition) or not (math.isfinite(transition) and transition >= 0):
        raise SpfemError(
            f"'transition' in emotion file {where} must be seconds >= 0, got {transition!r}"
        )
    segments = [
        _segment_from_data(item, where=f"segment {i} of {where}")
        for i, item in enumerate(segments_data, start=1)
    ]
    return Timeline(
        segments=_checked_segments(segments, where=where), transition_s=float(transition)
    )


def _segment_from_data(item: Any, *, where: str) -> Segment:
    if not isinstance(item, Mapping):
        raise SpfemError(
            f"{where} must be a mapping with 'emotion' (and 'start', 'end'), not {_kind(item)}"
        )
    _check_keys(item, allowed=_SEGMENT_KEYS, where=where)
    times = []
    for key in ("start", "end"):
        value = item.get(key)
        if value is not None and not _is_number(value):
            raise SpfemError(f"'{key}' in {where} must be a number of seconds, got {value!r}")
        times.append(None if value is None else float(value))
    if "emotion" not in item:
        raise SpfemError(f"{where} has no 'emotion'")
    emotion = item["emotion"]
    if isinstance(emotion, str):
        parts = _parse_mixture(emotion, where=f"{emotion!r} ({where})")
    elif isinstance(emotion, Mapping):
        built = []
        for name, weight in emotion.items():
            if not isinstance(name, str) or not _is_number(weight):
                raise SpfemError(
                    f"'emotion' in {where} maps names to numbers; got {name!r}: {weight!r}"
                )
            part_name, is_text = _part_name(name, where=where)
            built.append(_make_part(part_name, is_text=is_text, weight=weight, where=where))
        parts = _checked_parts(built, where=where)
    else:
        raise SpfemError(
            f"'emotion' in {where} must be a label, a mixture string or a mapping of "
            f"names to weights, not {_kind(emotion)}"
        )
    return Segment(start=times[0], end=times[1], parts=parts)


def _check_keys(data: Mapping[Any, Any], *, allowed: tuple[str, ...], where: str) -> None:
    unknown = [key for key in data if key not in allowed]
    if unknown:
        raise SpfemError(f"unknown key {unknown[0]!r} in {where}; expected: {', '.join(allowed)}")


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but `start: true` is a mistake, not 1 second.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"a {type(value).__name__}"


# ---------------------------------------------------------------------------------------------
# Rendering


def render(
    timeline: Timeline, *, n_frames: int, fps: float, resolve: Resolver
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame AU targets and edit weights; frame t is at t / fps seconds.

    Returns:
        targets: (T, K) float64 AU activations, a segment's mixture sum(resolve(p) * p.weight).
            Where two segments touch (within half a frame) it crossfades from one mixture to
            the next with a smoothstep over `transition_s` centred on the boundary.
        weights: (T,) float64 in [0, 1], how much of the edit applies. Each run of touching
            segments is 1 inside, fading in and out over `transition_s` inside the run where it
            borders unedited time (`range_weights`: no fade at 0 s or at an open end).
    Outside every segment both are 0. Every part is resolved, even in segments past the end.
    """
    mixes = _mixtures(timeline, resolve)  # (S, K)
    shares, weights = _shares(timeline, n_frames=n_frames, fps=fps)
    return shares @ mixes, weights


def segment_shares(timeline: Timeline, *, n_frames: int, fps: float) -> np.ndarray:
    """(T, S) float64: how much of frame t's target is segment s's mixture, as `render` blends
    them (each row sums to 1 inside the timeline's segments, crossfading where two touch; 0
    outside them). Frame t is at t / fps seconds."""
    return _shares(timeline, n_frames=n_frames, fps=fps)[0]


def _shares(timeline: Timeline, *, n_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """`segment_shares` and `render`'s weights (T,)."""
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be finite and > 0, got {fps}")
    t = np.arange(n_frames, dtype=np.float64) / fps
    shares = np.zeros((n_frames, len(timeline.segments)))
    weights = np.zeros(n_frames)
    ramp = timeline.transition_s
    for first, last in _runs(timeline.segments, tolerance=0.5 / fps):
        run = timeline.segments[first : last + 1]
        lo, hi = run[0].start, run[-1].end
        # Runs do not overlap: each weighs its own frames, as a lone segment over it would.
        weights += range_weights(n_frames=n_frames, fps=fps, start=lo, end=hi, ramp_s=ramp)
        inside = _inside(t, start=lo, end=hi)
        tt = t[inside]
        # Coefficients telescope from per-boundary steps, so they sum to 1 and stay >= 0 even
        # when segments are shorter than the transition.
        steps = [np.ones_like(tt)]
        for prev, nxt in pairwise(run):
            assert prev.end is not None and nxt.start is not None  # touching: both are set
            boundary = (prev.end + nxt.start) / 2
            steps.append(_step(tt - boundary, width=ramp))
        steps.append(np.zeros_like(tt))
        shares[np.flatnonzero(inside)[:, None], np.arange(first, last + 1)] = np.stack(
            [a - b for a, b in pairwise(steps)], axis=1
        )  # (T_in, S_run)
    return shares, weights


def _mixtures(timeline: Timeline, resolve: Resolver) -> np.ndarray:
    """(S, K) float64: each segment's weighted sum of resolved parts."""
    vectors: dict[tuple[str, bool], np.ndarray] = {}
    for seg in timeline.segments:
        for part in seg.parts:
            key = (part.name, part.is_text)
            if key not in vectors:
                vec = np.asarray(resolve(part), dtype=np.float64)
                if vec.ndim != 1:
                    raise ValueError(f"resolver returned shape {vec.shape} for {part.name!r}")
                vectors[key] = vec
    sizes = {vec.shape[0] for vec in vectors.values()}
    if len(sizes) != 1:
        raise ValueError(f"resolver returned vectors of different lengths {sorted(sizes)}")
    mixes = np.zeros((len(timeline.segments), sizes.pop()))
    for row, seg in zip(mixes, timeline.segments, strict=True):
        for part in seg.parts:
            row += vectors[(part.name, part.is_text)] * part.weight
    return mixes


def _runs(segments: tuple[Segment, ...], *, tolerance: float) -> list[tuple[int, int]]:
    """(first, last) indices of runs of segments that touch: end == next start within
    ``tolerance`` seconds."""
    runs = []
    first = 0
    for i in range(1, len(segments) + 1):
        if i < len(segments):
            end, start = segments[i - 1].end, segments[i].start
            if end is not None and start is not None and start - end <= tolerance:
                continue
        runs.append((first, i - 1))
        first = i
    return runs


def range_weights(
    *,
    n_frames: int,
    fps: float,
    start: float | None,
    end: float | None,
    ramp_s: float = TRANSITION_S,
) -> np.ndarray:
    """(T,) float64 in [0, 1]: how much of an edit over [start, end) seconds (None: the
    video's beginning or end) reaches frame t, at t / fps seconds, as `render` weighs a lone
    segment: 0 outside the range, fading in and out over ``ramp_s`` inside it. A frame on a
    start after 0 s has weight 0: the edit leaves it as it was."""
    t = np.arange(n_frames, dtype=np.float64) / fps
    inside = _inside(t, start=start, end=end)
    weights = np.zeros(n_frames)
    weights[inside] = _fade(t[inside], start=start, end=end, ramp_s=ramp_s)
    return weights


def _inside(t: np.ndarray, *, start: float | None, end: float | None) -> np.ndarray:
    """(N,) bool: which of the times t (N,) s lie in [start, end) (None: unbounded)."""
    return (t >= (-math.inf if start is None else start)) & (t < (math.inf if end is None else end))


def _fade(t: np.ndarray, *, start: float | None, end: float | None, ramp_s: float) -> np.ndarray:
    """Weight (N,) for times t (N,) s inside [start, end): smoothstep ramps of ``ramp_s`` inside
    the range, none at a start <= 0 or an open end."""
    if ramp_s <= 0:
        return np.ones_like(t)
    rise = np.clip((t - start) / ramp_s, 0, 1) if start is not None and start > 0 else 1.0
    fall = np.clip((end - t) / ramp_s, 0, 1) if end is not None else 1.0
    w = np.minimum(rise, fall) * np.ones_like(t)
    return w * w * (3 - 2 * w)


def _step(dt: np.ndarray, *, width: float) -> np.ndarray:
    """Smoothstep from 0 to 1 over ``width`` seconds centred on dt = 0; dt (N,) in seconds."""
    if width <= 0:
        return (dt >= 0).astype(np.float64)
    x = np.clip(dt / width + 0.5, 0, 1)
    return x * x * (3 - 2 * x)
