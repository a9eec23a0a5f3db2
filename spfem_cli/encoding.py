"""How the edited videos are encoded (x264): the presets, the defaults and their check.

Light on purpose: the CLI reads the defaults for its help without importing the media code.
"""

from __future__ import annotations

from spfem_cli.errors import SpfemError

# x264's presets, fastest first: a slower one packs the picture better (at one crf, a smaller
# file or a slightly better picture) and takes longer.
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)  # fmt: skip
# veryfast, not x264's own medium: on two cores medium's encode took a third of a 720p or 1080p
# edit's time (talk_s32 to sad: 14.2 s against 10.0 s) for a picture one cannot tell apart
# (the edit against its input: 44.33 against 44.29 dB PSNR) and a file 10% larger
# (scripts/measure_presets.py).
DEFAULT_PRESET = "veryfast"
# x264's constant rate factor, 0 (lossless) to MAX_CRF (worst): 18 looks like the source.
DEFAULT_CRF = 18
MAX_CRF = 51


def check_encoding(*, crf: int, preset: str) -> None:
    """Refuse a `--crf` outside 0..MAX_CRF or a `--preset` not in X264_PRESETS."""
    if not 0 <= crf <= MAX_CRF:
        raise SpfemError(f"--crf must be between 0 and {MAX_CRF}, got {crf}")
    if preset not in X264_PRESETS:
        raise SpfemError(f"unknown preset {preset!r}; choose one of: {', '.join(X264_PRESETS)}")
