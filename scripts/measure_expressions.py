"""How well each emotion is produced, on real clips: AUs, speech, folding, wobble, sheets.

    python scripts/measure_expressions.py [--clips ../shared/clips] [--out out/measure]
        [--model facs-v2] [--generator refiner|warp] [--names speech_obama_450x450.mp4 ...]
        [--emotions happy sad ...]

For every clip and emotion it edits the whole clip (each clip is tracked once and rendered once
per emotion and mouth mode), re-detects the landmarks on the output, and prints:

- AU error: the AU change re-estimated on the output (output landmarks minus input landmarks,
  each frame in its own face frame, fitted on the brows/lids/cheeks/nose as `spfem edit`
  estimates them) against the change the edit asked for, as RMSE over the upper-face AUs
  (activation units: 1 = the AU at full strength) and the cosine of the two vectors;
- speech, in both mouth modes: inner-lip error (fraction of the inter-ocular distance) and the
  correlation of the mouth opening over time;
- folding: the smallest Jacobian determinant of the warp over sampled frames (> 0: no fold);
- wobble: frame-to-frame motion of the face outline landmarks, output over input (<= 1: the
  outline moves no more than in the input);

and writes a contact sheet per clip (input and all eight emotions) to the output folder.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from spfem_cli.evaluate import compare_speech, face_frame_landmarks, jitter, video_landmarks
from spfem_cli.face import mesh
from spfem_cli.generator.expression import DEFAULT_MODEL, EMOTIONS, ExpressionModel
from spfem_cli.generator.generator import FaceGenerator, build_generator
from spfem_cli.generator.kinds import DEFAULT_GENERATOR, GENERATORS
from spfem_cli.generator.warp import dense_min_jacobian_det, face_box
from spfem_cli.media import probe
from spfem_cli.pipeline import REPLACED_AUS, analyse_video, render_video, signed_activations
from spfem_cli.preview import preview_sheet
from spfem_cli.progress import SilentReporter

CLIPS = ("speech_obama_450x450.mp4", "talk_mead_sad_1920x1080.mp4", "talk_s32_1280x720.mp4")
# The face outline without the jaw: the jaw moves with the speech in both videos.
OUTLINE = tuple(i for i in mesh.FACE_OVAL if i not in mesh.JAW)


def achieved_aus(model: ExpressionModel, lm_in: np.ndarray, lm_out: np.ndarray) -> np.ndarray:
    """Mean AU change (K,) from input to output landmarks, over frames with a face in both."""
    a, b = face_frame_landmarks(lm_in), face_frame_landmarks(lm_out)
    n = min(len(a), len(b))
    both = ~(np.isnan(a[:n]).any(axis=(1, 2)) | np.isnan(b[:n]).any(axis=(1, 2)))
    offsets = torch.from_numpy(b[:n][both] - a[:n][both]).float()
    with torch.no_grad():
        return signed_activations(model, offsets).numpy().mean(axis=0)


def min_det(analysis, generator: FaceGenerator, deltas: np.ndarray, samples: int = 12) -> float:
    """Smallest Jacobian determinant of the warp over `samples` frames spread over the clip."""
    track = analysis.track
    frames = np.flatnonzero(track.valid & np.any(deltas != 0, axis=1))
    worst = 1.0
    for t in frames[np.linspace(0, len(frames) - 1, min(samples, len(frames))).astype(int)]:
        points = np.asarray(track.norm[t], np.float64)
        face = track.frame(int(t))
        values, hold = generator.sparse(points=points, delta=deltas[t])
        box = face_box(
            face.to_image(points),
            width=analysis.info.width,
            height=analysis.info.height,
            margin=generator.warper.config.margin,
        )
        dense = generator.warper.dense_flow(
            face=face, points=points, values=values, box=box, hold=hold
        )
        worst = min(worst, dense_min_jacobian_det(dense))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clips", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "clips"
    )
    parser.add_argument("--out", type=Path, default=Path("out/measure"))
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--generator", default=DEFAULT_GENERATOR, choices=GENERATORS)
    parser.add_argument("--names", nargs="*", default=list(CLIPS))
    parser.add_argument("--emotions", nargs="*", default=list(EMOTIONS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = ExpressionModel.load(args.model)
    upper = [i for i, name in enumerate(model.au_names) if name in REPLACED_AUS]
    device = torch.device("cpu")
    print(
        f"model {args.model}, generator {args.generator}; AU error over {', '.join(REPLACED_AUS)}"
    )
    for name in args.names:
        clip = args.clips / name
        info = probe(clip)
        lm_in = video_landmarks(clip)
        wobble_in = jitter(lm_in, indices=OUTLINE)
        sheet = preview_sheet(
            input_path=clip,
            output_path=args.out / f"{clip.stem}.png",
            n_frames=2,
            model=args.model,
            generator=args.generator,
        )
        print(f"\n{name} ({info.width}x{info.height}, {info.n_frames} frames); sheet: {sheet}")
        print(
            f"{'emotion':<10} {'AU rmse':>8} {'AU cos':>7} {'lip err':>8} {'open r':>7} "
            f"{'strict err':>10} {'strict r':>8} {'min det':>8} {'wobble':>7}"
        )
        with tempfile.TemporaryDirectory(prefix="spfem-measure-") as tmp:
            work = Path(tmp)
            analysis = analyse_video(info, model=model, workdir=work, reporter=SilentReporter())
            ones = np.ones(analysis.track.n_frames)
            for emotion in args.emotions:
                target = model.emotion_vector(emotion).double().numpy()
                deltas = analysis.deltas(target=target, weights=ones)
                row: dict[str, float] = {}
                for mouth in ("natural", "strict"):
                    gen = build_generator(
                        model=model, device=device, mouth=mouth, kind=args.generator
                    )
                    out = work / f"{emotion}.{mouth}.mp4"
                    render_video(
                        analysis,
                        generator=gen,
                        deltas=deltas,
                        output=out,
                        workdir=work,
                        preset="veryfast",
                    )
                    lm_out = video_landmarks(out)
                    speech = compare_speech(lm_in, lm_out)
                    row[f"{mouth} err"] = speech.inner_lip_error
                    row[f"{mouth} r"] = speech.opening_corr
                    if mouth == "natural":
                        got = achieved_aus(model, lm_in, lm_out)[upper]
                        want = deltas[analysis.track.valid].mean(axis=0)[upper]
                        row["rmse"] = float(np.sqrt(np.mean((got - want) ** 2)))
                        denom = np.linalg.norm(got) * np.linalg.norm(want)
                        row["cos"] = float(got @ want / denom) if denom > 0 else float("nan")
                        row["det"] = min_det(analysis, gen, deltas)
                        row["wobble"] = jitter(lm_out, indices=OUTLINE) / wobble_in
                print(
                    f"{emotion:<10} {row['rmse']:8.3f} {row['cos']:7.2f} "
                    f"{row['natural err']:8.4f} {row['natural r']:7.3f} "
                    f"{row['strict err']:10.4f} {row['strict r']:8.3f} {row['det']:8.3f} "
                    f"{row['wobble']:7.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
