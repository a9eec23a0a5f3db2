"""The MediaPipe FaceMesh topology (478 points) and the normalised face frame.

Index groups follow `mediapipe.solutions.face_mesh_connections`; they are written out here so
that importing spfem does not import mediapipe. "Right" and "left" are the subject's own sides
(the subject's right eye appears on the image's left in a frontal, unmirrored video).

The normalised face frame: origin at the midpoint between the two eye centres (each the midpoint
of that eye's corners), x axis from the subject's right eye to the left eye, y axis 90 degrees
clockwise from it (pointing down the face in an upright video), unit length the inter-ocular
distance (IOD). Displacements in the expression model are in this frame, in IOD units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_LANDMARKS = 478

LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308,
              324, 318, 402, 317, 14, 87, 178, 88, 95)  # fmt: skip
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291,
              375, 321, 405, 314, 17, 84, 181, 91, 146)  # fmt: skip
LIP_CORNERS = (61, 291)  # subject's right, left
UPPER_LIP_INNER_MID = 13
LOWER_LIP_INNER_MID = 14
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398)
# Each eye's 16-point ring runs from the outer corner along the lower lid to the inner corner
# (position 8) and back along the upper lid: the positions in it of each lid, corner to corner.
EYE_RING_LOWER_LID = tuple(range(9))
EYE_RING_UPPER_LID = (*range(8, 16), 0)
RIGHT_EYE_CORNERS = (33, 133)  # outer, inner
LEFT_EYE_CORNERS = (263, 362)  # outer, inner
RIGHT_EYEBROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_EYEBROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
# Each brow's lower edge, outer end to inner (the first five of its group above).
RIGHT_EYEBROW_LOWER = RIGHT_EYEBROW[:5]
LEFT_EYEBROW_LOWER = LEFT_EYEBROW[:5]
# Each brow's upper edge, outer end to inner (the last five of its group).
RIGHT_EYEBROW_UPPER = RIGHT_EYEBROW[5:]
LEFT_EYEBROW_UPPER = LEFT_EYEBROW[5:]
# The row of landmarks just over each upper lid (FaceMesh's second ring around the eye),
# outer end to inner.
RIGHT_OVER_LID = (247, 30, 29, 27, 28, 56, 190)
LEFT_OVER_LID = (467, 260, 259, 257, 258, 286, 414)
NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326,
        327, 344, 440)  # fmt: skip
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
             109)  # fmt: skip
# The lower half of the face oval: it moves with the jaw, so it follows the source exactly.
JAW = (361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132)
RIGHT_IRIS = (468, 469, 470, 471, 472)
LEFT_IRIS = (473, 474, 475, 476, 477)


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the subject's right and left eye.

    landmarks: (..., 478, 2) image coordinates in pixels. Returns two (..., 2) arrays.
    """
    right = landmarks[..., list(RIGHT_EYE_CORNERS), :].mean(axis=-2)
    left = landmarks[..., list(LEFT_EYE_CORNERS), :].mean(axis=-2)
    return right, left


@dataclass(frozen=True)
class FaceFrame:
    """A similarity transform between image pixels and the normalised face frame.

    origin: (2,) pixels; angle: radians of the eye line against the image x axis;
    iod: inter-ocular distance in pixels.
    """

    origin: np.ndarray
    angle: float
    iod: float

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> FaceFrame:
        """landmarks: (478, 2) pixels."""
        right, left = eye_centres(landmarks)
        d = left - right
        return cls(
            origin=(left + right) / 2.0,
            angle=float(np.arctan2(d[1], d[0])),
            iod=float(np.hypot(d[0], d[1])),
        )

    @classmethod
    def from_params(cls, params: np.ndarray) -> FaceFrame:
        """params: (4,) as returned by `params`: origin x, origin y, angle, iod."""
        return cls(
            origin=np.asarray(params[:2], dtype=np.float64),
            angle=float(params[2]),
            iod=float(params[3]),
        )

    @property
    def params(self) -> np.ndarray:
        """(4,) float64: origin x, origin y (pixels), angle (radians), iod (pixels)."""
        return np.array([self.origin[0], self.origin[1], self.angle, self.iod])

    @property
    def rotation(self) -> np.ndarray:
        """(2, 2) matrix whose columns are the frame's x and y axes in image coordinates."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.array([[c, -s], [s, c]])

    def to_face(self, points: np.ndarray) -> np.ndarray:
        """Image pixels (..., 2) -> normalised face frame (..., 2), IOD units."""
        return (points - self.origin) @ self.rotation / self.iod

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Normalised face frame (..., 2) -> image pixels (..., 2)."""
        return points * self.iod @ self.rotation.T + self.origin

    def vectors_to_image(self, vectors: np.ndarray) -> np.ndarray:
        """Displacements (..., 2) in IOD units -> pixels (rotation and scale, no shift)."""
        return vectors * self.iod @ self.rotation.T


def face_box(
    landmarks_px: np.ndarray, *, width: int, height: int, margin: float
) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1), end-exclusive, of landmarks (N, 2) pixels, grown by
    `margin` times its size on each side and clipped to the image."""
    lo = landmarks_px.min(axis=0)
    hi = landmarks_px.max(axis=0)
    pad = (hi - lo) * margin
    x0, y0 = np.floor(lo - pad).astype(int)
    x1, y1 = np.ceil(hi + pad).astype(int) + 1
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)
