"""Streamed decode and encode: one RGB frame in memory at a time, ffmpeg on the other end of a pipe.

Frames are numpy arrays of shape (height, width, 3), dtype uint8, RGB, in display orientation.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from spfem_cli.encoding import DEFAULT_CRF, DEFAULT_PRESET
from spfem_cli.errors import SpfemError
from spfem_cli.media import ffmpeg_args
from spfem_cli.media.probe import ColorTags, VideoInfo, error_reason, start_ffmpeg

# Formats libx264 in the bundled ffmpeg encodes and that we keep as they are.
_KEPT_PIX_FMTS = frozenset(
    {"yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le"}
)
# Near relatives mapped to the kept format with the same chroma layout (and 10-bit when deeper).
_MAPPED_PIX_FMTS = {
    "yuvj420p": "yuv420p",
    "yuvj422p": "yuv422p",
    "yuvj444p": "yuv444p",
    "p010le": "yuv420p10le",
    "yuv420p12le": "yuv420p10le",
    "yuv422p12le": "yuv422p10le",
    "yuv444p12le": "yuv444p10le",
}
# How much of ffmpeg's stderr to keep for an error message, in bytes.
_STDERR_TAIL = 4096


def output_pix_fmt(info: VideoInfo) -> str:
    """The pixel format to encode an edit of `info` with (libx264 accepts all it returns).

    4:2:0 and 4:2:2 halve the chroma width (and 4:2:0 the height), so x264 refuses odd sizes in
    them ("width not divisible by 2"); 4:4:4 has no such limit, so odd sizes get 4:4:4 (8- or
    10-bit like the source) rather than a crop or a resize that would move every pixel.
    """
    fmt = info.pix_fmt if info.pix_fmt in _KEPT_PIX_FMTS else _MAPPED_PIX_FMTS.get(info.pix_fmt)
    fmt = fmt or "yuv420p"
    if info.width % 2 or info.height % 2:
        return "yuv444p10le" if fmt.endswith("10le") else "yuv444p"
    return fmt


def _odd_size_problem(pix_fmt: str, width: int, height: int) -> str | None:
    if pix_fmt.startswith("yuv420p") and (width % 2 or height % 2):
        return "4:2:0 needs an even width and height"
    if pix_fmt.startswith("yuv422p") and width % 2:
        return "4:2:2 needs an even width"
    return None


def _tail(file: IO[bytes]) -> str:
    file.seek(0, 2)
    size = file.tell()
    file.seek(max(0, size - _STDERR_TAIL))
    return file.read().decode("utf-8", "replace")


def _spawn(
    args: list[str], *, stdin: int | IO[bytes], stdout: int, stderr: IO[bytes], bufsize: int
) -> subprocess.Popen[bytes]:
    try:
        # A session of its own keeps Ctrl-C away from ffmpeg: Python gets KeyboardInterrupt
        # and stops ffmpeg in __exit__, instead of ffmpeg quitting first and its early end of
        # stream reading as a truncated file.
        return start_ffmpeg(args, stdin=stdin, stdout=stdout, stderr=stderr, bufsize=bufsize)
    except OSError as exc:
        stderr.close()
        raise SpfemError(f"cannot run ffmpeg: {exc.strerror or exc}", exit_code=3) from exc
    except BaseException:
        stderr.close()
        raise


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Kill ffmpeg if it still runs and reap it, so no zombie is left behind."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
    proc.wait()


class FrameReader:
    """Iterate over the frames of a probed video, decoded by ffmpeg one at a time.

    Use as a context manager (or exhaust the iterator) so ffmpeg is always reaped::

        with FrameReader(info) as frames:
            for frame in frames:  # np.ndarray uint8 (height, width, 3), RGB
                ...

    Without `fps`, every coded frame comes out once (`expected_frames` == `info.n_frames`),
    except for variable-frame-rate input, which is resampled to `info.fps`. With `fps`
    (frames per second) the video is resampled to that constant rate: frame i shows the input
    at time i / fps seconds and `expected_frames` is round(duration * fps).
    Ending more than one frame short of `expected_frames` raises SpfemError (truncated input).
    `size` (width, height) scales the frames on decode; `width` and `height` give the size
    that comes out. `segment` (first frame, count) decodes only those frames of a constant
    frame rate video, so that several readers can share the work.
    """

    def __init__(
        self,
        info: VideoInfo,
        *,
        fps: Fraction | None = None,
        size: tuple[int, int] | None = None,
        segment: tuple[int, int] | None = None,
    ) -> None:
        self.info = info
        # Anamorphic video is decoded at its size in square pixels (`VideoInfo.sar`).
        self._size = size if size is not None or info.sar == 1 else (info.width, info.height)
        self._segment = segment
        self.width, self.height = size if size is not None else (info.width, info.height)
        if fps is None and info.variable_frame_rate:
            fps = info.fps
        self._resample_fps = fps
        self.fps: Fraction = fps if fps is not None else info.fps
        self.expected_frames: int = (
            info.n_frames if fps is None else max(1, round(info.duration_s * fps))
        )
        if segment is not None:
            if fps is not None:
                raise ValueError("a segment of a resampled (variable frame rate) video")
            first, count = segment
            if first < 0 or count < 1 or first + count > self.expected_frames:
                raise ValueError(f"segment {segment} outside {self.expected_frames} frames")
            self.expected_frames = count
        self.frames_read = 0
        self._frame_bytes = self.width * self.height * 3
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._done = False

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            # A temp file, not a pipe, for stderr: a corrupt file can make ffmpeg log more than
            # a pipe holds while we block on stdout, and neither side would move again.
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
            self._proc = _spawn(
                ffmpeg_args.decode_args(
                    self.info.path,
                    fps=self._resample_fps,
                    max_frames=(
                        self.expected_frames
                        if self._resample_fps is not None or self._segment is not None
                        else None
                    ),
                    size=self._size,
                    start_s=self._seek_s(),
                    exif_orientation=self.info.exif_orientation,
                    deinterlace=self.info.interlaced,
                ),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                bufsize=self._frame_bytes,
            )
        return self._proc

    def _seek_s(self) -> float | None:
        """Where a segment starts: half a frame before its first frame's time, so rounding
        can neither skip that frame nor let the one before it in."""
        if self._segment is None or self._segment[0] == 0:
            return None
        return float((self._segment[0] - Fraction(1, 2)) / self.fps) + self.info.video_delay_s

    def __enter__(self) -> FrameReader:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        if self._done:
            raise StopIteration
        proc = self._start()
        assert proc.stdout is not None
        frame = np.empty((self.height, self.width, 3), dtype=np.uint8)
        view = memoryview(frame).cast("B")
        got = 0
        while got < self._frame_bytes:
            n = proc.stdout.readinto(view[got:])
            if not n:
                break
            got += n
        if got == self._frame_bytes:
            self.frames_read += 1
            return frame
        self._finish()
        raise StopIteration

    def _finish(self) -> None:
        """At end of stream: reap ffmpeg and check that the whole video came out."""
        proc = self._proc
        assert proc is not None
        rc = proc.wait()
        message = _tail(self._stderr) if self._stderr is not None else ""
        self.close()
        if self.frames_read < self.expected_frames - 1:
            why = f" ({error_reason(message)})" if rc != 0 else ""
            raise SpfemError(
                f"{self.info.path} is truncated or corrupt: decoded {self.frames_read} "
                f"of {self.expected_frames} frames{why}"
            )

    def close(self) -> None:
        """Stop ffmpeg (if still running), reap it and release the pipe; safe to call twice."""
        self._done = True
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                _stop(proc)
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __del__(self) -> None:
        # Last resort for a reader dropped mid-way without `with`; close() is idempotent.
        if getattr(self, "_proc", None) is not None:
            self.close()


class FrameWriter:
    """Encode RGB frames with libx264 into a video-only file at `path`.

    Use as a context manager; leaving it normally finishes the file, leaving it by an
    exception kills ffmpeg and leaves a partial file at `path` (write to a temporary path,
    e.g. inside `atomic_output`). `width`/`height` in pixels, `fps` in frames per second,
    `crf` and `preset` as in x264; `color` tags the stream like the source (see `ColorTags`).
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        fps: Fraction,
        pix_fmt: str = "yuv420p",
        crf: int = DEFAULT_CRF,
        preset: str = DEFAULT_PRESET,
        color: ColorTags | None = None,
    ) -> None:
        problem = _odd_size_problem(pix_fmt, width, height)
        if problem:
            raise SpfemError(
                f"cannot encode {width}x{height} as {pix_fmt}: {problem} (use yuv444p)"
            )
        self.path = Path(path)
        self.width = width
        self.height = height
        self.frames_written = 0
        self._args = ffmpeg_args.encode_args(
            # absolute(), not resolve(): the container is chosen from this name's suffix, and a
            # symlink's target may have another suffix or none.
            self.path.absolute(),
            width=width,
            height=height,
            fps=Fraction(fps),
            pix_fmt=pix_fmt,
            crf=crf,
            preset=preset,
            color=color,
        )
        self._frame_bytes = width * height * 3
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._closed = False

    def _start(self) -> subprocess.Popen[bytes]:
        if self._closed:
            raise ValueError("write to a closed FrameWriter")
        if self._proc is None:
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
            self._proc = _spawn(
                self._args,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                bufsize=self._frame_bytes,
            )
        return self._proc

    def __enter__(self) -> FrameWriter:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: uint8 array of shape (height, width, 3), RGB."""
        expected = (self.height, self.width, 3)
        if frame.shape != expected or frame.dtype != np.uint8:
            raise ValueError(
                f"frame must be uint8 {expected}, got {frame.dtype} {tuple(frame.shape)}"
            )
        proc = self._start()
        assert proc.stdin is not None
        try:
            proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
        except OSError as exc:  # BrokenPipeError when ffmpeg has died (disk full, ...)
            self._fail(exc)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file; SpfemError with ffmpeg's last message if encoding failed."""
        if self._closed:
            return
        proc = self._start()
        assert proc.stdin is not None
        try:
            proc.stdin.close()
        except OSError as exc:  # flushing the last frame into a dead ffmpeg
            self._fail(exc)
        rc = proc.wait()
        if rc != 0:
            self._fail(None)
        self._release()

    def abort(self) -> None:
        """Kill ffmpeg without finishing the file (the partial file stays at `path`)."""
        proc = self._proc
        # Kill first: closing stdin flushes buffered bytes, which would block on a stuck ffmpeg.
        _stop(proc)
        if proc is not None and proc.stdin is not None:
            # The flush hits the dead pipe; the descriptor is closed all the same.
            with contextlib.suppress(OSError):
                proc.stdin.close()
        self._release()

    def _release(self) -> None:
        self._closed = True
        self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _fail(self, exc: OSError | None) -> None:
        proc = self._proc
        _stop(proc)
        message = _tail(self._stderr) if self._stderr is not None else ""
        self._release()
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):  # ffmpeg is gone; the pipe cannot be flushed
                proc.stdin.close()
        raise SpfemError(
            f"encoding {self.path} failed: {error_reason(message)}", exit_code=1
        ) from exc

    def __del__(self) -> None:
        if getattr(self, "_proc", None) is not None:
            self.abort()
