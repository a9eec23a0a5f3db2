"""Training frames from real video: aligned face crops with their landmarks and AU activations.

Each video becomes a `ClipFrames`: every usable frame's crop (the refiner's aligned crop, see
`generator.refiner.CropGeometry`), its smoothed landmarks in the face frame, and its AU
activations relative to the clip's median face. Which person a video shows decides the
train/validation split, so that no one is validated on after being trained on.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spfem_cli.errors import SpfemError
from spfem_cli.face.rest import RestFace
from spfem_cli.face.tracker import LARGEST_FACE, FacePick
from spfem_cli.generator.expression import ExpressionModel, Side
from spfem_cli.generator.refiner import CropGeometry, sample_fine, supersampled_points
from spfem_cli.media import FrameReader, probe
from spfem_cli.pipeline import analyse_video, signed_activations
from spfem_cli.progress import Reporter, SilentReporter

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
# Faces smaller than this (IOD, pixels) are upsampled into the crop and teach only blur.
MIN_IOD_PX = 40.0


@dataclass
class ClipFrames:
    """One video's training frames.

    crops: (T, 3, 2S, 2S) uint8 RGB aligned crops at twice the crop's size (`CropGeometry.fine`:
    2x2 average pooling gives the S-pixel crops), so that a training pair is warped at that size
    and then pooled, as an edit warps the frame and then samples the crop (warping the S-pixel crop
    itself blurred it: its detail, as the Laplacian measures it, fell by up to 13% against the
    edit's); points: (T, 478, 2) float32 landmarks in the face frame (IOD); aus: (T, K) float32
    AU activations relative to the clip's median face; present: (T, K) float32 the expression
    an edit of each frame replaces (`pipeline.Analysis.current`: slow, above the person's rest,
    against their calm face when one was given), None for frames not cut from a video; side:
    where an edit of the clip plays the one-sided units (`pipeline.Analysis.side`).
    """

    name: str
    person: str
    crops: np.ndarray
    points: np.ndarray
    aus: np.ndarray
    present: np.ndarray | None = None
    side: Side = "right"

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        # Training workers started by spawn (macOS; Python 3.14's default on Linux too) get
        # their clips pickled: crops mapped from a cache file travel as that file's name, not
        # as every crop through a pipe into every worker's memory.
        if _whole_file_map(self.crops):
            state["crops"] = _CacheFile(Path(self.crops.filename))
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["crops"], _CacheFile):
            state["crops"] = np.load(state["crops"].path, mmap_mode="r")
        self.__dict__.update(state)


@dataclass(frozen=True)
class _CacheFile:
    path: Path


def _whole_file_map(array: np.ndarray) -> bool:
    """Whether `array` is a read-only memory map of a whole .npy file (not a part of one)."""
    if not isinstance(array, np.memmap) or not array.filename or array.flags.writeable:
        return False
    try:
        whole = np.load(array.filename, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return whole.shape == array.shape and whole.strides == array.strides


def find_videos(root: Path) -> list[Path]:
    """Video files under `root` (one folder level deep at most), sorted."""
    if not root.is_dir():
        raise SpfemError(f"video folder not found: {root}")
    found = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.suffix.lower() in VIDEO_SUFFIXES
        and len(p.relative_to(root).parts) <= 2
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    if not found:
        raise SpfemError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {root}")
    return found


def person_of(video: Path, *, root: Path, people: dict[str, str]) -> str:
    """Who a video shows: its entry in `people` (keyed by the path relative to root), else
    its sub-folder's name (one folder per person), else its file name without suffix."""
    rel = video.relative_to(root).as_posix()
    if rel in people:
        return people[rel]
    parts = video.relative_to(root).parts
    return parts[0] if len(parts) > 1 else video.stem


def _cache_key(
    video: Path,
    crop: CropGeometry,
    max_frames: int,
    rest_face: RestFace | None,
    face: FacePick = LARGEST_FACE,
) -> str:
    stat = video.stat()
    calm = None
    if rest_face is not None:
        shape = hashlib.sha256(np.ascontiguousarray(rest_face.shape, np.float64)).hexdigest()
        calm = [shape, rest_face.faces]
    key = [str(video.resolve()), stat.st_size, stat.st_mtime_ns, crop.__dict__, max_frames, calm, 6]
    if face != LARGEST_FACE:
        # Only then, so that the entries cached before faces could be chosen still match.
        key.append([face.kind, face.point])
    blob = json.dumps(key)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def load_clip_frames(
    video: Path,
    *,
    person: str,
    name: str,
    model: ExpressionModel,
    crop: CropGeometry,
    max_frames: int,
    cache_dir: Path | None = None,
    rest_face: RestFace | None = None,
    face: FacePick = LARGEST_FACE,
    reporter: Reporter | None = None,
) -> ClipFrames | None:
    """Track a video and cut its training crops (None if no usable face).

    Up to max_frames frames with a face, spread evenly over the video, are kept. rest_face:
    the person's calm face (`pipeline.read_rest_face`, `--rest`), against which the
    expression on the frames is read (`ClipFrames.present`). With a cache_dir, the result is
    stored there and reused while the video file is unchanged, and the crops are read from it
    as a memory map: a collection of any size then holds only the pages a batch touches (79 MB
    a clip at 400 frames otherwise). Without one they are in RAM. face: which face is learnt
    from where there are several (`spfem edit --face`).
    """
    key = _cache_key(video, crop, max_frames, rest_face, face)
    entry = cache_dir / key if cache_dir else None
    if entry is not None:
        cached, frames = _load_entry(entry, name=name, person=person)
        if cached:
            return frames
    rep = reporter or SilentReporter()
    info = probe(video)
    with tempfile.TemporaryDirectory(prefix="spfem-train-") as tmp:
        analysis = analyse_video(
            info, model=model, workdir=Path(tmp), reporter=rep, rest_face=rest_face, face=face
        )
        track = analysis.track
        usable = track.valid & (track.params[:, 3] >= MIN_IOD_PX)
        idx = np.flatnonzero(usable)
        if idx.size < 2:
            empty = np.zeros((0, 0), np.float32)
            _store_entry(
                entry,
                crops=None,
                points=empty.reshape(0, 0, 2),
                aus=empty,
                present=empty,
                side=analysis.side,
            )
            return None
        if idx.size > max_frames:
            idx = idx[np.linspace(0, idx.size - 1, max_frames).astype(int)]
        median = torch.from_numpy(track.median_frontal()).float()
        frontal = torch.from_numpy(np.asarray(track.frontal[idx], dtype=np.float32))
        with torch.no_grad():
            aus = signed_activations(model, frontal - median).float().numpy()
        present = np.asarray(analysis.current[idx], dtype=np.float32)
        points = np.asarray(track.norm[idx], dtype=np.float32)
        shape = (idx.size, 3, 2 * crop.size, 2 * crop.size)
        if entry is not None:
            entry.parent.mkdir(parents=True, exist_ok=True)
        # Cut straight into the cache file when there is one, so no clip is ever whole in RAM.
        crops = (
            np.lib.format.open_memmap(_crops_path(entry, partial=True), "w+", np.uint8, shape)
            if entry is not None
            else np.zeros(shape, dtype=np.uint8)
        )
        wanted = {int(t): i for i, t in enumerate(idx)}
        sub = supersampled_points(crop).double().numpy()
        with FrameReader(info) as reader, rep.stage(f"Cropping {name}", track.n_frames) as adv:
            for t, frame in enumerate(reader):
                adv()
                if t in wanted:
                    pix = track.frame(t).to_image(sub)
                    crops[wanted[t]] = fine_crop_from_frame(frame, pix)
    if entry is not None:
        _store_entry(
            entry, crops=crops, points=points, aus=aus, present=present, side=analysis.side
        )
        crops = np.load(_crops_path(entry), mmap_mode="r")
    return ClipFrames(
        name=name,
        person=person,
        crops=crops,
        points=points,
        aus=aus,
        present=present,
        side=analysis.side,
    )


def _crops_path(entry: Path, *, partial: bool = False) -> Path:
    return entry.with_name(entry.name + (".crops.partial.npy" if partial else ".crops.npy"))


def _load_entry(entry: Path, *, name: str, person: str) -> tuple[bool, ClipFrames | None]:
    """Whether the cache holds `entry` (`entry`.npz: points, AUs and present expressions;
    `entry`.crops.npy: the crops), and its frames with the crops memory mapped (None: a video
    without a usable face)."""
    meta, crops_path = entry.with_suffix(".npz"), _crops_path(entry)
    if not meta.is_file():
        return False, None
    with np.load(meta) as data:
        points, aus = data["points"], data["aus"]
        present, side = data["present"], str(data["side"])
    if len(points) == 0:
        return True, None
    if not crops_path.is_file():
        return False, None
    crops = np.load(crops_path, mmap_mode="r")
    return True, ClipFrames(
        name=name,
        person=person,
        crops=crops,
        points=points,
        aus=aus,
        present=present,
        side=side,  # type: ignore[arg-type]
    )


def _store_entry(
    entry: Path | None,
    *,
    crops: np.ndarray | None,
    points: np.ndarray,
    aus: np.ndarray,
    present: np.ndarray,
    side: Side,
) -> None:
    """Write a cache entry: the crops (already cut into their partial file) are renamed into
    place first and the small .npz last, which is what marks the entry complete. No crops
    records a video without a usable face."""
    if entry is None:
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    if crops is not None:
        if isinstance(crops, np.memmap):
            crops.flush()
        _crops_path(entry, partial=True).replace(_crops_path(entry))
    tmp_path = entry.with_name(entry.name + ".tmp.npz")
    np.savez(tmp_path, points=points, aus=aus, present=present, side=np.array(side))
    tmp_path.replace(entry.with_suffix(".npz"))


def fine_crop_from_frame(frame: np.ndarray, pixel_grid: np.ndarray) -> np.ndarray:
    """The aligned crop at twice its size (3, 2S, 2S) uint8 (`ClipFrames.crops`) of a frame
    (H, W, 3) uint8, at the pixel positions (2S, 2S, 2) (x, y) of `supersampled_points`;
    only the frame's part under the grid is converted."""
    h, w = frame.shape[:2]
    x0 = int(np.clip(np.floor(pixel_grid[..., 0].min()) - 1, 0, w - 1))
    x1 = int(np.clip(np.ceil(pixel_grid[..., 0].max()) + 2, x0 + 1, w))
    y0 = int(np.clip(np.floor(pixel_grid[..., 1].min()) - 1, 0, h - 1))
    y1 = int(np.clip(np.ceil(pixel_grid[..., 1].max()) + 2, y0 + 1, h))
    part = torch.from_numpy(np.ascontiguousarray(frame[y0:y1, x0:x1])).permute(2, 0, 1)[None]
    grid = torch.from_numpy(pixel_grid - np.array([x0, y0])).float()
    out = sample_fine(part.float(), grid)[0]
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


def load_collection(
    root: Path,
    *,
    people: dict[str, str],
    model: ExpressionModel,
    crop: CropGeometry,
    max_frames: int,
    cache_dir: Path | None,
    exclude: tuple[str, ...] = (),
    face: FacePick = LARGEST_FACE,
    reporter: Reporter | None = None,
) -> list[ClipFrames]:
    """Every usable video under root as ClipFrames (videos without a usable face are left out;
    `exclude` lists paths relative to root to skip; face: which face each is learnt from where
    it shows several)."""
    clips = []
    for video in find_videos(root):
        rel = video.relative_to(root).as_posix()
        if rel in exclude:
            continue
        frames = load_clip_frames(
            video,
            person=person_of(video, root=root, people=people),
            name=rel,
            model=model,
            crop=crop,
            max_frames=max_frames,
            cache_dir=cache_dir,
            face=face,
            reporter=reporter,
        )
        if frames is not None:
            clips.append(frames)
    if not clips:
        raise SpfemError(f"no video under {root} has a face large enough to train on")
    return clips
