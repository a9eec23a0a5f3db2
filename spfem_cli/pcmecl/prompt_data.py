"""Emotion-labelled faces for training the prompt learner: finding them, splitting by person,
and reading their frames.

The layout of DATA_DIR is one folder per emotion, named by its label or an alias that
`canonical_emotion` accepts (``happy/``, ``anger/``, ``surprise/`` ...), holding images
(.png .jpg .jpeg .bmp .webp) and/or video clips (.mp4 .mov .mkv .avi .webm .m4v), of which a
few evenly spaced frames are used. Who is in a file decides the held-out split:

- a file inside a subfolder of an emotion folder belongs to the person named by that subfolder
  (``happy/alice/001.png``, ``happy/alice/take2/clip.mp4``);
- a file directly in an emotion folder belongs to the person named by its file name up to the
  first ``_`` (``happy/alice_001.png``), or by the whole name without extension when it has
  no ``_`` (``happy/alice.mp4``).

The same person name in different emotion folders is the same person. Names starting with "."
are ignored, and so are files of other types (counted, so the caller can say so).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from spfem_cli.errors import SpfemError
from spfem_cli.generator.expression import EMOTIONS, canonical_emotion

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"})

DEFAULT_VAL_FRACTION = 0.2
"""Share of the people held out for validation when none are named (at least one)."""


@dataclass(frozen=True)
class Sample:
    """One image or video file with its emotion label and person."""

    path: Path
    emotion: str
    person: str
    kind: Literal["image", "video"]


@dataclass(frozen=True)
class PromptDataset:
    """What `scan_dataset` found: the files, and the emotions (in `EMOTIONS` order) and people
    (sorted) that occur; `n_ignored` files of other types were skipped."""

    root: Path
    samples: tuple[Sample, ...]
    emotions: tuple[str, ...]
    people: tuple[str, ...]
    n_ignored: int


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _kind(path: Path) -> Literal["image", "video"] | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def person_of(path: Path, *, emotion_dir: Path) -> str:
    """The person a file inside `emotion_dir` shows (see the module docstring for the rule)."""
    relative = path.relative_to(emotion_dir)
    if len(relative.parts) > 1:
        return relative.parts[0]
    return path.stem.split("_", 1)[0] or path.stem


def scan_dataset(data_dir: str | Path) -> PromptDataset:
    """Find the labelled files under `data_dir`.

    Raises SpfemError (exit 2) when the folder is missing, has no emotion folders, has folders
    whose names are not emotions, has two folders for one emotion, or has files for fewer than
    two emotions.
    """
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise SpfemError(f"data folder not found: {root}")
    if not root.is_dir():
        raise SpfemError(f"not a folder: {root} (expected one folder per emotion inside it)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if not folders:
        raise SpfemError(
            f"no emotion folders in {root}: expected one folder per emotion "
            f"({', '.join(EMOTIONS)}) holding images or videos"
        )
    by_emotion: dict[str, Path] = {}
    unknown: list[str] = []
    for folder in folders:
        try:
            emotion = canonical_emotion(folder.name)
        except SpfemError:
            unknown.append(folder.name)
            continue
        if emotion in by_emotion:
            raise SpfemError(
                f"folders '{by_emotion[emotion].name}' and '{folder.name}' in {root} are both "
                f"'{emotion}'; merge them into one"
            )
        by_emotion[emotion] = folder
    if unknown:
        raise SpfemError(
            f"folders in {root} that are not emotions: {', '.join(unknown)} "
            f"(emotion folders are named {', '.join(EMOTIONS)})"
        )

    samples: list[Sample] = []
    n_ignored = 0
    for emotion in EMOTIONS:
        folder = by_emotion.get(emotion)
        if folder is None:
            continue
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if not path.is_file() or not all(_visible(Path(part)) for part in relative.parts):
                continue
            kind = _kind(path)
            if kind is None:
                n_ignored += 1
                continue
            samples.append(
                Sample(
                    path=path,
                    emotion=emotion,
                    person=person_of(path, emotion_dir=folder),
                    kind=kind,
                )
            )

    emotions = tuple(e for e in EMOTIONS if any(s.emotion == e for s in samples))
    if len(emotions) < 2:
        found = f"only '{emotions[0]}'" if emotions else "none"
        raise SpfemError(
            f"images or videos for at least two emotions are needed in {root}; found {found} "
            f"(image types {', '.join(sorted(IMAGE_SUFFIXES))}; "
            f"video types {', '.join(sorted(VIDEO_SUFFIXES))})"
        )
    people = tuple(sorted({s.person for s in samples}))
    return PromptDataset(
        root=root,
        samples=tuple(samples),
        emotions=emotions,
        people=people,
        n_ignored=n_ignored,
    )


def split_people(
    people: Sequence[str],
    *,
    val_people: Sequence[str] | None = None,
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train people, held-out people), both sorted; nobody is in both.

    `val_people` names the held-out people; otherwise `val_fraction` of them (at least one) are
    drawn with `seed`, the same draw for the same people and seed. Raises SpfemError (exit 2)
    for fewer than two people, an unknown name, or no one left to train on.
    """
    everyone = sorted(set(people))
    if len(everyone) < 2:
        who = f"only '{everyone[0]}'" if everyone else "nobody"
        raise SpfemError(
            f"a held-out split needs at least two people, found {who}; put each person's files "
            "in a subfolder named after them, or start file names with the person's name and "
            "'_' (alice_001.png)"
        )
    if val_people:
        chosen = sorted(set(val_people))
        missing = [name for name in chosen if name not in everyone]
        if missing:
            raise SpfemError(
                f"--val-people: not in the data: {', '.join(missing)} "
                f"(people found: {', '.join(everyone)})"
            )
    else:
        if not 0.0 < val_fraction < 1.0:
            raise SpfemError(f"the held-out share must be between 0 and 1, got {val_fraction}")
        count = min(max(1, round(val_fraction * len(everyone))), len(everyone) - 1)
        # A private generator: the draw depends on the seed and the names only.
        chosen = sorted(random.Random(seed).sample(everyone, count))
    train = tuple(name for name in everyone if name not in chosen)
    if not train:
        raise SpfemError("--val-people names everyone; leave at least one person to train on")
    return train, tuple(chosen)


def _first_line(exc: Exception) -> str:
    """The first line of an error message (imageio appends all of ffmpeg's stderr)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_image(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; SpfemError (exit 2) when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB")).copy()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise SpfemError(f"cannot read image {path}: {exc}") from exc


@contextmanager
def _quiet_imageio_ffmpeg() -> Iterator[None]:
    """Hide imageio-ffmpeg's warning that a rotated video's frames are not its stored size:
    that is the rotation being applied, as wanted, and a line per clip would break the
    progress bar."""
    logger = logging.getLogger("imageio_ffmpeg")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def _sample_frames(imageio: Any, path: Path, *, count: int) -> list[np.ndarray]:
    try:
        reader = imageio.get_reader(path, format="ffmpeg")
    except Exception as exc:  # noqa: BLE001 - imageio raises many types for a broken file
        raise SpfemError(f"cannot read video {path}: {_first_line(exc)}") from exc
    frames: list[np.ndarray] = []
    try:
        # count_frames copies the video stream without decoding it: quick even for long
        # clips, and exact where duration x rate is not (the audio can outlast the video).
        total = max(1, int(reader.count_frames()))
        indices = sorted({min(total - 1, int((k + 0.5) * total / count)) for k in range(count)})
        for index in indices:
            try:
                frame = reader.get_data(index)
            except IndexError:
                break
            frames.append(np.ascontiguousarray(np.asarray(frame)[..., :3], dtype=np.uint8))
    except Exception as exc:  # noqa: BLE001
        raise SpfemError(f"cannot read video {path}: {_first_line(exc)}") from exc
    finally:
        reader.close()
    return frames


def read_video_frames(path: Path, *, count: int) -> list[np.ndarray]:
    """Up to `count` evenly spaced frames of a video, each (H, W, 3) uint8 RGB.

    Frames are taken at the middle of `count` equal spans of the clip (so never the first
    frame, which is often a fade or a blink). SpfemError (exit 2) when nothing can be read.
    """
    import imageio.v2 as imageio

    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    with _quiet_imageio_ffmpeg():
        frames = _sample_frames(imageio, path, count=count)
    if not frames:
        raise SpfemError(f"cannot read video {path}: no frames could be decoded")
    return frames


def read_frames(sample: Sample, *, frames_per_clip: int) -> list[np.ndarray]:
    """The frames of one sample: the image itself, or `frames_per_clip` frames of a video."""
    if sample.kind == "image":
        return [read_image(sample.path)]
    return read_video_frames(sample.path, count=frames_per_clip)
