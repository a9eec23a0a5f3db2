"""What a frame's pixels stand for: their luminance."""

from __future__ import annotations

import numpy as np

# Rec. 601's weights of R, G and B, as ffmpeg's gray formats and OpenCV's BGR2GRAY take them.
REC601_LUMA = (0.299, 0.587, 0.114)


def luma(rgb: np.ndarray) -> np.ndarray:
    """(...,) the luminance of RGB values (..., 3), in their units (levels, or their logs):
    float64 when rgb is float64, float32 otherwise."""
    dtype = np.float64 if rgb.dtype == np.float64 else np.float32
    return rgb.astype(dtype, copy=False) @ np.asarray(REC601_LUMA, dtype)
