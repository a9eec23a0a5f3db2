"""Where a video cuts from one shot to the next, found from a thumbnail of every frame.

An expression is read against the person's calm face over the clip (`pipeline`). A video that
cuts between two people (an interview, a compilation) gave one median face for both, and each
person's own shape read as an expression: on Obama cut to talk_s18's speaker, her face read as
brows raised 1.2-1.3 and lowered 1.4 activation units at once, which an edit set out to take
off. Each shot is now read on its own, and the landmarks are smoothed within shots only, so
the frames beside a cut do not take the face's place from the other side of it.
"""

from __future__ import annotations

import numpy as np

# A frame is cut from the one before when its colour thumbnail (THUMB x THUMB blocks, levels
# 0-1) changes by more than CUT on average. Measured with `scripts/measure_cuts.py`: within
# the 22 clips in ../shared/clips (none has a cut) it changes by 0.063 at most (expr_d12,
# whose camera moves), at a cut from one of them to another by 0.357 (Obama to talk_s18) and
# 0.203 (talk_s20 to talk_s32, two women against pale walls). A cut between two shots that
# look alike (the same room and framing) is not seen, and the shots are read as one.
THUMB = 8
CUT = 0.12
# A block's mean is taken from about this many pixels a side (every so many rows and columns
# of a large frame), which keeps a thumbnail's cost to a tenth of a millisecond at any size.
SAMPLES = 8


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """(THUMB, THUMB, 3) float32 in [0, 1]: the mean colour of each block of frame (H, W, 3)
    uint8 RGB, from about SAMPLES x SAMPLES of its pixels (all of a small frame's)."""
    stride = max(1, min(frame.shape[:2]) // (THUMB * SAMPLES))
    sub = frame[::stride, ::stride]
    h, w = sub.shape[0] // THUMB * THUMB, sub.shape[1] // THUMB * THUMB
    if h == 0 or w == 0:  # under THUMB pixels a side: one colour
        return np.full((THUMB, THUMB, 3), sub.mean(axis=(0, 1)) / 255.0, dtype=np.float32)
    blocks = sub[:h, :w].reshape(THUMB, h // THUMB, THUMB, w // THUMB, 3)
    return (blocks.mean(axis=(1, 3), dtype=np.float32) / 255.0).astype(np.float32)


def cut_score(before: np.ndarray, after: np.ndarray) -> float:
    """How much the picture changed between two frames' thumbnails: the mean absolute change
    of their blocks' colours, 0 (the same) to 1."""
    return float(np.abs(after - before).mean())


def shot_ranges(cuts: np.ndarray) -> list[tuple[int, int]]:
    """The shots [start, end) of a video whose frames (T,) bool are True where a shot starts
    (frame 0 starts one whatever it says)."""
    n = len(cuts)
    starts = [0, *(int(t) for t in np.flatnonzero(cuts) if t > 0)]
    return [(a, b) for a, b in zip(starts, [*starts[1:], n], strict=True) if b > a]
