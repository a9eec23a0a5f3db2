"""Media I/O: probing, streamed decode/encode and output handling, all through ffmpeg; and
what the pixels stand for (`pixels`).

ffmpeg argument lists are built by the pure functions in `spfem_cli.media.ffmpeg_args`.
"""

from __future__ import annotations

from spfem_cli.media.output import (
    IMAGE_SUFFIXES,
    OUTPUT_SUFFIXES,
    StillWriter,
    atomic_output,
    check_output_path,
    check_still_output,
    default_output_path,
    given_output_path,
    is_image_output,
    left_out_note,
    mux_streams,
    temporary_pattern,
)
from spfem_cli.media.probe import (
    ColorTags,
    VideoInfo,
    audio_packet_checksums,
    ffmpeg_exe,
    probe,
    same_rate,
)
from spfem_cli.media.stream import FrameReader, FrameWriter, output_pix_fmt

__all__ = [
    "IMAGE_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "ColorTags",
    "FrameReader",
    "FrameWriter",
    "StillWriter",
    "VideoInfo",
    "atomic_output",
    "audio_packet_checksums",
    "check_output_path",
    "check_still_output",
    "default_output_path",
    "given_output_path",
    "ffmpeg_exe",
    "is_image_output",
    "left_out_note",
    "mux_streams",
    "output_pix_fmt",
    "probe",
    "same_rate",
    "temporary_pattern",
]
