"""Find out what a video file holds, exactly and cheaply, with the bundled ffmpeg.

Two sources, one ffmpeg run: the stream dump that `ffmpeg -i` prints on stderr (sizes, pixel
format, codec, rotation, colour tags, audio) and a stream copy of the video packets to the
framecrc muxer on stdout (one line per packet, with timestamps), from which the frame count,
duration and frame rate are computed without decoding a single frame.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import stat
import statistics
import subprocess
import threading
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import imageio_ffmpeg
from PIL import Image

from spfem_cli.errors import SpfemError
from spfem_cli.media import ffmpeg_args

# The TIFF/EXIF tag of a photo's orientation.
EXIF_ORIENTATION_TAG = 0x0112
# AV_PKT_FLAG_DISCARD: the demuxer marks packets that an edit list cuts away; they are decoded
# (as references) but never shown, so they are not frames of the video.
_FLAG_DISCARD = 0x4
# framecrc omits the flags column when the flags are exactly AV_PKT_FLAG_KEY.
_FLAG_KEY = 0x1
# Rounding timestamps to ticks makes constant-rate durations differ by at most one tick; allow
# one more for muxers that round pts and dts separately.
_TICK_SLACK = 2
# A video whose frames all sit on a constant-rate grid with a few of its slots empty (a dropped
# frame, the tail of a cut made with `-c copy`) is resampled at the grid's rate, which repeats a
# frame into each hole and moves no other; with more than this share of the grid empty, at its
# average rate instead (a grid as fine as its fastest stretch would multiply the frames to edit).
_MAX_EMPTY_SLOTS = 0.1

_STREAM_RE = re.compile(
    r"^\s*Stream #0:(?P<index>\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: "
    r"(?P<kind>Video|Audio|Subtitle|Data|Attachment): (?P<params>.*)$"
)
_ROTATION_RE = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)
_START_RE = re.compile(r"^\s*Duration: .*?start: (-?\d+(?:\.\d+)?)")
# A camera's or an editor's start timecode (HH:MM:SS:FF, ";" before the frames when drop-frame),
# in the metadata of the file, its video stream or its timecode track.
_TIMECODE_RE = re.compile(r"^\s*timecode\s*:\s*(\d{2}:\d{2}:\d{2}[:;.]\d{2,3})\s*$", re.IGNORECASE)
_DIMS_RE = re.compile(r"^(\d+)x(\d+)\b")
_SAR_RE = re.compile(r"\[SAR (\d+):(\d+) DAR ")
# The field orders ffmpeg prints after the pixel format for interlaced video.
_INTERLACED = frozenset({"top first", "bottom first", "top coded first", "bottom coded first"})
_TB_RE = re.compile(r"^#tb 0: (\d+)/(\d+)")
# Names that are a colour space, primaries and transfer at once: the only ones ffmpeg prints
# alone, when all three are equal.
_SHARED_COLOR_NAMES = frozenset({"bt709", "smpte170m", "smpte240m"})


@dataclass(frozen=True)
class ColorTags:
    """How the source's YUV values are to be read, as ffmpeg names them; None when untagged.

    `range` is "tv" (limited) or "pc" (full); `matrix` the YUV<->RGB matrix ("bt709",
    "smpte170m", ...); `primaries` and `transfer` the gamut and transfer curve ("bt2020",
    "arib-std-b67" for HLG, ...).
    """

    range: str | None = None
    matrix: str | None = None
    primaries: str | None = None
    transfer: str | None = None


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learned about a video file.

    `path` is absolute with symlinks resolved. `width`/`height` are in pixels as displayed
    (rotation applied; square pixels, see `sar`). `rotation` is the counter-clockwise display
    rotation in degrees, ffmpeg's `-display_rotation` convention (a phone's "rotate=90" tag
    reads as 270). `fps` is the rate in frames per second (for variable-frame-rate video, the
    rate it is resampled at: that of the grid its frames sit on with a few missing, else its
    average rate; `compute_timing`), `duration_s` the video stream's duration in seconds.

    Fields after `audio_codec` are extras with defaults: `video_delay_s` is how many seconds
    after the start of the file the first video frame is shown (kept on remux for A/V sync),
    `color` the colour tags to copy onto the re-encoded video, `exif_orientation` a photo's
    EXIF orientation (1: stored upright; width and height are upright either way), `sar` the
    stored pixels' aspect ratio (width over height; anamorphic DV and HDV video store pixels
    wider or narrower than tall): `width` and `height` are then the size in square pixels
    (`square_pixels`), the frames are decoded scaled to it, so that a face has its true shape,
    and the output is written at it; `interlaced`: the video's frames are two fields each,
    taken a field apart in time (broadcast and camcorder video), and are deinterlaced on
    decode: edited and written as whole frames; `subtitles` the codec of each subtitle stream,
    in order, carried into the output where its container holds them; `timecode` the start
    timecode a camera or an editor gave the video ("01:00:00:00"), None where it has none: the
    output's first frame is the input's, so it starts at the same timecode.
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    n_frames: int
    duration_s: float
    pix_fmt: str
    codec: str
    rotation: int
    variable_frame_rate: bool
    has_audio: bool
    audio_codec: str | None
    video_delay_s: float = 0.0
    color: ColorTags = field(default_factory=ColorTags)
    exif_orientation: int = 1
    sar: Fraction = Fraction(1)
    interlaced: bool = False
    subtitles: tuple[str, ...] = ()
    timecode: str | None = None


@dataclass(frozen=True)
class StreamLine:
    """One `Stream #0:N` line of ffmpeg's input dump, split into its fields."""

    index: int
    kind: str
    codec: str
    pix_fmt: str | None
    width: int | None
    height: int | None
    rotation: int
    attached_pic: bool
    color: ColorTags
    rate: Fraction | None
    sar: Fraction = Fraction(1)
    interlaced: bool = False


@dataclass(frozen=True)
class InputDump:
    """The parts of ffmpeg's stderr input dump that `probe` needs."""

    opened: bool
    streams: list[StreamLine]
    start_s: float
    timecode: str | None = None

    @property
    def video(self) -> StreamLine | None:
        """The stream that ``-map 0:V:0`` selects: the first video that is not cover art."""
        return next((s for s in self.streams if s.kind == "Video" and not s.attached_pic), None)

    @property
    def audio(self) -> list[StreamLine]:
        return [s for s in self.streams if s.kind == "Audio"]

    @property
    def subtitles(self) -> list[StreamLine]:
        return [s for s in self.streams if s.kind == "Subtitle"]


@dataclass(frozen=True)
class Packet:
    """One framecrc line. Times are in ticks of the stream time base; None when unset."""

    dts: int | None
    pts: int | None
    duration: int
    size: int
    crc: str
    flags: int


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary that ships with imageio-ffmpeg (or $IMAGEIO_FFMPEG_EXE)."""
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise SpfemError(f"ffmpeg is not available: {exc}", exit_code=3) from exc


def start_ffmpeg(args: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start ffmpeg with `args` in a session of its own (Ctrl-C reaches Python only, which
    stops ffmpeg itself); `popen`: the pipes, as for subprocess.Popen.

    A Ctrl-C that lands while ffmpeg is being started is held until Popen has returned, then
    ffmpeg is killed and reaped and the interrupt goes on: interrupted inside Popen (forking a
    large process takes milliseconds), Python never hands back the child it already started,
    which ran on, and a remux created its output after `atomic_output` had removed it (a
    hidden temporary file left in a batch's OUT_DIR, test_ctrl_c_with_workers_stops_cleanly).
    Held only where Python takes the signal itself: in the main thread, Ctrl-C with its
    default handler and SIGTERM with a Python handler (`spfem` takes it as Ctrl-C,
    `cli.main`); the handler then runs once ffmpeg is gone.
    """
    held: list[int] = []
    restore: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if handler is signal.default_int_handler or (
                signum == signal.SIGTERM and callable(handler)
            ):
                restore[signum] = signal.signal(signum, lambda num, _frame: held.append(num))
    try:
        proc = subprocess.Popen([ffmpeg_exe(), *args], start_new_session=True, **popen)
    finally:
        for signum, handler in restore.items():
            signal.signal(signum, handler)
    if held:
        with proc:
            proc.kill()
        restore[held[0]](held[0], None)
        raise KeyboardInterrupt  # a handler that returned: the interrupt still goes on
    return proc


def run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg with `args` to completion and capture stdout and stderr (no check of rc).

    Interrupted (Ctrl-C), ffmpeg is killed and reaped before the interrupt goes on, so that
    the caller's clean-up runs after it is gone. subprocess.run kills it but, on Ctrl-C, does
    not wait: a remux still opening its output could create the file again after
    `atomic_output` had removed it (a hidden temporary file left in a batch's OUT_DIR).
    """
    try:
        proc = start_ffmpeg(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise SpfemError(f"cannot run ffmpeg: {exc.strerror or exc}", exit_code=3) from exc
    with proc:
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def last_line(stderr: str) -> str:
    """The last non-empty line of ffmpeg's stderr, without the `[component @ 0x...]` prefix."""
    for line in reversed(stderr.splitlines()):
        line = _strip_prefix(line)
        if line:
            return line
    return "no message from ffmpeg"


def _strip_prefix(line: str) -> str:
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())


def error_reason(stderr: str) -> str:
    """The most telling line of ffmpeg's error output (run at `-loglevel error`).

    The first line that ends in an operating-system error ("No space left on device") names
    the cause; failing that, the first line does, and the later ones are its consequences
    ("Nothing was written into output file"). "Invalid argument" and "Operation not permitted"
    do not count as system errors: ffmpeg uses them as generic failure codes.
    """
    generic = {os.strerror(errno.EINVAL), os.strerror(errno.EPERM)}
    system_errors = {os.strerror(code) for code in errno.errorcode} - generic
    lines = [line for line in map(_strip_prefix, stderr.splitlines()) if line]
    for line in lines:
        if line.rsplit(": ", 1)[-1].strip() in system_errors:
            return line
    return lines[0] if lines else "no message from ffmpeg"


def open_error_reason(stderr: str) -> str:
    """Why ffmpeg could not open an input, as short as ffmpeg says it.

    ffmpeg ends with generic lines ("Error opening input files: Invalid data found ...");
    the demuxer's own complaint just before them ("moov atom not found") says more.
    """
    lines = [line for line in map(_strip_prefix, stderr.splitlines()) if line]
    for i, line in enumerate(lines):
        if line.startswith("Error opening input:"):
            previous = lines[i - 1] if i else ""
            if previous and "misdetection" not in previous and not previous.startswith("Error"):
                return previous
            return line.removeprefix("Error opening input:").strip()
    return last_line(stderr)


def _split_top(text: str) -> list[str]:
    """Split at commas that are not inside parentheses."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def _known(name: str) -> str | None:
    return None if name in ("unknown", "reserved", "") else name


def parse_color(detail: str) -> ColorTags:
    """Colour tags from the parenthesis after the pixel format, e.g. "tv, bt709, progressive".

    ffmpeg prints the range if set, then "space/primaries/transfer", or one name when all
    three are equal, then the field order (ignored, as is anything else).
    """
    rng = matrix = primaries = transfer = None
    for token in (t.strip() for t in _split_top(detail)):
        if token in ("tv", "pc"):
            rng = token
        elif "/" in token:
            parts = token.split("/")
            if len(parts) == 3:
                matrix, primaries, transfer = (_known(p) for p in parts)
        elif token in _SHARED_COLOR_NAMES:
            matrix = primaries = transfer = token
    return ColorTags(range=rng, matrix=matrix, primaries=primaries, transfer=transfer)


def _parse_rate(tokens: list[str]) -> Fraction | None:
    for suffix in (" fps", " tbr"):
        for token in tokens:
            if token.endswith(suffix):
                value = token[: -len(suffix)].strip()
                try:
                    if value.endswith("k"):
                        return Fraction(value[:-1]) * 1000
                    rate = Fraction(value)
                except ValueError:
                    continue
                return _snap_rate(rate) if rate > 0 else None
    return None


def _snap_rate(rate: Fraction) -> Fraction:
    # ffmpeg prints rates rounded to 2 decimals ("29.97"); the NTSC family is what they round.
    ntsc = Fraction(round(rate * Fraction(1001, 1000)) * 1000, 1001)
    for candidate in (Fraction(round(rate)), ntsc):
        if candidate > 0 and abs(candidate - rate) < Fraction(1, 100):
            return candidate
    return rate.limit_denominator(1001)


def _parse_stream(match: re.Match[str]) -> StreamLine:
    params = match["params"]
    tokens = _split_top(params)
    codec = tokens[0].split(" ")[0] if tokens else "unknown"
    pix_fmt = width = height = None
    color = ColorTags()
    sar = Fraction(1)
    interlaced = False
    for token in tokens[1:]:
        dims = _DIMS_RE.match(token)
        if dims:
            width, height = int(dims[1]), int(dims[2])
            if (aspect := _SAR_RE.search(token)) and int(aspect[1]) > 0 and int(aspect[2]) > 0:
                sar = Fraction(int(aspect[1]), int(aspect[2]))
            break
    if match["kind"] == "Video" and len(tokens) > 1 and not _DIMS_RE.match(tokens[1]):
        fmt = tokens[1]
        paren = fmt.find("(")
        pix_fmt = fmt[:paren] if paren >= 0 else fmt
        if paren >= 0:
            detail = fmt[paren + 1 : fmt.rfind(")")]
            color = parse_color(detail)
            interlaced = any(t.strip() in _INTERLACED for t in _split_top(detail))
    return StreamLine(
        index=int(match["index"]),
        kind=match["kind"],
        codec=codec,
        pix_fmt=pix_fmt,
        width=width,
        height=height,
        rotation=0,
        attached_pic="(attached pic)" in params or "(thumbnail)" in params,
        color=color,
        rate=_parse_rate(tokens) if match["kind"] == "Video" else None,
        sar=sar,
        interlaced=interlaced,
    )


def parse_input_dump(stderr: str) -> InputDump:
    """Read the `Input #0` block of ffmpeg's stderr (stops at the output part of the dump)."""
    streams: list[StreamLine] = []
    opened = False
    start_s = 0.0
    timecode = None
    for line in stderr.splitlines():
        if line.startswith("Input #0"):
            opened = True
            continue
        if not opened:
            continue
        if line.startswith(("Output #", "Stream mapping:")):
            break
        if m := _START_RE.match(line):
            start_s = float(m[1])
        elif (m := _TIMECODE_RE.match(line)) and timecode is None:
            timecode = m[1]
        elif m := _STREAM_RE.match(line):
            streams.append(_parse_stream(m))
        elif (m := _ROTATION_RE.search(line)) and streams:
            # Side data lines follow the stream they belong to.
            rotation = round(float(m[1]) / 90) * 90 % 360
            streams[-1] = replace(streams[-1], rotation=rotation)
    return InputDump(opened=opened, streams=streams, start_s=start_s, timecode=timecode)


def _ts(value: str) -> int | None:
    value = value.strip()
    return None if value == "NOPTS" else int(value)


def parse_framecrc(text: str) -> tuple[Fraction | None, list[Packet]]:
    """Time base (seconds per tick) and packets of stream 0 from framecrc output."""
    tb: Fraction | None = None
    packets: list[Packet] = []
    for line in text.splitlines():
        if line.startswith("#"):
            if m := _TB_RE.match(line):
                tb = Fraction(int(m[1]), int(m[2]))
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) < 6 or cols[0] != "0":
            continue
        flags = _FLAG_KEY
        for extra in cols[6:]:
            if extra.startswith("F="):
                flags = int(extra[2:], 16)
        packets.append(
            Packet(
                dts=_ts(cols[1]),
                pts=_ts(cols[2]),
                duration=int(cols[3]),
                size=int(cols[4]),
                crc=cols[5],
                flags=flags,
            )
        )
    return tb, packets


@dataclass(frozen=True)
class Timing:
    """Frame count, duration (seconds), rate (frames per second) and VFR flag."""

    n_frames: int
    duration_s: float
    fps: Fraction
    variable_frame_rate: bool
    first_s: float


def _average_rate(n_frames: int, duration: Fraction, tick: Fraction) -> Fraction:
    """n_frames / duration as a short fraction where one explains the timestamps.

    Timestamps are rounded (to ticks, or to milliseconds by an earlier Matroska remux), so the
    measured duration is a little off. The closer of a round rate (30) and an NTSC rate
    (30000/1001) is taken when the clip's length at that rate is within half a frame (or 1.5
    ticks) of the measured one: the frames then still fill the same time to within half a
    frame, so round(duration * fps) stays n_frames.
    """
    exact = n_frames / duration
    tolerance = max(Fraction(3, 2) * tick, 1 / (2 * exact))
    ntsc = Fraction(round(exact * Fraction(1001, 1000)) * 1000, 1001)
    nice = [c for c in (Fraction(round(exact)), ntsc) if c > 0]
    best = min(nice, key=lambda c: abs(n_frames / c - duration), default=None)
    if best is not None and abs(n_frames / best - duration) <= tolerance:
        return best
    return exact.limit_denominator(1_000_000)


def _grid_rate(diffs: list[int], tick: Fraction) -> Fraction | None:
    """The rate of the constant-rate grid every frame sits on, when few of its slots are empty
    (`_MAX_EMPTY_SLOTS`); None when the frames are off any such grid. diffs: the spacings of
    the frames' sorted times (ticks of `tick` seconds)."""
    step = statistics.median(diffs)  # one slot: most frames follow their neighbour
    if step <= 0:
        return None
    slots = [round(d / step) for d in diffs]
    if any(s < 1 or abs(d - s * step) > _TICK_SLACK for d, s in zip(diffs, slots, strict=True)):
        return None
    if sum(slots) > (1 + _MAX_EMPTY_SLOTS) * len(diffs):
        return None
    return _average_rate(sum(slots), sum(diffs) * tick, tick)


def compute_timing(
    tb: Fraction | None, packets: list[Packet], fallback_rate: Fraction | None
) -> Timing:
    """Timing of the shown (not discarded) packets; `fallback_rate` when timestamps are unset.

    Frame durations are the differences of the sorted presentation times (with B-frames the
    packets arrive in decode order); the last frame lasts its packet's duration. The rate is
    the average one (frames over duration), except for variable-frame-rate timestamps that
    sit on a constant-rate grid with a few frames missing, whose rate is the grid's
    (`_grid_rate`).
    """
    shown = [p for p in packets if not p.flags & _FLAG_DISCARD]
    n = len(shown)
    pts = [p.pts for p in shown if p.pts is not None]
    dts = [p.dts for p in shown if p.dts is not None]
    times = pts if len(pts) == n else dts if len(dts) == n else None
    if times is None or tb is None or n == 0:
        # Raw streams carry no timestamps: trust the header's rate, else ffmpeg's own default
        # for raw video (25 fps).
        rate = fallback_rate or Fraction(25)
        return Timing(n, float(n / rate), rate, False, 0.0)
    order = sorted(range(n), key=times.__getitem__)
    ordered = [times[i] for i in order]
    diffs = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    last_duration = shown[order[-1]].duration
    if last_duration <= 0:
        if diffs:
            last_duration = int(statistics.median(diffs))
        elif fallback_rate:
            last_duration = max(1, round(1 / (fallback_rate * tb)))
        else:
            last_duration = 1
    ticks = ordered[-1] + last_duration - ordered[0]
    duration = ticks * tb
    vfr = bool(diffs) and max(diffs) - min(diffs) > _TICK_SLACK
    fps = (_grid_rate(diffs, tb) if vfr else None) or _average_rate(n, duration, tb)
    return Timing(n, float(duration), fps, vfr, float(max(0, ordered[0]) * tb))


def square_pixels(width: int, height: int, *, sar: Fraction) -> tuple[int, int]:
    """The size (width, height) a stored frame of width x height pixels, each `sar` times as
    wide as tall, shows at in square pixels: as wide as it displays, rounded to an even width
    (4:2:0 video needs one), as tall as stored."""
    if sar == 1:
        return width, height
    return max(2, 2 * round(width * sar / 2)), height


def _check_file(path: Path, shown: str) -> None:
    if not path.exists():
        raise SpfemError(f"{shown} does not exist")
    if path.is_dir():
        raise SpfemError(f"{shown} is a folder, not a video file")
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise SpfemError(f"{shown} is not a regular file")
    if st.st_size == 0:
        raise SpfemError(f"{shown} is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise SpfemError(f"{shown} is not readable (permission denied)")


def probe(path: str | Path) -> VideoInfo:
    """Describe the video at `path`; SpfemError (one line, naming the file) if it is unusable."""
    shown = str(path)
    path = Path(path)
    _check_file(path, shown)
    absolute = path.resolve()
    result = run_ffmpeg(ffmpeg_args.probe_args(absolute))
    stderr = result.stderr.decode("utf-8", "replace")
    dump = parse_input_dump(stderr)
    if not dump.opened:
        reason = open_error_reason(stderr)
        raise SpfemError(f"{shown} is not a video file ffmpeg can read ({reason})")
    video = dump.video
    if video is None:
        raise SpfemError(f"{shown} has no video stream")
    if video.width is None or video.height is None:
        raise SpfemError(f"{shown} has a video stream ffmpeg cannot decode ({video.codec})")
    if "partial file" in stderr:
        # The index promises packets the file does not hold: a cut-off download or copy.
        raise SpfemError(f"{shown} is truncated or corrupt: the file ends before its last frame")
    tb, packets = parse_framecrc(result.stdout.decode("ascii", "replace"))
    if result.returncode != 0 and not packets:
        raise SpfemError(f"{shown} is not a video file ffmpeg can read ({last_line(stderr)})")
    timing = compute_timing(tb, packets, video.rate)
    if timing.n_frames == 0:
        raise SpfemError(f"{shown} has no video frames")
    rotation = video.rotation
    width, height = square_pixels(video.width, video.height, sar=video.sar)
    orientation = exif_orientation(absolute) if timing.n_frames == 1 else 1
    if rotation in (90, 270) or orientation >= 5:
        width, height = height, width
    audio = dump.audio
    return VideoInfo(
        path=absolute,
        width=width,
        height=height,
        fps=timing.fps,
        n_frames=timing.n_frames,
        duration_s=timing.duration_s,
        pix_fmt=video.pix_fmt or "unknown",
        codec=video.codec,
        rotation=rotation,
        variable_frame_rate=timing.variable_frame_rate,
        has_audio=bool(audio),
        audio_codec=audio[0].codec if audio else None,
        # framecrc times are already relative to the file's start (ffmpeg subtracts it).
        video_delay_s=timing.first_s,
        color=video.color,
        exif_orientation=orientation,
        sar=video.sar,
        interlaced=video.interlaced,
        subtitles=tuple(s.codec for s in dump.subtitles),
        timecode=dump.timecode,
    )


def exif_orientation(path: Path) -> int:
    """A photo's EXIF orientation, 1 (upright, the default) to 8; 1 for anything that is not
    an image Pillow reads or carries no valid tag."""
    try:
        with Image.open(path) as image:
            value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except (OSError, ValueError, SyntaxError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def audio_packet_checksums(path: str | Path) -> list[str]:
    """CRC of every packet of the first audio stream, in file order; [] without audio.

    Packets are copied, not decoded, so two files whose lists are equal carry bit-identical
    audio whatever their containers or timestamp offsets.
    """
    shown = str(path)
    path = Path(path)
    _check_file(path, shown)
    result = run_ffmpeg(ffmpeg_args.audio_crc_args(path.resolve()))
    stderr = result.stderr.decode("utf-8", "replace")
    dump = parse_input_dump(stderr)
    if not dump.opened:
        reason = open_error_reason(stderr)
        raise SpfemError(f"{shown} is not a media file ffmpeg can read ({reason})")
    if not dump.audio:
        return []
    _, packets = parse_framecrc(result.stdout.decode("ascii", "replace"))
    return [p.crc for p in packets]


# Two frame rates this close (relative) are one: a variable-rate video's edit is written at
# its mean rate, which the container stores as another fraction (talk_s32 looped three times:
# 1382400/46199 read back as 976199/32624, 1e-10 apart).
RATE_TOLERANCE = 1e-6


def same_rate(a: Fraction, b: Fraction) -> bool:
    """Whether two frame rates (frames per second) are one rate, as an edit keeps it."""
    return abs(a - b) <= RATE_TOLERANCE * max(a, b)
