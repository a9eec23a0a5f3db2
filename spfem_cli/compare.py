"""`spfem compare`: a video of an input and its edit side by side, to watch rather than read.

Both videos are decoded as `spfem edit` decodes them (rotation, pixel aspect and interlacing
handled), put side by side frame by frame, encoded, and given the edit's audio, so the two
play in step with the speech. Memory stays flat: one frame of each is held at a time.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from spfem_cli.encoding import DEFAULT_CRF, DEFAULT_PRESET, check_encoding
from spfem_cli.errors import SpfemError
from spfem_cli.media import (
    FrameReader,
    FrameWriter,
    VideoInfo,
    atomic_output,
    check_output_path,
    is_image_output,
    mux_streams,
    output_pix_fmt,
    probe,
    same_rate,
)
from spfem_cli.progress import Reporter, SilentReporter

# The black gap between the two pictures, in pixels.
GAP_PX = 8


def side_by_side(left: np.ndarray, right: np.ndarray, *, gap: int = GAP_PX) -> np.ndarray:
    """(H, W, 3) uint8: `left` (H, Wl, 3), a black gap of `gap` pixels, then `right` (Hr, Wr, 3)
    scaled to height H (its aspect kept). The width is made even with one more column of gap,
    so that any pixel format can encode it."""
    height = left.shape[0]
    if right.shape[0] != height:
        width = max(1, round(right.shape[1] * height / right.shape[0]))
        right = np.asarray(Image.fromarray(right).resize((width, height), Image.BILINEAR))
    gap += (left.shape[1] + gap + right.shape[1]) % 2
    black = np.zeros((height, gap, 3), dtype=np.uint8)
    return np.concatenate([left, black, right], axis=1)


def _check_pair(before: VideoInfo, after: VideoInfo) -> None:
    """Refuse two videos that cannot play in step."""
    if not same_rate(before.fps, after.fps):
        raise SpfemError(
            f"{before.path.name} plays at {float(before.fps):g} fps and {after.path.name} at "
            f"{float(after.fps):g} fps; compare an edit with the video it was made from"
        )
    if before.n_frames == 1 or after.n_frames == 1:
        raise SpfemError("spfem compare takes two videos; for photos, use spfem preview")


def write_comparison(
    *,
    before: str | Path,
    after: str | Path,
    output: str | Path,
    overwrite: bool = False,
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
    reporter: Reporter | None = None,
) -> int:
    """Write `output`, a video of `before` (left) and `after` (right) side by side, `after`
    scaled to `before`'s height, with `after`'s audio and subtitles; it lasts as long as the
    shorter of the two. Nothing appears at `output` unless everything succeeded. Returns the
    number of frames written. Raises SpfemError for missing or unreadable inputs, videos at
    different frame rates, photos, or an output that cannot be written."""
    before, after, output = Path(before), Path(after), Path(output)
    check_encoding(crf=crf, preset=preset)
    if is_image_output(output):
        raise SpfemError(f"{output.name}: a comparison is a video; name it .mp4, .mov or .mkv")
    for source in (before, after):
        check_output_path(input_path=source, output_path=output, overwrite=overwrite)
    first, second = probe(before), probe(after)
    _check_pair(first, second)
    rep = reporter or SilentReporter()
    n_frames = min(first.n_frames, second.n_frames)
    written = 0
    with (
        tempfile.TemporaryDirectory(prefix="spfem-compare-") as work,
        atomic_output(output) as final_tmp,
    ):
        video_tmp = Path(work) / f"video{output.suffix}"
        # Decoded frames have the probed (displayed) sizes.
        shape = side_by_side(
            np.zeros((first.height, first.width, 3), np.uint8),
            np.zeros((second.height, second.width, 3), np.uint8),
        ).shape
        with (
            FrameReader(first) as left,
            FrameReader(second) as right,
            FrameWriter(
                video_tmp,
                width=shape[1],
                height=shape[0],
                fps=left.fps,
                pix_fmt=output_pix_fmt(replace(first, width=shape[1])),
                crf=crf,
                preset=preset,
                color=first.color,
            ) as writer,
            rep.stage("Comparing", n_frames) as advance,
        ):
            for a, b in zip(left, right, strict=False):
                writer.write(side_by_side(a, b))
                written += 1
                advance()
        mux_streams(video_only=video_tmp, source=second, output=final_tmp)
    return written
