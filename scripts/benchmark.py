"""Speed and memory of `spfem edit`, stage by stage, against a plain ffmpeg re-encode.

    python scripts/benchmark.py [--clips ../shared/clips] [--device auto] [--out DIR]

For each resolution (720p from talk_s32_1280x720.mp4, 1080p from talk_mead_sad_1920x1080.mp4)
it prints frames per second of each stage measured alone (decode, landmarks, generate to happy
with the warp alone (with and without the smile's folds shaded in) and with the refiner,
encode, and the refiner's network by itself in milliseconds per frame on one thread, as
`spfem edit` runs it beside the encoder; then generate to neutral on a face read as frowning,
squinting and raising its brows, with the creases those leave lifted and without), of `spfem
edit` end to end with each generator (as it edits by default, measuring the speech, whose
seconds are a stage of their own; and the warp with `--no-keep-speech`), and of `ffmpeg -i IN
-c:v libx264 (same settings) -c:a copy OUT` run in the same session, with the ratio of the two.
Then the peak memory (resident set size of the Python process and of its largest ffmpeg child)
of `spfem edit` on a clip and on the same clip looped to 6x its length: flat memory means the
two peaks are about equal; and a partial edit of that long clip (2 s of it), whose speech is
measured on the frames it edited alone.
Last, the generate stage on a face with glasses (expr_d19.mp4, 512x512) to surprise, with its
rims kept still as `spfem edit` does and without.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from spfem_cli.encoding import DEFAULT_CRF, DEFAULT_PRESET
from spfem_cli.media import ffmpeg_exe

CLIPS = {"720p": "talk_s32_1280x720.mp4", "1080p": "talk_mead_sad_1920x1080.mp4"}
# A face with glasses, whose rims an edit keeps still (`spfem_cli.face.glasses`).
GLASSES_CLIP = "expr_d19.mp4"
# The range of the looped clip the partial edit edits (seconds).
PARTIAL_SPAN = "10-12"
# The encoder settings `spfem edit` uses, for the edits and the plain ffmpeg re-encode alike.
CRF, PRESET = DEFAULT_CRF, DEFAULT_PRESET


def loop_clip(src: Path, dst: Path, times: int) -> Path:
    """The clip repeated `times` times (stream copy, no re-encode)."""
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-stream_loop",
            str(times - 1),
            "-i",
            str(src),
            "-c",
            "copy",
            str(dst),
        ],
        check=True,
    )
    return dst


def baseline_reencode(src: Path, dst: Path) -> float:
    """Seconds for a plain ffmpeg re-encode with the encoder settings spfem uses."""
    t0 = time.perf_counter()
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-i",
            str(src),
            "-map",
            "0:v:0",
            "-map",
            "0:a?",
            "-c:v",
            "libx264",
            "-crf",
            str(CRF),
            "-preset",
            PRESET,
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "copy",
            "-movflags",
            "+faststart",
            str(dst),
        ],
        check=True,
    )
    return time.perf_counter() - t0


def peak_rss_mib() -> float:
    """This process's peak resident memory. Read from /proc (VmHWM, per address space): the
    kernel carries ru_maxrss over exec, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_edit(
    src: str, dst: str, device: str, generator: str, refiner: str, measured: str, span: str
) -> None:
    """Run one edit in this process and print its timings and peak memory as JSON; measured
    "1": as `spfem edit` makes it (natural mode measures the speech), "0": --no-keep-speech;
    span: "START-END" seconds to edit (`--start`, `--end`), "-" for the whole video."""
    from spfem_cli.pipeline import edit_video

    start, _, end = span.partition("-")
    t0 = time.perf_counter()
    report = edit_video(
        input_path=src,
        output_path=dst,
        emotion="happy",
        device=device,
        generator=generator,
        refiner=refiner,
        overwrite=True,
        crf=CRF,
        preset=PRESET,
        keep_speech=None if measured == "1" else False,
        start=float(start) if start else None,
        end=float(end) if end else None,
    )
    total = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "seconds": total,
                "stages": report.seconds,
                "frames": report.n_frames,
                "edited": report.n_edited,
                "rss_mib": peak_rss_mib(),
                "child_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }
        )
    )


def run_edit(
    src: Path,
    dst: Path,
    device: str,
    generator: str,
    refiner: str,
    *,
    measured: bool = True,
    span: str = "-",
) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(src),
            str(dst),
            device,
            generator,
            refiner,
            "1" if measured else "0",
            span,
        ],  # fmt: skip
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def default_refiner(workdir: Path) -> str:
    """The shipped refiner's name, or a file holding an untrained refiner of the default
    architecture when none ships (the speed is the same)."""
    from spfem_cli.generator.checkpoint import default_weights_dir, read_manifest
    from spfem_cli.generator.kinds import DEFAULT_REFINER
    from spfem_cli.generator.refiner import Refiner

    if DEFAULT_REFINER in read_manifest(default_weights_dir()):
        return DEFAULT_REFINER
    path = workdir / "untrained-refiner.safetensors"
    Refiner().save(path)
    return str(path)


def stage_speeds(src: Path, device: str, workdir: Path, refiner: str) -> dict[str, float]:
    """Frames per second of each stage alone, on frames held in memory between stages."""
    import torch

    from spfem_cli.face.mesh import FaceFrame
    from spfem_cli.face.tracker import LandmarkTracker
    from spfem_cli.generator.device import resolve_device
    from spfem_cli.generator.expression import ExpressionModel
    from spfem_cli.generator.generator import build_generator
    from spfem_cli.media import FrameReader, FrameWriter, probe

    info = probe(src)
    t0 = time.perf_counter()
    with FrameReader(info) as reader:
        frames = list(reader)
    speeds = {"decode": len(frames) / (time.perf_counter() - t0)}

    t0 = time.perf_counter()
    dets = []
    with LandmarkTracker() as tracker:
        for f in frames:
            dets.append(tracker.detect(f))
    speeds["landmarks"] = len(frames) / (time.perf_counter() - t0)

    dev = resolve_device(device)
    model = ExpressionModel.load()
    delta = model.emotion_vector("happy", intensity=1.0).double().numpy()
    faces = [(f, det) for f, det in zip(frames, dets, strict=True) if det is not None]
    for kind, shaded in (("warp", False), ("warp", True), ("refiner", True)):
        gen = build_generator(model=model, device=dev, kind=kind, refiner=refiner)
        if not shaded:
            gen.shading = None
        t0 = time.perf_counter()
        for f, det in faces:
            face = FaceFrame.from_landmarks(det.landmarks)
            gen.edit_frame(
                f, face=face, points=face.to_face(det.landmarks.astype(np.float64)), delta=delta
            )
        if dev.type == "cuda":
            torch.cuda.synchronize()
        name = f"generate/{kind}" + ("" if shaded else " without the smile's folds")
        speeds[name] = len(faces) / max(time.perf_counter() - t0, 1e-9)

    # The network alone, one crop at a time on one thread, as the edit loop runs it.
    net = gen.refiner
    size = net.config.crop.size
    x = torch.zeros(1, 10, size, size, device=dev)
    aus = torch.zeros(1, net.config.n_aus, device=dev)
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if dev.type == "cpu" else threads)
    with torch.no_grad():
        net(x, aus)
        t0 = time.perf_counter()
        for _ in range(50):
            net(x, aus)
        if dev.type == "cuda":
            torch.cuda.synchronize()
    torch.set_num_threads(threads)
    speeds["refiner net ms/frame"] = 1000 * (time.perf_counter() - t0) / 50

    # Neutral over a face that frowns, squints and raises its brows, with the creases those
    # leave lifted (the frown's furrows, the eyes' and the forehead's lines:
    # `generator.creases`) and without: what the lifts cost.
    plain = build_generator(model=model, device=dev, kind="warp", refiner=refiner)
    present = np.zeros(model.num_aus)
    for name, level in (("AU1", 0.3), ("AU2", 0.3), ("AU4", 0.6), ("AU7", 0.6)):
        present[model.au_names.index(name)] = level
    for lifted in (False, True):
        t0 = time.perf_counter()
        for f, det in faces:
            face = FaceFrame.from_landmarks(det.landmarks)
            plain.edit_frame(
                f,
                face=face,
                points=face.to_face(det.landmarks.astype(np.float64)),
                delta=-present,
                present=present if lifted else None,
            )
        name = "generate/warp to neutral, " + ("creases lifted" if lifted else "not lifted")
        speeds[name] = len(faces) / max(time.perf_counter() - t0, 1e-9)

    t0 = time.perf_counter()
    with FrameWriter(
        workdir / "enc.mp4",
        width=info.width,
        height=info.height,
        fps=info.fps,
        crf=CRF,
        preset=PRESET,
    ) as writer:
        for f in frames:
            writer.write(f)
    speeds["encode"] = len(frames) / (time.perf_counter() - t0)
    return speeds


def glasses_speeds(src: Path, device: str) -> dict[str, float]:
    """Frames per second of the generate stage (warp) on a clip with glasses, to surprise:
    with the rims warped with the skin; kept still and traced anew on every frame (as `spfem
    preview` does); and kept still and held steady from frame to frame (as `spfem edit`
    does, `SteadyRims`)."""
    from spfem_cli.face.glasses import RimFinder, SteadyRims
    from spfem_cli.face.mesh import FaceFrame
    from spfem_cli.face.tracker import LandmarkTracker
    from spfem_cli.generator.device import resolve_device
    from spfem_cli.generator.expression import ExpressionModel
    from spfem_cli.generator.generator import build_generator
    from spfem_cli.media import FrameReader, probe

    info = probe(src)
    finder = RimFinder(n_frames=info.n_frames)
    faces = []
    with FrameReader(info) as reader, LandmarkTracker() as tracker:
        for t, frame in enumerate(reader):
            det = tracker.detect(frame)
            if det is not None:
                finder.offer(t, frame, det.landmarks)
                faces.append((frame, FaceFrame.from_landmarks(det.landmarks), det.landmarks))
    rims = finder.rims()
    if rims is None:
        raise SystemExit(f"{src}: no glasses found")
    model = ExpressionModel.load()
    gen = build_generator(model=model, device=resolve_device(device), kind="warp")
    delta = model.emotion_vector("surprised", intensity=1.0).double().numpy()
    speeds = {}
    ways = {
        "rims moved": None,
        "rims traced anew": rims,
        "rims held steady": SteadyRims(rims, fps=float(info.fps)),
    }
    for label, worn in ways.items():
        t0 = time.perf_counter()
        for frame, face, landmarks in faces:
            points = face.to_face(landmarks.astype(np.float64))
            gen.edit_frame(frame, face=face, points=points, delta=delta, rims=worn)
        speeds[f"generate/warp, {label}"] = len(faces) / (time.perf_counter() - t0)
    return speeds


def main() -> None:
    if len(sys.argv) == 9 and sys.argv[1] == "--child":
        child_edit(*sys.argv[2:9])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clips", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "clips"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="keep outputs here")
    parser.add_argument("--long-factor", type=int, default=6)
    parser.add_argument(
        "--refiner",
        default=None,
        help="refiner checkpoint (default: the shipped one, else an untrained refiner of the "
        "same architecture, which costs the same)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        refiner = args.refiner or default_refiner(work)
        print(f"refiner: {refiner}")
        print(f"device={args.device}  encoder: libx264 crf={CRF} preset={PRESET}")
        for label, name in CLIPS.items():
            src = args.clips / name
            speeds = stage_speeds(src, args.device, work, refiner)
            base = baseline_reencode(src, work / f"{label}.ffmpeg.mp4")
            stages = "  ".join(
                f"{k} {v:.1f}" if k.endswith("ms/frame") else f"{k} {v:.1f} fps"
                for k, v in speeds.items()
            )
            print(f"[{label}] stages alone: {stages}")
            for kind, measured in (("warp", True), ("warp", False), ("refiner", True)):
                edit = run_edit(
                    src,
                    work / f"{label}.{kind}.happy.mp4",
                    args.device,
                    kind,
                    refiner,
                    measured=measured,
                )
                fps_edit = edit["frames"] / edit["seconds"]
                flag = "" if measured else " --no-keep-speech"
                print(
                    f"[{label}] spfem edit --generator {kind}{flag}: {fps_edit:6.1f} fps "
                    f"({edit['frames']} frames, {edit['seconds']:.2f} s; "
                    + ", ".join(f"{k} {v:.2f} s" for k, v in edit["stages"].items())
                    + f")  ->  spfem/ffmpeg time ratio {edit['seconds'] / base:.2f}x"
                )
            print(f"[{label}] ffmpeg re-encode: {edit['frames'] / base:6.1f} fps ({base:.2f} s)")

        src = args.clips / CLIPS["720p"]
        long = loop_clip(src, work / "long.mp4", args.long_factor)
        short_run = run_edit(src, work / "short.happy.mp4", args.device, "warp", refiner)
        long_run = run_edit(long, work / "long.happy.mp4", args.device, "warp", refiner)
        for tag, run in (("1x", short_run), (f"{args.long_factor}x", long_run)):
            print(
                f"[memory {tag}] {run['frames']} frames: peak RSS python {run['rss_mib']:.0f} MiB,"
                f" largest ffmpeg child at most {run['child_rss_mib']:.0f} MiB (ru_maxrss: includes"
                " the forking process's memory)"
            )
        # A partial edit is measured on its own frames: its measuring takes as long as the
        # range edited, not the video.
        part = run_edit(
            long, work / "long.part.mp4", args.device, "warp", refiner, span=PARTIAL_SPAN
        )
        print(
            f"[partial] {PARTIAL_SPAN} s of the {args.long_factor}x clip ({part['edited']} of "
            f"{part['frames']} frames edited): {part['seconds']:.2f} s; "
            + ", ".join(f"{k} {v:.2f} s" for k, v in part["stages"].items())
        )
        speeds = glasses_speeds(args.clips / GLASSES_CLIP, args.device)
        print(
            f"[glasses] {GLASSES_CLIP}: " + "  ".join(f"{k} {v:.1f} fps" for k, v in speeds.items())
        )


if __name__ == "__main__":
    main()
