"""What x264's preset costs and gives in an edit: time, file size and picture.

    python scripts/measure_presets.py [--clips ../shared/clips] [--presets medium veryfast]
        [--names talk_s32_1280x720.mp4 ...] [--emotion sad] [--runs 2]

Edits each clip with each preset (`spfem edit --preset`, crf 18), the presets taking turns
so that the machine's drift falls on all alike, and prints per clip and preset: the mean
seconds of `edit_video` (start-up included), the file's size, and the PSNR of the edit
against its input over the whole frame (ffmpeg's psnr filter, dB; the edit itself is most of
the difference, so equal numbers mean the encoder adds nothing one can see). About 15 s an
edit of a 720p clip on two cores.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

CLIPS = ("talk_s32_1280x720.mp4", "talk_mead_sad_1920x1080.mp4", "speech_obama_450x450.mp4")


def psnr(edited: Path, source: Path) -> float:
    """ffmpeg's mean PSNR (dB) of `edited` against `source`, frame by frame."""
    from spfem_cli.media import ffmpeg_exe

    run = subprocess.run(
        [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(edited),
            "-i", str(source), "-lavfi", "[0:v][1:v]psnr", "-f", "null", "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    found = re.search(r"average:([0-9.]+|inf)", run.stderr)
    if found is None:
        raise RuntimeError(f"no PSNR in ffmpeg's output for {edited}")
    return float(found[1])


def main() -> None:
    from spfem_cli.pipeline import edit_video

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clips", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "clips"
    )
    parser.add_argument("--names", nargs="+", default=list(CLIPS))
    parser.add_argument("--presets", nargs="+", default=["medium", "veryfast"])
    parser.add_argument("--emotion", default="sad")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            src = args.clips / name
            seconds: dict[str, list[float]] = {p: [] for p in args.presets}
            for _ in range(args.runs):
                for preset in args.presets:
                    out = Path(tmp) / f"{src.stem}.{preset}.mp4"
                    t0 = time.perf_counter()
                    edit_video(
                        input_path=src,
                        output_path=out,
                        emotion=args.emotion,
                        device="cpu",
                        preset=preset,
                        overwrite=True,
                    )
                    seconds[preset].append(time.perf_counter() - t0)
            for preset in args.presets:
                out = Path(tmp) / f"{src.stem}.{preset}.mp4"
                mean = sum(seconds[preset]) / len(seconds[preset])
                print(
                    f"{name:30s} {preset:9s} {mean:6.1f} s  {out.stat().st_size / 1e6:6.2f} MB  "
                    f"PSNR against the input {psnr(out, src):.2f} dB"
                )


if __name__ == "__main__":
    main()
