"""The landmark tracker: small faces found and followed, and MediaPipe's start-up chatter
silenced without losing the process's own stderr."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spfem_cli import demo
from spfem_cli.errors import SpfemError
from spfem_cli.face import mesh
from spfem_cli.face.track import mend_segments, run_segments
from spfem_cli.face.tracker import (
    FacePick,
    LandmarkTracker,
    _choose_face,
    _native_stderr_silenced,
)
from spfem_cli.media import FrameReader, FrameWriter, probe

from .conftest import run_ffmpeg_checked, video_frame


def _stderr_identity() -> tuple[int, int]:
    info = os.fstat(2)
    return info.st_dev, info.st_ino


def test_silenced_sections_in_two_threads_leave_stderr_where_it_was() -> None:
    """Thread A silences stderr and waits for B to silence it too; then A leaves first. Two
    sections that overlap this way each restored what they found on entry, so B restored A's
    /dev/null. Sections now take turns (B enters after A's wait times out), and fd 2 ends up
    as it started."""
    before = _stderr_identity()
    a_inside, b_inside, a_left = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with _native_stderr_silenced():
            a_inside.set()
            b_inside.wait(timeout=0.5)
        a_left.set()

    def second() -> None:
        a_inside.wait()
        with _native_stderr_silenced():
            b_inside.set()
            a_left.wait(timeout=0.5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _stderr_identity() == before


def test_edit_still_reports_after_tracking_in_two_threads(tmp_path: Path) -> None:
    """A clip long enough to be tracked as two halves at once (`tracking_segments`): the
    command still prints its progress and the 'wrote' line on stderr. They went nowhere when
    the two trackers' silenced start-ups overlapped."""
    clip = tmp_path / "portrait.mp4"
    with FrameWriter(clip, width=192, height=192, fps=Fraction(25)) as writer:
        for frame in demo.portrait_frames(n_frames=130, size=192):
            writer.write(frame)
    out = tmp_path / "portrait.happy.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "spfem_cli", "edit", str(clip), "-e", "happy", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file()
    assert f"wrote {out}" in done.stderr.replace("\n", "")
    # The drawn portrait's mouth never moves: natural mode plays it as expressive, and says so.
    said = " ".join(done.stderr.split())
    assert "note: the mouth does not move in this video" in said, said


_PAUSED_TRACKER = """
import time
from spfem_cli import demo
from spfem_cli.face.tracker import LandmarkTracker
frames = list(demo.portrait_frames(n_frames=5, size=192))
with LandmarkTracker() as tracker:
    time.sleep(0.5)
    found = sum(tracker.detect(frame) is not None for frame in frames)
print(found)
"""


def test_tracker_start_up_prints_nothing_even_when_the_first_frame_is_late() -> None:
    """The second tracking thread seeks to the middle of the video before its first frame.
    MediaPipe's graph threads log their start-up after the constructor returns, so with the
    graph made at construction that pause let two warnings per graph through (W0000 ...
    'Feedback manager requires a model with a single signature inference')."""
    done = subprocess.run(
        [sys.executable, "-c", _PAUSED_TRACKER], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"
    assert done.stderr == ""


_LATE_FACE = """
import numpy as np
from spfem_cli import demo
from spfem_cli.face.tracker import LandmarkTracker
face = np.ascontiguousarray(demo.portrait_frames(n_frames=1, size=192)[0][:, 16:176])
blank = np.full_like(face, 90)
frames = [blank] * 20 + [face] * 5
with LandmarkTracker() as tracker:
    found = [tracker.detect(frame) is not None for frame in frames]
print(sum(found[:20]), sum(found[20:]))
"""


def test_a_face_that_first_appears_late_prints_nothing() -> None:
    """FaceMesh starts its landmark graph at the first face it finds, and on a frame that is
    not square that logs a warning (W0000 ... 'Using NORM_RECT without IMAGE_DIMENSIONS is
    only supported for the square ROI'). A video that opens without a face (a title, a
    cut-away) let it through: only the graph's first frames were silenced."""
    done = subprocess.run(
        [sys.executable, "-c", _LATE_FACE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "5"]
    assert done.stderr == ""


def _small_face_frame() -> tuple[np.ndarray, np.ndarray, float]:
    """The demo portrait shrunk to a face about 90 pixels wide in a 720x1080 frame, as in a
    full-body shot (smallface_s13 in ../shared/clips); returns the frame, the portrait, and
    the shrink factor."""
    portrait = demo.portrait_frames(n_frames=1, size=384)[0]
    small = np.asarray(Image.fromarray(portrait).resize((192, 192), Image.Resampling.LANCZOS))
    frame = np.full((1080, 720, 3), 200, dtype=np.uint8)
    frame[300:492, 400:592] = small
    return frame, portrait, 192 / 384


def test_a_face_too_small_for_facemesh_is_found_and_read_in_a_crop() -> None:
    from mediapipe.python.solutions import face_mesh

    frame, portrait, shrink = _small_face_frame()
    with face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as plain:
        assert plain.process(frame).multi_face_landmarks is None  # FaceMesh alone misses it
    with LandmarkTracker(video_mode=False) as tracker:
        big = tracker.detect(portrait)
        found = tracker.detect(frame)
    assert big is not None and found is not None
    expected = big.landmarks * shrink + [400, 300]
    iod = np.linalg.norm(np.subtract(*mesh.eye_centres(expected[None]))[0])
    error = np.linalg.norm(found.landmarks - expected, axis=1)
    assert np.median(error) < 0.03 * iod  # measured 0.0075
    assert found.depth.shape == (mesh.N_LANDMARKS,)


def test_a_small_face_is_followed_through_a_video() -> None:
    frame, _, _ = _small_face_frame()
    with LandmarkTracker() as tracker:
        found = []
        for shift in range(0, -40, -4):  # the face drifts left by 4 px a frame
            found.append(tracker.detect(np.roll(frame, shift, axis=1)))
    assert all(d is not None for d in found)
    centres = np.array([d.landmarks.mean(axis=0)[0] for d in found if d is not None])
    np.testing.assert_allclose(np.diff(centres), -4.0, atol=1.5)


def test_only_small_faces_are_read_in_a_crop() -> None:
    """A large face FaceMesh misses is turned away or covered: better left unedited than read
    in a crop. The crop path takes only faces under SMALL_FACE_MAX of the frame."""
    frame, portrait, _ = _small_face_frame()
    with LandmarkTracker(video_mode=False) as tracker:
        assert tracker._find_small_face(frame) is not None
        assert tracker._find_small_face(portrait) is None


def test_a_rest_face_is_read_from_a_photo_or_a_clip(tmp_path: Path) -> None:
    """`--rest` takes a photo or a clip: both give the face's 3D shape, and seen in one pose
    (`frontal_face_frame`) the clip's median face is the photo's (the clip is the same portrait
    pushed in and swayed)."""
    from spfem_cli.face.pose import frontal_face_frame
    from spfem_cli.pipeline import read_rest_face, rest_note

    frames = demo.portrait_frames(n_frames=40, size=192)
    photo = tmp_path / "calm.png"
    Image.fromarray(frames[0]).save(photo)
    clip = tmp_path / "calm.mp4"
    with FrameWriter(clip, width=192, height=192, fps=Fraction(25)) as writer:
        for frame in frames:
            writer.write(frame)
    from_photo, from_clip = read_rest_face(photo), read_rest_face(clip)
    assert from_photo.shape.shape == from_clip.shape.shape == (mesh.N_LANDMARKS, 3)
    # The clip's face is the median of the frames read (REST_SAMPLES, 40 frames at a stride
    # of 2), the photo's is one face.
    assert (from_photo.faces, from_clip.faces) == (1, 20)
    a = frontal_face_frame(from_photo.shape, from_photo.shape)
    b = frontal_face_frame(from_clip.shape, from_photo.shape)
    # 0.014 IOD at most; another person's face (talk_s18) differs by up to 0.17.
    assert np.abs(a - b).max() < 0.03
    # A time range of the video itself ("--rest 0.2-0.6", the edited video's own seconds).
    from_span = read_rest_face("0.2-0.6", video=clip)
    assert from_span.faces == 10
    # Fewer than REST_LID_FACES: the user is told that the lids' usual place is the video's.
    assert rest_note(from_clip) is None
    assert "read from one frame" in str(rest_note(from_photo))
    assert "read from 10 frames" in str(rest_note(from_span))
    assert np.abs(frontal_face_frame(from_span.shape, from_photo.shape) - a).max() < 0.03


def test_a_rest_time_range_is_read_from_those_frames_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--rest 1-1.5` reads frames 25 to 37 of a 25 fps video (its seconds 1 to 1.5), and
    only those; a range past the end, or backwards, is refused in one line; a file of that
    name is read as a file."""
    from spfem_cli import pipeline
    from spfem_cli.face.rest import RestFace
    from spfem_cli.pipeline import read_rest_face, rest_span

    clip = tmp_path / "talk.mp4"
    frames = demo.portrait_frames(n_frames=50, size=192)
    with FrameWriter(clip, width=192, height=192, fps=Fraction(25)) as writer:
        for t, frame in enumerate(frames):
            marked = frame.copy()
            for bit in range(6):  # the frame's number in black and white squares
                marked[:16, 16 * bit : 16 * bit + 16] = 255 * ((t >> bit) & 1)
            writer.write(marked)
    seen: list[int] = []

    def spy(frames: Iterable[np.ndarray], *, pick: FacePick) -> RestFace | None:
        for frame in frames:
            bits = [frame[4:12, 16 * b + 4 : 16 * b + 12].mean() > 128 for b in range(6)]
            seen.append(sum(int(on) << b for b, on in enumerate(bits)))
        return RestFace(shape=np.zeros((mesh.N_LANDMARKS, 3)), faces=len(seen))

    monkeypatch.setattr(pipeline, "median_rest_face", spy)
    read_rest_face("1-1.5", video=clip)
    assert seen == list(range(25, 38))
    assert rest_span("0-2.5") == (0.0, 2.5) and rest_span(" 1.5 - 3 ") == (1.5, 3.0)
    assert rest_span("calm.png") is None and rest_span("2") is None
    with pytest.raises(SpfemError, match="ends before it starts"):
        rest_span("3-2")
    with pytest.raises(SpfemError, match=r"past the end of .*talk.mp4 \(2.0 s long\)"):
        read_rest_face("5-6", video=clip)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "0-1").write_bytes(b"")
    assert rest_span("0-1") is None


@pytest.mark.parametrize("degrees", [-20.0, -6.0, 0.0, 3.0, 15.0])
def test_the_head_turn_is_read_off_the_depth_across_the_face(degrees: float) -> None:
    """A frontal face turned about the vertical axis reads as turned that far: positive when
    its right side comes nearer the camera (MediaPipe's depth grows away from it); the edit
    plays contempt's sneer on the nearer side beyond FRONTAL_TURN_DEG, else on the right."""
    from spfem_cli.face.pose import head_turn
    from spfem_cli.generator.expression import ExpressionModel
    from spfem_cli.pipeline import FRONTAL_TURN_DEG, near_side

    flat = ExpressionModel.load().template.double().numpy() * 100.0
    angle = np.radians(degrees)
    turned = np.stack([flat[:, 0] * np.cos(angle), flat[:, 1], flat[:, 0] * np.sin(angle)], axis=-1)
    assert head_turn(turned) == pytest.approx(degrees, abs=0.5)
    assert head_turn(np.stack([turned, turned])).shape == (2,)
    expected = "left" if degrees < -FRONTAL_TURN_DEG else "right"
    assert near_side(float(head_turn(turned))) == expected


class _Face:
    """A MediaPipe face result's shape: `landmark` with x, y, z, normalised."""

    def __init__(self, cx: float, cy: float, half: float) -> None:
        rng = np.random.default_rng(0)
        pts = rng.uniform(-half, half, size=(mesh.N_LANDMARKS, 3))
        pts[:, :2] += [cx, cy]
        pts[:2, :2] = [[cx - half, cy - half], [cx + half, cy + half]]  # the box's corners
        self.landmark = [type("P", (), {"x": x, "y": y, "z": z})() for x, y, z in pts]


def test_the_face_chosen_is_the_one_followed_else_the_largest() -> None:
    scale = np.array([100.0, 100.0, 100.0])
    small, large = _Face(0.25, 0.5, 0.10), _Face(0.75, 0.5, 0.11)
    centre_x = float(_choose_face([small, large], scale=scale)[:, 0].mean())
    assert centre_x == pytest.approx(75, abs=2)  # nothing followed: the largest
    followed = _choose_face([small, large], scale=scale, follow=(np.array([26.0, 49.0]), 20.0))
    assert float(followed[:, 0].mean()) == pytest.approx(25, abs=2)
    # The followed face gone (nothing within half its width): the largest again.
    gone = _choose_face([small, large], scale=scale, follow=(np.array([50.0, 10.0]), 20.0))
    assert float(gone[:, 0].mean()) == pytest.approx(75, abs=2)


def test_the_face_taken_up_is_the_one_asked_for() -> None:
    """`--face`: the largest, the one furthest left or right, or the one nearest a point of
    the frame (fractions of its width and height); a face followed stays followed."""
    scale = np.array([200.0, 100.0, 200.0])
    left, middle, right = _Face(0.2, 0.5, 0.05), _Face(0.5, 0.3, 0.15), _Face(0.8, 0.6, 0.08)
    faces = [middle, right, left]

    def taken(text: str, follow: tuple[np.ndarray, float] | None = None) -> float:
        pts = _choose_face(faces, scale=scale, pick=FacePick.parse(text), follow=follow)
        return round(float(pts[:, 0].mean()) / 200, 1)

    assert [taken(t) for t in ("largest", "Left", " right ", "0.75,0.55", "0.5,0.25")] == [
        0.5, 0.2, 0.8, 0.8, 0.5
    ]  # fmt: skip
    assert taken("left", follow=(np.array([160.0, 60.0]), 16.0)) == 0.8
    assert FacePick.parse("0.75,0.4").described == "the one nearest 0.75,0.4 of the frame"
    assert FacePick.parse("left").described == "the one furthest left"
    for bad in ("middle", "1.5,0", "0.2", "a,b", "0.1,0.2,0.3", "-0.1,0.5", ""):
        with pytest.raises(SpfemError, match="--face must be largest, left, right or X,Y"):
            FacePick.parse(bad)


def test_one_of_two_people_of_about_the_same_size_is_followed(clips_dir: Path) -> None:
    """Obama beside talk_s18's speaker, cropped so that their faces are about the same size:
    the largest face on each frame was Obama's on some and hers on others (7 jumps in 100
    frames), and the edit would have jumped with it. The face chosen first is followed."""
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "two.mp4"
        run_ffmpeg_checked(
            "-i", str(clips_dir / "speech_obama_450x450.mp4"),
            "-i", str(clips_dir / "talk_s18_1280x720.mp4"),
            "-filter_complex",
            "[0:v]trim=0:4,setpts=PTS-STARTPTS,scale=360:360,fps=25[a];"
            "[1:v]trim=0:4,setpts=PTS-STARTPTS,crop=530:530:375:10,scale=360:360,fps=25[b];"
            "[a][b]hstack[v]",
            "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast", str(clip),
        )  # fmt: skip
        xs = []
        with FrameReader(probe(clip)) as frames, LandmarkTracker() as tracker:
            for frame in frames:
                found = tracker.detect(frame)
                assert found is not None and found.n_faces == 2
                xs.append(float(found.landmarks[:, 0].mean()))
    assert np.abs(np.diff(xs)).max() < 20  # one face all through (they are 450 pixels apart)


def _face_at(x: float, width: float = 40.0) -> np.ndarray:
    """Landmarks (478, 2) of a face centred on (x, 100), `width` pixels wide."""
    pts = np.zeros((mesh.N_LANDMARKS, 2), np.float32)
    pts[:, 0] = np.linspace(x - width / 2, x + width / 2, mesh.N_LANDMARKS)
    pts[:, 1] = 100.0
    return pts


def test_a_segment_that_took_up_another_face_is_tracked_again() -> None:
    """Three segments of 10 frames: the second's tracker took up the face at x = 300 where
    the first ended on the one at x = 100, and is tracked again following that one; the
    third then starts where the mended second ends. No segment is tracked again across a cut,
    beside a frame without a face, or where the face moved within a tracker's reach."""
    lm = np.stack([_face_at(100.0)] * 10 + [_face_at(300.0)] * 20)
    calls: list[tuple[int, int, float]] = []

    def again(k: int, first: int, follow: np.ndarray) -> None:
        calls.append((k, first, float(follow[:, 0].mean())))
        lm[first : first + 10] = _face_at(float(follow[:, 0].mean()) + 5)

    no_cuts = np.zeros(30, bool)
    assert mend_segments([0, 10, 20], landmarks=lm, cuts=no_cuts, count=30, again=again) == [1, 2]
    assert calls == [(1, 10, pytest.approx(100)), (2, 20, pytest.approx(105))]
    assert np.allclose(lm[25, :, 0].mean(), 110)

    def never(k: int, first: int, follow: np.ndarray) -> None:
        raise AssertionError(k)

    lm = np.stack([_face_at(100.0)] * 10 + [_face_at(300.0)] * 10)
    cut = no_cuts[:20].copy()
    cut[10] = True
    assert mend_segments([0, 10], landmarks=lm, cuts=cut, count=20, again=never) == []
    lost = lm.copy()
    lost[9] = np.nan
    assert mend_segments([0, 10], landmarks=lost, cuts=no_cuts, count=20, again=never) == []
    near = np.stack([_face_at(100.0)] * 10 + [_face_at(115.0)] * 10)  # within half its width
    assert mend_segments([0, 10], landmarks=near, cuts=no_cuts, count=20, again=never) == []


def test_a_frame_offered_again_is_measured_in_place_of_what_it_showed() -> None:
    """A segment tracked again offers its frames again, with the face it follows now: what a
    frame showed the first time (the other person's face) no longer counts."""
    from spfem_cli.face.sampling import FrameSampler

    class Centres(FrameSampler[float]):
        def measure(self, frame: np.ndarray, *, face: mesh.FaceFrame, landmarks: np.ndarray):  # noqa: ANN201
            return float(landmarks[:, 0].mean())

    sampler = Centres(n_frames=4, samples=4, min_iod_px=0.0)
    frame = np.zeros((8, 8, 3), np.uint8)
    from spfem_cli.generator.expression import ExpressionModel

    # The model's calm face (IOD units) at 50 pixels between the eyes.
    pts = ExpressionModel.load().template.numpy().astype(np.float64) * 50 + 100
    for t in (2, 0, 1):
        sampler.offer(t, frame, pts + [10.0 * t, 0])
    sampler.offer(1, frame, pts + [500.0, 0])
    base = float(pts[:, 0].mean())
    assert sampler.results() == pytest.approx([base, base + 500, base + 20])


def _two_people(clips_dir: Path, out: Path, *, seconds: float = 6.0) -> Path:
    """6 s (or its first `seconds`), 640x320: Obama on the left, talk_s18's speaker on the
    right. His face is the larger at first and shrinks, hers grows, and by frame 75, where the
    tracking pass's second half starts, hers is the larger (23300 against 27300 square
    pixels)."""
    run_ffmpeg_checked(
        "-i", str(clips_dir / "speech_obama_450x450.mp4"),
        "-i", str(clips_dir / "talk_s18_1280x720.mp4"),
        "-filter_complex",
        "[0:v]trim=0:6,setpts=PTS-STARTPTS,scale=320:320,fps=25,"
        "zoompan=z='max(1,1.3-0.3*on/90)':d=1:s=320x320:fps=25[a];"
        "[1:v]trim=0:6,setpts=PTS-STARTPTS,crop=530:530:375:10,scale=320:320,fps=25,"
        "zoompan=z='min(1.3,1+0.3*on/90)':d=1:s=320x320:fps=25[b];[a][b]hstack[v]",
        "-map", "[v]", "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", str(out),
    )  # fmt: skip
    return out


def test_the_face_followed_stays_the_same_where_the_halves_meet(
    clips_dir: Path, tmp_path: Path
) -> None:
    """A video of 120 frames or more is tracked in two halves at once, and the second half's
    tracker started on the largest face: on this clip the edit went from him to her at
    frame 75 (x 174 -> 617 pixels), and the speech check, tracking the edit alike, read her
    lips against his. The second half is now tracked again following him, and the check's
    passes find the face the tracking followed, by itself or told the input's."""
    from spfem_cli.evaluate import video_landmarks
    from spfem_cli.generator.expression import ExpressionModel
    from spfem_cli.pipeline import analyse_video, tracking_segments
    from spfem_cli.progress import SilentReporter

    clip = _two_people(clips_dir, tmp_path / "two.mp4")
    info = probe(clip)
    assert [s[0] for s in tracking_segments(info) if s] == [0, 75]
    work = tmp_path / "work"
    work.mkdir()
    track = analyse_video(
        info, model=ExpressionModel.load(), workdir=work, reporter=SilentReporter()
    ).track
    xs = np.asarray(track.raw[:, :, 0]).mean(axis=1)
    assert track.valid.all() and xs.max() < 320, xs  # his face, on the left, all through
    found = video_landmarks(clip)
    np.testing.assert_array_equal(found, track.raw)
    told = video_landmarks(clip, follow=np.asarray(track.raw))
    np.testing.assert_array_equal(told, track.raw)


def test_the_face_asked_for_is_edited_and_measured(clips_dir: Path, tmp_path: Path) -> None:
    """`spfem edit --face right` on two people edits her, on the right, and leaves him, the
    larger, as he was; it says which face it took. `spfem check --face right` measures her
    lips, which the smile moved, where `--face left` finds his, which only the encoder
    touched."""
    from typer.testing import CliRunner

    from spfem_cli import cli
    from spfem_cli.speech_check import check_speech

    clip = _two_people(clips_dir, tmp_path / "two.mp4", seconds=2)
    out = tmp_path / "happy.mp4"
    args = ["edit", str(clip), "-e", "happy", "--face", "right", "-o", str(out)]
    result = CliRunner().invoke(cli.app, [*args, "--no-keep-speech"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "one was edited, the one furthest right where it first appears" in result.output
    for t in (5, 45):
        change = np.abs(video_frame(out, t).astype(int) - video_frame(clip, t).astype(int)).mean(
            axis=2
        )
        his, hers = np.percentile(change[:, :320], 99.5), np.percentile(change[:, 320:], 99.5)
        assert hers > 12 and his < 9, (t, his, hers)
    lips = {
        side: check_speech(before=clip, after=out, face=side, whole=False).mouth.inner_lip_error
        for side in ("left", "right")
    }
    assert lips["right"] > 1.5 * lips["left"], lips  # 1.04% against 0.55%


def test_finetuning_learns_from_the_face_asked_for(clips_dir: Path, tmp_path: Path) -> None:
    """`spfem finetune --face`: the training crops are cut from the face asked for (hers, on
    the right, fair-skinned against his darker face: her crops are brighter), and cached
    apart from the largest face's."""
    from spfem_cli.generator.expression import ExpressionModel
    from spfem_cli.generator.refiner import CropGeometry
    from spfem_cli.training.frames import load_clip_frames, load_collection

    clip = _two_people(clips_dir, tmp_path / "two.mp4", seconds=1)
    cache = tmp_path / "cache"
    kwargs = {
        "person": "two", "name": clip.name, "model": ExpressionModel.load(),
        "crop": CropGeometry(size=32), "max_frames": 4, "cache_dir": cache,
    }  # fmt: skip
    his = load_clip_frames(clip, **kwargs)
    hers = load_clip_frames(clip, face=FacePick.parse("right"), **kwargs)
    assert his is not None and hers is not None
    assert float(hers.crops.mean()) > float(his.crops.mean()) + 20
    assert len(list(cache.glob("*.npz"))) == 2
    # `spfem train refiner --face` (the config's "face"): a folder's videos are read alike,
    # here from the entry just cached for her face.
    folder = load_collection(
        tmp_path, people={}, face=FacePick.parse("right"),
        **{k: kwargs[k] for k in ("model", "crop", "max_frames", "cache_dir")},
    )  # fmt: skip
    assert [c.name for c in folder] == [clip.name]
    np.testing.assert_array_equal(folder[0].crops, hers.crops)


def _until_stopped(stop: threading.Event, steps: list[int]) -> int:
    """A segment's pass that would take 20 s: a step each 10 ms until told to stop."""
    for step in range(2000):
        if stop.is_set():
            break
        steps.append(step)
        time.sleep(0.01)
    return len(steps)


def test_a_failing_half_stops_the_other_at_once() -> None:
    """The tracking pass and the speech check track a long video's halves in two threads
    (`run_segments`): when one half fails (a truncated file, say), the other stops at its next
    frame instead of running to its end before the error can leave."""
    steps: list[int] = []

    def fails(stop: threading.Event) -> int:
        time.sleep(0.05)
        raise SpfemError("the video ends early")

    t0 = time.perf_counter()
    with pytest.raises(SpfemError, match="ends early"):
        run_segments([fails, lambda stop: _until_stopped(stop, steps)])
    assert time.perf_counter() - t0 < 2.0 and len(steps) < 200


def test_ctrl_c_stops_both_halves_at_once() -> None:
    """Ctrl-C arrives in the main thread, which waits on the halves: both stop at their next
    frame. Before, the interrupted edit of a 2970-frame clip (talk_s20 looped ten times) took
    22 s to exit, each thread tracking its half to the end; now 1.1 s."""
    first: list[int] = []
    second: list[int] = []

    def interrupted(stop: threading.Event) -> int:
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        return _until_stopped(stop, first)

    # A run in the background inherits SIGINT ignored: Python's own handler, as in a terminal.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_segments([interrupted, lambda stop: _until_stopped(stop, second)])
    finally:
        signal.signal(signal.SIGINT, before)
    assert time.perf_counter() - t0 < 2.0
    assert len(first) < 200 and len(second) < 200


def test_the_halves_results_come_in_order() -> None:
    assert run_segments([lambda stop: 3, lambda stop: 7]) == [3, 7]
    assert run_segments([lambda stop: 5]) == [5]
