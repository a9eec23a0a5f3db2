"""`spfem edit` end to end on real clips of real people (skipped without ../shared/clips).

Each real edit runs once per module and several tests read its result.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pytest

from spfem_cli.evaluate import (
    background_difference,
    compare_speech,
    corner_lift,
    face_frame_landmarks,
    landmark_activations,
    slow_movement,
    video_landmarks,
    window_landmarks,
)
from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.face.rest import RestFace
from spfem_cli.generator.expression import REPLACED_AUS, ExpressionModel
from spfem_cli.generator.generator import UPPER_LIP_TOP
from spfem_cli.media import FrameReader, audio_packet_checksums, probe
from spfem_cli.pipeline import EXPRESSION_SMOOTHING_S, EditReport, edit_video
from tests.conftest import HeldNeutral, tracked_frame, video_frame

SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "clips"
# Issue 3 is open here: neutral takes the squint off a smile's peaks but calms the movement
# of the upper face over the clip by a twentieth, not a fifth (0.95): the lid raiser and the
# lid tightener are two readings of the same lid, and this speaker's calm lids (not squinting)
# read as a raised lid above the median, which the measure counts as expression.
REPLACE_GAP = "issue 3 open: neutral calms the upper face's movement too little"
OPENING_GAP = (
    "issue 3 open: FaceMesh reads speech_man's lower lip as less open under natural mode's "
    "fallen lip corners"
)
needs_clips = pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason="../shared/clips is absent")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.cache
def input_landmarks(clip: Path) -> np.ndarray:
    """`video_landmarks` of a shared clip, read-only: found once for all the edits of it
    (speech_obama is edited four ways)."""
    found = video_landmarks(clip)
    found.flags.writeable = False
    return found


class Edited:
    """An input clip, its edit, and the landmarks re-detected on both."""

    def __init__(self, clip: Path, out: Path, report: EditReport, input_hash: str) -> None:
        self.clip, self.out, self.report, self.input_hash = clip, out, report, input_hash
        self.lm_in = input_landmarks(clip)
        self.lm_out = video_landmarks(out)


def _edit(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    emotion: str,
    *,
    keep_speech: bool | None = False,
    **kw: object,
) -> Edited:
    """`spfem edit` of a shared clip (the test skipped where ../shared/clips is absent).

    Unmeasured by default: the tests here measure each mode's edit at full strength, which is
    also what natural mode's default makes wherever that edit keeps the speech (its first
    try, `pipeline.render_edit`); its measuring and tries are tests/test_speech_check.py's."""
    if not SHARED_CLIPS.is_dir():
        pytest.skip("../shared/clips is absent")
    clip = SHARED_CLIPS / name
    before = sha256(clip)
    out = tmp_path_factory.mktemp("edit") / f"{clip.stem}.{emotion}.mp4"
    report = edit_video(
        input_path=clip,
        output_path=out,
        emotion=emotion,
        device="cpu",
        keep_speech=keep_speech,
        **kw,  # type: ignore[arg-type]
    )
    return Edited(clip, out, report, before)


@pytest.fixture(scope="module")
def speech_happy(tmp_path_factory: pytest.TempPathFactory) -> Edited:
    return _edit(tmp_path_factory, "speech_obama_450x450.mp4", "happy")


@pytest.fixture(scope="module")
def mead_sad_to_surprised(tmp_path_factory: pytest.TempPathFactory) -> Edited:
    return _edit(tmp_path_factory, "talk_mead_sad_1920x1080.mp4", "surprised")


@pytest.fixture(scope="module")
def small_face_surprised(tmp_path_factory: pytest.TempPathFactory) -> Edited:
    """A full-body shot: the face is about 90 pixels tall in 720x1080, too small for
    FaceMesh's own detector (`LandmarkTracker` finds it with the full-range detector)."""
    return _edit(tmp_path_factory, "smallface_s13_720x1080.mp4", "surprised")


CASES = ["speech_happy", "mead_sad_to_surprised", "small_face_surprised"]
# The clips whose people speak.
SPEECH_CASES = ["speech_happy", "mead_sad_to_surprised"]


@needs_clips
@pytest.mark.parametrize("case", CASES)
def test_same_format_and_timing(case: str, request: pytest.FixtureRequest) -> None:
    e: Edited = request.getfixturevalue(case)
    a, b = probe(e.clip), probe(e.out)
    assert (b.width, b.height) == (a.width, a.height)
    assert b.fps == a.fps
    assert b.n_frames == a.n_frames
    assert abs(b.duration_s - a.duration_s) <= 1.0 / float(a.fps)
    assert sha256(e.clip) == e.input_hash  # the input is never modified


@needs_clips
@pytest.mark.parametrize("case", CASES)
def test_audio_is_bit_identical(case: str, request: pytest.FixtureRequest) -> None:
    e: Edited = request.getfixturevalue(case)
    before = audio_packet_checksums(e.clip)
    assert before, "these clips have an audio track"
    assert audio_packet_checksums(e.out) == before


@needs_clips
@pytest.mark.parametrize("case", CASES)
def test_background_unchanged(case: str, request: pytest.FixtureRequest) -> None:
    e: Edited = request.getfixturevalue(case)
    # Codec noise of one re-encode at crf 18 is about 1 level; the face edit must add nothing.
    assert background_difference(e.clip, e.out, input_lm=e.lm_in) < 1.5


@needs_clips
@pytest.mark.parametrize("case", SPEECH_CASES)
def test_speech_articulation_kept(case: str, request: pytest.FixtureRequest) -> None:
    e: Edited = request.getfixturevalue(case)
    rep = compare_speech(e.lm_in, e.lm_out)
    assert rep.frames >= 0.95 * len(e.lm_in)
    assert rep.inner_lip_error <= 0.015, rep
    assert rep.opening_corr >= 0.98, rep


@needs_clips
@pytest.mark.parametrize("case", SPEECH_CASES)
def test_no_added_jitter(case: str, request: pytest.FixtureRequest) -> None:
    e: Edited = request.getfixturevalue(case)
    rep = compare_speech(e.lm_in, e.lm_out)
    # Re-detection on a re-encoded video has its own noise: allow 5% of the input's motion.
    assert rep.jitter_out <= rep.jitter_in * 1.05, rep


@needs_clips
def test_happy_visibly_changes_the_face(speech_happy: Edited) -> None:
    e = speech_happy
    assert e.report.n_edited >= 0.95 * e.report.n_frames
    corners = list(mesh.LIP_CORNERS)
    right, left = mesh.eye_centres(e.lm_in)
    iod = np.linalg.norm(left - right, axis=-1)[:, None]
    # Lip corners rise (image y decreases) relative to the input's.
    rise = ((e.lm_in[:, corners, 1] - e.lm_out[:, corners, 1]) / iod).mean()
    assert rise > 0.01
    with FrameReader(probe(e.clip)) as ra, FrameReader(probe(e.out)) as rb:
        fa, fb = next(iter(ra)), next(iter(rb))
    assert np.abs(fa.astype(int) - fb.astype(int)).max() > 20


@needs_clips
def test_natural_mode_spends_the_lips_on_the_corners_rise(speech_happy: Edited) -> None:
    """Natural mode moves the lip corners only up and down (`RISE_ONLY`), so the smile's
    corners rise further for what the inner lips can give. Re-detected with only the output's
    mouth pasted into the input: Obama's corners rise 0.029 of the eye distance against the
    middle of the lips and the mouth widens 0.003 (inner-lip error 1.11%), where they rose
    0.020 while the smile also pulled them sideways and the release was 0.04 (the mouth then
    widened 0.017; the inner-lip error was 1.00%)."""
    e = speech_happy
    alone = window_landmarks(e.clip, e.out, input_lm=e.lm_in, window="mouth")
    lift = np.nanmean(corner_lift(alone) - corner_lift(e.lm_in))
    assert lift > 0.025, lift
    right, left = mesh.eye_centres(e.lm_in)
    iod = np.linalg.norm(left - right, axis=-1)

    def width(lm: np.ndarray) -> np.ndarray:
        corners = lm[:, list(mesh.LIP_CORNERS)]
        return np.linalg.norm(corners[:, 1] - corners[:, 0], axis=-1) / iod

    widened = np.nanmean(width(alone) - width(e.lm_in))
    assert abs(widened) < 0.012, widened
    rep = compare_speech(e.lm_in, alone)
    assert rep.inner_lip_error <= 0.015 and rep.opening_corr >= 0.98, rep


@needs_clips
@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError, reason=OPENING_GAP)
def test_natural_sad_keeps_speech_mans_mouth_opening(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The pipeline's speech limits on speech_man's sad, natural mode, its mouth alone pasted
    into the input: the inner lips hold (1.29%), but FaceMesh reads the lower lip as less open
    by a different amount on each frame once the corners fall, and the opening's correlation
    is 0.960 (0.991 re-encoded alone; strict mode 0.987). docs/expressions.md, "The other two
    speech clips"."""
    e = _edit(tmp_path_factory, "speech_man_256x256.mp4", "sad")
    rep = compare_speech(e.lm_in, window_landmarks(e.clip, e.out, input_lm=e.lm_in, window="mouth"))
    assert rep.inner_lip_error <= 0.015, rep
    assert rep.opening_corr >= 0.98, rep


@needs_clips
@pytest.mark.slow
def test_natural_mode_keeps_speech_mans_speech_by_default(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The same edit as `spfem edit` makes it by default, measuring itself: at full strength
    it reads 0.960 (above), so it is made again with the lip corners moving less, and that
    keeps the pipeline's limits (mouth alone) while the corners still fall. Half as far read
    an opening of 0.980 until 2026-12-07, right at the limit, and the corners fell 0.015 of
    the eye distance; with the forehead's shading blurred as the clip is (`face.sharpness`:
    sad shades nothing nearer the mouth) FaceMesh reads it at 0.9798, and the edit that keeps
    the speech moves them a quarter as far (inner lips 0.64%, opening 0.983; they fall
    0.006)."""
    e = _edit(tmp_path_factory, "speech_man_256x256.mp4", "sad", keep_speech=None)
    assert any("with the lip corners moving a quarter as far" in n for n in e.report.notes)
    lm_mouth = window_landmarks(e.clip, e.out, input_lm=e.lm_in, window="mouth")
    rep = compare_speech(e.lm_in, lm_mouth)
    assert rep.inner_lip_error <= 0.015, rep
    assert rep.opening_corr >= 0.98, rep
    corners = rises(e, list(mesh.LIP_CORNERS), lm_out=lm_mouth)
    assert corners.mean() < -0.005, corners


def rises(e: Edited, indices: list[int], *, lm_out: np.ndarray | None = None) -> np.ndarray:
    """(len(indices),) mean rise of each landmark from the input to the output (or the given
    output landmarks (T, 478, 2)), IOD (image y points down)."""
    out = e.lm_out if lm_out is None else lm_out
    right, left = mesh.eye_centres(e.lm_in)
    iod = np.linalg.norm(left - right, axis=-1)[:, None]
    return np.nanmean((e.lm_in[:, indices, 1] - out[:, indices, 1]) / iod, axis=0)


def corner_rises(e: Edited) -> np.ndarray:
    """(2,) mean rise of each lip corner (`mesh.LIP_CORNERS` order) from input to output,
    IOD."""
    return rises(e, list(mesh.LIP_CORNERS))


def corner_rise(e: Edited) -> float:
    """Mean rise of the lip corners from input to output, IOD (image y points down)."""
    return float(corner_rises(e).mean())


@pytest.fixture(scope="module")
def expressive_happy(tmp_path_factory: pytest.TempPathFactory) -> Edited:
    return _edit(tmp_path_factory, "speech_obama_450x450.mp4", "happy", mouth="expressive")


@needs_clips
def test_expressive_mouth_smiles_as_far_as_a_real_smile_and_keeps_the_opening(
    speech_happy: Edited, expressive_happy: Edited
) -> None:
    """A real acted smile lifts the lip corners 0.07-0.12 IOD against the middle of the lips;
    expressive mode's 0.078 there (`corner_lift`, mouth only) is paid for in inner-lip error
    (4.3%, against natural mode's 1%), while the opening still follows the speech."""
    assert corner_rise(expressive_happy) > corner_rise(speech_happy) + 0.03
    alone = window_landmarks(
        expressive_happy.clip, expressive_happy.out, input_lm=expressive_happy.lm_in, window="mouth"
    )
    lift = np.nanmean(corner_lift(alone) - corner_lift(expressive_happy.lm_in))
    # With a release of 0.08 IOD and no mouth gain, this mode lifted them 0.041.
    assert lift > 0.065, lift
    rep = compare_speech(expressive_happy.lm_in, alone)
    assert rep.opening_corr >= 0.95, rep
    assert rep.inner_lip_error <= 0.05, rep


@pytest.fixture(scope="module")
def speech_contempt(tmp_path_factory: pytest.TempPathFactory) -> Edited:
    return _edit(tmp_path_factory, "speech_obama_450x450.mp4", "contempt")


@needs_clips
def test_contempt_smirks_on_one_side_and_keeps_the_speech(speech_contempt: Edited) -> None:
    """The smirk's corner moves alone, so it gets the release both corners of a smile share
    (`corner_release_scale`); the inner lips stay within the pipeline's limit."""
    e = speech_contempt
    rise = corner_rises(e)
    # Subject's right corner (61): 0.028 IOD; with the release a smile's corners get, 0.015.
    assert rise[0] > 0.022, rise
    assert abs(rise[1]) < 0.5 * rise[0], rise
    rep = compare_speech(e.lm_in, e.lm_out)
    assert rep.inner_lip_error <= 0.015, rep
    assert rep.opening_corr >= 0.98, rep


@pytest.fixture(scope="module")
def speech_disgusted(tmp_path_factory: pytest.TempPathFactory) -> Edited:
    return _edit(tmp_path_factory, "speech_obama_450x450.mp4", "disgusted")


@needs_clips
def test_disgust_raises_the_upper_lip_and_keeps_the_speech(speech_disgusted: Edited) -> None:
    """The upper lip raiser lifts the middle of the upper lip's top edge (`UPPER_LIP_RELEASE`)
    while the inner lips stay the speech's. Re-detected with only the output's mouth pasted on
    the input (so the lowered brows and wrinkled nose do not move FaceMesh's lips)."""
    e = speech_disgusted
    alone = window_landmarks(e.clip, e.out, input_lm=e.lm_in, window="mouth")
    rise = rises(e, list(UPPER_LIP_TOP), lm_out=alone)
    # 0.026 IOD at the middle and 0.026 at the bow's peaks (asked: 0.057); -0.004 before the
    # hold let go of the edge.
    assert np.all(rise > 0.015), rise
    rep = compare_speech(e.lm_in, alone)
    assert rep.inner_lip_error <= 0.015, rep
    assert rep.opening_corr >= 0.98, rep


def side_changes(e: Edited) -> np.ndarray:
    """(2, 2) per side (subject's right, left): the change from input to output of the eye's
    opening (upper lid over the iris to the lower lid) and of the brow's height over the eye
    centre, mean over frames, IOD (+ = more open, higher)."""
    right, left = mesh.eye_centres(e.lm_in)
    iod = np.linalg.norm(left - right, axis=-1)

    def sides(lm: np.ndarray) -> np.ndarray:
        rc, lc = mesh.eye_centres(lm)
        out = []
        for (upper, lower), brow, centre in (
            ((159, 145), mesh.RIGHT_EYEBROW, rc),
            ((386, 374), mesh.LEFT_EYEBROW, lc),
        ):
            opening = lm[:, lower, 1] - lm[:, upper, 1]
            height = centre[:, 1] - lm[:, list(brow), 1].mean(axis=1)
            out.append([opening / iod, height / iod])
        return np.array(out)  # (2, 2, T)

    return np.nanmean(sides(e.lm_out) - sides(e.lm_in), axis=-1)


@needs_clips
def test_contempt_narrows_the_eye_and_lowers_the_brow_on_the_smirks_side(
    speech_contempt: Edited,
) -> None:
    """The acted contempt clip squints and frowns on the side it smirks (the calibrated AU7R
    and AU4R); re-detected on the output, that side's eye closes and its brow comes down, the
    other side's stay."""
    (right_eye, right_brow), (left_eye, left_brow) = side_changes(speech_contempt)
    # Obama: the right eye's opening -0.008 IOD and its brow -0.014; the left side's within
    # 0.001 (FaceMesh follows a warped lid in part; the model asks 0.040 of the opening, 0.028
    # of the brow's height).
    assert right_eye < -0.004 and abs(left_eye) < 0.002
    assert right_brow < -0.007 and abs(left_brow) < 0.003


@pytest.fixture(scope="module")
def turned_contempt(tmp_path_factory: pytest.TempPathFactory) -> Edited:
    """talk_s20 turns her head about 7 degrees to her right: her left side is nearer."""
    return _edit(tmp_path_factory, "talk_s20_480x908.mp4", "contempt")


@pytest.fixture(scope="module")
def speech_contempt_left(tmp_path_factory: pytest.TempPathFactory) -> Edited:
    return _edit(tmp_path_factory, "speech_obama_450x450.mp4", "contempt", side="left")


@needs_clips
def test_contempt_sneers_on_the_side_nearer_the_camera(
    turned_contempt: Edited, speech_contempt: Edited
) -> None:
    """On a head turned so that its left side is nearer the camera, the sneer (the smirk,
    the narrowed eye, the lowered brow) is played on the left, where it shows; on a frontal
    face it stays on the right. The report says which side and why."""
    e = turned_contempt
    # Her left eye's opening -0.008 IOD and its brow -0.021; the right side's +0.001 and
    # -0.003 (FaceMesh moves one brow a little with the other); the left corner +0.025, the
    # right +0.004.
    (right_eye, right_brow), (left_eye, left_brow) = side_changes(e)
    assert left_eye < -0.004 and abs(right_eye) < 0.3 * abs(left_eye), (right_eye, left_eye)
    assert left_brow < -0.01 and abs(right_brow) < 0.25 * abs(left_brow), (right_brow, left_brow)
    rise = corner_rises(e)
    assert rise[1] > 0.015 and abs(rise[0]) < 0.5 * rise[1], rise
    # Her mouth never moves (0.015 IOD of spread, Obama's 0.071): there is no speech to keep,
    # and natural mode plays her lips as expressive mode does.
    assert any("the mouth does not move in this video" in n for n in e.report.notes)
    assert not any("the mouth does not move" in n for n in speech_contempt.report.notes)
    note = (
        "left side (the side nearer the camera: the head is turned 7 degrees to the "
        "subject's right)"
    )
    assert any(note in n for n in e.report.notes), e.report.notes
    assert any("right side (the face is frontal)" in n for n in speech_contempt.report.notes)


# An edit of its own (15-20 s); the left side's fields are tested by
# `tests/test_expression.py` and played end to end on the turned face above: left to `-m slow`.
@needs_clips
@pytest.mark.slow
def test_side_left_mirrors_the_sneer_on_a_frontal_face(
    speech_contempt_left: Edited,
) -> None:
    """--side left plays on the left what the right side plays: re-detected, the same
    narrowing, brow and smirk, mirrored."""
    # Obama: the left eye's opening -0.014 IOD and its brow -0.019 (the right side, played
    # on the right: -0.008 and -0.014); the right side's -0.0003 and -0.002; the left corner
    # +0.025, the right +0.004.
    (right_eye, right_brow), (left_eye, left_brow) = side_changes(speech_contempt_left)
    assert left_eye < -0.004 and abs(right_eye) < 0.002, (right_eye, left_eye)
    assert left_brow < -0.007 and abs(right_brow) < 0.25 * abs(left_brow), (right_brow, left_brow)
    rise = corner_rises(speech_contempt_left)
    assert rise[1] > 0.018 and abs(rise[0]) < 0.5 * rise[1], rise
    rep = compare_speech(speech_contempt_left.lm_in, speech_contempt_left.lm_out)
    assert rep.inner_lip_error <= 0.015 and rep.opening_corr >= 0.98, rep
    assert any("left side (as --side asks)" in n for n in speech_contempt_left.report.notes)


@needs_clips
@pytest.mark.parametrize("case", ["mead_sad_to_surprised", "small_face_surprised"])
def test_surprised_raises_the_brows(case: str, request: pytest.FixtureRequest) -> None:
    e: Edited = request.getfixturevalue(case)
    assert e.report.n_edited == e.report.n_frames  # a face in every frame, the small one too
    brows = list(mesh.RIGHT_EYEBROW + mesh.LEFT_EYEBROW)
    right, left = mesh.eye_centres(e.lm_in)
    iod = np.linalg.norm(left - right, axis=-1)[:, None]
    eyes_in = ((right + left) / 2)[:, None, 1]
    right_o, left_o = mesh.eye_centres(e.lm_out)
    eyes_out = ((right_o + left_o) / 2)[:, None, 1]
    lift = (((eyes_in - e.lm_in[:, brows, 1]) - (eyes_out - e.lm_out[:, brows, 1])) / iod).mean()
    assert lift < -0.01  # the brow-to-eye distance grows


@pytest.fixture(scope="module")
def expression() -> ExpressionModel:
    return ExpressionModel.load()


@pytest.fixture(scope="module")
def smiling(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Edited]:
    return {e: _edit(tmp_path_factory, "talk_s32_1280x720.mp4", e) for e in ("sad", "neutral")}


@needs_clips
def test_sad_replaces_the_smile_instead_of_stacking(
    smiling: dict[str, Edited], expression: ExpressionModel
) -> None:
    e = smiling["sad"]
    median = np.nanmedian(face_frame_landmarks(e.lm_in), axis=0)
    names = ("AU6", "AU7", "AU1")
    before = landmark_activations(e.lm_in, median=median, model=expression, names=names)
    after = landmark_activations(e.lm_out, median=median, model=expression, names=names)
    smile_in, smile_out = before[:, :2].sum(axis=1), after[:, :2].sum(axis=1)
    # Where she smiles most, cheek raise and lid narrowing are taken away...
    top = smile_in >= np.percentile(smile_in, 75)
    assert smile_out[top].mean() < smile_in[top].mean() - 0.1
    # ...while sadness's own sign, the raised inner brows, is added.
    assert after[:, 2].mean() > before[:, 2].mean() + 0.2


@needs_clips
def test_neutral_takes_the_smile_off_the_eyes(
    smiling: dict[str, Edited], expression: ExpressionModel
) -> None:
    e = smiling["neutral"]
    median = np.nanmedian(face_frame_landmarks(e.lm_in), axis=0)
    before = landmark_activations(e.lm_in, median=median, model=expression, names=REPLACED_AUS)
    after = landmark_activations(e.lm_out, median=median, model=expression, names=REPLACED_AUS)
    squint = [REPLACED_AUS.index("AU6"), REPLACED_AUS.index("AU7")]
    squint_in, squint_out = before[:, squint].sum(axis=1), after[:, squint].sum(axis=1)
    top = squint_in >= np.percentile(squint_in, 75)
    assert squint_out[top].mean() < squint_in[top].mean() - 0.1
    # Calming adds no other expression: no upper-face AU grows on average.
    assert (after.mean(axis=0) - before.mean(axis=0)).max() < 0.1


@needs_clips
def test_neutral_does_not_raise_the_inner_brows(
    smiling: dict[str, Edited], expression: ExpressionModel
) -> None:
    """Calming her face takes the brows toward their rest instead of lifting them. When each
    AU read off FaceMesh was divided by its own gain, the brow lowering was taken off four
    times over, and FaceMesh read that lift of the brows as an inner brow raise: the slow
    inner-brow raise over the clip went from 0.015 to 0.048 (it is now 0.023)."""
    from spfem_cli.face.track import smooth_valid

    e = smiling["neutral"]
    median = np.nanmedian(face_frame_landmarks(e.lm_in), axis=0)
    fps = float(probe(e.clip).fps)

    def slow_inner_brow(lm: np.ndarray) -> np.ndarray:
        acts = landmark_activations(lm, median=median, model=expression, names=("AU1",))
        sigma = EXPRESSION_SMOOTHING_S * fps
        return smooth_valid(acts, np.ones(len(acts), dtype=bool), sigma)[:, 0]

    assert slow_inner_brow(e.lm_out).mean() < slow_inner_brow(e.lm_in).mean() + 0.015


@pytest.mark.xfail(strict=True, reason=REPLACE_GAP)
def test_neutral_calms_an_expressive_face(
    smiling: dict[str, Edited], expression: ExpressionModel
) -> None:
    """The upper face's slow movement above her calmest state, re-read on the output, is
    less than 0.8 of the input's (`scripts/measure_noise_floor.py` prints it per AU)."""
    e = smiling["neutral"]
    spread_in, spread_out = slow_movement(
        e.lm_in, e.lm_out, fps=float(probe(e.clip).fps), model=expression
    )
    assert spread_out.sum() < 0.8 * spread_in.sum()


def _frame(clip: str, t: int) -> np.ndarray:
    """Frame t (H, W, 3) uint8 RGB of a shared clip."""
    return video_frame(SHARED_CLIPS / clip, t)


def _edit_one_frame(
    clip: str, t: int, delta: np.ndarray, *, eyeballs: bool = True
) -> tuple[np.ndarray, ...]:
    """Frame t of a shared clip, found by FaceMesh and edited by the AU change delta (K,) with
    the warp (and its eyeball drawing, unless `eyeballs` is False). Returns the frame and the
    output (H, W, 3), the landmarks (478, 2) and their displacements, face frame (IOD), and
    the face-frame point of every pixel (H * W, 2)."""
    import torch

    from spfem_cli.generator.generator import FaceGenerator
    from spfem_cli.generator.warp import WarpConfig

    gen = FaceGenerator(
        model=ExpressionModel.load(),
        device=torch.device("cpu"),
        warp=WarpConfig(eyeballs=eyeballs),
    )
    frame, face, pts = tracked_frame(SHARED_CLIPS / clip, t)
    out = gen.edit_frame(frame, face=face, points=pts, delta=delta)
    values, _ = gen.sparse(points=pts, delta=delta)
    yy, xx = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
    q = face.to_face(np.stack([xx, yy], axis=-1).reshape(-1, 2).astype(np.float64))
    return frame, out, pts, values, q


def _lid_to_brow(q: np.ndarray, eye: np.ndarray, *, lid_count: int) -> np.ndarray:
    """(P,) bool: the face-frame points q (P, 2) between an eye's upper lid and 0.03 IOD under
    its brow. eye: the eye's ring (lid_count points, `mesh.RIGHT_EYE` order) then the brow's
    lower edge, face frame."""
    from spfem_cli.generator.warp import lid_lines

    lid = lid_lines(eye[:lid_count], q[:, 0])[0]
    brow = eye[lid_count:]
    order = np.argsort(brow[:, 0])
    brow_y = np.interp(q[:, 0], brow[order, 0], brow[order, 1])
    return (q[:, 1] < lid) & (q[:, 1] > brow_y + 0.03)


@needs_clips
@pytest.mark.parametrize(("clip", "t"), [("expr_d14.mp4", 394), ("talk_s32_1280x720.mp4", 60)])
def test_surprise_does_not_smear_the_lid_up_toward_the_brow(clip: str, t: int) -> None:
    """Over each iris, between the upper lid and the brow, the pixels darker than the skin
    there (the lash line, the lid's crease, eyeshadow) cover at most 1.4 times the area they
    cover on the input, about as much as the span from lid to brow stretches in surprise
    (1.35). When the row of landmarks just over the lid rose with the brow, the dark band
    over the lashes was smeared up toward the brow: 1.72 times its area on expr_d14 (a grey
    smear at full size), 1.56 on talk_s32; now 1.32 and 1.40 (the lid's dark margin moves up
    with it as one piece; before, drawn as eyeball, it left a pale crescent on talk_s32, 1.18
    with it gone; the limit is 1.45)."""
    delta = ExpressionModel.load().emotion_vector("surprised").double().numpy()
    frame, out, pts, values, q = _edit_one_frame(clip, t, delta)
    lum_in, lum_out = frame.reshape(-1, 3).mean(axis=1), out.reshape(-1, 3).mean(axis=1)
    brows = (mesh.RIGHT_EYEBROW_LOWER, mesh.LEFT_EYEBROW_LOWER)
    for ring_idx, iris_idx, brow_idx in zip(
        (mesh.RIGHT_EYE, mesh.LEFT_EYE), (mesh.RIGHT_IRIS, mesh.LEFT_IRIS), brows, strict=True
    ):
        over_iris = np.abs(q[:, 0] - pts[iris_idx[0], 0]) < 0.12
        eye = list(ring_idx) + list(brow_idx)
        before = over_iris & _lid_to_brow(q, pts[eye], lid_count=len(ring_idx))
        after = over_iris & _lid_to_brow(q, pts[eye] + values[eye], lid_count=len(ring_idx))
        dark = 0.85 * np.median(lum_in[before])
        dark_in = (lum_in[before] < dark).sum()
        assert dark_in > 20  # the lash line and crease are there to be smeared
        assert (lum_out[after] < dark).sum() / dark_in < 1.45


@needs_clips
@pytest.mark.parametrize(
    ("clip", "drawn"),
    [("smallface_s13_720x1080.mp4", False), ("mead_emotions/disgusted.mp4", True)],
)
def test_eyeballs_are_drawn_only_on_faces_large_enough(clip: str, drawn: bool) -> None:
    """On smallface_s13 (35 pixels between the eyes) the eyeball drawing put white streaks
    over the iris in surprise (looked at, 7 times enlarged), so there the flow's eyes are kept:
    the edit is the warp alone. On a MEAD face (56 pixels) the drawing opens the eyes cleanly."""
    delta = ExpressionModel.load().emotion_vector("surprised").double().numpy()
    _, out, *_ = _edit_one_frame(clip, 45, delta)
    _, flow_only, *_ = _edit_one_frame(clip, 45, delta, eyeballs=False)
    assert np.array_equal(out, flow_only) != drawn


@needs_clips
def test_surprise_uncovers_white_not_streaks_on_a_real_face() -> None:
    """On real frames, the white a raised lid uncovers above the eye's old lid line is about
    as light as the input's own white at the same depths under its lid. Copies read at the
    same distance from the iris's centre carried the iris's rim and the lashes there (median
    0.60-0.72 of the white beside the iris on these frames); a lid's shadow alone takes it to
    0.6 at the very edge. Surprise at full strength (1.5): the lids land where asked, 0.049
    IOD above their line at the iris, and beside the iris they uncover less (at 1.0 a few
    pixels on this face). Measured below the lid's dark margin, which moves up with the lid
    (`test_a_raised_lid_keeps_its_dark_edge`): on these frames it ends 0.012-0.016 IOD below
    the lid's landmarks. There the white is 0.76-0.98 of the white beside the iris, where the
    input's own at the same depths is 0.73-0.89 (within 0.13 of it; shaded by the median of
    the columns of white, it was 0.82-1.01, up to 0.18 lighter than the input's own)."""
    from spfem_cli.generator.warp import iris_radius, lid_lines

    delta = ExpressionModel.load().emotion_vector("surprised", intensity=1.5).double().numpy()
    for t in (100, 200):
        frame, out, pts, values, q = _edit_one_frame("speech_obama_450x450.mp4", t, delta)
        for ring_idx, iris_idx in (
            (mesh.RIGHT_EYE, mesh.RIGHT_IRIS),
            (mesh.LEFT_EYE, mesh.LEFT_IRIS),
        ):
            ring, iris = pts[list(ring_idx)], pts[list(iris_idx)]
            radius = iris_radius(iris)
            upper, lower, within = lid_lines(ring, q[:, 0])
            raised = lid_lines(ring + values[list(ring_idx)], q[:, 0])[0]
            r = np.linalg.norm(q - iris[0], axis=1)
            white = within & (np.abs(q[:, 0] - iris[0, 0]) < 2.5 * radius) & (r > 1.3 * radius)
            uncovered = white & (q[:, 1] < upper - 0.005) & (q[:, 1] > raised + 0.015)
            shown = white & (q[:, 1] > upper + 0.02) & (q[:, 1] < lower - 0.02)
            assert uncovered.sum() >= 10 and shown.sum() > 15
            # The input's own white as deep under its lid as the uncovered white is under
            # the raised one.
            rise = upper - raised
            own = white & (q[:, 1] > upper + 0.015) & (q[:, 1] < upper + rise - 0.005)
            assert own.sum() >= 8
            lum_in, lum_out = frame.reshape(-1, 3).mean(axis=1), out.reshape(-1, 3).mean(axis=1)
            beside = np.median(lum_in[shown])
            ratio = np.median(lum_out[uncovered]) / beside
            assert ratio > 0.74, (t, ratio)
            assert abs(ratio - np.median(lum_in[own]) / beside) < 0.15, (t, ratio)


@needs_clips
@pytest.mark.parametrize(
    ("clip", "t"),
    [("expr_d14.mp4", 40), ("speech_obama_450x450.mp4", 100), ("talk_s20_480x908.mp4", 60)],
)
def test_a_raised_lid_keeps_its_dark_edge(clip: str, t: int) -> None:
    """Fear raises the upper lids; the band along each lid's edge (0.02 IOD above its line to
    0.005 below) over and beside the iris, where the lid rose more than 0.02, stays about as
    dark as the input's: at most 1.45 times as light (1.00-1.36 now). Below the lashes'
    darkest line the lid's dark margin was drawn as eyeball and lost: a thin grey line over a
    tall pale crescent, 1.61-2.13 times as light on these frames (the worse eye)."""
    from spfem_cli.generator.warp import iris_radius, lid_lines

    delta = ExpressionModel.load().emotion_vector("fear").double().numpy()
    frame, out, pts, values, q = _edit_one_frame(clip, t, delta)
    lum_in, lum_out = frame.reshape(-1, 3).mean(axis=1), out.reshape(-1, 3).mean(axis=1)
    for ring_idx, iris_idx in ((mesh.RIGHT_EYE, mesh.RIGHT_IRIS), (mesh.LEFT_EYE, mesh.LEFT_IRIS)):
        ring, iris = pts[list(ring_idx)], pts[list(iris_idx)]
        upper, _, within = lid_lines(ring, q[:, 0])
        raised = lid_lines(ring + values[list(ring_idx)], q[:, 0])[0]
        near = within & (np.abs(q[:, 0] - iris[0, 0]) < 2 * iris_radius(iris))
        near &= upper - raised > 0.02
        edge_out = near & (q[:, 1] - raised > -0.02) & (q[:, 1] - raised < 0.005)
        edge_in = near & (q[:, 1] - upper > -0.02) & (q[:, 1] - upper < 0.005)
        assert edge_out.sum() > 20
        assert np.mean(lum_out[edge_out]) / np.mean(lum_in[edge_in]) < 1.45


def _fall_down_column(
    image: np.ndarray, face: FaceFrame, *, x: float, top: float, bottom: float
) -> float:
    """How far the image (H, W, 3) grows darker again going down the face-frame column x
    from y = top to bottom (IOD), in half-pixel steps: the largest fall below the brightest
    above, as a share of that brightest (0 where it only brightens)."""
    from scipy.ndimage import map_coordinates

    ys = np.arange(top, bottom, 0.5 / face.iod)
    if len(ys) < 3:
        return 0.0
    px = face.to_image(np.stack([np.full_like(ys, x), ys], axis=1))
    lum = image.astype(np.float64).mean(axis=-1)
    values = map_coordinates(lum, [px[:, 1], px[:, 0]], order=1)
    peak = np.maximum.accumulate(values)
    return float(((peak - values) / np.maximum(peak, 1.0)).max())


@needs_clips
@pytest.mark.parametrize(
    ("clip", "t", "emotion"),
    [
        ("talk_s32_1280x720.mp4", 150, "surprised"),
        ("talk_s32_1280x720.mp4", 60, "surprised"),
        ("talk_s20_480x908.mp4", 60, "surprised"),
        ("talk_s32_1280x720.mp4", 150, "fear"),
        ("expr_d14.mp4", 40, "surprised"),
    ],
)
def test_the_white_under_a_raised_lid_is_shaded_as_the_source_shades_its_own(
    clip: str, t: int, emotion: str
) -> None:
    """Down the white beside the iris (columns 1.3, 1.5 and 1.7 radii either side of it, where
    the lid rose more than 0.015 IOD), from the raised lid to the iris's middle, the output
    grows darker again by at most a fifth: 0.01-0.11 now, 0.00-0.03 on the input from its own
    lid. The uncovered white was painted with a fixed shadow under the lid and the source's
    shadow stayed below it, in place: a pale crescent over a darker band, falls of 0.33-0.51
    on these frames (the worst side). A side of an eye in shadow was also painted with the lit
    side's white (talk_s32 frame 150: 124-130 levels beside a 40-60 shadow). Toward the
    outer corner of expr_d14's left eye (frame 40) the white dims and the shadow under the lid
    reaches deeper; shaded by the median of the columns of white and painted with the lit
    middle's white, a pale arc sat over a dark line there (a fall of 0.47 at 1.7 radii). Now
    each column's own shadow and white are read (`warp.LidShade`, `warp.WhiteCeiling`): 0.00."""
    from spfem_cli.generator.warp import iris_radius, lid_lines

    delta = ExpressionModel.load().emotion_vector(emotion).double().numpy()
    _, out, pts, values, _ = _edit_one_frame(clip, t, delta)
    _, face, _ = tracked_frame(SHARED_CLIPS / clip, t)
    measured = 0
    for ring_idx, iris_idx in ((mesh.RIGHT_EYE, mesh.RIGHT_IRIS), (mesh.LEFT_EYE, mesh.LEFT_IRIS)):
        ring, iris = pts[list(ring_idx)], pts[list(iris_idx)]
        radius = iris_radius(iris)
        for k in (-1.7, -1.5, -1.3, 1.3, 1.5, 1.7):
            x = np.array([iris[0, 0] + k * radius])
            upper, lower, within = lid_lines(ring, x)
            raised = lid_lines(ring + values[list(ring_idx)], x)[0]
            if not within[0] or upper[0] - raised[0] < 0.015:
                continue
            bottom = min(float(iris[0, 1]), float(lower[0]) - 0.02)
            fall = _fall_down_column(out, face, x=x[0], top=raised[0], bottom=bottom)
            assert fall < 0.2, (k, fall)
            measured += 1
    assert measured >= 4


@needs_clips
@pytest.mark.parametrize("t", [30, 45, 60])
def test_the_uncovered_top_of_an_iris_looking_aside_is_no_wider_than_the_iris(t: int) -> None:
    """expr_d0 looks aside, and FaceMesh's iris circle is wider than the iris on one side.
    Edited to surprise, on each row of the iris's uncovered top (from 0.015 IOD under the
    raised lid to the old lid line) the iris-dark pixels span at most 1.5 pixels more than
    the chord of a circle as wide as the input's iris across its middle: the worse eye of
    each frame -3.7, 0.0 and -0.8 now. The copies of the iris read the white beside it on
    that side, were darkened to the iris's colour, and drew a dark tab out over the white:
    1.3, 5.0 and 2.5 on these frames. (On frame 15 lashes at the eye's corner cross these
    rows, +4.0 now and +6.0 before.)"""
    from spfem_cli.generator.warp import iris_radius, lid_lines

    clip = "expr_d0.mp4"
    delta = ExpressionModel.load().emotion_vector("surprised").double().numpy()
    frame, out, pts, values, _ = _edit_one_frame(clip, t, delta)
    _, face, _ = tracked_frame(SHARED_CLIPS / clip, t)
    lum_in, lum_out = frame.mean(axis=-1), out.astype(np.float64).mean(axis=-1)
    checked = 0
    for ring_idx, iris_idx in ((mesh.RIGHT_EYE, mesh.RIGHT_IRIS), (mesh.LEFT_EYE, mesh.LEFT_IRIS)):
        ring, iris = pts[list(ring_idx)], pts[list(iris_idx)]
        cx, cy = face.to_image(iris[:1])[0]
        radius = iris_radius(iris) * face.iod
        x0, x1, row = int(cx - 1.4 * radius), int(cx + 1.4 * radius) + 1, int(round(cy))
        middle = lum_in[row - 1 : row + 2, int(cx - 0.4 * radius) : int(cx + 0.4 * radius) + 1]
        beside = np.concatenate(
            [lum_in[row, x0 : int(cx - 1.2 * radius)], lum_in[row, int(cx + 1.2 * radius) : x1]]
        )
        dark = 0.5 * (np.median(middle) + np.median(beside))
        middle_rows = range(int(cy - 0.3 * radius), int(cy + 0.3 * radius) + 1)
        half_width = max((lum_in[y, x0:x1] < dark).sum() for y in middle_rows) / 2
        upper = lid_lines(ring, iris[:1, 0])[0][0]
        raised = lid_lines(ring + values[list(ring_idx)], iris[:1, 0])[0][0]
        top = face.to_image(np.array([[iris[0, 0], raised + 0.015]]))[0, 1]
        bottom = face.to_image(np.array([[iris[0, 0], upper + 0.005]]))[0, 1]
        rows = range(int(np.ceil(top)), int(bottom) + 1)
        checked += len(rows)
        for y in rows:
            chord = 2 * np.sqrt(max(half_width**2 - (y - cy) ** 2, 0.0))
            assert (lum_out[y, x0:x1] < dark).sum() <= chord + 1.5, (y, chord)
    assert checked >= 3


# A calm photo's path through an edit is played by default in a batch
# (`tests/test_batch.py::test_a_calm_face_is_used_as_spfem_edit_uses_it`) and a calm face's
# effect on the brows by `test_a_calm_moment_of_the_video_itself_is_named_as_its_rest`; this
# measure on a 2.5 s cut, two edits (15 s on two cores), is left to `-m slow`.
@needs_clips
@pytest.mark.slow
def test_a_calm_face_given_takes_off_an_expression_held_all_through(
    tmp_path: Path, expression: ExpressionModel
) -> None:
    """expr_d10's first 2.5 s hold raised brows from the first frame to the last, so they are
    that clip's rest and "neutral" leaves them. Given a calm frame of the same person from
    later in the video (frame 140, looked at), it lowers them: the brow raisers read on the
    output fall by 0.49 activation units (0.04 without it; measured on this clip)."""
    import imageio.v3 as iio

    from .conftest import run_ffmpeg_checked

    src = SHARED_CLIPS / "expr_d10.mp4"
    clip = tmp_path / "held.mp4"
    run_ffmpeg_checked(
        "-i", str(src), "-t", "2.5", "-an", "-c:v", "libx264", "-crf", "12", str(clip)
    )
    rest = tmp_path / "calm.png"
    iio.imwrite(rest, _frame("expr_d10.mp4", 140))
    lm_in = video_landmarks(clip)
    median = np.nanmedian(face_frame_landmarks(lm_in), axis=0)
    names = ("AU1", "AU2")
    before = landmark_activations(lm_in, median=median, model=expression, names=names)
    lowered = {}
    for given in (None, rest):
        out = tmp_path / f"neutral_{given is not None}.mp4"
        edit_video(
            input_path=clip,
            output_path=out,
            emotion="neutral",
            device="cpu",
            rest=given,
            keep_speech=False,
        )
        after = landmark_activations(
            video_landmarks(out), median=median, model=expression, names=names
        )
        lowered[given is not None] = float((after.mean(axis=0) - before.mean(axis=0)).sum())
    assert lowered[False] > -0.1
    assert lowered[True] < -0.3


def test_a_calm_moment_of_the_video_itself_is_named_as_its_rest(
    held_then_calm: Path, held_then_calm_neutral: HeldNeutral, expression: ExpressionModel
) -> None:
    """`--rest 1.5-1.7`: the clip's last 0.2 s show her calm face, too short to count among
    her calmest moments, so without it "neutral" leaves the brows she raised in the 1.5 s
    before; named, the brow raisers read on those seconds of the output fall by 0.37
    activation units (0.05 without it; measured), and the calm seconds stay as they were."""
    from .conftest import HELD_S

    lm_in = video_landmarks(held_then_calm)
    median = np.nanmedian(face_frame_landmarks(lm_in), axis=0)
    names = ("AU1", "AU2")
    before = landmark_activations(lm_in, median=median, model=expression, names=names)
    held = slice(0, round(HELD_S * float(probe(held_then_calm).fps)))
    calm = slice(held.stop, None)
    change = {}
    for rest in (None, "1.5-1.7"):
        after = landmark_activations(
            video_landmarks(held_then_calm_neutral(rest)),
            median=median,
            model=expression,
            names=names,
        )
        change[rest] = (after - before).sum(axis=1)
    assert change[None][held].mean() > -0.15
    assert change["1.5-1.7"][held].mean() < -0.25
    assert abs(change["1.5-1.7"][calm].mean()) < 0.1


@needs_clips
def test_calm_seconds_tell_where_wide_eyes_usually_stand(
    tmp_path: Path, expression: ExpressionModel
) -> None:
    """expr_d10 opens her eyes wide through much of the clip (looked at), so her lids' median
    place, against which wide eyes are read, is wide, and "neutral" took off only the widest
    moments. Her seconds 4.5-6.5 are calm (looked at): named as her rest, the median of 30
    frames, their lids are her usual ones, and the lid raise read on her widest fifth of
    frames grows from 0.49 to 1.11 (measured), none on the calm seconds. One
    calm frame of them (150) cannot tell: its lids may be mid-blink or following a glance,
    and the lid raise reads as without it."""
    import imageio.v3 as iio

    from spfem_cli.generator.expression import lid_heights
    from spfem_cli.pipeline import (
        REST_LID_FACES,
        analyse_video,
        estimate_expression,
        read_rest_face,
    )
    from spfem_cli.progress import SilentReporter

    clip, span = SHARED_CLIPS / "expr_d10.mp4", "4.5-6.5"
    info = probe(clip)
    track = analyse_video(info, model=expression, workdir=tmp_path, reporter=SilentReporter()).track
    photo = tmp_path / "calm150.png"
    iio.imwrite(photo, _frame("expr_d10.mp4", 150))
    calm = {rest: read_rest_face(rest, video=clip) for rest in (span, photo)}
    assert calm[span].faces >= REST_LID_FACES and calm[photo].faces == 1
    au5 = expression.au_names.index("AU5")
    read = {
        rest: estimate_expression(
            track,
            model=expression,
            sigma_frames=EXPRESSION_SMOOTHING_S * float(info.fps),
            rest_face=None if rest is None else calm[rest],
        )[:, au5]
        for rest in (None, span, photo)
    }
    lids = lid_heights(np.asarray(track.frontal))[:, 0]  # white above the iris, IOD
    widest = lids > np.nanpercentile(lids, 80)
    still = slice(round(4.5 * float(info.fps)), round(6.5 * float(info.fps)))
    assert read[None][widest].mean() < 0.6
    assert read[span][widest].mean() > 1.0
    assert read[span][still].max() < 0.05
    np.testing.assert_array_equal(read[photo], read[None])


@needs_clips
@pytest.mark.slow
def test_named_calm_seconds_lower_wide_eyes_on_the_output(tmp_path: Path) -> None:
    """End to end (two edits of the whole of expr_d10 and FaceMesh on both, about a minute):
    "neutral" with `--rest 4.5-6.5` leaves less white above the iris on her widest fifth of
    frames than without (0.0164 against 0.0267 IOD, the input 0.0332; measured with
    `scripts/measure_rest.py`), and her calm seconds as they were."""
    from spfem_cli.generator.expression import lid_heights

    clip = SHARED_CLIPS / "expr_d10.mp4"

    def upper_lids(path: Path) -> np.ndarray:
        return lid_heights(face_frame_landmarks(video_landmarks(path)))[:, 0]

    lids_in = upper_lids(clip)
    widest = lids_in > np.nanpercentile(lids_in, 80)
    fps = float(probe(clip).fps)
    still = slice(round(4.5 * fps), round(6.5 * fps))
    lids = {}
    for rest in (None, "4.5-6.5"):
        out = tmp_path / f"neutral_{rest}.mp4"
        edit_video(
            input_path=clip,
            output_path=out,
            emotion="neutral",
            device="cpu",
            rest=rest,
            keep_speech=False,
        )
        lids[rest] = upper_lids(out)
    assert np.nanmean(lids["4.5-6.5"][widest]) < np.nanmean(lids[None][widest]) - 0.006
    assert abs(np.nanmean(lids["4.5-6.5"][still]) - np.nanmean(lids_in[still])) < 0.003


@needs_clips
def test_a_calm_frame_of_a_calm_speaker_changes_little(tmp_path: Path) -> None:
    """A calm face given to a speaker who holds no expression finds next to nothing to take
    off: read in the clip's pose, one calm frame is close to the clip's calmest moments, within
    the noise floor. speech_obama with its own frames 10 and 120 as the calm face: the mean
    present expression does not change (`scripts/measure_rest.py`; the lid tightener moved by
    0.08 to 0.13 with frame 10 while a photo's lids were read by the fit of all the
    landmarks, before a photo's lids were left out: see
    `test_calm_seconds_tell_where_wide_eyes_usually_stand`)."""
    import tempfile

    import imageio.v3 as iio

    from spfem_cli.pipeline import analyse_video, read_rest_face
    from spfem_cli.progress import SilentReporter

    model = ExpressionModel.load()
    info = probe(SHARED_CLIPS / "speech_obama_450x450.mp4")

    def present(rest_face: RestFace | None) -> np.ndarray:
        with tempfile.TemporaryDirectory() as work:
            analysis = analyse_video(
                info,
                model=model,
                workdir=Path(work),
                reporter=SilentReporter(),
                rest_face=rest_face,
            )
            return analysis.current.mean(axis=0)

    alone = present(None)
    for t in (10, 120):
        iio.imwrite(tmp_path / f"calm{t}.png", _frame("speech_obama_450x450.mp4", t))
        change = present(read_rest_face(tmp_path / f"calm{t}.png")) - alone
        assert np.abs(change).max() < 0.05, (t, change)


@needs_clips
def test_a_mouth_that_does_not_speak_is_told_from_one_that_does() -> None:
    """talk_s20's mouth barely moves (its opening's spread over the clip is 0.015 of the eye
    distance), Obama's speaks (0.06 or more): `spfem edit` plays natural mode on the first as
    expressive mode (`played_mouth`)."""
    from spfem_cli.pipeline import mouth_is_still

    assert mouth_is_still(input_landmarks(SHARED_CLIPS / "talk_s20_480x908.mp4"))
    assert not mouth_is_still(input_landmarks(SHARED_CLIPS / "speech_obama_450x450.mp4"))


@needs_clips
def test_a_photo_smiles_as_far_as_a_real_smile(tmp_path: Path) -> None:
    """A photo has no speech, so natural mode (the default) moves its lip corners as
    expressive mode does: talk_s20's frame at 2 s, cut as a PNG, smiles with its corners
    0.064 of the eye distance higher, found again by FaceMesh (a real acted smile lifts them
    0.07-0.12). So does a video whose mouth never moves (a two-frame clip of the same frame):
    edited as a speaker's, natural mode's lips held near the speech, its corners rose 0.012
    (`python scripts/measure_photos.py`: 0.008-0.031 as a video's frame, 0.059-0.088 as a
    photo, on five real faces)."""
    from .conftest import run_ffmpeg_checked

    photo, pair = tmp_path / "s20.png", tmp_path / "s20.mp4"
    run_ffmpeg_checked(
        "-ss", "2", "-i", str(SHARED_CLIPS / "talk_s20_480x908.mp4"), "-frames:v", "1",
        str(photo),
    )  # fmt: skip
    run_ffmpeg_checked(
        "-loop", "1", "-i", str(photo), "-frames:v", "2", "-r", "25", "-c:v", "libx264",
        "-crf", "0", "-pix_fmt", "yuv444p", str(pair),
    )  # fmt: skip
    smiled = edit_video(
        input_path=photo, output_path=tmp_path / "smile.png", emotion="happy", device="cpu"
    )
    assert "a photo has no speech" in " ".join(smiled.notes) and not smiled.hints
    silent = edit_video(
        input_path=pair, output_path=tmp_path / "silent.mp4", emotion="happy", device="cpu"
    )
    assert "the mouth does not move in this video" in " ".join(silent.notes), silent.notes
    assert not silent.hints and "speech check" not in silent.seconds
    before = corner_lift(video_landmarks(photo))[0]
    as_photo = corner_lift(video_landmarks(smiled.output))[0] - before
    as_video = corner_lift(video_landmarks(silent.output))[0] - before
    assert as_photo > 0.05 and as_video > 0.05, (as_photo, as_video)
