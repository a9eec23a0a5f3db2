"""A smile held through a whole video (`face.rest.held_smile`): an edit reads the expression
against the clip's calmest moments, so it cannot see it, and tells the user so."""

from __future__ import annotations

import itertools
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from spfem_cli import cli
from spfem_cli.batch import EditOptions, run_batch
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.face.rest import HELD_SMILE_LIFT, corner_lift, held_smile
from spfem_cli.face.tracker import LandmarkTracker

SMILING = ("talk_s32_1280x720.mp4", "portrait_s29_720x1364.mp4")
CALM = (
    "talk_s18_1280x720.mp4",
    "talk_s20_480x908.mp4",
    "speech_obama_450x450.mp4",
    "speech_man_256x256.mp4",
    "smallface_s13_720x1080.mp4",
    "talk_mead_sad_1920x1080.mp4",
    "expr_d0.mp4",
    "expr_d3.mp4",
    "expr_d9.mp4",
    "expr_d10.mp4",
    "expr_d12.mp4",
    "expr_d14.mp4",
    "expr_d18.mp4",
    "expr_d19.mp4",
)
NOTE = "the face smiles throughout"


def face_points(path: Path, *, every: int = 8, frames: int = 400) -> np.ndarray:
    """(T, 478, 2) face-frame landmarks of every `every`-th of a clip's first `frames`
    frames where FaceMesh finds a face."""
    found = []
    with LandmarkTracker(video_mode=False) as tracker:
        for frame in itertools.islice(iio.imiter(path), 0, frames, every):
            if (det := tracker.detect(frame)) is not None:
                found.append(FaceFrame.from_landmarks(det.landmarks).to_face(det.landmarks))
    return np.array(found)


def test_corner_lift_is_how_far_the_corners_stand_above_the_inner_lips() -> None:
    """On landmarks moved by hand: the corners raised 0.1 IOD above the inner lips' middle
    read 0.1; a clip reads its calmest tenth, and below HELD_SMILE_LIFT it is no held smile."""
    points = np.zeros((478, 2))
    points[[61, 291], 1] = 0.2
    points[13, 1], points[14, 1] = 0.25, 0.35
    assert corner_lift(points) == pytest.approx(0.1)
    lifts = np.linspace(0.0, 0.2, 11)
    clip = np.repeat(points[None], len(lifts), axis=0)
    clip[:, [61, 291], 1] = 0.3 - lifts[:, None]
    valid = np.ones(len(lifts), bool)
    assert held_smile(clip, valid) is None  # its calmest tenth: 0.02
    assert held_smile(clip[5:], valid[5:]) == pytest.approx(0.11)
    assert held_smile(clip, np.zeros(len(lifts), bool)) is None
    assert 0.02 < HELD_SMILE_LIFT < 0.11


@pytest.mark.parametrize("name", SMILING + CALM)
def test_only_the_speakers_who_smile_throughout_read_as_holding_a_smile(
    clips_dir: Path, name: str
) -> None:
    """talk_s32 and portrait_s29 smile from the first frame to the last (0.057 and 0.081 at
    their calmest); the calm speakers, the acting faces and the crying speaker, at their
    calmest, -0.108 to 0.028."""
    points = face_points(clips_dir / name)
    lift = held_smile(points, np.ones(len(points), bool))
    assert (lift is not None) == (name in SMILING), (name, lift)


def test_an_edit_or_preview_of_a_smiling_face_says_the_smile_stays(
    clips_dir: Path, tmp_path: Path
) -> None:
    """`spfem edit` and `spfem preview` of a frame of talk_s32 (a photo: its only moment is
    its calmest) say her smile's upper-face signs stay and that --rest takes them off; with a
    calm face given, or on talk_s18's calm face, they say nothing of it."""
    from tests.conftest import video_frame

    smiling, calm = tmp_path / "smiling.png", tmp_path / "calm.png"
    iio.imwrite(smiling, video_frame(clips_dir / "talk_s32_1280x720.mp4", 60))
    iio.imwrite(calm, video_frame(clips_dir / "talk_s18_1280x720.mp4", 60))
    said = {}
    for command in ("edit", "preview"):
        for name, args in (
            ("smiling", [str(smiling)]),
            ("with rest", [str(smiling), "--rest", str(smiling)]),
            ("calm", [str(calm)]),
        ):
            out = tmp_path / f"{command}.{name}.sad.png"
            result = CliRunner().invoke(cli.app, [command, *args, "-e", "sad", "-o", str(out)])
            assert result.exit_code == 0, result.output
            said[name] = " ".join(result.output.split())
        assert NOTE in said["smiling"] and "--rest with a calm photo" in said["smiling"], command
        assert NOTE not in said["with rest"] and NOTE not in said["calm"], command


@pytest.mark.parametrize("emotions", [["sad"], ["sad", "happy"]])
def test_a_batch_records_the_held_smile(
    clips_dir: Path, tmp_path: Path, emotions: list[str]
) -> None:
    """In a batch, one emotion (`edit_video`'s path) or several (one shared tracking pass):
    the smiling face's records carry the note, the calm face's do not."""
    from tests.conftest import video_frame

    folder = tmp_path / "in"
    folder.mkdir()
    iio.imwrite(folder / "smiling.png", video_frame(clips_dir / "talk_s32_1280x720.mp4", 60))
    iio.imwrite(folder / "calm.png", video_frame(clips_dir / "talk_s18_1280x720.mp4", 60))
    summary = run_batch(
        in_dir=folder,
        out_dir=tmp_path / "out",
        emotions=emotions,
        pattern="*.png",
        options=EditOptions(),
    )
    assert summary.ok
    for record in summary.records:
        smiles = any(NOTE in note for note in record.notes)
        assert smiles == ("smiling" in str(record.input)), (record.input, record.notes)


@pytest.mark.parametrize(
    ("name", "smiles"), [("talk_s32_1280x720.mp4", True), ("talk_s18_1280x720.mp4", False)]
)
def test_a_video_edit_reads_the_held_smile_off_its_own_tracking(
    clips_dir: Path, tmp_path: Path, name: str, smiles: bool
) -> None:
    """Through the edit's own tracking (every frame, smoothed): talk_s32 reads 0.051 at her
    calmest, over the limit, talk_s18 0.010; given a calm face, nothing is said."""
    from spfem_cli.face.rest import RestFace
    from spfem_cli.generator.expression import ExpressionModel
    from spfem_cli.media import probe
    from spfem_cli.pipeline import analyse_video, held_smile_note
    from spfem_cli.progress import SilentReporter

    analysis = analyse_video(
        probe(clips_dir / name),
        model=ExpressionModel.load(),
        workdir=tmp_path,
        reporter=SilentReporter(),
    )
    note = held_smile_note(analysis.track, rest_face=None)
    assert (note is not None and NOTE in note) == smiles, note
    calm = RestFace(shape=np.zeros((478, 3)), faces=1)
    assert held_smile_note(analysis.track, rest_face=calm) is None
