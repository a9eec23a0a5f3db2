"""How much of the skin's shading change on real faces an action unit predicts, across people.

    python scripts/measure_shading.py [--clips ../shared/clips] [--names expr_d3.mp4 ...]
        [--sheet shading.png] [--au AU12]

A warp moves pixels; the creases and shading of an expression are what a refiner (or any
shading model) would have to add. This script measures how much of that is predictable from
the action units on faces the model has not seen:

1. Every clip is tracked, and each frame's luminance is sampled on a raster of the expression
   model's template face (a piecewise-affine map through FaceMesh's landmarks, so a pixel of
   the raster is the same point of the skin in every frame and every person). The log of it,
   minus the clip's per-pixel median and a smooth quadratic (the light changing as the head
   turns), is the frame's shading change.
2. Per-AU shading fields are fitted by ridge least squares on the AU activations (relative to
   the clip's median face) of all clips but one, and predict the left-out clip's shading change:
   the held-out R^2 per clip and pooled. Twice: raw fields, and fields blurred and limited to
   where the AU moves the skin (what a shading model would use).
3. The sheet (``--sheet``): per clip, its median face on the raster, and the mean shading of
   its frames with the most of ``--au`` less that of those with the least (top and bottom 15%;
   red darker, blue lighter, full at 15%).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from scipy.spatial import Delaunay

from spfem_cli.generator.expression import DEFAULT_MODEL, ExpressionModel
from spfem_cli.media import FrameReader, probe
from spfem_cli.media.pixels import REC601_LUMA
from spfem_cli.pipeline import analyse_video, signed_activations
from spfem_cli.progress import SilentReporter
from spfem_cli.sheet import write_png

DEFAULT_NAMES = (
    *(f"mead_emotions/{e}.mp4" for e in ("contempt", "disgusted", "fear", "happy", "sad")),
    "mead_emotions/surprised.mp4",
    *(f"expr_d{i}.mp4" for i in (0, 3, 9, 10, 12, 14, 18, 19)),
    "talk_s18_1280x720.mp4",
    "talk_s20_480x908.mp4",
    "talk_s32_1280x720.mp4",
    "portrait_s29_720x1364.mp4",
    "talk_mead_sad_1920x1080.mp4",
    "speech_obama_450x450.mp4",
    "speech_man_256x256.mp4",
)
# The raster over the template face (IOD units, x right, y down from the eyes' midpoint).
X0, X1, Y0, Y1, STEP = -1.3, 1.3, -1.0, 1.9, 0.025
# The lip corners take part in the activations: a smile is read from them as well as from the
# cheeks (`signed_activations` leaves the mouth out, for the speech's sake).
LIP_POINTS = (61, 291, 185, 40, 409, 270, 146, 91, 375, 321)
SUPPORT = 0.15  # share of an AU's largest landmark motion that counts as its area
LUMA = torch.tensor(REC601_LUMA)


class Raster:
    """The template raster: (H, W) points, those inside the face mesh, and each one's
    triangle and barycentric weights, so any face's landmarks give its image position."""

    def __init__(self, template: np.ndarray, *, xs: np.ndarray, ys: np.ndarray) -> None:
        """template: (N, 2) face-frame landmarks; xs, ys: the raster's columns and rows (IOD)."""
        gx, gy = np.meshgrid(xs, ys)
        self.shape = gx.shape
        points = np.stack([gx.ravel(), gy.ravel()], 1)
        tri = Delaunay(template)
        simplex = tri.find_simplex(points)
        self.inside = simplex >= 0
        self.xy = points[self.inside]
        affine = tri.transform[simplex[self.inside]]
        b = np.einsum("nij,nj->ni", affine[:, :2], self.xy - affine[:, 2])
        self.bary = np.concatenate([b, 1 - b.sum(1, keepdims=True)], 1)  # (P, 3)
        self.verts = tri.simplices[simplex[self.inside]]  # (P, 3)

    def positions(self, landmarks: np.ndarray) -> np.ndarray:
        """(P, 2) image positions of the raster for a face's (468+, 2) landmarks."""
        return np.einsum("ni,nij->nj", self.bary, landmarks[self.verts])

    def image(self, values: np.ndarray) -> np.ndarray:
        """(P,) values as an (H, W) image, 0 outside the face."""
        out = np.zeros(self.inside.shape)
        out[self.inside] = values
        return out.reshape(self.shape)


def sample_log_luma(frame: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Log luminance (0-1 scale) of an RGB uint8 frame (H, W, 3) at (P, 2) pixel positions."""
    h, w = frame.shape[:2]
    img = torch.from_numpy(frame).float().permute(2, 0, 1)[None]
    luma = (img * LUMA[None, :, None, None]).sum(1, keepdim=True)
    g = torch.from_numpy(positions).float()
    g = torch.stack([g[:, 0] / (w - 1) * 2 - 1, g[:, 1] / (h - 1) * 2 - 1], -1)
    v = F.grid_sample(luma, g[None, None], align_corners=True)[0, 0, 0].numpy()
    return np.log(np.maximum(v, 4.0) / 255.0)


def clip_shading(
    path: Path, *, model: ExpressionModel, raster: Raster
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One clip's shading changes (N, P) and AU activations (N, K) over its tracked frames,
    and its median log luminance (P,)."""
    mask = model.estimate_mask.clone()
    mask[list(LIP_POINTS)] = True
    info = probe(path)
    with tempfile.TemporaryDirectory() as workdir:
        track = analyse_video(
            info, model=model, workdir=Path(workdir), reporter=SilentReporter()
        ).track
        offsets = torch.from_numpy(np.asarray(track.frontal, np.float64) - track.median_frontal())
        acts = signed_activations(model, offsets, mask=mask).numpy()
        rows, keep = [], []
        with FrameReader(info) as reader:
            for t, frame in enumerate(reader):
                if t < track.n_frames and track.valid[t]:
                    rows.append(sample_log_luma(frame, raster.positions(track.landmarks_px(t))))
                    keep.append(t)
    logs = np.stack(rows)
    median = np.median(logs, axis=0)
    change = logs - median
    x, y = raster.xy[:, 0], raster.xy[:, 1]
    light = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], 1)
    coef, *_ = np.linalg.lstsq(light, change.T, rcond=None)
    acts = acts[keep]
    return change - (light @ coef).T, acts - np.median(acts, axis=0), median


def fit_fields(changes: list[np.ndarray], acts: list[np.ndarray]) -> np.ndarray:
    """Ridge least squares of shading change on activations: (K, P) log-luminance per unit."""
    a, d = np.concatenate(acts), np.concatenate(changes)
    gram = a.T @ a
    # The AUs never read (all-zero columns) get zero fields instead of a singular system.
    unread = np.diag(gram) == 0
    return np.linalg.solve(gram + 0.05 * np.diag(np.diag(gram)) + np.diag(unread), a.T @ d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=Path, default=Path("../shared/clips"))
    parser.add_argument("--names", nargs="+", default=list(DEFAULT_NAMES))
    parser.add_argument("--sheet", type=Path, default=Path("shading.png"))
    parser.add_argument("--au", default="AU12")
    args = parser.parse_args()

    model = ExpressionModel.load(DEFAULT_MODEL)
    raster = Raster(
        model.template.double().numpy()[:468],
        xs=np.arange(X0, X1 + 1e-9, STEP),
        ys=np.arange(Y0, Y1 + 1e-9, STEP),
    )
    data = {n: clip_shading(args.clips / n, model=model, raster=raster) for n in args.names}
    print(f"{len(data)} clips, {sum(len(c) for c, _, _ in data.values())} frames")

    motion = np.linalg.norm(model.au_basis.double().numpy()[:, :468], axis=-1)  # (K, 468)
    area = np.einsum("ni,kni->kn", raster.bary, motion[:, raster.verts])
    area = area >= SUPPORT * area.max(axis=1, keepdims=True)

    def limited(fields: np.ndarray) -> np.ndarray:
        blurred = [gaussian_filter(raster.image(f), 1.5).ravel()[raster.inside] for f in fields]
        return np.stack(blurred) * area

    print(f"{'clip':32s} {'R2 raw':>8s} {'R2 limited':>11s}")
    totals = np.zeros((2, 2))
    for name, (change, acts, _) in data.items():
        others = [m for m in data if m != name]
        fields = fit_fields([data[m][0] for m in others], [data[m][1] for m in others])
        scores = []
        for i, f in enumerate((fields, limited(fields))):
            res = ((change - acts @ f) ** 2).sum()
            total = (change**2).sum()
            totals[i] += (res, total)
            scores.append(1 - res / total)
        print(f"{name:32s} {scores[0]:8.3f} {scores[1]:11.3f}")
    pooled = 1 - totals[:, 0] / totals[:, 1]
    print(f"{'pooled':32s} {pooled[0]:8.3f} {pooled[1]:11.3f}")

    au = model.au_names.index(args.au)
    rows = []
    for change, acts, median in data.values():
        a = acts[:, au]
        low, high = a <= np.quantile(a, 0.15), a >= np.quantile(a, 0.85)
        diff = raster.image(change[high].mean(0) - change[low].mean(0))
        rgb = np.zeros((*raster.shape, 3))
        rgb[..., 0] = np.clip(-diff / 0.15, 0, 1)
        rgb[..., 2] = np.clip(diff / 0.15, 0, 1)
        face = np.repeat(raster.image(np.exp(median))[..., None], 3, axis=-1)
        rows.append((np.concatenate([face, rgb], axis=1) * 255).astype(np.uint8))
    per_line = 7
    rows += [np.zeros_like(rows[0])] * (-len(rows) % per_line)
    lines = [np.concatenate(rows[i : i + per_line], axis=1) for i in range(0, len(rows), per_line)]
    write_png(args.sheet, np.concatenate(lines, axis=0))
    print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
