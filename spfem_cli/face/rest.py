"""A person's rest face from frames of them with a calm face (`spfem edit --rest`).

An edit reads the expression already on a face against the person's rest. Without a rest face
that is their calmest moments in the clip, so an expression held from the first frame to the
last is not seen; a photo or clip of the same person with a calm face shows what it hides.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from spfem_cli.face.pose import reference_shape
from spfem_cli.face.tracker import LandmarkTracker


def rest_shape(frames: Iterable[np.ndarray]) -> np.ndarray | None:
    """The calm face's 3D shape: (478, 3) float64, pixels and MediaPipe's relative depth, the
    per-point median of the faces found in `frames` ((H, W, 3) uint8 RGB, one or more), each
    aligned to the first (`face.pose.reference_shape`). None when no frame shows a face."""
    samples = []
    with LandmarkTracker(video_mode=False) as tracker:
        for frame in frames:
            found = tracker.detect(frame)
            if found is not None:
                samples.append(np.concatenate([found.landmarks, found.depth[:, None]], axis=-1))
    if not samples:
        return None
    return reference_shape(np.stack(samples).astype(np.float64))
