"""Cost of the tries of a short edit of a long video that moves its lip corners less.

    python scripts/benchmark_tries.py [--clips ../shared/clips] [--loops 25] [--at 1] [--vfr]
        [--timeline] [--out DIR]

Builds a long 720x720 clip from speech_man's first 4 s (scaled up, looped `--loops` times:
100 s by default), then edits 1 s of it (from `--at` s into the middle loop) to sad as
`spfem edit` does, keeping the speech: speech_man is a speaker whose natural-mode corners
change how FaceMesh reads the mouth, so the edit is measured and tried again with the corners
moving less. It runs the edit twice, in turns: with the tries rendered on the measured frames
alone (`pipeline.tried_alone`, as `spfem edit` does) and with every try rendering the whole
video (`ALONE_SHARE` set to 0: as before 2026-12-07). Prints, for each, the renders (frames
each), each try's verdict (on the range alone or the video: inner-lip error, opening
correlation), the final verdict, and frames per second of each stage over the video's frames
(the speech check over the edited frames), with the seconds end to end.

`--timeline` edits the whole video to fear but for that second's sadness: fear moves the mouth
too, so the first try renders the whole video; where fear keeps the speech and sadness does
not, the second is then tried alone.

`--vfr` drops one frame in nine, their times kept, as a phone camera writes a variable rate:
such a video is decoded from its start (resampled to its mean rate), and only the frames
measured are edited and encoded for a try.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from spfem_cli import pipeline, speech_check
from spfem_cli.media import FrameReader, probe
from spfem_cli.media.probe import run_ffmpeg
from spfem_cli.speech_check import SpeechCheck


def build_clip(source: Path, out: Path, *, loops: int, vfr: bool = False) -> None:
    """`source`'s first 4 s at 720x720, `loops` times over, at a constant 25 fps; vfr: with
    one frame in nine dropped, the others' times kept (a variable rate)."""
    drop = ",select='not(eq(mod(n\\,9)\\,4))'" if vfr else ""
    timing = ["-fps_mode", "passthrough"] if vfr else ["-r", "25"]
    done = run_ffmpeg(
        [
            "-v", "error", "-y", "-i", str(source), "-vf",
            f"trim=duration=4,loop=loop={loops - 1}:size=100,scale=720:720:flags=bicubic,"
            f"setpts=N/25/TB{drop}", *timing, "-c:v", "libx264", "-crf", "16",
            "-preset", "veryfast", "-an", str(out),
        ]
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(done.stderr.decode(errors="replace"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=Path("../shared/clips"))
    parser.add_argument("--loops", type=int, default=25)
    parser.add_argument("--at", type=float, default=1.0, help="seconds into a loop")
    parser.add_argument(
        "--timeline", action="store_true", help="fear over the whole video but for the second"
    )
    parser.add_argument("--vfr", action="store_true", help="a variable frame rate")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spfem-tries-") as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        clip = folder / "speech_man_long.mp4"
        build_clip(args.clips / "speech_man_256x256.mp4", clip, loops=args.loops, vfr=args.vfr)
        info = probe(clip)
        n = FrameReader(info).expected_frames
        start = 4.0 * (args.loops // 2) + args.at
        rate = (
            f"; a variable rate, read at {float(info.fps):g} fps"
            if info.variable_frame_rate
            else ""
        )
        print(f"{clip.name}: {n} frames of 720x720{rate}; sad from {start:g} s to {start + 1:g} s")
        renders: list[int] = []
        render = pipeline.render_video

        def counted(*a: object, **kw: object) -> int:
            frames = kw.get("frames")
            renders.append(n if frames is None else int(np.sum(frames)))  # type: ignore[arg-type]
            return render(*a, **kw)  # type: ignore[arg-type]

        pipeline.render_video = counted  # type: ignore[assignment]
        tries: list[str] = []
        check = speech_check.check_speech_parts

        def said(**kw: object) -> list[SpeechCheck | str]:
            found = check(**kw)  # type: ignore[arg-type]
            where = "range" if kw.get("held") is not None else "video"
            tries.append(where + " " + " / ".join(map(_reading, found)))
            return found

        speech_check.check_speech_parts = said  # type: ignore[assignment]
        for name, share in (("tries alone", pipeline.ALONE_SHARE), ("whole tries", 0.0)):
            pipeline.ALONE_SHARE = share
            renders.clear()
            tries.clear()
            out = folder / f"sad-{share:g}.mp4"
            out.unlink(missing_ok=True)
            t0 = time.perf_counter()
            # A timeline plays its emotions over the whole video; one emotion, the range.
            report = pipeline.edit_video(
                input_path=clip, output_path=out, device="cpu",
                emotion=f"0-{start:g}:fear,{start:g}-{start + 1:g}:sad,{start + 1:g}-:fear"
                if args.timeline else "sad",
                start=None if args.timeline else start,
                end=None if args.timeline else start + 1.0,
            )  # fmt: skip
            total = time.perf_counter() - t0
            stages = ", ".join(
                f"{stage} {(report.n_edited if stage == 'speech check' else n) / s:.1f} fps"
                f" ({s:.1f} s)"
                for stage, s in report.seconds.items()
            )
            print(f"[{name}] renders {renders}; {total:.1f} s end to end; {stages}")
            print(f"    tries, mouth alone: {'; '.join(tries)}")
            for note in report.notes[-3 if args.timeline else -1 :]:
                print(f"    {note}")


def _reading(check: SpeechCheck | str) -> str:
    """One part's reading of a try, short: its verdict, inner-lip error and opening r."""
    if isinstance(check, str):
        return "unmeasured"
    verdict = "kept" if check.kept else "changed"
    return f"{verdict} {100 * check.mouth.inner_lip_error:.2f}% r {check.opening_score:.3f}"


if __name__ == "__main__":
    main()
