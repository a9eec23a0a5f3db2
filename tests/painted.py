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


def _lens(q: np.ndarray, *, cx: float, half_w: float, half_h: float, top: float) -> np.ndarray:
    """(N,) how much of each face-frame point q (N, 2) a rounded lens covers, its edge soft
    over about a pixel at a face 40 pixels between the eyes."""
    cy = top + half_h
    r = (np.abs((q[:, 0] - cx) / half_w) ** 3 + np.abs((q[:, 1] - cy) / half_h) ** 3) ** (1 / 3)
    return np.clip((1 - r) * 40, 0, 1)


def painted_sunglasses(
    frame: np.ndarray, ff: FaceFrame, *, opacity: float = 0.92
) -> tuple[np.ndarray, np.ndarray]:
    """Sunglasses painted over both eyes of a real frame (H, W, 3) uint8 with its face frame:
    rounded dark lenses shaded darker at the top, with a soft highlight and a darker rim, and
    a bridge between them; `opacity`: how much of the eye they hide. Returns the frame and
    the (H, W) bool mask of the glasses (lenses, rims and bridge)."""
    h, w = frame.shape[:2]
    # Only the pixels around the eyes are worked on.
    corners = ff.to_image(np.array([[x, y] for x in (-1.0, 1.0) for y in (-0.4, 0.35)]))
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, [w, h])
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 1, 0, [w, h])
    region = frame[y0:y1, x0:x1]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    q = ff.to_face(np.stack([xx, yy], axis=-1).reshape(-1, 2).astype(np.float64))
    out = region.reshape(-1, 3).astype(np.float64)
    rim_rgb = np.array([18.0, 18.0, 20.0])
    half_w, half_h, top = 0.40, 0.27, -0.26
    mask = np.zeros(len(q), dtype=bool)
    for cx in (-0.5, 0.5):
        outer = _lens(q, cx=cx, half_w=half_w + 0.03, half_h=half_h + 0.03, top=top - 0.03)
        inner = _lens(q, cx=cx, half_w=half_w, half_h=half_h, top=top)
        shade = 25 + 35 * np.clip((q[:, 1] - top) / (2 * half_h), 0, 1)
        glint = 90 * np.exp(
            -(((q[:, 0] - cx + 0.18) / 0.06) ** 2 + ((q[:, 1] - top - 0.1) / 0.04) ** 2)
        )
        tint = np.stack([0.9 * shade, 0.95 * shade, 1.1 * shade], axis=-1) + glint[:, None]
        out = out * (1 - outer[:, None]) + rim_rgb * outer[:, None]
        see_through = opacity * tint + (1 - opacity) * region.reshape(-1, 3)
        out = out * (1 - inner[:, None]) + see_through * inner[:, None]
        mask |= outer > 0.5
    bridge = (np.abs(q[:, 0]) < 0.12) & (np.abs(q[:, 1] + 0.17) < 0.02)
    out[bridge] = rim_rgb
    mask |= bridge
    painted, full = frame.copy(), np.zeros((h, w), dtype=bool)
    painted[y0:y1, x0:x1] = out.reshape(region.shape).clip(0, 255).round().astype(np.uint8)
    full[y0:y1, x0:x1] = mask.reshape(region.shape[:2])
    return painted, full
