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
3. Wide eyes held through much of a clip: the whole of expr_d10, whose lids' median is wide,
   edited to "neutral" without a calm face, with her calm seconds 4.5-6.5 as the rest (the
   median of 30 frames, whose lids count) and with one calm frame of them (frame 150, whose
   lids do not). Printed: the upper lid raise the edit reads on her widest fifth of frames
   (widest by the input's lids) and on the calm seconds, and the white above the iris
   re-detected on the output there (`lid_heights`, IOD; negative: the lid covers the iris).

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
from spfem_cli.face.rest import RestFace
from spfem_cli.generator.expression import REPLACED_AUS, ExpressionModel, lid_heights
from spfem_cli.media import FrameReader, ffmpeg_exe, probe
from spfem_cli.pipeline import analyse_video, edit_video, read_rest_face
from spfem_cli.progress import SilentReporter

HELD = ("expr_d10.mp4", 2.5, 140)
CALM = ("speech_obama_450x450.mp4", (10, 120, 230))
WIDE = ("expr_d10.mp4", "4.5-6.5", 150)


def frame_png(clip: Path, t: int, path: Path) -> Path:
    """Frame t of `clip` written as a PNG at `path`."""
    with FrameReader(probe(clip)) as reader:
        iio.imwrite(path, next(itertools.islice(reader, t, None)))
    return path


def present_per_frame(info, model: ExpressionModel, rest_face: RestFace | None) -> np.ndarray:
    """Present expression (T, K) of a clip, as an edit reads it."""
    with tempfile.TemporaryDirectory() as work:
        analysis = analyse_video(
            info, model=model, workdir=Path(work), reporter=SilentReporter(), rest_face=rest_face
        )
        return analysis.current


def present(info, model: ExpressionModel, rest_face: RestFace | None) -> np.ndarray:
    """Mean present expression (K,) of a clip, as an edit reads it."""
    return present_per_frame(info, model, rest_face).mean(axis=0)


def upper_lids(path: Path) -> np.ndarray:
    """(T,) white above the iris re-detected on each frame of a video (IOD, NaN: shut)."""
    return lid_heights(face_frame_landmarks(video_landmarks(path)))[:, 0]


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

        name, span, calm_t = WIDE
        source = args.clips / name
        info = probe(source)
        lids_in = upper_lids(source)
        widest = lids_in > np.nanpercentile(lids_in, 80)
        start, end = (float(t) for t in span.split("-"))
        still = np.zeros(len(lids_in), dtype=bool)
        still[round(start * float(info.fps)) : round(end * float(info.fps))] = True
        au5 = model.au_names.index("AU5")
        print(f"\n3. {name} to neutral: lid raise read / white above the iris on the output")
        print(f"   {'':<26}{'widest fifth':>26}{f'calm {span} s':>26}")
        print(
            f"   {'input':<26}{'':>14}{np.nanmean(lids_in[widest]):>+12.4f}"
            f"{'':>14}{np.nanmean(lids_in[still]):>+12.4f}"
        )
        photo = frame_png(source, calm_t, out / f"calm{calm_t}.png")
        for tag, given in (("without", None), (f"--rest {span}", span), (f"frame {calm_t}", photo)):
            rest_face = None if given is None else read_rest_face(given, video=source)
            read = present_per_frame(info, model, rest_face)[:, au5]
            edited = out / f"wide_neutral_{tag.replace(' ', '_')}.mp4"
            edit_video(
                input_path=source, output_path=edited, emotion="neutral", rest=given, overwrite=True
            )
            lids = upper_lids(edited)
            print(
                f"   {tag:<26}{read[widest].mean():>14.3f}{np.nanmean(lids[widest]):>+12.4f}"
                f"{read[still].mean():>14.3f}{np.nanmean(lids[still]):>+12.4f}"
            )


if __name__ == "__main__":
    main()
