"""Pure builders of ffmpeg argument lists.

Every function here returns the arguments that follow the ffmpeg executable (the caller
prepends the path from `imageio_ffmpeg.get_ffmpeg_exe()`), does no I/O and can be tested by
comparing lists. Paths are passed through `str()` unchanged: callers hand in absolute paths so
that a file name such as ``pipe:x.mp4`` or ``-x.mp4`` is never read as a protocol or an option.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from spfem_cli.encoding import DEFAULT_CRF, DEFAULT_PRESET

if TYPE_CHECKING:
    from spfem_cli.media.probe import ColorTags

# Stream specifier for "the first video stream that is not cover art": capital V excludes
# attached pictures, so a music video with an embedded thumbnail still maps the real video.
VIDEO_STREAM = "0:V:0"

# Containers we write, by lower-case suffix. mp4 and mov get `+faststart` so the index sits at
# the front of the file and players can start before the download ends.
OUTPUT_FORMATS: dict[str, str] = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
# The outputs in QuickTime's container family: the index can go first, a timecode is a track.
_MOV_FAMILY = (".mp4", ".mov")

_QUIET = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]

# swscale only has conversion matrices for these colour spaces; for any other tag (rgb, ycgco,
# constant-luminance bt2020) we leave the matrix untagged and let ffmpeg use its default.
_CONVERTIBLE_MATRICES = frozenset({"bt709", "fcc", "bt470bg", "smpte170m", "smpte240m", "bt2020nc"})
# Values the setparams filter accepts (ffmpeg's own names, as `ffmpeg -i` prints them); a tag
# outside these is dropped rather than allowed to fail the encode.
_PRIMARIES = frozenset(
    {"bt709", "bt470m", "bt470bg", "smpte170m", "smpte240m", "film", "bt2020", "smpte428"}
    | {"smpte431", "smpte432", "jedec-p22", "ebu3213"}
)
_TRANSFERS = frozenset(
    {"bt709", "bt470m", "bt470bg", "smpte170m", "smpte240m", "linear", "log100", "log316"}
    | {"iec61966-2-4", "bt1361e", "iec61966-2-1", "bt2020-10", "bt2020-12", "smpte2084"}
    | {"smpte428", "arib-std-b67"}
)


def fraction_arg(value: Fraction) -> str:
    """Format a rate (frames per second) the way ffmpeg parses it: ``"30"`` or ``"30000/1001"``.

    The denominator is capped at 10**6 so a rate given as a float still fits ffmpeg's 32-bit
    rationals; every rate `probe` returns passes unchanged.
    """
    value = Fraction(value).limit_denominator(1_000_000)
    if value <= 0:
        raise ValueError(f"frame rate must be positive, got {value}")
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator}"


def _movflags(path: Path) -> list[str]:
    return ["-movflags", "+faststart"] if path.suffix.lower() in _MOV_FAMILY else []


def _format(path: Path) -> list[str]:
    # Naming the muxer explicitly keeps a temp name or an odd suffix from changing the container.
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    return ["-f", fmt] if fmt else []


def probe_args(path: Path) -> list[str]:
    """Print the input's stream dump on stderr and one framecrc line per video packet on stdout.

    Info log level is kept because the stream dump (sizes, pixel format, rotation) is an info
    message; `-nostats` keeps the progress line out of it.
    """
    return _packet_crc_args(path, VIDEO_STREAM)


def _packet_crc_args(path: Path, stream: str) -> list[str]:
    """One framecrc line per packet of `stream`, copied without decoding."""
    return [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-i",
        str(path),
        "-map",
        stream,
        "-c",
        "copy",
        "-f",
        "framecrc",
        "-",
    ]


def audio_crc_args(path: Path) -> list[str]:
    """framecrc of the first audio stream's packets, copied without decoding.

    The trailing ``?`` makes a file without audio succeed with no packets instead of failing.
    """
    return _packet_crc_args(path, "0:a:0?")


# A photo's EXIF orientation (TIFF tag 274, 2-8) as the ffmpeg filters that turn it upright
# (5-8 swap width and height). Applied with autorotation off: ffmpeg 9 turns such a JPEG
# upright on decode, older versions do not, and neither reports it in the input's dump.
EXIF_ORIENTATION_FILTERS: dict[int, tuple[str, ...]] = {
    2: ("hflip",),
    3: ("hflip", "vflip"),
    4: ("vflip",),
    5: ("transpose=cclock_flip",),
    6: ("transpose=clock",),
    7: ("transpose=clock_flip",),
    8: ("transpose=cclock",),
}


def decode_args(
    path: Path,
    *,
    fps: Fraction | None = None,
    max_frames: int | None = None,
    size: tuple[int, int] | None = None,
    start_s: float | None = None,
    exif_orientation: int = 1,
    deinterlace: bool = False,
) -> list[str]:
    """Decode the video to raw rgb24 frames on stdout.

    With `fps` None every decoded frame is passed through as is (one output frame per coded
    frame). With `fps` set (frames per second) the output is resampled to that constant rate by
    duplicating or dropping frames, so frame i shows the input at time i / fps seconds.
    Autorotation is ffmpeg's default, so frames arrive in display orientation.
    `max_frames` stops after that many frames: in cfr mode ffmpeg pads the end with a frame
    or two of duplicates past the input's duration, which the caller does not want.
    `size` (width, height) scales the frames (area averaging), for analysis at lower cost.
    `start_s` seeks first: decoding starts at the first frame at or after that time (seconds;
    an input-side seek, which ffmpeg makes frame-accurate by decoding from the keyframe before).
    `exif_orientation` (a photo's, 1-8) turns the frame upright first (`size` is upright).
    `deinterlace` makes whole frames of interlaced video first, one per frame (bwdif, on the
    frames flagged interlaced): warped as they are, two fields taken apart in time comb.
    """
    seek = [] if start_s is None else ["-ss", f"{start_s:.6f}"]
    upright = EXIF_ORIENTATION_FILTERS.get(exif_orientation, ())
    rotate = ["-noautorotate"] if upright else []
    filters = ["bwdif=mode=send_frame:deint=interlaced"] if deinterlace else []
    filters += upright
    if size is not None:
        filters.append(f"scale={size[0]}:{size[1]}:flags=area")
    if fps is None:
        timing = ["-fps_mode", "passthrough"]
    else:
        # Restart the clock at the first video frame: when the audio starts earlier, cfr mode
        # would otherwise pad the start with copies of the first frame (the remux restores
        # that offset with -itsoffset instead).
        filters.insert(0, "setpts=PTS-STARTPTS")
        timing = ["-fps_mode", "cfr", "-r", fraction_arg(fps)]
    if filters:
        timing = ["-vf", ",".join(filters), *timing]
    if max_frames is not None:
        timing += ["-frames:v", str(max_frames)]
    return [
        *_QUIET,
        *seek,
        *rotate,
        "-i",
        str(path),
        "-map",
        VIDEO_STREAM,
        *timing,
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]


def color_args(color: ColorTags | None) -> list[str]:
    """Tag the encoded stream with the source's colour description and convert RGB to match.

    ffmpeg's decoder converts YUV to RGB with the matrix and range the source is tagged with
    (bt601 limited range when untagged). Tagging the output the same way makes ffmpeg convert
    back with the same matrix, so untouched pixels keep their colour in any player. Primaries and
    transfer need no conversion, only the tag; they are set with `setparams` because output
    options alone are overwritten by the RGB input's unknown values during negotiation.
    """
    if color is None:
        return []
    args: list[str] = []
    params = []
    if color.primaries in _PRIMARIES:
        params.append(f"color_primaries={color.primaries}")
    if color.transfer in _TRANSFERS:
        params.append(f"color_trc={color.transfer}")
    if params:
        args += ["-vf", "setparams=" + ":".join(params)]
    if color.matrix in _CONVERTIBLE_MATRICES:
        args += ["-colorspace", color.matrix]
    if color.range in ("tv", "pc"):
        args += ["-color_range", color.range]
    return args


def encode_args(
    path: Path,
    *,
    width: int,
    height: int,
    fps: Fraction,
    pix_fmt: str = "yuv420p",
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
    color: ColorTags | None = None,
) -> list[str]:
    """Encode raw rgb24 frames read from stdin to a video-only H.264 file at `path`.

    `width` and `height` are in pixels, `fps` in frames per second; `crf` is x264's constant
    rate factor (0 lossless .. 51 worst, 18 visually transparent).
    """
    return [
        *_QUIET,
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-video_size",
        f"{width}x{height}",
        "-framerate",
        fraction_arg(fps),
        "-i",
        "-",
        *color_args(color),
        "-an",
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-crf",
        str(crf),
        "-pix_fmt",
        pix_fmt,
        *_movflags(path),
        *_format(path),
        "-y",
        str(path),
    ]


# Subtitle codecs that are text: each converts to the text codec a container holds.
_TEXT_SUBTITLES = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"})
# Subtitles drawn as pictures (Blu-ray, DVD, DVB) can only be copied; Matroska holds them all.
_PICTURE_SUBTITLES = frozenset({"hdmv_pgs_subtitle", "dvd_subtitle", "dvb_subtitle"})


def subtitle_codec(codec: str, output: Path) -> str | None:
    """How a subtitle stream coded `codec` goes into `output`'s container: "copy", the text
    codec it is converted to (mp4 and mov hold only mov_text, which Matroska does not hold),
    or None where the container cannot hold it."""
    matroska = output.suffix.lower() == ".mkv"
    if codec in _TEXT_SUBTITLES:
        if matroska:
            return "srt" if codec in ("mov_text", "text") else "copy"
        return "copy" if codec == "mov_text" else "mov_text"
    if codec in _PICTURE_SUBTITLES and matroska:
        return "copy"
    return None


def _timecode(timecode: str | None, output: Path) -> list[str]:
    """The arguments that start `output`'s video at `timecode` (see `mux_args`)."""
    if timecode is None:
        return []
    if output.suffix.lower() == ".mkv":
        return ["-metadata:s:v:0", f"timecode={timecode}"]
    if output.suffix.lower() in _MOV_FAMILY:
        return ["-timecode", timecode]
    return []


def mux_args(
    *,
    video_only: Path,
    source: Path,
    output: Path,
    has_audio: bool,
    subtitles: Sequence[str] = (),
    video_delay_s: float = 0.0,
    timecode: str | None = None,
) -> list[str]:
    """Put the video of `video_only` and everything else of `source` that `output` can hold
    into `output`: every audio stream, the subtitle streams (`subtitles`: the source's
    subtitle codecs, in order; see `subtitle_codec`), Matroska's attachments (the fonts of
    styled subtitles) when `output` is Matroska too, the chapters and the file's metadata
    (title, creation time).

    Audio is copied, never re-encoded; text subtitles are converted where the container needs
    another text codec. `video_delay_s` (seconds) is how long after the start of `source` its
    first video frame is shown; the new video is delayed by the same amount so lips stay in
    sync with the copied audio. No `-shortest`: the audio is kept whole, exactly as in the
    source, so the output's duration is the source's. `timecode`: the source's start timecode
    (`VideoInfo.timecode`), given to the new video, as a timecode track in mp4 and mov and as
    its tag in Matroska, where editing software reads it (copying the source's metadata does
    not carry it: it is the video stream's, or a track of its own).
    """
    delay = ["-itsoffset", f"{video_delay_s:.6f}"] if video_delay_s > 0.0005 else []
    inputs = [*delay, "-i", str(video_only), "-i", str(source)]
    maps = ["-map", "0:v:0"]
    if has_audio:
        maps += ["-map", "1:a?"]
    conversions: list[str] = []
    kept = 0
    for index, codec in enumerate(subtitles):
        how = subtitle_codec(codec, output)
        if how is None:
            continue
        maps += ["-map", f"1:s:{index}"]
        if how != "copy":
            conversions += [f"-c:s:{kept}", how]
        kept += 1
    if output.suffix.lower() == ".mkv":
        maps += ["-map", "1:t?"]
    return [
        *_QUIET,
        *inputs,
        *maps,
        *["-map_metadata", "1", "-map_chapters", "1"],
        "-c",
        "copy",
        *conversions,
        *_timecode(timecode, output),
        *_movflags(output),
        *_format(output),
        "-y",
        str(output),
    ]
