"""How far the lip corners move when a photo is edited, against a video's frame edited alike.

    python scripts/measure_photos.py [--clips ../shared/clips] [--out DIR]
        [--emotions happy contempt disgusted sad]

A photo has no speech, so `spfem edit --mouth natural` (the default) plays expressive mode's
mouth on it (`pipeline.played_mouth`): the lip corners move as far as in a real expression,
the opening kept. This script cuts one frame of each of several real clips as a PNG photo and
edits it with each emotion twice: as a photo (what `spfem edit photo.png` now does) and as the
first frame of a two-frame clip of that photo in natural mode (what natural mode does to a
speaking video's frame: the lips held near the speech; what a photo got until 2026-12-04, and
a video whose mouth never moves until 2026-12-08). FaceMesh then finds the face
again on the input and on both edits and the script prints, per photo and emotion, how far
the lip corners moved against the middle of the lips (IOD, + = up; for contempt the corner
that moved most, its sign kept) and how far the inner lips moved (`spfem check`'s inner-lip
error, IOD).

Writes the edits and a contact sheet of the face per photo (input, then each emotion as a
video's frame and as a photo) to --out. About a minute on two cores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from spfem_cli.evaluate import compare_speech, corner_lifts, video_landmarks
from spfem_cli.generator.expression import DEFAULT_MODEL
from spfem_cli.generator.warp import face_box
from spfem_cli.media import FrameReader, probe
from spfem_cli.media.probe import run_ffmpeg
from spfem_cli.pipeline import Editor, analyse_video, edit_video
from spfem_cli.progress import SilentReporter
from spfem_cli.sheet import contact_sheet, write_png
from spfem_cli.targets import mixture_vector

CLIPS_DIR = Path(__file__).resolve().parents[2] / "shared" / "clips"
# (clip, second): frames with a calm, closed or half-open mouth, and one mid-word (Obama).
PHOTOS = (
    ("talk_s18_1280x720.mp4", 4.67),
    ("talk_s20_480x908.mp4", 2.0),
    ("portrait_s29_720x1364.mp4", 1.0),
    ("speech_obama_450x450.mp4", 1.0),
    ("expr_d12.mp4", 1.0),
)
EMOTIONS = ("happy", "contempt", "disgusted", "sad")


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; stop with its message when it fails."""
    done = run_ffmpeg(["-v", "error", "-y", *args])
    if done.returncode != 0:
        raise SystemExit(done.stderr.decode(errors="replace"))


def speakers_frame(pair: Path, *, emotion: str, workdir: Path) -> np.ndarray:
    """The first frame (H, W, 3) uint8 of the clip `pair` edited to `emotion` in natural mode,
    lips held near the speech as on a speaking video's frame (`spfem edit` itself plays
    expressive mode on a clip whose mouth never moves, as this one's does)."""
    editor = Editor.load(model=DEFAULT_MODEL, mouth="natural", device="cpu")
    analysis = analyse_video(
        probe(pair), model=editor.expression, workdir=workdir, reporter=SilentReporter()
    )
    target = mixture_vector(emotion, resolve=editor.vector_of)
    delta = analysis.deltas(target=target, weights=np.ones(analysis.track.n_frames))[0]
    with FrameReader(probe(pair)) as reader:
        frame = next(iter(reader))
    return analysis.edit_frame(frame, 0, generator=editor.generator, delta=delta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=Path, default=CLIPS_DIR)
    parser.add_argument("--out", type=Path, default=Path("out/photos"))
    parser.add_argument("--emotions", nargs="+", default=list(EMOTIONS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        "lip corners' rise (IOD; contempt: the corner that moved most) and the inner lips' "
        "shift (IOD), as a video's frame -> as a photo"
    )
    print(f"{'photo':28s} {'emotion':10s} {'corners':>16s} {'inner lips':>16s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, second in PHOTOS:
            clip = args.clips / name
            if not clip.is_file():
                print(f"{name}: not found, skipped")
                continue
            stem = Path(name).stem
            photo = args.out / f"{stem}.png"
            ffmpeg("-ss", str(second), "-i", str(clip), "-frames:v", "1", str(photo))
            # The photo as a video's frame: two frames of it, a clip natural mode edits as
            # a video.
            pair = Path(tmp) / f"{stem}.mp4"
            ffmpeg(
                "-loop", "1", "-i", str(photo), "-frames:v", "2", "-r", "25",
                "-c:v", "libx264", "-crf", "0", "-pix_fmt", "yuv444p", str(pair),
            )  # fmt: skip
            lm_in = video_landmarks(photo)
            row = [np.asarray(Image.open(photo).convert("RGB"))]
            labels = ["input"]
            for emotion in args.emotions:
                as_photo = args.out / f"{stem}.{emotion}.png"
                edit_video(
                    input_path=photo, output_path=as_photo, emotion=emotion, overwrite=True,
                    device="cpu",
                )  # fmt: skip
                as_frame = args.out / f"{stem}.{emotion}.frame.png"
                Image.fromarray(speakers_frame(pair, emotion=emotion, workdir=Path(tmp))).save(
                    as_frame
                )
                readings = []
                for edited in (as_frame, as_photo):
                    lm_out = video_landmarks(edited)
                    change = (corner_lifts(lm_out) - corner_lifts(lm_in))[0]
                    # Contempt's smirk is one-sided: the corner that moved most, its sign kept.
                    one = change[np.argmax(np.abs(change))]
                    rise = float(one if emotion == "contempt" else change.mean())
                    lips = compare_speech(lm_in, lm_out).inner_lip_error
                    readings.append((rise, lips))
                    row.append(np.asarray(Image.open(edited).convert("RGB")))
                labels += [f"{emotion} (video frame)", f"{emotion} (photo)"]
                (rise_v, lips_v), (rise_p, lips_p) = readings
                print(
                    f"{stem:28s} {emotion:10s} {rise_v:+7.3f} -> {rise_p:+7.3f} "
                    f"{lips_v:7.3f} -> {lips_p:7.3f}"
                )
            height, width = row[0].shape[:2]
            x0, y0, x1, y1 = face_box(lm_in[0], width=width, height=height, margin=0.15)
            row = [cell[y0:y1, x0:x1] for cell in row]
            sheet = contact_sheet([row], cell_height=360, column_labels=labels, row_labels=[stem])
            write_png(args.out / f"{stem}.sheet.png", sheet)


if __name__ == "__main__":
    main()
