"""Tests of spfem_cli.media: argument builders, probing, streamed decode/encode, output."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from spfem_cli.errors import SpfemError
from spfem_cli.media import (
    ColorTags,
    FrameReader,
    FrameWriter,
    VideoInfo,
    atomic_output,
    audio_packet_checksums,
    check_output_path,
    default_output_path,
    left_out_note,
    mux_streams,
    output_pix_fmt,
    probe,
    same_rate,
    temporary_pattern,
)
from spfem_cli.media import ffmpeg_args as fa
from spfem_cli.media import output as output_module
from spfem_cli.media.pixels import luma
from spfem_cli.media.probe import (
    Packet,
    compute_timing,
    error_reason,
    parse_color,
    parse_framecrc,
    parse_input_dump,
    square_pixels,
)

from .conftest import (
    CHAPTERS,
    SUBTITLE_CUES,
    add_subtitles_and_chapters,
    combing,
    file_metadata,
    subtitle_cues,
)

MakeClip = Callable[..., Path]


def one_line_error(excinfo: pytest.ExceptionInfo[SpfemError]) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


def read_all(info: VideoInfo, **kwargs: object) -> list[np.ndarray]:
    with FrameReader(info, **kwargs) as reader:  # type: ignore[arg-type]
        return list(reader)


def encode(frames: list[np.ndarray], path: Path, info: VideoInfo, fps: Fraction) -> None:
    with FrameWriter(
        path,
        width=info.width,
        height=info.height,
        fps=fps,
        pix_fmt=output_pix_fmt(info),
        preset="ultrafast",
        color=info.color,
    ) as writer:
        for frame in frames:
            writer.write(frame)


def info_for(**changes: object) -> VideoInfo:
    base = VideoInfo(
        path=Path("/x/in.mp4"),
        width=640,
        height=480,
        fps=Fraction(25),
        n_frames=25,
        duration_s=1.0,
        pix_fmt="yuv420p",
        codec="h264",
        rotation=0,
        variable_frame_rate=False,
        has_audio=True,
        audio_codec="aac",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------- pure argument builders


def test_fraction_arg() -> None:
    assert fa.fraction_arg(Fraction(30)) == "30"
    assert fa.fraction_arg(Fraction(30000, 1001)) == "30000/1001"
    assert fa.fraction_arg(29.97) == "2997/100"  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fa.fraction_arg(Fraction(0))


def test_decode_args() -> None:
    head = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-i", "/v/in.mp4"]
    tail = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    assert fa.decode_args(Path("/v/in.mp4")) == [
        *head,
        *["-map", "0:V:0", "-fps_mode", "passthrough"],
        *tail,
    ]
    assert fa.decode_args(Path("/v/in.mp4"), fps=Fraction(30000, 1001), max_frames=7) == [
        *head,
        *["-map", "0:V:0", "-vf", "setpts=PTS-STARTPTS", "-fps_mode", "cfr"],
        *["-r", "30000/1001", "-frames:v", "7"],
        *tail,
    ]


def test_decode_args_turn_a_photo_upright() -> None:
    args = fa.decode_args(Path("/p/phone.jpg"), size=(80, 60), exif_orientation=6)
    # Autorotation off (ffmpeg 9 applies EXIF itself, older versions do not), then ours.
    assert args[args.index("-i") - 1] == "-noautorotate"
    assert args[args.index("-vf") + 1] == "transpose=clock,scale=80:60:flags=area"
    assert "-noautorotate" not in fa.decode_args(Path("/p/phone.jpg"), exif_orientation=1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_photo_stored_turned_is_read_upright(tmp_path: Path, orientation: int) -> None:
    """A JPEG stored turned or mirrored with the EXIF orientation that shows it upright (as
    a phone writes it) is probed at its upright size and decoded upright."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng(orientation)
    # Smooth, asymmetric content, so that any turn or mirror shows.
    upright = np.zeros((48, 80, 3), dtype=np.uint8)
    upright[..., 0] = np.linspace(0, 255, 80)[None, :]
    upright[..., 1] = np.linspace(0, 255, 48)[:, None]
    upright[..., 2] = rng.integers(100, 110)
    stored_as = {
        1: None,
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    image = Image.fromarray(upright)
    stored = image if stored_as is None else image.transpose(stored_as)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    # Pillow's own reading of the tag agrees that this shows the picture upright.
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")).astype(int)
    assert np.abs(shown - upright).mean() < 4
    info = probe(path)
    assert (info.width, info.height, info.exif_orientation) == (80, 48, orientation)
    with FrameReader(info) as reader:
        (frame,) = list(reader)
    assert np.abs(frame.astype(int) - upright).mean() < 4


def test_encode_args_mp4_and_mkv() -> None:
    quiet = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
    raw_in = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", "721x405"]
    assert fa.encode_args(
        Path("/o/v.mp4"), width=721, height=405, fps=Fraction(25), pix_fmt="yuv444p"
    ) == [
        *quiet,
        *raw_in,
        *["-framerate", "25", "-i", "-", "-an", "-c:v", "libx264"],
        *["-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv444p"],
        *["-movflags", "+faststart", "-f", "mp4", "-y", "/o/v.mp4"],
    ]
    args = fa.encode_args(
        Path("/o/v.MKV"), width=721, height=405, fps=Fraction(24000, 1001), crf=23, preset="fast"
    )
    assert "-movflags" not in args
    assert args[-4:] == ["-f", "matroska", "-y", "/o/v.MKV"]
    assert args[args.index("-framerate") + 1] == "24000/1001"
    assert args[args.index("-crf") + 1] == "23"
    assert args[args.index("-preset") + 1] == "fast"


def test_color_args() -> None:
    assert fa.color_args(None) == []
    assert fa.color_args(ColorTags()) == []
    tags = ColorTags(range="tv", matrix="bt709", primaries="bt709", transfer="bt709")
    assert fa.color_args(tags) == [
        *["-vf", "setparams=color_primaries=bt709:color_trc=bt709"],
        *["-colorspace", "bt709", "-color_range", "tv"],
    ]
    # No swscale matrix for rgb/ycgco: tag nothing rather than mis-convert.
    assert fa.color_args(ColorTags(range="pc", matrix="gbr")) == ["-color_range", "pc"]
    hlg = ColorTags(range="tv", matrix="bt2020nc", primaries="bt2020", transfer="arib-std-b67")
    assert fa.color_args(hlg) == [
        *["-vf", "setparams=color_primaries=bt2020:color_trc=arib-std-b67"],
        *["-colorspace", "bt2020nc", "-color_range", "tv"],
    ]
    assert fa.color_args(ColorTags(primaries="left", transfer="weird")) == []


def test_mux_args() -> None:
    quiet = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
    keep = ["-map_metadata", "1", "-map_chapters", "1", "-c", "copy"]
    assert fa.mux_args(
        video_only=Path("/t/v.mp4"),
        source=Path("/s/in.mov"),
        output=Path("/o/out.mp4"),
        has_audio=True,
    ) == [
        *quiet,
        *["-i", "/t/v.mp4", "-i", "/s/in.mov", "-map", "0:v:0", "-map", "1:a?", *keep],
        *["-movflags", "+faststart", "-f", "mp4", "-y", "/o/out.mp4"],
    ]
    assert fa.mux_args(
        video_only=Path("/t/v.mkv"),
        source=Path("/s/in.mov"),
        output=Path("/o/out.mkv"),
        has_audio=False,
        video_delay_s=0.2,
    ) == [
        *quiet,
        *["-itsoffset", "0.200000", "-i", "/t/v.mkv", "-i", "/s/in.mov", "-map", "0:v:0"],
        *["-map", "1:t?", *keep, "-f", "matroska", "-y", "/o/out.mkv"],
    ]
    # The picture subtitle (the source's second) has no place in mp4: the output's two
    # subtitle streams are the source's first and third, converted to mov_text or copied.
    assert fa.mux_args(
        video_only=Path("/t/v.mp4"),
        source=Path("/s/in.mkv"),
        output=Path("/o/out.mp4"),
        has_audio=True,
        subtitles=("subrip", "hdmv_pgs_subtitle", "mov_text"),
    ) == [
        *quiet,
        *["-i", "/t/v.mp4", "-i", "/s/in.mkv", "-map", "0:v:0", "-map", "1:a?"],
        *["-map", "1:s:0", "-map", "1:s:2", *keep, "-c:s:0", "mov_text"],
        *["-movflags", "+faststart", "-f", "mp4", "-y", "/o/out.mp4"],
    ]


def test_the_start_timecode_goes_where_the_container_keeps_it() -> None:
    def args(output: str, timecode: str | None) -> list[str]:
        return fa.mux_args(
            video_only=Path("/t/v"), source=Path("/s/in.mov"), output=Path(output),
            has_audio=False, timecode=timecode,
        )  # fmt: skip

    def after_copy(a: list[str]) -> list[str]:
        return a[a.index("copy") + 1 : a.index("-y")]

    assert after_copy(args("/o/o.mov", "01:00:00:00"))[:2] == ["-timecode", "01:00:00:00"]
    assert after_copy(args("/o/o.mp4", "01:00:00:00"))[:2] == ["-timecode", "01:00:00:00"]
    assert after_copy(args("/o/o.mkv", "10:20:30;12"))[:2] == [
        "-metadata:s:v:0", "timecode=10:20:30;12",
    ]  # fmt: skip
    assert "-timecode" not in args("/o/o.webm", "01:00:00:00")
    assert args("/o/o.mov", None) == fa.mux_args(
        video_only=Path("/t/v"), source=Path("/s/in.mov"), output=Path("/o/o.mov"),
        has_audio=False,
    )  # fmt: skip


def test_subtitle_codec_fits_the_container() -> None:
    mp4, mov, mkv = Path("o.mp4"), Path("o.MOV"), Path("o.mkv")
    for text in ("subrip", "ass", "ssa", "webvtt", "text"):
        assert fa.subtitle_codec(text, mp4) == fa.subtitle_codec(text, mov) == "mov_text"
    assert fa.subtitle_codec("mov_text", mp4) == "copy"
    assert fa.subtitle_codec("mov_text", mkv) == fa.subtitle_codec("text", mkv) == "srt"
    for codec in ("subrip", "ass", "webvtt", "hdmv_pgs_subtitle", "dvd_subtitle", "dvb_subtitle"):
        assert fa.subtitle_codec(codec, mkv) == "copy"
    for picture in ("hdmv_pgs_subtitle", "dvd_subtitle", "dvb_subtitle"):
        assert fa.subtitle_codec(picture, mp4) is None
    assert fa.subtitle_codec("eia_608", mkv) is None


def test_left_out_note_names_the_subtitles_a_container_cannot_hold(
    make_clip: MakeClip,
) -> None:
    info = probe(make_clip("a.mp4", duration=0.2))
    assert left_out_note(info=info, output=Path("o.mp4")) is None
    text_only = dataclasses.replace(info, subtitles=("subrip", "ass"))
    assert left_out_note(info=text_only, output=Path("o.mov")) is None
    mixed = dataclasses.replace(info, subtitles=("subrip", "hdmv_pgs_subtitle"))
    assert left_out_note(info=mixed, output=Path("o.mp4")) == (
        "a subtitle stream (hdmv_pgs_subtitle) cannot be written to .mp4 and was left out: "
        "write .mkv to keep it"
    )
    assert left_out_note(info=mixed, output=Path("o.mkv")) is None
    two = dataclasses.replace(info, subtitles=("dvd_subtitle", "dvd_subtitle", "eia_608"))
    assert left_out_note(info=two, output=Path("o.mkv")) == (
        "a subtitle stream (eia_608) cannot be written to .mkv and was left out"
    )
    assert left_out_note(info=two, output=Path("o.mp4")) == (
        "3 subtitle streams (dvd_subtitle, eia_608) cannot be written to .mp4 and were left "
        "out: write .mkv to keep them"
    )


@pytest.mark.parametrize(("source", "output"), [("mkv", "mp4"), ("mkv", "mov"), ("mp4", "mkv")])
def test_mux_keeps_subtitles_chapters_and_metadata(
    make_clip: MakeClip, tmp_path: Path, source: str, output: str
) -> None:
    """The subtitles, chapters, title and creation time of the source come through the remux,
    their subtitle codec converted where the output's container needs another."""
    src = add_subtitles_and_chapters(
        make_clip("plain.mp4", duration=1.6, audio=True), tmp_path / f"full.{source}"
    )
    info = probe(src)
    assert info.subtitles == (("subrip",) if source == "mkv" else ("mov_text",))
    video_only = tmp_path / "v.mp4"
    encode(read_all(info), video_only, info, info.fps)
    final = tmp_path / f"out.{output}"
    mux_streams(video_only=video_only, source=info, output=final)
    out = probe(final)
    assert out.subtitles == (("subrip",) if output == "mkv" else ("mov_text",))
    assert subtitle_cues(final) == subtitle_cues(src) == SUBTITLE_CUES
    tags, chapters = file_metadata(final)
    assert chapters == CHAPTERS
    assert tags["title"] == "My talk" and tags["creation_time"].startswith("2024-05-01T10:00:00")
    assert out.n_frames == info.n_frames
    assert audio_packet_checksums(final) == audio_packet_checksums(src)


def test_probe_and_audio_args() -> None:
    common = ["-hide_banner", "-nostdin", "-nostats", "-i", "/v/a.mp4"]
    assert fa.probe_args(Path("/v/a.mp4")) == [
        *common,
        *["-map", "0:V:0", "-c", "copy", "-f", "framecrc", "-"],
    ]
    assert fa.audio_crc_args(Path("/v/a.mp4")) == [
        *common,
        *["-map", "0:a:0?", "-c", "copy", "-f", "framecrc", "-"],
    ]


@pytest.mark.parametrize(
    ("pix_fmt", "size", "expected"),
    [
        ("yuv420p", (640, 480), "yuv420p"),
        ("yuv422p", (640, 480), "yuv422p"),
        ("yuv444p", (640, 480), "yuv444p"),
        ("yuv420p10le", (640, 480), "yuv420p10le"),
        ("yuv444p10le", (640, 480), "yuv444p10le"),
        ("yuvj420p", (640, 480), "yuv420p"),
        ("nv12", (640, 480), "yuv420p"),
        ("rgb24", (640, 480), "yuv420p"),
        ("p010le", (640, 480), "yuv420p10le"),
        ("yuv420p", (721, 405), "yuv444p"),
        ("yuv422p", (720, 405), "yuv444p"),
        ("yuv420p10le", (721, 404), "yuv444p10le"),
        ("rgb24", (721, 405), "yuv444p"),
    ],
)
def test_output_pix_fmt(pix_fmt: str, size: tuple[int, int], expected: str) -> None:
    assert output_pix_fmt(info_for(pix_fmt=pix_fmt, width=size[0], height=size[1])) == expected


# ---------------------------------------------------------------- pure parsers

_DUMP = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from '/v/phone.mov':
  Duration: 00:00:06.00, start: 0.033000, bitrate: 917 kb/s
  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp (default)
  Stream #0:1: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 300x300, \
90k tbr, 90k tbn (attached pic)
  Stream #0:2[0x2](und): Video: hevc (Main 10) (hvc1 / 0x31637668), \
yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67, progressive), 1920x1080, 9000 kb/s, \
29.97 fps, 29.97 tbr, 600 tbn (default)
    Metadata:
      handler_name    : Core Media Video
    Side data:
      Display Matrix: rotation of -90.00 degrees
Stream mapping:
  Stream #0:2 -> #0:0 (copy)
Output #0, framecrc, to 'pipe:':
  Stream #0:0: Video: hevc, yuv420p(progressive), 640x480, 25 fps
"""


def test_parse_input_dump() -> None:
    dump = parse_input_dump(_DUMP)
    assert dump.opened
    assert dump.start_s == pytest.approx(0.033)
    assert len(dump.streams) == 3  # the output part of the dump is not read
    assert [a.codec for a in dump.audio] == ["aac"]
    video = dump.video
    assert video is not None and video.index == 2  # cover art is skipped
    assert (video.codec, video.pix_fmt, video.width, video.height) == (
        "hevc",
        "yuv420p10le",
        1920,
        1080,
    )
    assert video.rotation == 270
    assert video.rate == Fraction(30000, 1001)
    assert video.color == ColorTags("tv", "bt2020nc", "bt2020", "arib-std-b67")
    assert not parse_input_dump("/v/x.mp4: Invalid data found when processing input").opened


def test_the_start_timecode_is_read_from_the_dump() -> None:
    """A timecode track's (mov, mp4) or a video stream's (Matroska's TIMECODE tag), the first
    one of the input part of the dump; none in _DUMP."""
    assert parse_input_dump(_DUMP).timecode is None
    mov = _DUMP.replace(
        "      handler_name    : Core Media Video\n",
        "      handler_name    : Core Media Video\n      timecode        : 01:00:00:00\n",
    )
    assert parse_input_dump(mov).timecode == "01:00:00:00"
    mkv = _DUMP.replace(
        "      handler_name    : Core Media Video\n", "      TIMECODE : 10:20:30;12\n"
    )
    assert parse_input_dump(mkv).timecode == "10:20:30;12"
    # The output part of the dump is not the input's.
    out = _DUMP + "    Metadata:\n      timecode        : 02:00:00:00\n"
    assert parse_input_dump(out).timecode is None


def test_parse_color() -> None:
    assert parse_color("progressive") == ColorTags()
    assert parse_color("tv, bt709, progressive") == ColorTags("tv", "bt709", "bt709", "bt709")
    assert parse_color("pc, bt470bg/unknown/unknown") == ColorTags("pc", "bt470bg", None, None)
    assert parse_color("tv, top first") == ColorTags(range="tv")
    assert parse_color("progressive, left") == ColorTags()


def test_parse_framecrc_and_timing() -> None:
    text = """#software: Lavf63.1.102
#tb 0: 1/12800
#media_type 0: video
0,      -1024,      -1024,      512,     5157, 0x6519aa12, F=0x5
0,      -1024,          0,      512,     5117, 0x2c645f56
0,       -512,       1024,      512,     2485, 0xb871c40d, F=0x0
0,          0,        512,      512,      975, 0x5a66d736, F=0x0
"""
    tb, packets = parse_framecrc(text)
    assert tb == Fraction(1, 12800)
    assert [p.flags for p in packets] == [5, 1, 0, 0]
    timing = compute_timing(tb, packets, None)
    # The first packet is discarded by an edit list; the rest are 3 frames of 512 ticks.
    assert timing.n_frames == 3
    assert timing.duration_s == pytest.approx(0.12)
    assert timing.fps == 25 and not timing.variable_frame_rate


def _packets(times: list[int], last: int) -> list[Packet]:
    return [Packet(dts=t, pts=t, duration=last, size=1, crc="0x0", flags=1) for t in times]


def test_timing_keeps_ntsc_rates_exact() -> None:
    # 29.97 fps in milliseconds (Matroska): durations of 33 and 34 ticks are rounding, not VFR.
    times = [round(i * 1001 / 30) for i in range(300)]
    timing = compute_timing(Fraction(1, 1000), _packets(times, 33), None)
    assert timing.fps == Fraction(30000, 1001)
    assert not timing.variable_frame_rate
    # 29.97 fps in a 1/90000 time base: exactly 3003 ticks per frame.
    timing = compute_timing(Fraction(1, 90000), _packets([i * 3003 for i in range(10)], 3003), None)
    assert timing.fps == Fraction(30000, 1001)
    assert timing.duration_s == pytest.approx(10 * 1001 / 30000)


def test_timing_after_millisecond_rounding() -> None:
    # 29.97 fps rounded to milliseconds (an mkv) and then remuxed to 1/90000 (a .ts): the
    # durations vary by 90 ticks, so this is VFR by the book, but the rate is still NTSC.
    times = [round(i * 1001 / 30) * 90 for i in range(60)]
    timing = compute_timing(Fraction(1, 90000), _packets(times, 3060), None)
    assert timing.variable_frame_rate
    assert timing.fps == Fraction(30000, 1001)


def test_timing_vfr() -> None:
    times = [i * 512 for i in range(30)] + [15360 + i * 1024 for i in range(30)]
    timing = compute_timing(Fraction(1, 15360), _packets(times, 1024), None)
    assert timing.variable_frame_rate
    assert timing.n_frames == 60 and timing.duration_s == pytest.approx(3.0)
    assert timing.fps == 20


def test_a_rate_read_back_as_another_fraction_is_the_same_rate() -> None:
    # A variable-rate video's edit is written at its mean rate, which the container stores as
    # another fraction (talk_s32 looped three times); NTSC's 29.97 is not 30.
    assert same_rate(Fraction(1382400, 46199), Fraction(976199, 32624))
    assert same_rate(Fraction(25), Fraction(25))
    assert not same_rate(Fraction(30000, 1001), Fraction(30))
    assert not same_rate(Fraction(25), Fraction(24))


def test_timing_of_a_constant_rate_with_frames_missing_keeps_its_rate() -> None:
    # 25 fps with two frames missing (a dropped frame; the tail of a cut made with -c copy):
    # resampled at 25 fps, which repeats a frame into each hole, not at the average 24.
    times = [i * 512 for i in range(50) if i not in (20, 48)]
    timing = compute_timing(Fraction(1, 12800), _packets(times, 512), None)
    assert timing.variable_frame_rate and timing.n_frames == 48
    assert timing.fps == 25 and round(timing.duration_s * timing.fps) == 50
    # Off the grid by more than rounding (timestamps jitter): the average rate, as before.
    jittered = [t + (40 if i % 7 == 3 else 0) for i, t in enumerate(times)]
    timing = compute_timing(Fraction(1, 12800), _packets(jittered, 512), None)
    assert timing.fps == Fraction(48, 2) and timing.variable_frame_rate


def test_a_dropped_frame_is_filled_and_no_other_frame_moves(make_clip: MakeClip) -> None:
    src = make_clip(
        "dropped.mp4",
        duration=1.2,
        vf="select='not(eq(n\\,12))'",
        extra=["-fps_mode", "passthrough"],
    )
    info = probe(src)
    assert info.variable_frame_rate and info.n_frames == 29 and info.fps == 25
    frames = read_all(info)
    coded = read_all(dataclasses.replace(info, variable_frame_rate=False))  # each coded frame once
    assert len(frames) == 30 and len(coded) == 29
    for t, frame in enumerate(frames):
        assert np.array_equal(frame, coded[t if t < 12 else max(11, t - 1)])


def test_anamorphic_video_is_read_in_square_pixels(
    make_clip: MakeClip, make_rotated: Callable[[Path, int], Path]
) -> None:
    square = make_clip("square.mp4", size=(160, 120))
    # Stored at half the width, each pixel twice as wide as tall: displayed as the square one.
    wide = make_clip("wide_pixels.mp4", size=(160, 120), vf="scale=80:120,setsar=2")
    info = probe(wide)
    assert (info.width, info.height, info.sar) == (160, 120, 2)
    frames, reference = read_all(info), read_all(probe(square))
    assert frames[0].shape == (120, 160, 3)
    # What differs is the detail the squeeze lost, not the picture's shape.
    blurred = [gaussian_filter(f.astype(float), (2, 2, 0)) for f in (frames[5], reference[5])]
    assert np.abs(blurred[0] - blurred[1]).mean() < 6
    # Turned on its side by a rotation tag: the stored pixels are squared first.
    turned = probe(make_rotated(wide, 90))
    assert (turned.width, turned.height) == (120, 160)
    assert read_all(turned)[0].shape == (160, 120, 3)
    # Pixels taller than wide.
    tall = probe(make_clip("tall_pixels.mp4", size=(160, 120), vf="scale=160:240,setsar=1/2"))
    assert (tall.width, tall.height) == (80, 240)
    assert square_pixels(81, 240, sar=Fraction(1, 2)) == (40, 240)


def test_interlaced_video_is_deinterlaced_on_decode(make_clip: MakeClip) -> None:
    # testsrc2 at 50 fps woven into 25 interlaced frames a second, top field first.
    woven = make_clip(
        "interlaced.mp4",
        size=(320, 240),
        rate="50",
        vf="tinterlace=interleave_top,setfield=tff",
        extra=["-flags", "+ilme+ildct", "-x264opts", "tff=1"],
    )
    info = probe(woven)
    assert info.interlaced and info.fps == 25
    frames = read_all(info)
    fields = read_all(dataclasses.replace(info, interlaced=False))  # as stored
    assert len(frames) == len(fields) == info.n_frames
    plain = probe(make_clip("progressive.mp4", size=(320, 240)))  # the same, 25 whole frames
    assert not plain.interlaced
    whole, combed, frames_alone = (combing(seq) for seq in (frames, fields, read_all(plain)))
    # Measured 3.0 deinterlaced, 5.2 as stored, 3.3 for the progressive clip.
    assert whole < 1.1 * frames_alone < 0.8 * combed
    assert "bwdif" in " ".join(fa.decode_args(Path("/v/in.mp4"), deinterlace=True))
    assert "bwdif" not in " ".join(fa.decode_args(Path("/v/in.mp4")))


def test_an_interrupted_ffmpeg_is_reaped_before_the_interrupt_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C during `run_ffmpeg`: ffmpeg is killed and waited for before KeyboardInterrupt
    reaches the caller (whose clean-up removes the file ffmpeg writes)."""
    from spfem_cli.media.probe import run_ffmpeg

    started: list[subprocess.Popen[bytes]] = []

    def interrupted(self: subprocess.Popen[bytes], *args: Any, **kwargs: Any) -> None:
        started.append(self)
        # As CPython's communicate does on Ctrl-C: it has had its short wait already, so
        # nothing after it waits again.
        self._sigint_wait_secs = 0  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess.Popen, "communicate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_ffmpeg(["-f", "lavfi", "-i", "anullsrc", "-t", "600", "-f", "null", "-"])
    (proc,) = started
    assert proc.returncode is not None  # reaped by run_ffmpeg, not left running


@pytest.mark.parametrize("through", ["run_ffmpeg", "FrameReader"])
def test_ctrl_c_while_ffmpeg_starts_stops_it(
    through: str, monkeypatch: pytest.MonkeyPatch, make_clip: MakeClip
) -> None:
    """Ctrl-C landing inside subprocess.Popen, after the child has started (forking a large
    process takes milliseconds): ffmpeg is killed and reaped and KeyboardInterrupt goes on.
    Raised inside Popen, the interrupt lost the child, which ran on; a remux then created its
    output after `atomic_output` had removed it."""
    import signal
    import time

    from spfem_cli.media.probe import run_ffmpeg

    info = probe(make_clip("in.mp4", duration=1.0))
    started: list[subprocess.Popen[bytes]] = []
    real = subprocess.Popen

    def interrupted_while_starting(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = real(*args, **kwargs)
        started.append(proc)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # Python runs the SIGINT handler here, inside "Popen"
        return proc

    monkeypatch.setattr(subprocess, "Popen", interrupted_while_starting)
    with pytest.raises(KeyboardInterrupt):
        if through == "run_ffmpeg":
            run_ffmpeg(["-f", "lavfi", "-i", "anullsrc", "-t", "600", "-f", "null", "-"])
        else:
            with FrameReader(info) as reader:
                next(iter(reader))
    assert len(started) == 1 and started[0].returncode is not None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_error_reason_prefers_cause() -> None:
    stderr = (
        "[vf#0:0 @ 0x55] Error sending frames to consumers: Invalid argument\n"
        "[out#0/mp4 @ 0x55] Could not write header: No space left on device\n"
        "[out#0/mp4 @ 0x55] Nothing was written into output file.\n"
    )
    assert error_reason(stderr) == "Could not write header: No space left on device"
    assert error_reason("[mp4 @ 0x1] Could not find tag\n[out] later\n") == "Could not find tag"
    assert error_reason("") == "no message from ffmpeg"


# ---------------------------------------------------------------- probe on real clips


@pytest.mark.clips
@pytest.mark.parametrize(
    ("name", "size", "fps"),
    [
        ("talk_s32_1280x720.mp4", (1280, 720), 30),
        ("speech_obama_450x450.mp4", (450, 450), 25),
        ("talk_s20_480x908.mp4", (480, 908), 30),
    ],
)
def test_probe_real_clips(clips_dir: Path, name: str, size: tuple[int, int], fps: int) -> None:
    info = probe(clips_dir / name)
    assert (info.width, info.height) == size
    assert info.fps == fps
    assert info.codec == "h264" and info.pix_fmt == "yuv420p" and info.rotation == 0
    assert info.has_audio and info.audio_codec == "aac"
    assert not info.variable_frame_rate
    assert info.duration_s == pytest.approx(info.n_frames / fps)
    with FrameReader(info) as reader:
        count = 0
        for frame in reader:
            assert frame.shape == (size[1], size[0], 3) and frame.dtype == np.uint8
            count += 1
    assert count == info.n_frames == reader.expected_frames


@pytest.mark.clips
def test_reencode_keeps_audio_bit_exact(clips_dir: Path, tmp_path: Path) -> None:
    src = clips_dir / "talk_s32_1280x720.mp4"
    info = probe(src)
    video_only = tmp_path / "video.mkv"
    with (
        FrameReader(info) as reader,
        FrameWriter(
            video_only, width=info.width, height=info.height, fps=info.fps, preset="ultrafast"
        ) as writer,
    ):
        for frame in reader:
            writer.write(frame)
    final = tmp_path / "talk.happy.mp4"
    with atomic_output(final) as temp:
        mux_streams(video_only=video_only, source=info, output=temp)
    out = probe(final)
    assert (out.width, out.height, out.n_frames, out.fps) == (1280, 720, info.n_frames, info.fps)
    assert abs(out.duration_s - info.duration_s) <= 1 / float(info.fps)
    checksums = audio_packet_checksums(src)
    assert checksums and audio_packet_checksums(final) == checksums


# ---------------------------------------------------------------- probe errors


def test_probe_missing_folder_and_empty(tmp_path: Path) -> None:
    with pytest.raises(SpfemError, match="does not exist") as excinfo:
        probe(tmp_path / "nope.mp4")
    assert "nope.mp4" in one_line_error(excinfo)
    with pytest.raises(SpfemError, match="is a folder"):
        probe(tmp_path)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(SpfemError, match=r"empty \(0 bytes\)") as excinfo:
        probe(empty)
    assert "empty.mp4" in one_line_error(excinfo)


def test_probe_not_a_video(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(SpfemError, match="is not a video file ffmpeg can read") as excinfo:
        probe(fake)
    assert "notes.mp4" in one_line_error(excinfo)


def test_probe_audio_only(
    make_audio_only: Callable[[str], Path],
    tmp_path: Path,
    ffmpeg_checked: Callable[..., None],
) -> None:
    tone = make_audio_only("tone.m4a")
    with pytest.raises(SpfemError, match="has no video stream") as excinfo:
        probe(tone)
    assert "tone.m4a" in one_line_error(excinfo)
    assert len(audio_packet_checksums(tone)) > 10
    # Cover art is a video stream to ffmpeg, but not a video.
    song = tmp_path / "song.m4a"
    ffmpeg_checked(
        *["-f", "lavfi", "-i", "sine=duration=1", "-f", "lavfi", "-i", "testsrc2=size=64x64"],
        *["-map", "0", "-map", "1", "-frames:v", "1", "-c:a", "aac", "-c:v", "png"],
        *["-disposition:v:0", "attached_pic", str(song)],
    )
    with pytest.raises(SpfemError, match="song.m4a has no video stream"):
        probe(song)


def test_probe_zero_frames(
    make_clip: MakeClip, tmp_path: Path, ffmpeg_checked: Callable[..., None]
) -> None:
    src = make_clip("src.mp4", audio=True)
    zero = tmp_path / "zero.mkv"
    # The noise bitstream filter drops every video packet: a video stream with no frames.
    ffmpeg_checked("-i", str(src), "-map", "0", "-c", "copy", "-bsf:v", "noise=drop=1", str(zero))
    with pytest.raises(SpfemError, match="has no video frames") as excinfo:
        probe(zero)
    one_line_error(excinfo)


@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_mp4(make_clip: MakeClip, tmp_path: Path, faststart: bool) -> None:
    src = make_clip("full.mp4", duration=2.0, audio=True, faststart=faststart)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(SpfemError) as excinfo:
        # Without faststart the index (moov) is at the end and is lost: ffmpeg cannot open it.
        # With faststart the index survives and promises frames the file no longer holds.
        read_all(probe(cut))
    message = one_line_error(excinfo)
    assert "cut.mp4" in message
    assert ("not a video file" in message) if not faststart else ("truncated" in message)


def test_reader_raises_when_frames_are_missing(make_clip: MakeClip) -> None:
    info = probe(make_clip("short.mp4"))
    assert info.n_frames == 25
    # One frame short is tolerated; more is a truncated or corrupt file.
    assert len(read_all(dataclasses.replace(info, n_frames=26))) == 25
    with pytest.raises(SpfemError, match=r"truncated or corrupt: decoded 25 of 30 frames") as ei:
        read_all(dataclasses.replace(info, n_frames=30))
    one_line_error(ei)


# ---------------------------------------------------------------- decode details


def test_rotated_phone_video(
    make_clip: MakeClip, make_rotated: Callable[[Path, int], Path]
) -> None:
    src = make_clip("landscape.mp4", size=(320, 240), duration=0.4)
    rotated = make_rotated(src, 90)
    info = probe(rotated)
    assert (info.width, info.height, info.rotation) == (240, 320, 90)
    frames = read_all(info)
    assert len(frames) == info.n_frames == 10
    assert frames[0].shape == (320, 240, 3)
    # Same decoded pixels, turned 90 degrees counter-clockwise.
    upright = read_all(probe(src))
    assert np.array_equal(frames[3], np.rot90(upright[3], k=1))
    assert probe(make_rotated(src, -90)).rotation == 270


def test_vfr_decodes_to_constant_rate(
    make_vfr_clip: Callable[[str], Path], make_clip: MakeClip
) -> None:
    info = probe(make_vfr_clip("vfr.mp4"))
    assert info.variable_frame_rate
    # The last frame lasts 1/30 or 1/15 s depending on how the muxer closed the track.
    assert info.n_frames == 60 and info.duration_s == pytest.approx(3.0, abs=0.04)
    assert float(info.fps) == pytest.approx(60 / info.duration_s)
    with FrameReader(info) as reader:
        frames = list(reader)
    assert reader.fps == info.fps
    assert reader.expected_frames == round(info.duration_s * info.fps) == len(frames) == 60
    assert not probe(make_clip("cfr.mp4")).variable_frame_rate


def test_vfr_with_audio_first(make_clip: MakeClip, tmp_path: Path) -> None:
    # VFR video that starts 0.2 s after its audio: the constant-rate frames must start at the
    # first video frame (not pad the gap), and the remux puts the gap back.
    src = make_clip(
        "vfr_late.mp4",
        rate="30",
        duration=2.0,
        audio=True,
        audio_duration=3.5,
        vf="setpts='(0.2+if(lt(N,30),N/30,1+(N-30)/15))/TB'",
        extra=["-fps_mode", "passthrough"],
    )
    info = probe(src)
    assert info.variable_frame_rate and info.video_delay_s == pytest.approx(0.2, abs=0.01)
    frames = read_all(info)
    assert len(frames) == info.n_frames == 60
    assert not np.array_equal(frames[0], frames[1])
    video_only = tmp_path / "v.mp4"
    encode(frames, video_only, info, info.fps)
    mux_streams(video_only=video_only, source=info, output=tmp_path / "out.mp4")
    out = probe(tmp_path / "out.mp4")
    assert out.video_delay_s == pytest.approx(info.video_delay_s, abs=0.001)
    assert out.duration_s == pytest.approx(info.duration_s, abs=float(1 / info.fps))


def test_reader_resamples_to_requested_fps(
    make_clip: MakeClip, make_rotated: Callable[[Path, int], Path]
) -> None:
    info = probe(make_clip("c.mp4", rate="25", duration=1.0))
    with FrameReader(info, fps=Fraction(10)) as reader:
        frames = list(reader)
    assert reader.expected_frames == 10 and len(frames) == 10
    # Resampling keeps the autorotation (its filters run before ours).
    rotated = probe(make_rotated(info.path, 270))
    frames = read_all(rotated, fps=Fraction(10))
    assert len(frames) == 10 and frames[0].shape == (160, 120, 3)


def test_reader_close_early_reaps_ffmpeg(make_clip: MakeClip) -> None:
    info = probe(make_clip("c.mp4", duration=2.0))
    with FrameReader(info) as reader:
        proc = reader._proc
        assert proc is not None
        next(reader)
    assert proc.returncode is not None  # killed and waited for: no zombie
    assert list(reader) == []


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("size", "vcodec", "pix_fmt", "out_fmt"),
    [
        # Odd size: x264 refuses 4:2:0 there (mpeg4 makes the input), 4:4:4 works.
        ((721, 405), "mpeg4", "yuv420p", "yuv444p"),
        ((320, 240), "libx264", "yuv420p10le", "yuv420p10le"),
        ((320, 240), "libx264", "yuv444p", "yuv444p"),
        ((321, 240), "libx264", "yuv444p10le", "yuv444p10le"),
    ],
)
def test_round_trip(
    make_clip: MakeClip,
    tmp_path: Path,
    size: tuple[int, int],
    vcodec: str,
    pix_fmt: str,
    out_fmt: str,
) -> None:
    src = make_clip("in.mp4", size=size, vcodec=vcodec, pix_fmt=pix_fmt, duration=0.4, audio=True)
    info = probe(src)
    assert (info.width, info.height, info.pix_fmt) == (*size, pix_fmt)
    frames = read_all(info)
    assert len(frames) == info.n_frames == 10
    video_only = tmp_path / "v.mp4"
    encode(frames, video_only, info, info.fps)
    final = tmp_path / "out.mp4"
    mux_streams(video_only=video_only, source=info, output=final)
    out = probe(final)
    assert (out.width, out.height, out.n_frames, out.pix_fmt) == (*size, 10, out_fmt)
    assert out.has_audio and audio_packet_checksums(final) == audio_packet_checksums(src)
    decoded = read_all(out)
    assert np.abs(decoded[5].astype(int) - frames[5].astype(int)).mean() < 3


def stored_yuv(path: Path) -> np.ndarray:
    """Frame 3 of `path` as stored YUV (chroma upsampled, no YUV->RGB matrix involved)."""
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    cmd = [exe, "-v", "error", "-i", str(path), "-vf", "select=eq(n\\,3)", "-frames:v", "1"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "yuv444p", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).astype(int)


def test_round_trip_keeps_colour(make_clip: MakeClip, tmp_path: Path) -> None:
    src = make_clip(
        "hd.mp4",
        vf="setparams=color_primaries=bt709:color_trc=bt709",
        extra=["-colorspace", "bt709", "-color_range", "tv"],
    )
    info = probe(src)
    assert info.color == ColorTags("tv", "bt709", "bt709", "bt709")
    frames = read_all(info)
    encode(frames, tmp_path / "tagged.mp4", info, info.fps)
    assert probe(tmp_path / "tagged.mp4").color.matrix == "bt709"
    untagged = dataclasses.replace(info, color=ColorTags())
    encode(frames, tmp_path / "untagged.mp4", untagged, info.fps)
    # Players show the stored YUV through the tagged matrix: with the tags copied the stored
    # values stay the source's; without them the bt601 conversion shifts them.
    assert np.abs(stored_yuv(tmp_path / "tagged.mp4") - stored_yuv(src)).mean() < 2.5
    assert np.abs(stored_yuv(tmp_path / "untagged.mp4") - stored_yuv(src)).mean() > 5


def test_mux_keeps_av_offset_and_long_audio(make_clip: MakeClip, tmp_path: Path) -> None:
    # Video starts 0.2 s after the audio; the audio also runs 0.5 s past the video.
    src = make_clip(
        "late.mp4", duration=1.0, audio=True, audio_duration=1.7, vf="setpts=PTS+0.2/TB"
    )
    info = probe(src)
    assert info.video_delay_s == pytest.approx(0.2, abs=0.01)
    video_only = tmp_path / "v.mp4"
    encode(read_all(info), video_only, info, info.fps)
    final = tmp_path / "out.mov"
    mux_streams(video_only=video_only, source=info, output=final)
    out = probe(final)
    assert out.video_delay_s == pytest.approx(info.video_delay_s, abs=0.001)
    assert out.n_frames == info.n_frames
    assert audio_packet_checksums(final) == audio_packet_checksums(src)


def test_mux_without_audio(make_clip: MakeClip, tmp_path: Path) -> None:
    info = probe(make_clip("silent.mp4", duration=0.4))
    assert not info.has_audio and audio_packet_checksums(info.path) == []
    video_only = tmp_path / "v.mkv"
    encode(read_all(info), video_only, info, info.fps)
    mux_streams(video_only=video_only, source=info, output=tmp_path / "out.mp4")
    out = probe(tmp_path / "out.mp4")
    assert out.n_frames == info.n_frames and not out.has_audio


def test_mux_incompatible_audio_explains(make_clip: MakeClip, tmp_path: Path) -> None:
    src = make_clip("mulaw.mkv", duration=0.4, audio=True, extra=["-c:a", "pcm_mulaw"])
    info = probe(src)
    video_only = tmp_path / "v.mp4"
    encode(read_all(info), video_only, info, info.fps)
    with pytest.raises(SpfemError, match=r"pcm_mulaw.*try \.mkv") as excinfo:
        mux_streams(video_only=video_only, source=info, output=tmp_path / "out.mp4")
    one_line_error(excinfo)
    mux_streams(video_only=video_only, source=info, output=tmp_path / "out.mkv")


def test_writer_checks(tmp_path: Path) -> None:
    with pytest.raises(SpfemError, match="even width and height"):
        FrameWriter(tmp_path / "o.mp4", width=721, height=405, fps=Fraction(25))
    with FrameWriter(tmp_path / "o.mp4", width=64, height=48, fps=Fraction(25)) as writer:
        with pytest.raises(ValueError, match=r"\(48, 64, 3\)"):
            writer.write(np.zeros((64, 48, 3), np.uint8))
        with pytest.raises(ValueError):
            writer.write(np.zeros((48, 64, 3), np.float32))
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert probe(tmp_path / "o.mp4").n_frames == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_writer_disk_full(tmp_path: Path) -> None:
    full = tmp_path / "full.mkv"
    full.symlink_to("/dev/full")
    frame = np.zeros((120, 160, 3), np.uint8)
    with (
        pytest.raises(SpfemError, match="No space left on device") as excinfo,
        FrameWriter(full, width=160, height=120, fps=Fraction(25)) as writer,
    ):
        for _ in range(50):
            writer.write(frame)
    one_line_error(excinfo)


# ---------------------------------------------------------------- output paths


def test_atomic_output_success_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "talk.happy.mp4"
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)), atomic_output(target) as temp:
            assert temp.parent == tmp_path and temp.name.startswith(".talk.happy.mp4.spfem-")
            assert temp.suffix == ".mp4" and temp.exists()
            temp.write_bytes(b"partial")
            assert not target.exists()
            raise error
        assert list(tmp_path.iterdir()) == []
    with atomic_output(target) as temp:
        temp.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    assert list(tmp_path.iterdir()) == [target]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_the_temporary_pattern_finds_only_that_outputs_temporary_files(tmp_path: Path) -> None:
    """A name with glob's special characters matches itself only (a batch removes what a
    worker ended after Ctrl-C left by it)."""
    target = tmp_path / "take [1] *.happy.mp4"
    other = tmp_path / "take 1 x.happy.mp4"
    with atomic_output(target) as temp, atomic_output(other) as other_temp:
        found = list(tmp_path.glob(temporary_pattern(target)))
        assert found == [temp] and other_temp.exists()


def test_check_output_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "talk.mp4"
    src.write_bytes(b"x")

    def refused(output: Path, overwrite: bool = False) -> str:
        with pytest.raises(SpfemError) as excinfo:
            check_output_path(input_path=src, output_path=output, overwrite=overwrite)
        return one_line_error(excinfo)

    assert "is the input file" in refused(src, overwrite=True)
    assert "is the input file" in refused(tmp_path / "sub" / ".." / "talk.mp4", overwrite=True)
    link = tmp_path / "link.mp4"
    link.symlink_to(src)
    assert "is the input file" in refused(link, overwrite=True)
    hard = tmp_path / "hard.mp4"
    os.link(src, hard)
    assert "is the input file" in refused(hard, overwrite=True)
    assert "does not exist" in refused(tmp_path / "missing" / "out.mp4")
    assert "must end in .mp4, .mov, .mkv" in refused(tmp_path / "out.avi")
    existing = tmp_path / "old.mkv"
    existing.write_bytes(b"y")
    assert refused(existing).endswith("exists; use --overwrite")
    check_output_path(input_path=src, output_path=existing, overwrite=True)
    check_output_path(input_path=src, output_path=tmp_path / "new.MOV", overwrite=False)
    monkeypatch.setattr(output_module.os, "access", lambda *args, **kwargs: False)
    assert "not writable" in refused(tmp_path / "new.mp4")


def test_default_output_path() -> None:
    assert default_output_path(Path("/v/talk.mp4"), "happy") == Path("/v/talk.happy.mp4")
    assert default_output_path(Path("clip.MOV"), "sad") == Path("clip.sad.MOV")
    assert default_output_path(Path("/v/old.avi"), "happy") == Path("/v/old.happy.mp4")
    assert default_output_path(Path("a.mp4"), "../x y") == Path("a.x_y.mp4")


def test_segments_decode_the_same_frames_as_one_pass(clips_dir: Path) -> None:
    for name in ("talk_s32_1280x720.mp4", "speech_man_256x256.mp4"):
        info = probe(clips_dir / name)
        with FrameReader(info) as reader:
            whole = list(reader)
        k = info.n_frames // 2 + 1
        with (
            FrameReader(info, segment=(0, k)) as a,
            FrameReader(info, segment=(k, info.n_frames - k)) as b,
        ):
            parts = list(a) + list(b)
        assert len(parts) == len(whole)
        assert all(np.array_equal(x, y) for x, y in zip(parts, whole, strict=True))


def test_luma_weighs_the_channels_as_rec_601_and_keeps_float64() -> None:
    """A grey pixel's luminance is its level; pure green weighs most, blue least; uint8 and
    float32 come out float32, float64 stays float64 (the crease measures take logs of it)."""
    pixels = np.array([[128, 128, 128], [0, 255, 0], [0, 0, 255]], np.uint8)
    out = luma(pixels)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [128.0, 0.587 * 255, 0.114 * 255], rtol=1e-6)
    assert luma(pixels.astype(np.float64)).dtype == np.float64
    assert luma(np.zeros((4, 5, 3), np.float32)).shape == (4, 5)
