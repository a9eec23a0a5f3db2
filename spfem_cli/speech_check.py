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
from collections.abc import Sequence
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
from spfem_cli.face.tracker import LARGEST_FACE, FacePick
from spfem_cli.media import FrameReader, VideoInfo, probe, same_rate
from spfem_cli.pipeline import check_time_range, measured_frames, partial_frames
from spfem_cli.progress import Reporter, SilentReporter
from spfem_cli.targets import range_weights

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
    standard deviation of the input's mouth opening over the clip, IOD; of_edited: only the
    frames an edit changed were measured, some of the clip's being left as they were
    (`check_speech`'s frames)."""

    mouth: SpeechReport
    whole: SpeechReport | None
    opening_spread: float
    of_edited: bool = False

    @property
    def still_mouth(self) -> bool:
        return self.opening_spread < STILL_MOUTH

    @property
    def lips_kept(self) -> bool:
        return self.mouth.inner_lip_error <= INNER_LIP_LIMIT

    @property
    def opening_score(self) -> float:
        """The mouth opening's correlation with the input's that the verdict reads: over the
        measured frames; over the edited part of a clip, the correlation its opening's error
        would give against the clip's whole speech.

        A correlation over a second of speech is mostly FaceMesh's noise against the few
        syllables in it: speech_man's last 24 frames edited to sad with the lip corners
        held read 0.975, where the same error over the clip's speech reads 0.993. For a
        signal of spread s and an error of spread e apart from it the correlation is
        1/sqrt(1 + (e/s)^2), which is what this takes with the clip's spread as s
        (on the whole of speech_man's 4 s: 0.990 against Pearson's 0.990).
        """
        if not self.of_edited:
            return self.mouth.opening_corr
        ratio = self.mouth.opening_error / max(self.opening_spread, 1e-9)
        return float(1.0 / np.sqrt(1.0 + ratio**2))

    @property
    def opening_kept(self) -> bool:
        return self.still_mouth or self.opening_score >= OPENING_LIMIT

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
        elif self.of_edited:
            opening = (
                f"mouth opening differs from the input's by {m.opening_error:.3f} of the eye "
                f"distance, which over the clip's speech is a correlation of "
                f"{self.opening_score:.3f} (at least {OPENING_LIMIT:g})"
            )
        else:
            opening = (
                f"mouth opening correlates with the input's at {m.opening_corr:.3f} "
                f"(at least {OPENING_LIMIT:g})"
            )
        verdict = "speech kept" if self.kept else "speech changed"
        frames = f"{m.frames} edited frames" if self.of_edited else f"{m.frames} frames"
        out = [f"{verdict}: {lips}; {opening}; over {frames}"]
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


def openings(lm: np.ndarray) -> np.ndarray:
    """(F,) the mouth's opening (IOD) on each frame with a face of landmarks (T, 478, 2)
    pixels (NaN on frames without a face, which are left out), read a chunk at a time
    (`SPEECH_CHUNK`), so that memory stays flat on a memory-mapped file."""
    parts = [mouth_opening(lm[s : s + SPEECH_CHUNK]) for s in range(0, len(lm), SPEECH_CHUNK)]
    values = np.concatenate(parts) if parts else np.zeros(0)
    return values[np.isfinite(values)]


def opening_spread(lm: np.ndarray) -> float:
    """The standard deviation over the clip of the mouth's opening (IOD) of landmarks
    (T, 478, 2) pixels (`openings`); NaN with fewer than two frames with a face."""
    values = openings(lm)
    return float(values.std()) if values.size > 1 else float("nan")


def frames_between(path: str | Path, *, start: float | None, end: float | None) -> np.ndarray:
    """(T,) bool: the frames of the video at `path` that an edit's `--start` and `--end`
    (seconds; None: its beginning or its end) change, frame t being at t / fps seconds: those
    from `start` up to, not including, `end`, but for a frame on `start` itself, which the
    edit's fade-in leaves as it was (`targets.range_weights`). For `check_speech`'s frames.
    SpfemError for a range that changes no frame."""
    check_time_range(start=start, end=end)
    info = probe(Path(path))
    n = _frames_of(info)[0]
    changed = range_weights(n_frames=n, fps=float(info.fps), start=start, end=end) > 0
    if not changed.any():
        until = "its end" if end is None else f"{end:g} s"
        raise SpfemError(
            f"an edit from {start or 0:g} s to {until} changes no frame of {info.path.name} "
            f"({n / float(info.fps):.2f} s long)"
        )
    return changed


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
    frames: np.ndarray | None = None,
    face: str = "largest",
) -> SpeechCheck:
    """Measure whether `after`, an edit of the video `before`, kept its speech (`SpeechCheck`).
    input_lm: `before`'s landmarks when already found (an edit's tracking of it,
    `FaceTrack.raw`, which are those `evaluate.tracked_landmarks` finds), else they are found
    here; whole: also measure the edited frames as they are (`SpeechCheck.whole`; a FaceMesh
    pass more, which the verdict does not use); workdir: a folder for the landmarks'
    memory-mapped files (`speech-*.npy`, overwritten by the next check there), so that memory
    stays flat however long the videos; None: a temporary one, removed before returning;
    frames: (T,) bool, the frames to measure, those an edit changed (`SpeechCheck.of_edited`:
    frames it passed through would dilute the verdict on the others); None: all; face: the
    face to measure where there are several, as `spfem edit --face` picked it
    (`FacePick.parse`; without input_lm).

    Raises SpfemError for missing or unreadable files, photos, two videos that cannot be an
    edit and its input (other frame counts, sizes or rates), and videos without a face."""
    (found,) = check_speech_parts(
        before=before, after=after, parts=[frames], reporter=reporter, input_lm=input_lm,
        whole=whole, workdir=workdir, face=FacePick.parse(face),
    )  # fmt: skip
    if isinstance(found, str):
        raise SpfemError(found)
    return found


def check_speech_parts(
    *,
    before: str | Path,
    after: str | Path,
    parts: Sequence[np.ndarray | None],
    reporter: Reporter | None = None,
    input_lm: np.ndarray | None = None,
    whole: bool = True,
    workdir: Path | None = None,
    held: np.ndarray | None = None,
    face: FacePick = LARGEST_FACE,
) -> list[SpeechCheck | str]:
    """`check_speech` of each of an edit's parts, from one set of FaceMesh passes.

    parts: (T,) bool each (None: every frame), the frames of each part of a timeline an edit
    played, each judged on its own (one emotion's mouth may keep the speech where another's
    does not). A part that holds every frame with a face is measured as a whole clip; a part
    with fewer than three frames with a face in both videos gets, instead of its verdict, a
    line saying so. The passes read the parts' frames only (`pipeline.measured_spans`).

    held: (T,) bool, the input's frames that `after` holds, in order: a try of a partial edit
    rendered alone (`pipeline.render_edit`), which must hold every frame the passes read and
    is measured without `whole` (ValueError otherwise). face: the face to find on the input
    where input_lm is not given. Raises SpfemError as check_speech does."""
    before, after = Path(before), Path(after)
    if held is not None and whole:
        raise ValueError("an edit holding some frames is measured with the mouth alone")
    infos = _check_pair(before, after, held=None if held is None else int(np.sum(held)))
    n = _frames_of(infos[0])[0]
    masks = []
    for part in parts:
        # An edit's frames as its tracking counted them; any beyond are not edited.
        mask = np.ones(n, bool) if part is None else np.asarray(part, bool)[:n]
        masks.append(np.concatenate([mask, np.zeros(n - len(mask), bool)]))
    union = np.logical_or.reduce(masks) if masks else None
    frames = None if union is None else partial_frames(union, input_lm=input_lm)
    with contextlib.ExitStack() as stack:
        folder = workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="spfem-check-"))
        )
        lm_in, lm_mouth, lm_out = _find(
            before, after, infos=infos, n=n, reporter=reporter, input_lm=input_lm, whole=whole,
            workdir=folder, frames=frames, held=held, face=face,
        )  # fmt: skip
        # A frame's landmarks are all found or all NaN: one coordinate tells, and reads the
        # memory-mapped files without loading them whole.
        found = ~np.isnan(lm_in[:, 0, 0]) & ~np.isnan(lm_mouth[:, 0, 0])
        spread = None
        out: list[SpeechCheck | str] = []
        for mask in masks:
            sel = partial_frames(mask, input_lm=input_lm)
            if (both := int((found if sel is None else found & sel).sum())) < 3:
                which = "edited frames" if sel is not None else "frames"
                out.append(
                    f"FaceMesh found a face on {both} {which} of both videos: too few to measure"
                )
                continue
            if spread is None:
                spread = opening_spread(lm_in)
            out.append(
                SpeechCheck(
                    mouth=compare_speech(lm_in, lm_mouth, frames=sel),
                    whole=None if lm_out is None else compare_speech(lm_in, lm_out, frames=sel),
                    opening_spread=spread,
                    of_edited=sel is not None,
                )
            )
        return out


def _check_pair(
    before: Path, after: Path, *, held: int | None = None
) -> tuple[VideoInfo, VideoInfo]:
    """The probes of two videos that can be an edit and its input; SpfemError otherwise.
    held: how many of the input's frames the edit holds (a try rendered alone); None: all."""
    first, second = probe(before), probe(after)
    if first.n_frames == 1 or second.n_frames == 1:
        raise SpfemError("spfem check takes two videos: a photo has no speech")
    shape_a, shape_b = _frames_of(first), _frames_of(second)
    if held is not None:
        shape_a = (held, *shape_a[1:])
    # A try holding a few frames of an uneven rate, written at its mean rate, can probe as a
    # round one (22 for 22.25 fps): their times do not matter, only their order.
    if shape_a != shape_b or (held is None and not same_rate(first.fps, second.fps)):
        (na, wa, ha), (nb, wb, hb) = shape_a, shape_b
        raise SpfemError(
            f"{after.name} is not an edit of {before.name}: {nb} frames of {wb}x{hb} at "
            f"{float(second.fps):g} fps against {na} of {wa}x{ha} at {float(first.fps):g}; "
            "spfem check compares an edit with the video it was made from"
        )
    return first, second


def _find(
    before: Path,
    after: Path,
    *,
    infos: tuple[VideoInfo, VideoInfo],
    n: int,
    reporter: Reporter | None,
    input_lm: np.ndarray | None,
    whole: bool,
    workdir: Path,
    frames: np.ndarray | None,
    held: np.ndarray | None = None,
    face: FacePick = LARGEST_FACE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The landmarks `check_speech` compares, of two videos of n frames found to be an edit
    and its input (`infos`, their probes), in memory-mapped files in workdir: the input's
    (the whole video's), the input's with the edit's mouth pasted in and, with `whole`, the
    edit's, on `frames` (None: all; NaN rows elsewhere); held: the input's frames the edit
    holds (`check_speech_parts`); face: the face to find on the input, which the other
    passes then follow."""
    rep = reporter or SilentReporter()

    def rows(name: str) -> np.ndarray:
        return np.lib.format.open_memmap(
            workdir / f"speech-{name}.npy", mode="w+", dtype=np.float32, shape=(n, N_LANDMARKS, 2)
        )

    # A partial edit's frames are found on their own, with a few frames before each run
    # (`pipeline.measured_spans`): the passes then take as long as the edit, not the video.
    shown = n
    if frames is not None:
        shown = int(measured_frames(*infos, frames=frames).sum())
    lm_in = input_lm
    if lm_in is None:
        # The whole input: the speech's spread over the clip is what a partial edit's
        # opening is judged against (`SpeechCheck.opening_score`).
        with rep.stage("Finding the lips: input", n) as adv:
            # Read as the window pass reads it, alike with the edit.
            lm_in = video_landmarks(
                before, alike=[after], on_frame=adv, into=rows("input"), pick=face
            )
    lm_out = None
    if whole:
        with rep.stage("Finding the lips: edit", shown) as adv:
            lm_out = video_landmarks(
                after, on_frame=adv, into=rows("edit"), frames=frames, follow=lm_in
            )
    with rep.stage("Finding the lips: the edit's mouth alone", shown) as adv:
        lm_mouth = window_landmarks(
            before, after, input_lm=lm_in, window="mouth", on_frame=adv, into=rows("mouth"),
            frames=frames, held=held,
        )  # fmt: skip
    return lm_in, lm_mouth, lm_out
