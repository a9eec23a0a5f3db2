"""Where results go: output path checks, write-then-rename, and the remux of the source's
audio, subtitles and metadata."""

from __future__ import annotations

import glob
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from spfem_cli.errors import SpfemError
from spfem_cli.media import ffmpeg_args
from spfem_cli.media.probe import VideoInfo, error_reason, run_ffmpeg

OUTPUT_SUFFIXES = tuple(ffmpeg_args.OUTPUT_FORMATS)
# Still images we write, by lower-case suffix: the edit of a photo (an input of one frame).
IMAGE_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
}
IMAGE_SUFFIXES = tuple(IMAGE_FORMATS)
# Formats that keep a photo's transparency (its alpha channel, which the edit leaves as is).
WITH_ALPHA = frozenset({"PNG", "WEBP"})
# JPEG and WebP quality (Pillow's scale, 1-95): near-lossless, so the save blurs no face.
QUALITY = 95


def is_image_output(path: Path) -> bool:
    """Whether `path` names a still image (IMAGE_SUFFIXES) rather than a video."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def check_output_path(*, input_path: Path, output_path: Path, overwrite: bool) -> None:
    """Refuse, with a one-line SpfemError, an output we must not or cannot write."""
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.suffix.lower() not in OUTPUT_SUFFIXES + IMAGE_SUFFIXES:
        raise SpfemError(
            f"{output_path}: output must end in {', '.join(OUTPUT_SUFFIXES)} "
            f"(a video) or {', '.join(IMAGE_SUFFIXES)} (a photo's edit) "
            f"(got {output_path.suffix or 'no suffix'})"
        )
    same = output_path.resolve() == input_path.resolve()
    if not same and output_path.exists() and input_path.exists():
        # samefile also catches hard links and differently spelled paths to one inode.
        same = os.path.samefile(input_path, output_path)
    if same:
        raise SpfemError(f"{output_path} is the input file; choose another output name")
    if output_path.is_dir():
        raise SpfemError(f"{output_path} is a folder; give a file name for the output")
    parent = output_path.parent
    if not parent.is_dir():
        raise SpfemError(f"folder {parent} does not exist (needed for {output_path.name})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SpfemError(f"folder {parent} is not writable (needed for {output_path.name})")
    if output_path.exists() and not overwrite:
        raise SpfemError(f"{output_path} exists; use --overwrite")


def check_still_output(*, info: VideoInfo, output_path: Path) -> None:
    """Refuse an image output (IMAGE_SUFFIXES) for an input of more than one frame."""
    if is_image_output(output_path) and info.n_frames != 1:
        raise SpfemError(
            f"{output_path.name}: an image output needs a photo as input, and "
            f"{info.path.name} has {info.n_frames} frames; name the output "
            f"{', '.join(OUTPUT_SUFFIXES)}"
        )


def default_output_path(input_path: Path, label: str) -> Path:
    """The output beside the input: ``talk.mp4`` + ``"happy"`` -> ``talk.happy.mp4``,
    ``photo.jpg`` -> ``photo.happy.jpg``.

    The input's suffix is kept when it is a container or an image format we write, else
    ``.mp4`` is used. Characters that are awkward in file names are replaced by ``_``.
    """
    input_path = Path(input_path)
    kept = OUTPUT_SUFFIXES + IMAGE_SUFFIXES
    suffix = input_path.suffix if input_path.suffix.lower() in kept else ".mp4"
    safe = re.sub(r"[^A-Za-z0-9_+\-]+", "_", label).strip("_") or "edited"
    return input_path.with_name(f"{input_path.stem}.{safe}{suffix}")


def given_output_path(given: str | Path | None, *, default: Path) -> Path:
    """The file an `-o` option names: `given` itself, or where `given` is a folder, the file
    in it under `default`'s name; `default` where none is given."""
    if given is None:
        return default
    given = Path(given)
    return given / default.name if given.is_dir() else given


def temporary_name(output_path: Path, token: str) -> str:
    """The name of one of `atomic_output`'s temporary files for output_path: hidden, marked,
    and with the output's suffix (so ffmpeg picks the right container)."""
    return f".{output_path.name}.spfem-{token}{output_path.suffix}"


def temporary_pattern(output_path: Path) -> str:
    """The glob pattern (for its folder) of `atomic_output`'s temporary files for
    output_path; a name with glob's special characters matches only itself."""
    return f".{glob.escape(output_path.name)}.spfem-*{glob.escape(output_path.suffix)}"


@contextmanager
def atomic_output(output_path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `output_path`; rename it into place on success.

    The temporary file is hidden (``.NAME.spfem-XXXXXXXX.SUFFIX``), keeps the suffix so ffmpeg
    picks the right container, and already exists (empty) so the name is ours. On any exception,
    KeyboardInterrupt included, it is deleted and the exception re-raised; nothing is ever
    created at `output_path` until the final `os.replace`, which is atomic on one filesystem.
    """
    output_path = Path(output_path)
    folder = output_path.parent
    while True:
        temp = folder / temporary_name(output_path, secrets.token_hex(4))
        try:
            # os.open with 0o666 lets the umask decide the mode, as for any file the user
            # makes (mkstemp would leave the result readable by its owner only).
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise SpfemError(f"cannot write in {folder}: {exc.strerror or exc}") from exc
        os.close(fd)
        break
    try:
        yield temp
        os.replace(temp, output_path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


class StillWriter:
    """Takes the frames of an edit whose output is a photo (one frame) and, on a clean exit
    from its `with` block, writes the last as the image `path` (its format by suffix,
    IMAGE_FORMATS), with the transparency of the photo `source` where both formats have it."""

    def __init__(self, path: Path, *, source: Path | None = None) -> None:
        self.path = Path(path)
        self.source = source
        self.frame: np.ndarray | None = None

    def __enter__(self) -> StillWriter:
        return self

    def write(self, frame: np.ndarray) -> None:
        """frame: (H, W, 3) uint8 RGB."""
        self.frame = frame

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            return
        if self.frame is None:
            raise SpfemError(f"no frame to write to {self.path.name}")
        fmt = IMAGE_FORMATS[self.path.suffix.lower()]
        image = Image.fromarray(self.frame)
        alpha = _alpha(self.source) if fmt in WITH_ALPHA and self.source else None
        if alpha is not None and alpha.size == image.size:
            image.putalpha(alpha)
        extra = {} if fmt == "PNG" else {"quality": QUALITY}
        image.save(self.path, format=fmt, **extra)


def _alpha(path: Path) -> Image.Image | None:
    """The transparency of the photo at `path`, upright (8-bit, mode L), or None when it has
    none or Pillow cannot read it."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
                return None
            return ImageOps.exif_transpose(image).convert("RGBA").getchannel("A")
    except (OSError, ValueError, SyntaxError):
        return None


def mux_streams(*, video_only: Path, source: VideoInfo, output: Path) -> None:
    """Write `output` with the video of `video_only` and the rest of `source`: its audio, its
    subtitles where `output`'s container holds them (`left_out_note` names those it does
    not), its chapters, metadata and start timecode (`ffmpeg_args.mux_args`).

    Every audio stream of the source is copied packet for packet (not re-encoded); the video is
    delayed by `source.video_delay_s` so lip sync is what it was. `-shortest` is not used: the
    audio stays whole, so the output lasts exactly as long as the source (the video stream
    itself lasts n_frames / fps). The video stream carries no rotation: its frames were
    rotated when decoded.
    """
    args = ffmpeg_args.mux_args(
        video_only=Path(video_only).absolute(),
        source=source.path,
        output=Path(output).absolute(),
        has_audio=source.has_audio,
        subtitles=source.subtitles,
        video_delay_s=source.video_delay_s,
        timecode=source.timecode,
    )
    result = run_ffmpeg(args)
    if result.returncode != 0:
        reason = error_reason(result.stderr.decode("utf-8", "replace"))
        hint = ""
        suffix = Path(output).suffix.lower()
        # Only a refused codec is the container's fault; a full disk or a vanished file is not.
        refused = any(w in reason.lower() for w in ("codec", "tag", "not supported", "muxer"))
        if source.has_audio and suffix != ".mkv" and refused:
            hint = f"; the {source.audio_codec} audio may not fit in {suffix}, try .mkv"
        raise SpfemError(
            f"adding the audio and subtitles of {source.path} failed: {reason}{hint}", exit_code=1
        )


def left_out_note(*, info: VideoInfo, output: Path) -> str | None:
    """One line naming the subtitle streams of `info` that `output`'s container cannot hold
    (picture subtitles in mp4 or mov), or None when every one is kept."""
    lost = [c for c in info.subtitles if ffmpeg_args.subtitle_codec(c, Path(output)) is None]
    if not lost:
        return None
    one = len(lost) == 1
    what = "a subtitle stream" if one else f"{len(lost)} subtitle streams"
    suffix = Path(output).suffix.lower()
    keep = f": write .mkv to keep {'it' if one else 'them'}" if suffix != ".mkv" else ""
    return (
        f"{what} ({', '.join(dict.fromkeys(lost))}) cannot be written to {suffix} and "
        f"{'was' if one else 'were'} left out{keep}"
    )
