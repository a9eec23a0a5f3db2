"""`spfem preview`: a contact sheet of a few frames of a video under every emotion.

One tracking pass over the video, then only the chosen frames are generated, so a sheet of
all eight emotions costs little more than the tracking.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spfem_cli.errors import SpfemError
from spfem_cli.face.mesh import face_box
from spfem_cli.face.tracker import FacePick
from spfem_cli.generator.expression import DEFAULT_MODEL, EMOTIONS
from spfem_cli.generator.generator import MouthMode
from spfem_cli.generator.kinds import DEFAULT_GENERATOR
from spfem_cli.media import FrameReader, given_output_path, probe
from spfem_cli.pipeline import (
    Editor,
    analyse_video,
    check_side,
    held_smile_note,
    played_mouth,
    read_rest_face,
)
from spfem_cli.progress import Reporter, SilentReporter
from spfem_cli.sheet import contact_sheet, write_png
from spfem_cli.targets import check_intensity, mixture_vector

MAX_ROWS = 12
# How far the crop reaches beyond the landmarks, as a fraction of the face's size: enough for
# the hairline and the chin, tight enough that brows, lids and lip corners are big on the sheet.
FACE_MARGIN = 0.15
CELL_HEIGHT = 320
# The sheet's name where none is given, or in the folder given (`spfem preview -o FOLDER`).
DEFAULT_NAME = "spfem-preview.png"


@dataclass(frozen=True)
class Preview:
    """What `preview_sheet` wrote, and hints (what the sheet shows that the options alone do
    not tell): `spfem edit`'s note where natural mode plays as expressive (a photo, a video
    whose mouth never moves: `played_mouth`), and its note on a smile held through the video
    (`held_smile_note`)."""

    path: Path
    hints: tuple[str, ...] = ()


def preview_sheet(
    *,
    input_path: str | Path,
    output_path: str | Path,
    emotions: Sequence[str] | None = None,
    n_frames: int = 3,
    intensity: float = 1.0,
    mouth: MouthMode = "natural",
    generator: str = DEFAULT_GENERATOR,
    device: str = "auto",
    crop_face: bool = True,
    model: str | Path = DEFAULT_MODEL,
    rest: str | Path | None = None,
    side: str = "auto",
    face: str = "largest",
    reporter: Reporter | None = None,
) -> Preview:
    """Write a PNG: one row per sampled frame, columns input then each emotion.

    output_path: the PNG, or a folder to write DEFAULT_NAME in; emotions: one column each, an
    emotion or a mixture as `spfem edit` takes them
    (``"happy:0.6+surprised:0.4"``; no time ranges), None for the eight; crop_face: show the
    face region (grown by half its size) rather than the whole frame; rest: a photo or clip of
    the same person with a calm face, or a time range of the input (as in `edit_video`);
    side: where contempt's one-sided sneer goes, face: which face is shown edited where there
    are several (both as in `edit_video`).
    """
    rep = reporter or SilentReporter()
    output_path = given_output_path(output_path, default=Path(DEFAULT_NAME))
    if output_path.suffix.lower() != ".png":
        raise SpfemError(f"the preview is a PNG image: name it *.png, not {output_path.name}")
    if not output_path.resolve().parent.is_dir():
        raise SpfemError(f"output folder does not exist: {output_path.parent}")
    if not 1 <= n_frames <= MAX_ROWS:
        raise SpfemError(f"--frames must be between 1 and {MAX_ROWS}, got {n_frames}")
    check_intensity(intensity)
    check_side(side)
    pick = FacePick.parse(face)
    emotions = EMOTIONS if emotions is None else tuple(emotions)
    if not emotions:
        raise SpfemError("the preview needs at least one emotion")
    editor = Editor.load(model=model, device=device, mouth=mouth, generator=generator)
    # Every column is checked before the video is read: a bad one fails at once.
    targets = [
        editor.within_reach(intensity * mixture_vector(spec, resolve=editor.vector_of))
        for spec in emotions
    ]
    info = probe(input_path)
    expression = editor.expression
    rest_face = None if rest is None else read_rest_face(rest, video=input_path, pick=pick)
    with tempfile.TemporaryDirectory(prefix="spfem-") as tmp:
        analysis = analyse_video(
            info,
            model=expression,
            workdir=Path(tmp),
            reporter=rep,
            rest_face=rest_face,
            side=side,
            face=pick,
        )
        track = analysis.track
        faces = np.flatnonzero(track.valid)
        if faces.size == 0:
            raise SpfemError(f"{input_path}: no face found in any frame")
        # A photo's edit, or a silent video's, is previewed as `spfem edit` makes it.
        played, mouth_note = played_mouth(mouth, photo=info.n_frames == 1, track=track)
        gen = editor.with_mouth(played).generator
        hints = [mouth_note, held_smile_note(track, rest_face=rest_face)]
        picks = faces[np.linspace(0, faces.size - 1, n_frames + 2)[1:-1].astype(int)]
        weights = np.ones(track.n_frames)
        deltas = [
            analysis.deltas(target=t, weights=weights, removal=min(intensity, 1.0)) for t in targets
        ]
        rows: list[list[np.ndarray]] = []
        with FrameReader(info) as reader:
            for t, frame in enumerate(reader):
                if t not in picks:
                    continue
                # Traced once: every emotion's edit of the frame keeps the same rims.
                traced = (
                    None if analysis.rims is None else analysis.rims.trace(frame, track.frame(t))
                )
                row = [frame] + [
                    analysis.edit_frame(frame, t, generator=gen, delta=delta[t], rims=traced)
                    for delta in deltas
                ]
                if crop_face:
                    x0, y0, x1, y1 = face_box(
                        track.landmarks_px(t),
                        width=info.width,
                        height=info.height,
                        margin=FACE_MARGIN,
                    )
                    row = [f[y0:y1, x0:x1] for f in row]
                rows.append(row)
                if len(rows) == len(picks):
                    break
    sheet = contact_sheet(
        rows,
        cell_height=CELL_HEIGHT,
        column_labels=["input", *(spec.strip() for spec in emotions)],
        row_labels=[f"t={t / float(info.fps):.2f}s" for t in picks],
    )
    return Preview(path=write_png(output_path, sheet), hints=tuple(h for h in hints if h))
