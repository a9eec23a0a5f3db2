"""Synthetic faces for the warp's tests: eyes painted from the landmarks, so that where the
warp puts the lids, the iris and the white can be read off the pixels."""

from __future__ import annotations

import numpy as np

from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame

# The colour of the skin `painted_eyes` paints, and of the band it may paint over the lashes.
SKIN_RGB = (180, 140, 120)
SHADOW_RGB = (110, 85, 75)


def template_face() -> np.ndarray:
    from spfem_cli.generator.expression import ExpressionModel

    return ExpressionModel.load().template.double().numpy()


def pixels_in_face_frame(ff: FaceFrame, shape: tuple[int, int]) -> np.ndarray:
    """(h * w, 2) face-frame points of every pixel of an (h, w) image, row by row."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return ff.to_face(np.stack([xx, yy], axis=-1).reshape(-1, 2).astype(np.float64))


def painted_eyes(
    pts: np.ndarray,
    ff: FaceFrame,
    shape: tuple[int, int],
    *,
    limbus_px: float = 0.0,
    shadow: float = 0.0,
) -> np.ndarray:
    """A skin-coloured frame with both eyes painted from the landmarks: white between the
    lids, a blue iris (the circle of the iris landmarks, its top under the upper lid) and a
    black lash line along the upper lid; with limbus_px, a dark rim that wide around the iris
    (as real irises have); with shadow, a band of darker skin that high (IOD) over the lash
    line (SHADOW_RGB: a lid's crease, or eyeshadow)."""
    from spfem_cli.generator.warp import lid_lines

    h, w = shape
    q = pixels_in_face_frame(ff, shape)
    img = np.empty((h * w, 3))
    img[:] = SKIN_RGB
    for ring_idx, iris_idx in ((mesh.RIGHT_EYE, mesh.RIGHT_IRIS), (mesh.LEFT_EYE, mesh.LEFT_IRIS)):
        ring, iris = pts[list(ring_idx)], pts[list(iris_idx)]
        radius = np.linalg.norm(iris[1:] - iris[0], axis=1).mean()
        upper, lower, within = lid_lines(ring, q[:, 0])
        inside = within & (q[:, 1] > upper) & (q[:, 1] < lower)
        img[inside] = (235, 235, 235)
        r = np.linalg.norm(q - iris[0], axis=1)
        img[inside & (r < radius + limbus_px / ff.iod)] = (60, 60, 80)
        img[inside & (r < radius)] = (50, 90, 170)
        lash = upper - 0.02
        img[within & (q[:, 1] <= lash) & (q[:, 1] > lash - shadow)] = SHADOW_RGB
        img[within & (q[:, 1] <= upper) & (q[:, 1] > lash)] = (15, 15, 15)
    return img.reshape(h, w, 3).astype(np.uint8)


# The two rows of landmarks over each upper lid, margin outwards, and how far each moves with
# the margin: the lid's skin folds under the crease as it rises (the expression model's AU5
# moves them by 0.51 and 0.28 of the margin's motion).
_OVER_LIDS = (
    (mesh.RIGHT_OVER_LID + mesh.LEFT_OVER_LID, 0.5),
    ((113, 225, 224, 223, 222, 221, 189, 342, 445, 444, 443, 442, 441, 413), 0.25),
)


def raise_upper_lids(pts: np.ndarray, by: float) -> np.ndarray:
    """(478, 2) displacements that raise both upper lids' margins by `by` (IOD) in the middle,
    tapering to the corners, and the skin over them less, as a lid raiser does."""
    vals = np.zeros_like(pts)
    # Ring positions 9-15: the upper lid from one corner to the other; y points down.
    taper = np.sin(np.pi * np.arange(1, 8) / 8)
    for ring in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
        vals[list(ring[9:]), 1] = -by * taper
    for over, share in _OVER_LIDS:
        vals[list(over), 1] = -share * by * np.tile(taper, 2)
    return vals


def drop_lower_lids(pts: np.ndarray, by: float) -> np.ndarray:
    """(478, 2) displacements that drop both lower lids by `by` (IOD) in the middle, tapering
    to the corners, as taking off a squint does."""
    vals = np.zeros_like(pts)
    # Ring positions 1-7: the lower lid from one corner to the other; y points down.
    taper = np.sin(np.pi * np.arange(1, 8) / 8)
    for ring in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
        vals[list(ring[1:8]), 1] = by * taper
    return vals


# The frame `warp_painted_eyes` paints on: its size and eye distance (pixels).
PAINTED_SHAPE = (420, 400)
PAINTED_IOD = 120.0


def warp_painted_eyes(
    pts: np.ndarray, vals: np.ndarray, *, limbus_px: float = 0.0, shadow: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Eyes painted from pts (478, 2) on a `PAINTED_SHAPE` frame (`PAINTED_IOD`), warped by the
    displacements vals (478, 2), IOD, with the eyeball drawing (limbus_px and shadow as in
    `painted_eyes`). Returns the output (h, w, 3)
    and the face-frame point of each of its pixels (h * w, 2)."""
    import torch

    from spfem_cli.generator.warp import WarpConfig, Warper

    ff = FaceFrame(origin=np.array([200.0, 150.0]), angle=0.0, iod=PAINTED_IOD)
    frame = painted_eyes(pts, ff, PAINTED_SHAPE, limbus_px=limbus_px, shadow=shadow)
    out = Warper(device=torch.device("cpu"), config=WarpConfig(eyeballs=True)).apply(
        frame, face=ff, points=pts, values=vals, landmarks_px=ff.to_image(pts)
    )
    return out, pixels_in_face_frame(ff, PAINTED_SHAPE)
