"""How well each emotion is produced, on real clips: AUs, speech, folding, wobble, sheets.

    python scripts/measure_expressions.py [--clips ../shared/clips] [--out out/measure]
        [--model facs-v2] [--generator refiner|warp] [--names speech_obama_450x450.mp4 ...]
        [--emotions happy sad ...] [--mouths natural strict expressive] [--no-shading]
        [--no-keep-speech]

For every clip and emotion it edits the whole clip (each clip is tracked once and rendered once
per emotion and mouth mode), re-detects the landmarks on the output, and prints (speech per
mouth mode; the rest for the first of ``--mouths``, natural by default):

- AU error: the AU change re-estimated on the output (output landmarks minus input landmarks,
  each frame in its own face frame, fitted on the brows/lids/cheeks/nose as `spfem edit`
  estimates them) against the change the edit asked for, read the same way (`as_read`), as
  RMSE over the upper-face AUs
  (activation units: 1 = the AU at full strength) and the cosine of the two vectors;
- speech, in both mouth modes: inner-lip error (fraction of the inter-ocular distance) and the
  correlation of the mouth opening over time, twice: with landmarks found on the output
  (``err``, ``r``), and on the input with only the output's mouth region pasted in
  (``mouth err``, ``mouth r``, `spfem_cli.evaluate.window_landmarks`). FaceMesh reads the face
  as a whole, so wider eyes alone move where it puts the lips; the control line under each
  table shows it: surprise's brow and lid AUs alone, which leave every mouth pixel as it was;
  ``corner``: how far the lip corners rose against the middle of the lips (mouth only, IOD);
  ``lips``: the factor on the mouth AUs' changes of the edit measured, as `spfem edit` makes it
  (natural mode keeps the speech by default: `pipeline.render_edit` renders again with the lip
  corners moving half as far, then held, where the speech changed; 1 with
  ``--no-keep-speech``, which measures each mode at full strength);
- folding: the smallest Jacobian determinant of the warp over sampled frames (> 0: no fold);
- wobble: frame-to-frame motion of the face outline landmarks, output over input (<= 1: the
  outline moves no more than in the input), found on the output (``wobble``) and on the input
  with only the output's band along the outline pasted in (``outline``);
- delivered: the share of the requested landmark motion the warp's flow carries, per part of
  the face (flow at the landmarks projected on the requested displacement, first mouth mode).
  Lip corners are held back on purpose (the speech owns the lips); everything else should be
  near 100%;
- per AU: each upper-face AU asked and read back on the output (the AU error's parts);

and writes a contact sheet per clip (input and all eight emotions) to the output folder.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from spfem_cli.encoding import DEFAULT_CRF
from spfem_cli.evaluate import (
    compare_speech,
    corner_lift,
    face_frame_landmarks,
    jitter,
    mouth_opening,
    video_landmarks,
    window_landmarks,
)
from spfem_cli.face import mesh
from spfem_cli.generator.expression import DEFAULT_MODEL, EMOTIONS, REPLACED_AUS, ExpressionModel
from spfem_cli.generator.generator import MOUTH_MODES, FaceGenerator, build_generator
from spfem_cli.generator.kinds import DEFAULT_GENERATOR, GENERATORS, keeps_speech
from spfem_cli.generator.warp import dense_min_jacobian_det, face_box, sample_flow
from spfem_cli.media import probe
from spfem_cli.pipeline import Editor, analyse_video, render_edit, render_video, signed_activations
from spfem_cli.preview import preview_sheet
from spfem_cli.progress import SilentReporter

# The clips with real speech (../shared/clips/SOURCES.md: talk_mead_sad, speech_*, expr_d12), which
# test the lips, and talk_s32, a smiling speaker.
CLIPS = (
    "speech_obama_450x450.mp4",
    "talk_mead_sad_1920x1080.mp4",
    "talk_s32_1280x720.mp4",
    "speech_man_256x256.mp4",
    "expr_d12.mp4",
)
# The face outline without the jaw: the jaw moves with the speech in both videos.
OUTLINE = tuple(i for i in mesh.FACE_OVAL if i not in mesh.JAW)
# Parts of the face whose delivered motion is reported (both sides).
PARTS = {
    "brows": mesh.RIGHT_EYEBROW + mesh.LEFT_EYEBROW,
    "upper lids": (159, 160, 158, 161, 157, 386, 385, 387, 384, 388),
    "lower lids": (145, 144, 153, 163, 154, 374, 373, 380, 390, 381),
    "cheeks": (117, 118, 119, 100, 101, 50, 346, 347, 348, 329, 330, 280),
    "nose": (64, 48, 98, 294, 278, 327),
    "lip corners": mesh.LIP_CORNERS,
}
# Requested motion below this mean size (IOD) is not reported as a share.
MIN_REQUEST = 0.005
# The control edit: surprise's AUs that move only the brows and lids.
CONTROL_AUS = ("AU1", "AU2", "AU5")


def achieved_aus(model: ExpressionModel, lm_in: np.ndarray, lm_out: np.ndarray) -> np.ndarray:
    """Mean AU change (K,) from input to output landmarks, over frames with a face in both."""
    a, b = face_frame_landmarks(lm_in), face_frame_landmarks(lm_out)
    n = min(len(a), len(b))
    both = ~(np.isnan(a[:n]).any(axis=(1, 2)) | np.isnan(b[:n]).any(axis=(1, 2)))
    offsets = torch.from_numpy(b[:n][both] - a[:n][both]).float()
    with torch.no_grad():
        return signed_activations(model, offsets).numpy().mean(axis=0)


def as_read(model: ExpressionModel, change: np.ndarray) -> np.ndarray:
    """An AU change (K,) as the landmark fit reads it: the AUs it never reads (contempt's
    one-sided squint and frown, `PLAYED_ONLY_AUS`) turned into what the read AUs show of them
    (half a one-sided squint reads as a squint of both sides)."""
    played = ~model.read_aus.numpy()
    out = np.where(played, 0.0, change)
    if played.any():
        units = torch.from_numpy(np.eye(model.num_aus)[played]).float()
        with torch.no_grad():
            readings = signed_activations(model, model.displacement(units)).numpy()
        out = out + change[played] @ readings
    return out


def warp_report(
    analysis, generator: FaceGenerator, deltas: np.ndarray, samples: int = 12
) -> tuple[float, dict[str, float]]:
    """Over `samples` frames spread over the clip: the smallest Jacobian determinant of the
    warp, and per part of the face (`PARTS`) the share of the requested landmark motion that
    the flow delivers (NaN where less than `MIN_REQUEST` is asked)."""
    track = analysis.track
    frames = np.flatnonzero(track.valid & np.any(deltas != 0, axis=1))
    worst = 1.0
    dot = dict.fromkeys(PARTS, 0.0)
    wanted = dict.fromkeys(PARTS, 0.0)
    size = dict.fromkeys(PARTS, 0.0)
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
        for part, idx in PARTS.items():
            pix = face.to_image(points[list(idx)])
            lands = face.to_image(points[list(idx)] + values[list(idx)])
            want = lands - pix
            # A backward map: the point shows where asked when the flow there is its motion.
            got = sample_flow(dense, torch.from_numpy(lands - box[:2]).float()).double().numpy()
            dot[part] += float((got * want).sum())
            wanted[part] += float((want * want).sum())
            size[part] += float(np.linalg.norm(want, axis=1).mean() / face.iod)
    n = max(1, min(samples, len(frames)))
    shares = {p: dot[p] / wanted[p] if size[p] / n >= MIN_REQUEST else float("nan") for p in PARTS}
    return worst, shares


def print_per_au(per_au: dict[str, tuple[np.ndarray, np.ndarray]], *, names: list[str]) -> None:
    """Each emotion's upper-face AUs, asked / read back on the output (activation units), so
    that an AU error can be traced to the units FaceMesh does not read back (the cheek raise:
    `expression.DETECTOR_GAIN`'s note)."""
    print("\nper AU, asked / read on the output")
    print(f"{'emotion':<10} " + " ".join(f"{n:>11}" for n in names))
    for emotion, (want, got) in per_au.items():
        cells = " ".join(f"{w:5.2f}/{g:5.2f}" for w, g in zip(want, got, strict=True))
        print(f"{emotion:<10} {cells}")


def speech_rows(
    clip: Path, out: Path, lm_in: np.ndarray, lm_out: np.ndarray, prefix: str
) -> dict[str, float]:
    """Speech measures of one rendered output, with its landmarks `lm_out` and mouth only,
    and how far the lip corners rose (mouth only, IOD)."""
    full = compare_speech(lm_in, lm_out)
    lm_mouth = window_landmarks(clip, out, input_lm=lm_in, window="mouth")
    alone = compare_speech(lm_in, lm_mouth)
    n = min(len(lm_in), len(lm_mouth))
    return {
        f"{prefix} err": full.inner_lip_error,
        f"{prefix} r": full.opening_corr,
        f"{prefix} mouth err": alone.inner_lip_error,
        f"{prefix} mouth r": alone.opening_corr,
        f"{prefix} corner": float(np.nanmean(corner_lift(lm_mouth[:n]) - corner_lift(lm_in[:n]))),
    }


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
    parser.add_argument("--mouths", nargs="*", default=["natural", "strict"], choices=MOUTH_MODES)
    parser.add_argument(
        "--no-shading",
        action="store_true",
        help="the warp alone, without the folds (smile, disgust's furrow)",
    )
    parser.add_argument(
        "--no-keep-speech",
        action="store_true",
        help="each mode at full strength, as `spfem edit --no-keep-speech` makes it",
    )
    args = parser.parse_args()
    asked = False if args.no_keep_speech else None
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
        ).path
        # A mouth that barely opens leaves its opening's correlation to re-detection noise
        # (talk_s20: 0.015; Obama's 0.071): printed so that r can be read for what it is.
        spread = float(np.nanstd(mouth_opening(lm_in)))
        print(
            f"\n{name} ({info.width}x{info.height}, {info.n_frames} frames); the mouth "
            f"opening's spread {spread:.3f} IOD; sheet: {sheet}"
        )
        print(f"{'':<27} " + "   ".join(f"{m + ' mouth':^43}" for m in args.mouths))
        print(
            f"{'emotion':<10} {'AU rmse':>8} {'AU cos':>7} "
            + f"{'err':>8} {'r':>6} {'mouth err':>10} {'mouth r':>8} {'corner':>7} {'lips':>4}   "
            * len(args.mouths)
            + f"{'min det':>8} {'wobble':>7} {'outline':>8}"
        )
        delivered: dict[str, dict[str, float]] = {}
        per_au: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        with tempfile.TemporaryDirectory(prefix="spfem-measure-") as tmp:
            work = Path(tmp)
            analysis = analyse_video(info, model=model, workdir=work, reporter=SilentReporter())
            ones = np.ones(analysis.track.n_frames)
            for emotion in args.emotions:
                target = model.emotion_vector(emotion).double().numpy()
                deltas = analysis.deltas(target=target, weights=ones)
                row: dict[str, float] = {}
                for mouth in args.mouths:
                    editor = Editor.load(
                        model=args.model, device="cpu", mouth=mouth, generator=args.generator
                    )
                    gen = editor.generator
                    if args.no_shading:
                        gen.shading = None
                    out = work / f"{emotion}.{mouth}.mp4"
                    rendered = render_edit(
                        analysis,
                        editor=editor,
                        deltas=deltas,
                        input_path=clip,
                        output=out,
                        workdir=work,
                        crf=DEFAULT_CRF,
                        preset="veryfast",
                        reporter=SilentReporter(),
                        label=emotion,
                        keep_speech=keeps_speech(asked, mouth=mouth),
                    )
                    lm_out = video_landmarks(out)
                    row |= speech_rows(clip, out, lm_in, lm_out, mouth)
                    row[f"{mouth} lips"] = rendered.mouth_scale
                    if mouth == args.mouths[0]:
                        got = achieved_aus(model, lm_in, lm_out)[upper]
                        want = as_read(model, deltas[analysis.track.valid].mean(axis=0))[upper]
                        row["rmse"] = float(np.sqrt(np.mean((got - want) ** 2)))
                        per_au[emotion] = (want, got)
                        denom = np.linalg.norm(got) * np.linalg.norm(want)
                        row["cos"] = float(got @ want / denom) if denom > 0 else float("nan")
                        row["det"], delivered[emotion] = warp_report(analysis, gen, deltas)
                        row["wobble"] = jitter(lm_out, indices=OUTLINE) / wobble_in
                        alone = window_landmarks(clip, out, input_lm=lm_in, window="outline")
                        row["outline wobble"] = jitter(alone, indices=OUTLINE) / wobble_in
                speech = "   ".join(
                    f"{row[f'{m} err']:8.4f} {row[f'{m} r']:6.3f} "
                    f"{row[f'{m} mouth err']:10.4f} {row[f'{m} mouth r']:8.3f} "
                    f"{row[f'{m} corner']:+7.3f} {row[f'{m} lips']:4.2g}"
                    for m in args.mouths
                )
                print(
                    f"{emotion:<10} {row['rmse']:8.3f} {row['cos']:7.2f} {speech}   "
                    f"{row['det']:8.3f} {row['wobble']:7.3f} {row['outline wobble']:8.3f}",
                    flush=True,
                )
            control = np.zeros(model.num_aus)
            for au in CONTROL_AUS:
                i = model.au_names.index(au)
                control[i] = model.emotion_vector("surprised")[i]
            gen = build_generator(model=model, device=device, mouth="strict", kind=args.generator)
            out = work / "control.mp4"
            render_video(
                analysis,
                generator=gen,
                deltas=analysis.deltas(target=control, weights=ones, removal=0.0),
                output=out,
                workdir=work,
                preset="veryfast",
            )
            lm_ctl = video_landmarks(out)
            ctl = speech_rows(clip, out, lm_in, lm_ctl, "control")
            ctl_wobble = jitter(lm_ctl, indices=OUTLINE) / wobble_in
            print(
                f"control: surprised's {', '.join(CONTROL_AUS)} alone (brows and lids; no mouth "
                f"pixel changes): r {ctl['control r']:.3f} on the output, "
                f"{ctl['control mouth r']:.3f} mouth only; lip err {ctl['control err']:.4f}, "
                f"{ctl['control mouth err']:.4f}; wobble {ctl_wobble:.3f}"
            )
            print("\ndelivered by the warp (share of the requested landmark motion)")
            print(f"{'emotion':<10} " + " ".join(f"{p:>11}" for p in PARTS))
            for emotion, shares in delivered.items():
                cells = " ".join(
                    f"{'-':>11}" if np.isnan(v) else f"{100 * v:10.0f}%" for v in shares.values()
                )
                print(f"{emotion:<10} {cells}")
            print_per_au(per_au, names=[model.au_names[i] for i in upper])


if __name__ == "__main__":
    main()
