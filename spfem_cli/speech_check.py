"""`spfem check`: whether an edit kept its input's speech, measured after the fact.

FaceMesh finds the landmarks again on the input, on the edit, and on the input with only the
edit's mouth pasted in (`evaluate.window_landmarks`), and the lips are compared
(`evaluate.compare_speech`): how far the inner-lip contour is from the input's, and how closely
the mouth's opening follows the input's over time. The limits are the ones spfem's own edits
are held to (`INNER_LIP_LIMIT`, `OPENING_LIMIT`).

Why a user needs it: natural mode's lip corners change how FaceMesh reads the opening of some
speakers' mouths and not others' (docs/expressions.md, "The other two speech clips"), and
nothing read off the input predicts whose; an edit's own clip tells.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spfem_cli.errors import SpfemError
from spfem_cli.evaluate import (
    SPEECH_CHUNK,
    SpeechReport,
    compare_speech,
    mouth_opening,
    video_landmarks,
    window_landmarks,
)
from spfem_cli.face.mesh import N_LANDMARKS
from spfem_cli.media import FrameReader, VideoInfo, probe
from spfem_cli.progress import Reporter, SilentReporter

# The inner-lip landmarks found on the edit stay this close to the input's on average
# (fraction of the eye distance), and the mouth's opening correlates with the input's at least
# this much: the speech's limits every spfem edit is measured against.
INNER_LIP_LIMIT = 0.015
OPENING_LIMIT = 0.98
# A mouth whose opening varies less than this (standard deviation over the clip, IOD) barely
# moves, and the opening's correlation is then mostly FaceMesh's noise (talk_s20: 0.015,
# against 0.06-0.14 on the clips with speech): only the inner lips are judged.
STILL_MOUTH = 0.02


@dataclass(frozen=True)
class SpeechCheck:
    """mouth: the speech measures with only the edit's mouth shown to FaceMesh (what the edit
    did to the mouth itself; this decides `kept`); whole: on the edited frames as they are,
    where changed eyes and brows also move where FaceMesh puts the lips; opening_spread: the
    standard deviation of the input's mouth opening over the clip, IOD."""

    mouth: SpeechReport
    whole: SpeechReport | None
    opening_spread: float

    @property
    def still_mouth(self) -> bool:
        return self.opening_spread < STILL_MOUTH

    @property
    def lips_kept(self) -> bool:
        return self.mouth.inner_lip_error <= INNER_LIP_LIMIT

    @property
    def opening_kept(self) -> bool:
        return self.still_mouth or self.mouth.opening_corr >= OPENING_LIMIT

    @property
    def kept(self) -> bool:
        return self.lips_kept and self.opening_kept

    def lines(self) -> list[str]:
        """What was found, a line each: the verdict first."""
        m, w = self.mouth, self.whole
        lips = f"inner lips {100 * m.inner_lip_error:.2f}% of the eye distance from the input's"
        lips += f" (limit {100 * INNER_LIP_LIMIT:g}%)"
        if self.still_mouth:
            opening = (
                f"the mouth barely moves (its opening varies by {self.opening_spread:.3f} of the "
                "eye distance), so its opening's correlation is not judged"
            )
        else:
            opening = (
                f"mouth opening correlates with the input's at {m.opening_corr:.3f} "
                f"(at least {OPENING_LIMIT:g})"
            )
        verdict = "speech kept" if self.kept else "speech changed"
        out = [f"{verdict}: {lips}; {opening}; over {m.frames} frames"]
        if w is not None:
            out.append(
                f"on the edited frames as a whole: inner lips {100 * w.inner_lip_error:.2f}%, "
                f"opening {w.opening_corr:.3f} (FaceMesh reads a face at once: changed eyes and "
                "brows move where it puts the lips)"
            )
        if not self.kept:
            out.append(
                "the lip corners moved enough to change how FaceMesh reads these lips; "
                "--mouth strict keeps the whole mouth region as it was"
            )
        return out


def _opening_spread(lm: np.ndarray) -> float:
    """The standard deviation over the clip of the mouth's opening (IOD) of landmarks
    (T, 478, 2) pixels, read a chunk at a time (`SPEECH_CHUNK`)."""
    parts = [mouth_opening(lm[s : s + SPEECH_CHUNK]) for s in range(0, len(lm), SPEECH_CHUNK)]
    return float(np.nanstd(np.concatenate(parts))) if parts else float("nan")


def _frames_of(info: VideoInfo) -> tuple[int, int, int]:
    """(frames, width, height) as spfem decodes the video (resampled, square pixels)."""
    reader = FrameReader(info)
    return reader.expected_frames, reader.width, reader.height


def check_speech(
    *,
    before: str | Path,
    after: str | Path,
    reporter: Reporter | None = None,
    input_lm: np.ndarray | None = None,
    whole: bool = True,
    workdir: Path | None = None,
) -> SpeechCheck:
    """Measure whether `after`, an edit of the video `before`, kept its speech (`SpeechCheck`).
    input_lm: `before`'s landmarks when already found (an edit's tracking of it,
    `FaceTrack.raw`, which are those `evaluate.tracked_landmarks` finds), else they are found
    here; whole: also measure the edited frames as they are (`SpeechCheck.whole`; a FaceMesh
    pass more, which the verdict does not use); workdir: a folder for the landmarks'
    memory-mapped files (`speech-*.npy`, overwritten by the next check there), so that memory
    stays flat however long the videos; None: a temporary one, removed before returning.

    Raises SpfemError for missing or unreadable files, photos, two videos that cannot be an
    edit and its input (other frame counts, sizes or rates), and videos without a face."""
    before, after = Path(before), Path(after)
    first, second = probe(before), probe(after)
    if first.n_frames == 1 or second.n_frames == 1:
        raise SpfemError("spfem check takes two videos: a photo has no speech")
    shape_a, shape_b = _frames_of(first), _frames_of(second)
    if shape_a != shape_b or first.fps != second.fps:
        (na, wa, ha), (nb, wb, hb) = shape_a, shape_b
        raise SpfemError(
            f"{after.name} is not an edit of {before.name}: {nb} frames of {wb}x{hb} at "
            f"{float(second.fps):g} fps against {na} of {wa}x{ha} at {float(first.fps):g}; "
            "spfem check compares an edit with the video it was made from"
        )
    with contextlib.ExitStack() as stack:
        folder = workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="spfem-check-"))
        )
        return _measure(
            before, after, n=shape_a[0], reporter=reporter, input_lm=input_lm, whole=whole,
            workdir=folder,
        )  # fmt: skip


def _measure(
    before: Path,
    after: Path,
    *,
    n: int,
    reporter: Reporter | None,
    input_lm: np.ndarray | None,
    whole: bool,
    workdir: Path,
) -> SpeechCheck:
    """`check_speech` of two videos of n frames found to be an edit and its input, the
    landmarks in memory-mapped files in workdir."""
    rep = reporter or SilentReporter()

    def rows(name: str) -> np.ndarray:
        return np.lib.format.open_memmap(
            workdir / f"speech-{name}.npy", mode="w+", dtype=np.float32, shape=(n, N_LANDMARKS, 2)
        )

    lm_in = input_lm
    if lm_in is None:
        with rep.stage("Finding the lips: input", n) as adv:
            # Read as the window pass reads it, alike with the edit.
            lm_in = video_landmarks(before, alike=[after], on_frame=adv, into=rows("input"))
    lm_out = None
    if whole:
        with rep.stage("Finding the lips: edit", n) as adv:
            lm_out = video_landmarks(after, on_frame=adv, into=rows("edit"))
    with rep.stage("Finding the lips: the edit's mouth alone", n) as adv:
        lm_mouth = window_landmarks(
            before, after, input_lm=lm_in, window="mouth", on_frame=adv, into=rows("mouth")
        )
    # A frame's landmarks are all found or all NaN: one coordinate tells, and reads the
    # memory-mapped files without loading them whole.
    both = int((~np.isnan(lm_in[:, 0, 0]) & ~np.isnan(lm_mouth[:, 0, 0])).sum())
    if both < 3:
        raise SpfemError(
            f"FaceMesh found a face on {both} frames of both videos: too few to measure"
        )
    return SpeechCheck(
        mouth=compare_speech(lm_in, lm_mouth),
        whole=None if lm_out is None else compare_speech(lm_in, lm_out),
        opening_spread=_opening_spread(lm_in),
    )
