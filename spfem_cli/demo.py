"""`spfem demo`: a short clip made from a built-in portrait, edited, with a contact sheet.

The portrait is scikit-image's public-domain astronaut photo (Eileen Collins, NASA), which
ships inside the scikit-image wheel, so the demo runs offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from spfem_cli.errors import SpfemError
from spfem_cli.media import FrameReader, FrameWriter, probe
from spfem_cli.pipeline import edit_video
from spfem_cli.progress import Reporter, SilentReporter
from spfem_cli.sheet import contact_sheet, write_png

FPS = Fraction(25)
SECONDS = 3
SIZE = 384
# The face's centre and a window around it in the 512x512 photo (pixels).
FACE_CENTRE = (225.0, 128.0)
WINDOW = 250.0


@dataclass(frozen=True)
class DemoResult:
    input: Path
    edited: Path
    sheet: Path


def portrait_frames(*, n_frames: int, size: int = SIZE) -> list[np.ndarray]:
    """A slow push-in and sway over the portrait, so the face moves like a handheld shot.

    Returns n_frames arrays (size, size, 3) uint8 RGB.
    """
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    frames = []
    for i in range(n_frames):
        s = i / max(n_frames - 1, 1)
        half = WINDOW / 2 * (1.0 - 0.12 * s)
        cx = FACE_CENTRE[0] + 6.0 * np.sin(2 * np.pi * s)
        cy = FACE_CENTRE[1] + 3.0 * np.sin(4 * np.pi * s)
        box = (cx - half, cy - half, cx + half, cy + half)
        frames.append(np.asarray(photo.resize((size, size), Image.Resampling.BICUBIC, box=box)))
    return frames


def run_demo(
    *,
    output_dir: Path,
    emotion: str,
    device: str = "auto",
    reporter: Reporter | None = None,
) -> DemoResult:
    """Write `astronaut.mp4`, its edit `astronaut.EMOTION.mp4` and `contact_sheet.png`."""
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpfemError(f"cannot create the demo folder {output_dir}: {exc.strerror}") from exc
    clip = output_dir / "astronaut.mp4"
    frames = portrait_frames(n_frames=int(FPS * SECONDS))
    with FrameWriter(clip, width=SIZE, height=SIZE, fps=FPS) as writer:
        for frame in frames:
            writer.write(frame)
    report = edit_video(
        input_path=clip,
        emotion=emotion,
        output_path=output_dir / f"astronaut.{emotion}.mp4",
        device=device,
        overwrite=True,
        reporter=reporter or SilentReporter(),
    )
    with FrameReader(probe(report.output)) as reader:
        edited = list(reader)
    picks = [len(frames) // 6, len(frames) // 2, len(frames) - len(frames) // 6 - 1]
    sheet = contact_sheet(
        [[frames[i], edited[i]] for i in picks],
        column_labels=["input", f"{emotion}"],
        row_labels=[f"t={i / float(FPS):.1f}s" for i in picks],
    )
    return DemoResult(
        input=clip, edited=report.output, sheet=write_png(output_dir / "contact_sheet.png", sheet)
    )
