"""What a calm face of the same person (`spfem edit --rest`) changes, on real clips.

    python scripts/measure_rest.py [--clips ../shared/clips] [--out DIR]

1. A held expression: the first 2.5 s of expr_d10, whose brows are raised from the first frame
   to the last, edited to "neutral" without and with a calm frame of the same person from
   later in the video (frame 140) as the rest. Printed: the present expression the edit reads
   (mean activations of the replaced AUs), and the change of each replaced AU re-read on the
   output against the input (mean over frames, activation units; negative: less of it).
2. A calm speaker: speech_obama with its own frames 10, 120 and 230 as the calm face. Printed:
   how far the present expression moves (largest change of a mean activation): what a calm
   face finds to take off where nothing is held.

Writes the cut clip, the calm frame and the edits to ``--out`` (a temporary folder by default).
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from spfem_cli.evaluate import face_frame_landmarks, landmark_activations, video_landmarks
from spfem_cli.generator.expression import REPLACED_AUS, ExpressionModel
from spfem_cli.media import FrameReader, ffmpeg_exe, probe
from spfem_cli.pipeline import analyse_video, edit_video, read_rest_face
from spfem_cli.progress import SilentReporter

HELD = ("expr_d10.mp4", 2.5, 140)
CALM = ("speech_obama_450x450.mp4", (10, 120, 230))


def frame_png(clip: Path, t: int, path: Path) -> Path:
    """Frame t of `clip` written as a PNG at `path`."""
    with FrameReader(probe(clip)) as reader:
        iio.imwrite(path, next(itertools.islice(reader, t, None)))
    return path


def present(info, model: ExpressionModel, rest_face: np.ndarray | None) -> np.ndarray:
    """Mean present expression (K,) of a clip, as an edit reads it."""
    with tempfile.TemporaryDirectory() as work:
        analysis = analyse_video(
            info, model=model, workdir=Path(work), reporter=SilentReporter(), rest_face=rest_face
        )
        return analysis.current.mean(axis=0)


def row(label: str, values: np.ndarray, names: tuple[str, ...]) -> str:
    return f"{label:<28}" + "".join(f"{v:>+8.3f}" for v in values) + "   " + " ".join(names)


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=here.parent / "shared" / "clips")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model = ExpressionModel.load()
    cols = [model.au_names.index(n) for n in REPLACED_AUS]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)

        name, seconds, calm_t = HELD
        clip = out / "held.mp4"
        cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(args.clips / name)]
        cmd += ["-t", str(seconds), "-an", "-c:v", "libx264", "-crf", "12", str(clip)]
        subprocess.run(cmd, check=True)
        calm = frame_png(args.clips / name, calm_t, out / "calm.png")
        print(f"1. {name}, first {seconds} s, to neutral; calm face: its frame {calm_t}")
        lm_in = video_landmarks(clip)
        median = np.nanmedian(face_frame_landmarks(lm_in), axis=0)
        before = landmark_activations(lm_in, median=median, model=model, names=REPLACED_AUS)
        for given in (None, calm):
            tag = "with --rest" if given else "without"
            rest_face = None if given is None else read_rest_face(given)
            print(
                row(f"present, {tag}", present(probe(clip), model, rest_face)[cols], REPLACED_AUS)
            )
            edited = out / f"neutral_{'rest' if given else 'plain'}.mp4"
            edit_video(
                input_path=clip, output_path=edited, emotion="neutral", rest=given, overwrite=True
            )
            after = landmark_activations(
                video_landmarks(edited), median=median, model=model, names=REPLACED_AUS
            )
            print(
                row(
                    f"output - input, {tag}", after.mean(axis=0) - before.mean(axis=0), REPLACED_AUS
                )
            )

        name, frames = CALM
        info = probe(args.clips / name)
        alone = present(info, model, None)
        print(
            f"\n2. {name}: the present expression's largest change, its own frame as the calm face"
        )
        for t in frames:
            rest_face = read_rest_face(frame_png(args.clips / name, t, out / f"calm{t}.png"))
            change = present(info, model, rest_face) - alone
            k = int(np.abs(change).argmax())
            print(f"   frame {t:4d}: {change[k]:+.3f} ({model.au_names[k]})")


if __name__ == "__main__":
    main()
