"""How sharp the picture of a face is: the blur of its sharpest edges.

The lines the shading draws (the nose's wrinkles, the crow's feet, the forehead's lines) are
drawn as they would be on the skin, at widths set on sharp faces. A picture blurs a real crease
as it blurs everything else; drawn unblurred on a soft picture, they came out as sharp as the
lashes' edges and read as scratches (portrait_s29: its face's edges blurred by 0.80 pixels, the
nose's wrinkles drawn 0.79 pixels wide). The blur is read by reblurring (Zhuo and Sim,
"Defocus map estimation from a single image", 2011): a step edge blurred by a Gaussian of scale
s has its gradient fall by the ratio R = sqrt((s² + a² + r²) / (s² + a²)) when blurred by r
more, with a² the variance its gradients are taken at, so s = sqrt(r² / (R² - 1) - a²) on the
face's strongest edges.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, maximum_filter

from spfem_cli.face.mesh import FaceFrame, face_box
from spfem_cli.face.sampling import FrameSampler
from spfem_cli.media.pixels import luma

# Gradients are taken at this scale (pixels): finer, the pixel grid and noise dominate.
GRADIENT_SCALE = 0.5
# Central differences blur as a box two pixels wide does: by this variance (pixels²).
CENTRAL_DIFFERENCE = 1.0 / 3.0
# The edges are blurred again by this much (pixels) to read how far their gradient falls.
REBLUR = 1.0
# The edges read: local maxima of the gradient among the strongest this share of the face's
# pixels (the lashes, the irises' rims, the lips' and brows' edges).
EDGE_SHARE = 0.05
# Frames spread over a clip are read, from SAMPLES to twice as many (`FrameSampler`), on
# faces at least MIN_IOD_PX between the eyes.
SAMPLES = 12
MIN_IOD_PX = 20.0


def edge_blur(image: np.ndarray) -> float:
    """The Gaussian scale (pixels) by which the strongest edges of image (h, w) float
    luminance are blurred: the median over them. NaN where the image has no edge."""
    image = np.asarray(image, np.float64)
    if min(image.shape) < 8:
        return float("nan")
    grad = _gradient(image, GRADIENT_SCALE)
    again = _gradient(image, np.hypot(GRADIENT_SCALE, REBLUR))
    # The border's gradients see the image's edge padding, not the picture.
    inner = np.zeros(image.shape, bool)
    inner[3:-3, 3:-3] = True
    edges = inner & (grad >= np.quantile(grad[inner], 1.0 - EDGE_SHARE))
    edges &= (grad == maximum_filter(grad, 3)) & (grad > 0)
    ratio = grad[edges] / np.maximum(again[edges], 1e-12)
    ratio = ratio[ratio > 1.0]
    if ratio.size == 0:
        return float("nan")
    scale2 = REBLUR * REBLUR / (ratio * ratio - 1.0) - GRADIENT_SCALE**2 - CENTRAL_DIFFERENCE
    return float(np.sqrt(max(np.median(scale2), 0.0)))


def _gradient(image: np.ndarray, scale: float) -> np.ndarray:
    """(h, w) the gradient's magnitude of image (h, w) smoothed by a Gaussian of this scale
    (pixels), by central differences."""
    dy, dx = np.gradient(gaussian_filter(image, scale))
    return np.hypot(dx, dy)


def face_blur(frame: np.ndarray, *, landmarks: np.ndarray) -> float:
    """The blur (pixels) of the face's edges in frame (H, W, 3) uint8 RGB: `edge_blur` over
    the box of its landmarks (478, 2), pixels. NaN where it has none."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = face_box(landmarks, width=width, height=height, margin=0.0)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return float("nan")
    return edge_blur(luma(frame[y0:y1, x0:x1]))


class BlurFinder(FrameSampler[float]):
    """Reads the face's blur (`face_blur`) on frames spread over a clip. In pixels, not eye
    distances: what softens a video (its compression, an upscale, the lens) blurs a close-up
    and a wide shot of it by about as many pixels."""

    def __init__(self, *, n_frames: int) -> None:
        super().__init__(n_frames=n_frames, samples=SAMPLES, min_iod_px=MIN_IOD_PX)

    def measure(self, frame: np.ndarray, *, face: FaceFrame, landmarks: np.ndarray) -> float:
        return face_blur(frame, landmarks=landmarks)

    def blur_px(self) -> float:
        """The median blur (pixels of the frames offered) over the frames read; 0 where none
        was."""
        read = np.array(self.results(), dtype=np.float64)
        read = read[np.isfinite(read)]
        return float(np.median(read)) if read.size else 0.0
