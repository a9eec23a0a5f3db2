"""A person's rest face from frames of them with a calm face (`spfem edit --rest`).

An edit reads the expression already on a face against the person's rest. Without a rest face
that is their calmest moments in the clip, so an expression held from the first frame to the
last is not seen; a photo or clip of the same person with a calm face shows what it hides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from spfem_cli.face.pose import reference_shape
from spfem_cli.face.tracker import LARGEST_FACE, FacePick, LandmarkTracker


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
