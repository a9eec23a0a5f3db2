"""Shared fixtures: the real clips folder and factories of small synthetic clips.

The `make_*` fixtures return functions that write tiny clips with ffmpeg's lavfi sources
(`testsrc2` video, `sine` audio) into the test's tmp_path and return their paths.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from spfem_cli.face.mesh import FaceFrame


def pytest_configure(config: pytest.Config) -> None:
    """In each of the run's worker processes (pytest-xdist, one per core), torch computes on
    one thread: two workers with a thread per core each spin while waiting for a core, which
    made a test of 13 s alone take 43-61 s beside another, and the default run with the
    clips 772 s instead of 630 s (`spfem edit` does the same beside its encoder:
    `generator.device.torch_threads`). OpenCV's threads left as they are: one each was no
    faster."""
    if hasattr(config, "workerinput"):
        import torch

        torch.set_num_threads(1)


def run_ffmpeg_checked(*args: str) -> str:
    """Run the bundled ffmpeg quietly; fail the test with its message if it fails. Returns
    what it wrote on stdout (an output named "-")."""
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"ffmpeg failed ({result.returncode}): {' '.join(args)}\n{result.stderr}")
    return result.stdout


def combing(frames: Sequence[np.ndarray]) -> float:
    """How much each row differs from the mean of its neighbours, levels, the mean over frames
    (H, W, 3): two fields taken apart in time make every other row jump where anything moves."""
    greys = [f.astype(np.float64).mean(axis=-1) for f in frames]
    return float(np.mean([np.abs(2 * g[1:-1] - g[:-2] - g[2:]).mean() for g in greys]))


SUBTITLE_CUES = [(0.0, 0.8, "Hello there"), (0.8, 1.6, "Second line")]
CHAPTERS = [(0.0, 0.8, "Intro"), (0.8, 1.6, "Main")]


def add_subtitles_and_chapters(src: Path, out: Path) -> Path:
    """`src` copied into `out` with a subtitle stream of SUBTITLE_CUES (SubRip in Matroska,
    mov_text in mp4 and mov), the chapters CHAPTERS, the title "My talk" and a creation time:
    what a video from an editor or a download often carries besides picture and sound."""
    cues = out.with_name(out.stem + ".srt")
    cues.write_text(
        "".join(
            f"{i + 1}\n{_srt_time(a)} --> {_srt_time(b)}\n{text}\n\n"
            for i, (a, b, text) in enumerate(SUBTITLE_CUES)
        )
    )
    meta = out.with_name(out.stem + ".ffmeta")
    meta.write_text(
        ";FFMETADATA1\ntitle=My talk\n"
        + "".join(
            f"[CHAPTER]\nTIMEBASE=1/1000\nSTART={round(a * 1000)}\nEND={round(b * 1000)}\n"
            f"title={title}\n"
            for a, b, title in CHAPTERS
        )
    )
    text_codec = "srt" if out.suffix == ".mkv" else "mov_text"
    run_ffmpeg_checked(
        *["-i", str(src), "-i", str(cues), "-i", str(meta), "-map", "0", "-map", "1"],
        *["-map_metadata", "2", "-map_chapters", "2", "-c", "copy", "-c:s", text_codec],
        *["-metadata", "creation_time=2024-05-01T10:00:00Z", str(out)],
    )
    return out


def _srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def subtitle_cues(path: Path, stream: int = 0) -> list[tuple[float, float, str]]:
    """The cues of subtitle stream `stream` of `path`: (start s, end s, text), read back
    through ffmpeg as SubRip whatever the stream's codec."""
    srt = run_ffmpeg_checked("-i", str(path), "-map", f"0:s:{stream}", "-f", "srt", "-")
    cues = []
    for block in srt.strip().split("\n\n"):
        _, times, *text = block.strip().splitlines()
        a, b = (_srt_seconds(t) for t in times.split(" --> "))
        cues.append((a, b, "\n".join(text)))
    return cues


def _srt_seconds(text: str) -> float:
    hms, ms = text.strip().split(",")
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s + int(ms) / 1000


def file_metadata(path: Path) -> tuple[dict[str, str], list[tuple[float, float, str]]]:
    """The file-level tags of `path` (lower-case keys) and its chapters (start s, end s,
    title), as ffmpeg's ffmetadata writer prints them."""
    text = run_ffmpeg_checked("-i", str(path), "-map_metadata", "0", "-f", "ffmetadata", "-")
    tags: dict[str, str] = {}
    chapters: list[dict[str, str]] = []
    for line in text.splitlines()[1:]:
        if line == "[CHAPTER]":
            chapters.append({})
        elif "=" in line:
            key, value = line.split("=", 1)
            (chapters[-1] if chapters else tags)[key.lower()] = value

    def seconds(c: dict[str, str], key: str) -> float:
        num, den = (int(x) for x in c["timebase"].split("/"))
        return int(c[key]) * num / den

    return tags, [(seconds(c, "start"), seconds(c, "end"), c.get("title", "")) for c in chapters]


def frames_of(path: Path) -> list[np.ndarray]:
    """Every frame (H, W, 3) uint8 RGB of a short video, decoded as spfem decodes it."""
    from spfem_cli.media import FrameReader, probe

    with FrameReader(probe(path)) as reader:
        return list(reader)


def video_frame(path: Path, t: int) -> np.ndarray:
    """Frame t (H, W, 3) uint8 RGB of a video, decoded as spfem decodes it."""
    from spfem_cli.media import FrameReader, probe

    with FrameReader(probe(path)) as reader:
        return next(itertools.islice(reader, t, None))


def tracked_frame(path: Path, t: int) -> tuple[np.ndarray, FaceFrame, np.ndarray]:
    """Frame t of a video (`video_frame`), its face frame, and its landmarks (478, 2) in that
    face frame (IOD), as FaceMesh finds them on the frame alone."""
    from spfem_cli.face.tracker import LandmarkTracker

    frame = video_frame(path, t)
    with LandmarkTracker(video_mode=False) as tracker:
        found = tracker.detect(frame)
    assert found is not None, f"no face in frame {t} of {path.name}"
    face = FaceFrame.from_landmarks(found.landmarks)
    return frame, face, face.to_face(found.landmarks.astype(np.float64))


@pytest.fixture
def ffmpeg_checked() -> Callable[..., None]:
    """`run_ffmpeg_checked` as a fixture, for tests that shape their own clips."""
    return run_ffmpeg_checked


@pytest.fixture
def clips_dir() -> Path:
    """The shared real clips (../shared/clips beside the repository); skips when absent."""
    folder = Path(__file__).resolve().parents[2] / "shared" / "clips"
    if not folder.is_dir():
        pytest.skip(f"real clips not found at {folder}")
    return folder


MakeClip = Callable[..., Path]


@pytest.fixture
def make_clip(tmp_path: Path) -> MakeClip:
    """Factory of synthetic clips: ``make_clip("a.mp4", size=(160, 120), rate="25", ...)``.

    Keyword arguments: `size` (width, height) in pixels, odd sizes allowed; `rate` frames per
    second as ffmpeg reads it ("25", "30000/1001"); `duration` seconds; `pix_fmt` and `vcodec`
    to encode with (x264 refuses odd sizes in 4:2:0, use e.g. "mpeg4" for those);
    `audio` adds a 440 Hz sine (AAC) lasting `audio_duration` seconds (default: `duration`);
    `faststart` puts the mp4 index first; `vf` an extra video filter; `extra` more output args.
    """

    def make(
        name: str,
        *,
        size: tuple[int, int] = (160, 120),
        rate: str = "25",
        duration: float = 1.0,
        pix_fmt: str = "yuv420p",
        vcodec: str = "libx264",
        audio: bool = False,
        audio_duration: float | None = None,
        faststart: bool = False,
        vf: str | None = None,
        extra: Sequence[str] = (),
    ) -> Path:
        out = tmp_path / name
        width, height = size
        # testsrc2 only makes even sizes; draw one pixel larger and crop to get odd ones.
        src = f"testsrc2=size={width + width % 2}x{height + height % 2}:rate={rate}"
        src += f":duration={duration}"
        if width % 2 or height % 2:
            # Crop in RGB: crop rounds odd sizes down to even in subsampled YUV formats.
            src += f",format=rgb24,crop={width}:{height}:0:0"
        args = ["-f", "lavfi", "-i", src]
        if audio:
            seconds = duration if audio_duration is None else audio_duration
            args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
        if vf:
            args += ["-vf", vf]
        args += ["-c:v", vcodec, "-pix_fmt", pix_fmt]
        if vcodec == "libx264":
            args += ["-preset", "ultrafast"]
        if audio:
            args += ["-c:a", "aac"]
        if faststart:
            args += ["-movflags", "+faststart"]
        run_ffmpeg_checked(*args, *extra, str(out))
        return out

    return make


@pytest.fixture
def make_audio_only(tmp_path: Path) -> Callable[[str], Path]:
    """Factory of audio-only files (1 s sine, AAC), e.g. ``make_audio_only("tone.m4a")``."""

    def make(name: str) -> Path:
        out = tmp_path / name
        run_ffmpeg_checked("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(out))
        return out

    return make


@pytest.fixture
def make_rotated(tmp_path: Path) -> Callable[[Path, int], Path]:
    """Factory: stream-copy `src` with a display rotation tag, as phones record portrait video.

    `degrees` is counter-clockwise, ffmpeg's `-display_rotation` convention.
    """

    def make(src: Path, degrees: int) -> Path:
        out = tmp_path / f"{src.stem}.rot{degrees}{src.suffix}"
        run_ffmpeg_checked(
            "-display_rotation", str(degrees), "-i", str(src), "-c", "copy", str(out)
        )
        return out

    return make


@pytest.fixture
def make_vfr_clip(make_clip: MakeClip) -> Callable[[str], Path]:
    """Factory of a variable-frame-rate clip: 1 s at 30 fps then 2 s at 15 fps (60 frames).

    Its average rate is 20 fps over 3.0 s.
    """

    def make(name: str) -> Path:
        return make_clip(
            name,
            rate="30",
            duration=2.0,
            vf="setpts='if(lt(N,30),N/30,1+(N-30)/15)/TB'",
            extra=["-fps_mode", "passthrough"],
        )

    return make


# expr_d10: her brows are raised from the first frame to 2.5 s; frame 140 (4.67 s) is calm
# (looked at).
HELD_S = 1.5
CALM_FRAMES = (140, 146)


@pytest.fixture(scope="session")
def held_then_calm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """expr_d10's first HELD_S seconds, brows raised all through, then 0.2 s of her calm face
    (its frames CALM_FRAMES): a clip whose calm moment is too short to be read as her rest
    (`spfem edit --rest 1.5-1.7` names it). 512x512, 30 fps, no audio; skips without
    ../shared/clips."""
    source = Path(__file__).resolve().parents[2] / "shared" / "clips" / "expr_d10.mp4"
    if not source.is_file():
        pytest.skip(f"real clip not found at {source}")
    out = tmp_path_factory.mktemp("held") / "held_then_calm.mp4"
    first, last = CALM_FRAMES
    graph = (
        f"[0:v]trim=0:{HELD_S},setpts=PTS-STARTPTS[a];"
        f"[0:v]trim=start_frame={first}:end_frame={last},setpts=PTS-STARTPTS[b];"
        "[a][b]concat=n=2:v=1:a=0[v]"
    )
    run_ffmpeg_checked(
        "-i", str(source), "-filter_complex", graph, "-map", "[v]", "-an", "-c:v", "libx264",
        "-crf", "14", str(out),
    )  # fmt: skip
    return out


def x264_options(path: Path) -> dict[str, str]:
    """The settings x264 wrote into a video's stream ("subme" -> "2", "crf" -> "18.0", ...)."""
    data = path.read_bytes()
    start = data.index(b"x264 - core")
    text = data[start : data.index(b"\0", start)].decode("ascii", "replace")
    return dict(pair.split("=", 1) for pair in text.split(" options: ")[1].split() if "=" in pair)


# `--rest` -> `spfem edit --emotion neutral` of `held_then_calm` with it (None: without one).
HeldNeutral = Callable[[str | None], Path]


@pytest.fixture(scope="session")
def held_then_calm_neutral(
    held_then_calm: Path, tmp_path_factory: pytest.TempPathFactory
) -> HeldNeutral:
    """`edit_video` of `held_then_calm` to neutral, made once per `--rest` for all the tests
    that compare against it (the edit with and without a calm face, in `spfem edit` and in a
    batch: 3-5 s each on two cores)."""
    from spfem_cli.pipeline import edit_video

    folder = tmp_path_factory.mktemp("held_neutral")
    made: dict[str | None, Path] = {}

    def neutral(rest: str | None) -> Path:
        if rest not in made:
            out = folder / f"neutral_{len(made)}.mp4"
            edit_video(
                input_path=held_then_calm,
                output_path=out,
                emotion="neutral",
                rest=rest,
                keep_speech=False,
            )
            made[rest] = out
        return made[rest]

    return neutral
