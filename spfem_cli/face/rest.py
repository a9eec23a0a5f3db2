"""A person's rest face from frames of them with a calm face (`spfem edit --rest`).

An edit reads the expression already on a face against the person's rest. Without a rest face
that is their calmest moments in the clip, so an expression held from the first frame to the
last is not seen; a photo or clip of the same person with a calm face shows what it hides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from spfem_cli.face import mesh
from spfem_cli.face.pose import reference_shape
from spfem_cli.face.tracker import LARGEST_FACE, FacePick, LandmarkTracker

# A smile held through a clip: its lip corners stand this far (IOD) above the middle of the
# inner lips or more even at the clip's calmest (the lowest CALMEST_SHARE of its frames).
# Measured so: talk_s32 0.057 and portrait_s29 0.081, who smile throughout; the calmest
# moments of fourteen calm, acting or crying faces -0.108 (talk_mead_sad) to 0.028 (expr_d19)
# (every 8th frame, FaceMesh on each alone). Through an edit's tracking (every frame, in video
# mode) talk_s32 reads 0.051, expr_d19 0.016: the limit lies between, with room on both sides.
HELD_SMILE_LIFT = 0.04
CALMEST_SHARE = 0.1


@dataclass(frozen=True, eq=False)
class RestFace:
    """A person's calm face: shape (478, 3) float64, pixels (at any scale) and MediaPipe's
    relative depth, the per-point median of the faces found in `faces` frames. Its lids tell
    where the person's lids usually stand only as the median of several frames: one frame's
    lids may be mid-blink or following a glance (`pipeline.rest_activations`)."""

    shape: np.ndarray
    faces: int


def median_rest_face(
    frames: Iterable[np.ndarray], *, pick: FacePick = LARGEST_FACE
) -> RestFace | None:
    """The calm face of the faces found in `frames` ((H, W, 3) uint8 RGB, one or more), each
    aligned to the first (`face.pose.reference_shape`), on each the one `pick` takes up. None
    when no frame shows a face."""
    samples = []
    with LandmarkTracker(video_mode=False, pick=pick) as tracker:
        for frame in frames:
            found = tracker.detect(frame)
            if found is not None:
                samples.append(np.concatenate([found.landmarks, found.depth[:, None]], axis=-1))
    if not samples:
        return None
    shape = reference_shape(np.stack(samples).astype(np.float64))
    return RestFace(shape=shape, faces=len(samples))


# The landmarks the corners' lift is read from: the two lip corners, then the middle of the
# upper and of the lower inner lip.
LIFT_POINTS = (*mesh.LIP_CORNERS, mesh.UPPER_LIP_INNER_MID, mesh.LOWER_LIP_INNER_MID)


def corner_lift(points: np.ndarray) -> np.ndarray:
    """(...,) how far the lip corners stand above the middle of the inner lips (IOD), for
    face-frame landmarks (..., 478, 2), y pointing down: about 0 on a calm mouth, 0.1 in a
    broad smile."""
    return _lift(np.asarray(points[..., list(LIFT_POINTS), 1], np.float64))


def _lift(heights: np.ndarray) -> np.ndarray:
    """(...,) `corner_lift` from the heights (..., 4) of the LIFT_POINTS."""
    return 0.5 * (heights[..., 2] + heights[..., 3]) - 0.5 * (heights[..., 0] + heights[..., 1])


def held_smile(points: np.ndarray, valid: np.ndarray) -> float | None:
    """How far the lip corners stand above the inner lips' middle (IOD) at the calmest of the
    frames with a face (valid (T,) bool) of face-frame landmarks (T, 478, 2) (a memory-mapped
    track's: only the LIFT_POINTS are read), where that is HELD_SMILE_LIFT or more: a smile
    held through the clip, which an edit that reads the expression against the clip's calmest
    moments cannot see. None otherwise."""
    if not np.any(valid):
        return None
    heights = np.asarray(points[:, list(LIFT_POINTS), 1], np.float64)[np.asarray(valid, bool)]
    calmest = float(np.quantile(_lift(heights), CALMEST_SHARE))
    return calmest if calmest >= HELD_SMILE_LIFT else None
