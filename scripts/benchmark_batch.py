"""Throughput of `spfem batch`: clips per minute and frames per second.

    python scripts/benchmark_batch.py [--clips ../shared/clips] [--seconds 3]
                                      [--emotion happy [--emotion sad ...]]
                                      [--workers 1 2] [--no-ray] [--out DIR]

Builds a folder of short clips (the first `--seconds` of several shared clips, re-encoded),
then runs the same batch into a fresh OUT_DIR with each number of local workers and with the
Ray executor on a local Ray instance (started before the clock starts, as a running cluster
would be; its start-up time is printed apart), and finally a resumed run over a finished
folder, both in-process and as a fresh `spfem batch` process (imports included).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIPS = (
    "speech_man_256x256.mp4",
    "speech_obama_450x450.mp4",
    "talk_s20_480x908.mp4",
    "talk_s18_1280x720.mp4",
    "talk_s32_1280x720.mp4",
)


def make_folder(*, clips: Path, folder: Path, seconds: float) -> None:
    """The first `seconds` of each of CLIPS, re-encoded (a cut lands on any frame)."""
    import imageio_ffmpeg

    folder.mkdir(parents=True, exist_ok=True)
    for name in CLIPS:
        subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(clips / name),
                "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                "-c:a", "copy", str(folder / name),
            ],
            check=True,
        )  # fmt: skip


def line(label: str, *, clips: int, frames: int, seconds: float) -> str:
    return (
        f"{label:<28} {clips:>3} clips {frames:>5} frames {seconds:>7.2f} s "
        f"{clips / seconds * 60:>7.1f} clips/min {frames / seconds:>7.1f} fps"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=Path(__file__).parents[2] / "shared/clips")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--emotion", action="append", help="repeat for several (default: happy)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="keep the folders here")
    args = parser.parse_args()
    emotions = args.emotion or ["happy"]

    from spfem_cli.batch import run_batch

    root = args.out or Path(tempfile.mkdtemp(prefix="spfem-bench-batch-"))
    in_dir = root / "in"
    make_folder(clips=args.clips, folder=in_dir, seconds=args.seconds)
    specs = " ".join(emotions)
    print(f"folder: {len(CLIPS)} clips of {args.seconds:g} s in {in_dir}, emotions: {specs}")
    print("fps counts the frames of every output (a clip with two emotions counts twice)")

    def timed(label: str, out: Path, **kwargs: object) -> Path:
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        summary = run_batch(in_dir=in_dir, out_dir=out, emotions=emotions, **kwargs)
        seconds = time.perf_counter() - t0
        assert summary.ok, [r.reason for r in summary.with_status("failed")]
        # Clips are inputs: with several emotions, each clip makes several outputs.
        clips = len({r.input for r in summary.records})
        print(line(label, clips=clips, frames=summary.frames_done, seconds=seconds))
        return out

    # A first, untimed pass warms the page cache and the imports for every run alike.
    timed("warm-up (1 worker)", root / "warm")
    finished = root / f"out-{args.workers[0]}"
    for workers in args.workers:
        timed(f"local, {workers} worker(s)", root / f"out-{workers}", workers=workers)
    if not args.no_ray:
        import ray

        t0 = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        print(f"(local Ray instance started in {time.perf_counter() - t0:.1f} s, not counted)")
        cpus = int(ray.cluster_resources().get("CPU", 0))
        timed(f"ray executor ({cpus} CPUs)", root / "out-ray", executor="ray")
        ray.shutdown()

    t0 = time.perf_counter()
    summary = run_batch(in_dir=in_dir, out_dir=finished, emotions=emotions)
    seconds = time.perf_counter() - t0
    assert summary.n_skipped == len(CLIPS) * len(emotions) and summary.n_done == 0
    print(f"{'resumed run, in-process':<28} {summary.n_skipped:>3} skipped {seconds:>15.3f} s")
    t0 = time.perf_counter()
    flags = [arg for emotion in emotions for arg in ("-e", emotion)]
    subprocess.run(
        [sys.executable, "-m", "spfem_cli", "batch", str(in_dir), str(finished), *flags, "-q"],
        check=True,
    )
    print(f"{'resumed run, spfem batch':<28} {'':>11} {time.perf_counter() - t0:>15.3f} s")
    if args.out is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
