"""The refiner against the warp alone, on people it was not trained on.

    python scripts/measure_refiner.py [--clips ../shared/clips] [--config configs/refiner-v1.json]
        [--refiner refiner-v1] [--out out/refiner] [--names ...] [--emotions ...] [--pairs 300]

1. Held-out reconstruction: pairs of frames (A, B) of each held-out person's videos; A is
   warped toward B's landmarks with the generator's warp, and compared with the real B over the
   face outside the held mouth: mean absolute error in 8-bit levels and 1 - SSIM, for the
   unwarped A, the warp alone and warp + refiner, and the share of pairs the refiner improved.
   The people come from the checkpoint's own record of who it was trained on: anyone else in
   the collection is held out. Two kinds of pairs: as in training (B close in time to A, the
   most changed expression among a few candidates) and B anywhere in the video.
2. Speech and stability, per clip and emotion, both generators, natural mouth: inner-lip error
   (fraction of the IOD) and mouth-opening correlation on re-detected landmarks, and landmark
   jitter (frame-to-frame motion) of the output over the input's.
   Where on the face the refiner helps: `error_map.png`, the mean error of each crop pixel
   over the held-out pairs as in training, for the warp alone and warp + refiner (black 0,
   white 10 levels or more), and their difference (green where the refiner lowered the error,
   red where it raised it; full at 1.5 levels).
3. A contact sheet per clip: for each emotion the input, the warp alone, warp + refiner, and
   the refiner's change (|refined - warp| x 4), on one frame, cropped to the face.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from spfem_cli.evaluate import compare_speech, video_landmarks
from spfem_cli.generator.checkpoint import load_checkpoint
from spfem_cli.generator.expression import EMOTIONS, ExpressionModel
from spfem_cli.generator.generator import FaceGenerator
from spfem_cli.generator.kinds import DEFAULT_REFINER
from spfem_cli.generator.refiner import Refiner, compose
from spfem_cli.generator.warp import WarpConfig, face_box
from spfem_cli.media import FrameReader, probe
from spfem_cli.pipeline import analyse_video, render_video
from spfem_cli.progress import SilentReporter
from spfem_cli.sheet import contact_sheet, write_png
from spfem_cli.training.frames import ClipFrames, load_collection
from spfem_cli.training.refiner import TrainConfig, make_batch, sample_pairs, validate

CLIPS = (
    "speech_obama_450x450.mp4",
    "talk_mead_sad_1920x1080.mp4",
    "talk_s32_1280x720.mp4",
    "expr_d19.mp4",
)


def reconstruction(args: argparse.Namespace, refiner: Refiner, train_people: set[str]) -> None:
    trained = TrainConfig.from_file(args.config)
    clips = load_collection(
        args.clips,
        people=trained.people,
        model=ExpressionModel.load(trained.expression_model),
        crop=refiner.config.crop,
        max_frames=trained.max_frames_per_clip,
        cache_dir=args.cache,
        exclude=tuple(trained.exclude),
    )
    held = sorted({c.person for c in clips} - train_people)
    maps = error_maps(clips, held, trained, refiner, args.pairs)
    print(f"error map: {write_png(args.out / 'error_map.png', maps)}")
    for title, cfg in (
        (f"pairs as in training (B within {trained.max_gap_frames} frames of A)", trained),
        ("B anywhere in the video", replace(trained, max_gap_frames=0)),
    ):
        print(f"\n{title}")
        _reconstruction_table(clips, held, cfg, refiner, args.pairs)


def error_maps(
    clips: list[ClipFrames], held: list[str], cfg: TrainConfig, refiner: Refiner, n_pairs: int
) -> np.ndarray:
    """The held-out people's mean error per crop pixel, side by side: warp alone, warp +
    refiner, and the refiner's gain; (3 S, 9 S, 3) uint8 (each crop pixel drawn 3 x 3), S the
    crop's size, pixels counted where the refiner may act (the mean is weighted by that
    region)."""
    size = refiner.config.crop.size
    err = torch.zeros(2, size, size, dtype=torch.float64)
    weight = torch.zeros(size, size, dtype=torch.float64)
    for person in held:
        mine = [c for c in clips if c.person == person]
        pairs = sample_pairs(mine, n_pairs, rng=np.random.default_rng(123), config=cfg)
        with torch.no_grad():
            for i in range(0, len(pairs), 32):
                b = make_batch(mine, pairs[i : i + 32], crop=refiner.config.crop, warp=WarpConfig())
                residual, mask = refiner(b.inputs, b.aus)
                refined = compose(b.warped, residual, mask, b.allow)
                for k, out in enumerate((b.warped, refined)):
                    levels = 127.5 * (out - b.target).abs().mean(dim=1)
                    err[k] += (levels * b.allow[:, 0]).sum(dim=0).double()
                weight += b.allow[:, 0].sum(dim=0).double()
    mean = (err / weight.clamp(min=1e-6)).numpy()
    gain = mean[0] - mean[1]

    def grey(a: np.ndarray) -> np.ndarray:
        return np.repeat((np.clip(a / 10, 0, 1) * 255)[..., None], 3, axis=-1)

    signed = np.zeros((size, size, 3))
    signed[..., 1] = np.clip(gain / 1.5, 0, 1) * 255
    signed[..., 0] = np.clip(-gain / 1.5, 0, 1) * 255
    maps = np.concatenate([grey(mean[0]), grey(mean[1]), signed], axis=1).astype(np.uint8)
    return maps.repeat(3, axis=0).repeat(3, axis=1)


def _reconstruction_table(
    clips: list[ClipFrames], held: list[str], cfg: TrainConfig, refiner: Refiner, n_pairs: int
) -> None:
    print(f"held-out people: {', '.join(held)}")
    print(
        f"{'person':<24} {'pairs':>5} {'L1 source':>9} {'L1 warp':>8} {'L1 refined':>10} "
        f"{'gain':>6} {'dSSIM warp':>10} {'dSSIM ref':>9} {'wins':>5}"
    )
    totals = np.zeros(6)
    count = 0
    for person in held:
        mine = [c for c in clips if c.person == person]
        pairs = sample_pairs(mine, n_pairs, rng=np.random.default_rng(123), config=cfg)
        r = validate(refiner, mine, pairs, warp=WarpConfig())
        print(
            f"{person:<24} {r.pairs:5d} {r.l1_source:9.2f} {r.l1_warp:8.2f} {r.l1_refined:10.2f} "
            f"{100 * r.l1_gain:5.1f}% {r.dssim_warp:10.4f} {r.dssim_refined:9.4f} "
            f"{100 * r.wins:4.0f}%"
        )
        totals += r.pairs * np.array(
            [r.l1_source, r.l1_warp, r.l1_refined, r.dssim_warp, r.dssim_refined, r.wins]
        )
        count += r.pairs
    m = totals / max(count, 1)
    print(
        f"{'all held-out':<24} {count:5d} {m[0]:9.2f} {m[1]:8.2f} {m[2]:10.2f} "
        f"{100 * (1 - m[2] / m[1]):5.1f}% {m[3]:10.4f} {m[4]:9.4f} {100 * m[5]:4.0f}%"
    )


def speech_and_sheets(args: argparse.Namespace, refiner: Refiner) -> None:
    model = ExpressionModel.load()
    cpu = torch.device("cpu")
    gens = {
        "warp": FaceGenerator(model=model, device=cpu),
        "refiner": FaceGenerator(model=model, device=cpu, refiner=refiner),
    }
    for name in args.names:
        clip = args.clips / name
        info = probe(clip)
        lm_in = video_landmarks(clip)
        print(f"\n{name} ({info.width}x{info.height}, {info.n_frames} frames)")
        print(
            f"{'emotion':<10} {'lip err warp':>12} {'refiner':>8} {'open r warp':>11} "
            f"{'refiner':>8} {'jitter warp':>11} {'refiner':>8}"
        )
        rows = []
        with tempfile.TemporaryDirectory(prefix="spfem-measure-") as tmp:
            work = Path(tmp)
            analysis = analyse_video(info, model=model, workdir=work, reporter=SilentReporter())
            track = analysis.track
            ones = np.ones(track.n_frames)
            faces = np.flatnonzero(track.valid)
            pick = int(faces[len(faces) // 2])
            with FrameReader(info) as reader:
                frame = next(f for t, f in enumerate(reader) if t == pick)
            x0, y0, x1, y1 = face_box(
                track.landmarks_px(pick), width=info.width, height=info.height, margin=0.3
            )
            for emotion in args.emotions:
                target = model.emotion_vector(emotion).double().numpy()
                deltas = analysis.deltas(target=target, weights=ones)
                stats = {}
                for kind, gen in gens.items():
                    out = work / f"{emotion}.{kind}.mp4"
                    render_video(
                        analysis, generator=gen, deltas=deltas, output=out, workdir=work,
                        preset="veryfast",
                    )  # fmt: skip
                    s = compare_speech(lm_in, video_landmarks(out))
                    stats[kind] = (s.inner_lip_error, s.opening_corr, s.jitter_out / s.jitter_in)
                w, r = stats["warp"], stats["refiner"]
                print(
                    f"{emotion:<10} {w[0]:12.4f} {r[0]:8.4f} {w[1]:11.3f} {r[1]:8.3f} "
                    f"{w[2]:11.3f} {r[2]:8.3f}",
                    flush=True,
                )
                edits = {
                    kind: gen.edit_frame(
                        frame,
                        face=track.frame(pick),
                        points=np.asarray(track.norm[pick], np.float64),
                        delta=deltas[pick],
                    )[y0:y1, x0:x1]
                    for kind, gen in gens.items()
                }
                change = np.abs(edits["refiner"].astype(int) - edits["warp"].astype(int)) * 4
                rows.append(
                    [
                        frame[y0:y1, x0:x1],
                        edits["warp"],
                        edits["refiner"],
                        np.clip(change, 0, 255).astype(np.uint8),
                    ]
                )
        sheet = contact_sheet(
            rows,
            column_labels=["input", "warp alone", "warp + refiner", "|refiner - warp| x4"],
            row_labels=list(args.emotions),
            cell_height=200,
        )
        print(f"sheet: {write_png(args.out / f'{clip.stem}.png', sheet)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--clips", type=Path, default=root.parent / "shared" / "clips")
    parser.add_argument("--config", type=Path, default=root / "configs" / "refiner-v1.json")
    parser.add_argument("--refiner", default=DEFAULT_REFINER)
    parser.add_argument("--cache", type=Path, default=root / "out" / "refiner-cache")
    parser.add_argument("--out", type=Path, default=root / "out" / "refiner")
    parser.add_argument("--names", nargs="*", default=list(CLIPS))
    parser.add_argument("--emotions", nargs="*", default=list(EMOTIONS))
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--skip-speech", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    ckpt = load_checkpoint(args.refiner)
    refiner = Refiner.from_checkpoint(ckpt)
    train_people = set(ckpt.config.get("training", {}).get("train_people", []))
    print(f"refiner {args.refiner} ({ckpt.path.name}, sha256 {ckpt.sha256[:12]})")
    reconstruction(args, refiner, train_people)
    if not args.skip_speech:
        speech_and_sheets(args, refiner)


if __name__ == "__main__":
    main()
