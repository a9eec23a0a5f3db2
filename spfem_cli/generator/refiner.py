"""The refiner: a small convolutional network that adds what a warp cannot.

It works on an aligned face crop: a square of the normalised face frame (see `face.mesh`),
sampled at `CropGeometry.size` pixels a side. It sees the warped crop, the source crop, the
warp's flow, the held mouth and the face region, plus the change of AU activations, and returns
a residual image and a blending mask. The edit is ``warped + mask * residual * allow``, where
``allow`` is 1 on the face and 0 on the held mouth and off the face: the mouth stays the
speech's and the background stays untouched, whatever the network learned.

The last layer starts at zero, so an untrained refiner is the identity (the warp alone).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from scipy.ndimage import distance_transform_edt
from torch import Tensor, nn

from spfem_cli.errors import SpfemError
from spfem_cli.face import mesh
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.generator.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from spfem_cli.generator.kinds import DEFAULT_REFINER
from spfem_cli.generator.warp import (
    EYES,
    HoldRegion,
    WarpConfig,
    Warper,
    face_box,
    landmark_flow,
)

CHECKPOINT_KIND = "refiner"
CHECKPOINT_VERSION = 1
IN_CHANNELS = 10
# Flow is a few hundredths of an IOD; scaled so the network sees values near 1.
FLOW_SCALE = 5.0
# How far outside the face outline the refiner may still act, and over what it fades (IOD).
FACE_MARGIN = 0.05
FACE_FEATHER = 0.12
# How far (crop pixels) the refiner's region stays from the held mouth: the back-mapping's
# interpolation and the rasterised distances are each good to about a pixel.
GUARD_PX = 2.0


@dataclass(frozen=True)
class CropGeometry:
    """The aligned crop: pixel (i, j) (row, column) of a `size` x `size` crop sits at face-frame
    point (left + side * j / (size - 1), top + side * i / (size - 1)), IOD units."""

    size: int = 128
    left: float = -1.5
    top: float = -1.15
    side: float = 3.0

    def face_points(self, size: int | None = None) -> Tensor:
        """(n, n, 2) float32 face-frame coordinates (x, y) of an n x n grid spanning the crop
        (n = size, default the crop's own)."""
        n = size or self.size
        t = torch.linspace(0.0, self.side, n)
        ys, xs = torch.meshgrid(t + self.top, t + self.left, indexing="ij")
        return torch.stack([xs, ys], dim=-1)

    def to_unit(self, face_xy: Tensor) -> Tensor:
        """Face-frame points (..., 2) -> grid_sample coordinates of the crop, [-1, 1] on it."""
        origin = face_xy.new_tensor([self.left, self.top])
        return (face_xy - origin) * (2.0 / self.side) - 1.0

    @property
    def pixels_per_iod(self) -> float:
        return (self.size - 1) / self.side

    @property
    def fine(self) -> CropGeometry:
        """The crop at twice its size: each pixel's four sub-samples, a quarter pixel from its
        centre (`supersampled_points`), so that 2x2 average pooling gives the crop."""
        quarter = self.side / (self.size - 1) / 4
        return CropGeometry(
            size=2 * self.size,
            left=self.left - quarter,
            top=self.top - quarter,
            side=self.side + 2 * quarter,
        )


@dataclass(frozen=True)
class RefinerConfig:
    """channels: widths of the U-Net's levels (half, quarter and eighth of the crop's
    resolution); n_aus: length of the AU-change input."""

    crop: CropGeometry = field(default_factory=CropGeometry)
    channels: tuple[int, int, int] = (24, 48, 96)
    n_aus: int = 17  # the shipped expression models' action units

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RefinerConfig:
        return cls(
            crop=CropGeometry(**data["crop"]),
            channels=tuple(data["channels"]),
            n_aus=int(data["n_aus"]),
        )


def _conv(cin: int, cout: int, *, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.2, inplace=True)
    )


class Refiner(nn.Module):
    """A small U-Net, built to cost a few milliseconds a frame on a CPU: the features work at
    half the crop's resolution and below (the AU change is added at an eighth), and one last
    convolution at full resolution sees the upsampled features with the input itself, so
    fine detail (a crease, an eyelid's edge) is placed to the pixel.

    forward(inputs (B, 10, S, S), aus (B, K)) -> residual (B, 3, S, S) in [-1, 1] image units,
    mask (B, 1, S, S) in [0, 1]. Input channels: warped crop (3, [-1, 1]), source crop (3),
    flow (2, IOD * FLOW_SCALE), held mouth (1, 1 = held), allowed region (1).
    """

    def __init__(self, config: RefinerConfig | None = None) -> None:
        super().__init__()
        self.config = config or RefinerConfig()
        c1, c2, c3 = self.config.channels
        self.stem = _conv(IN_CHANNELS, c1, stride=2)  # S/2
        self.enc2 = _conv(c1, c1)
        self.enc3 = nn.Sequential(_conv(c1, c2, stride=2), _conv(c2, c2))  # S/4
        self.enc4 = nn.Sequential(_conv(c2, c3, stride=2), _conv(c3, c3))  # S/8
        self.aus = nn.Linear(self.config.n_aus, c3)
        self.dec3 = _conv(c3 + c2, c2)
        self.dec2 = _conv(c2 + c1, c1)
        self.head = nn.Conv2d(c1 + IN_CHANNELS, 4, 3, padding=1)
        # Identity at the start: zero residual (and a half-open mask that training shapes).
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, inputs: Tensor, aus: Tensor) -> tuple[Tensor, Tensor]:
        e2 = self.enc2(self.stem(inputs))
        e3 = self.enc3(e2)
        e4 = self.enc4(e3) + self.aus(aus)[:, :, None, None]
        d3 = self.dec3(torch.cat([_up(e4, e3), e3], dim=1))
        d2 = self.dec2(torch.cat([_up(d3, e2), e2], dim=1))
        out = self.head(torch.cat([_up(d2, inputs), inputs], dim=1))
        # tanh rather than a hard clamp: a saturated residual must still get a gradient, or
        # training can park it at +-1 and close the mask for good.
        return torch.tanh(out[:, :3]), torch.sigmoid(out[:, 3:4])

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> Refiner:
        cfg = ckpt.config
        if cfg.get("kind") != CHECKPOINT_KIND:
            raise SpfemError(f"{ckpt.path} holds a {cfg.get('kind')!r} checkpoint, not a refiner")
        if cfg.get("version") != CHECKPOINT_VERSION:
            raise SpfemError(
                f"{ckpt.path}: refiner checkpoint version {cfg.get('version')!r} is not "
                f"supported (this spfem reads version {CHECKPOINT_VERSION})"
            )
        model = cls(RefinerConfig.from_dict(cfg["model"]))
        state = {k: v.float() for k, v in ckpt.tensors.items()}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise SpfemError(
                f"{ckpt.path}: refiner weights do not fit its config: {first}"
            ) from exc
        return model.eval()

    @classmethod
    def load(cls, name_or_path: str | Path = DEFAULT_REFINER) -> Refiner:
        return cls.from_checkpoint(load_checkpoint(name_or_path))

    def save(self, path: str | Path, *, extra: dict | None = None) -> str:
        """Write the weights as fp16 with the config; returns the file's SHA-256."""
        tensors = {
            k: v.detach().to(torch.float16).contiguous() for k, v in self.state_dict().items()
        }
        config = {
            "kind": CHECKPOINT_KIND,
            "version": CHECKPOINT_VERSION,
            "model": self.config.to_dict(),
            **(extra or {}),
        }
        json.dumps(config)  # fail before writing if something is not JSON
        return save_checkpoint(path, tensors=tensors, config=config)


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def compose(warped: Tensor, residual: Tensor, mask: Tensor, allow: Tensor) -> Tensor:
    """The refined crop (B, 3, S, S) in [-1, 1]: warped + mask * residual where allowed."""
    return (warped + mask * residual * allow).clamp(-1.0, 1.0)


# --- geometry shared by training and editing -------------------------------------------------


def crop_flow(
    points: Tensor, values: Tensor, *, crop: CropGeometry, warp: WarpConfig, grid: int = 32
) -> Tensor:
    """The generator's smooth flow, on the crop, differentiable (for fine-tuning through it);
    `generator_warp_crops` adds what the generator does to the eyes.

    points, values: (B, N, 2) landmark positions and forward displacements, face frame (IOD).
    Returns (B, 2, S, S) forward displacement in IOD at every crop pixel, bounded so the warp
    never folds (the same Gaussian interpolation, landmark fit and gradient bound as `Warper`).
    Differentiable in `values`.
    """
    query = crop.face_points(grid).reshape(-1, 2).to(points)
    flows = []
    for pts, vals in zip(points, values, strict=True):
        flows.append(landmark_flow(pts, vals, query, config=warp))
    flow = torch.stack(flows).reshape(len(flows), grid, grid, 2)
    step = crop.side / (grid - 1)
    dx = (flow[:, :-1, 1:] - flow[:, :-1, :-1]) / step
    dy = (flow[:, 1:, :-1] - flow[:, :-1, :-1]) / step
    norm = torch.cat([dx, dy], dim=-1).norm(dim=-1).flatten(1).amax(dim=1)
    scale = torch.where(
        norm > warp.max_gradient, warp.max_gradient / norm.clamp_min(1e-9), torch.ones_like(norm)
    )
    flow = flow * scale[:, None, None, None]
    return F.interpolate(
        flow.permute(0, 3, 1, 2), size=(crop.size, crop.size), mode="bilinear", align_corners=True
    )


def crop_face_frame(crop: CropGeometry) -> FaceFrame:
    """The crop seen as an image: the face frame whose pixels are the crop's pixels."""
    ppi = crop.pixels_per_iod
    return FaceFrame(origin=np.array([-crop.left * ppi, -crop.top * ppi]), angle=0.0, iod=ppi)


def generator_warp_crops(
    fine: Tensor,
    *,
    points: Tensor,
    values: Tensor,
    crop: CropGeometry,
    warp: WarpConfig,
    held_fine: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The generator's warp on crops, as an edit warps a frame and then samples the crop: each
    crop, at twice its size (`CropGeometry.fine`), is taken as the frame and warped there (the
    smooth flow `crop_flow`, brought to rest where held, then each eye's own correction
    `Warper.sharpen_eye`, then the eyeball shown between the moved lids
    `Warper.show_eyeballs`, in the order `Warper.apply` edits a frame), then pooled.

    fine: (B, 3, 2S, 2S) in [-1, 1]; points, values: (B, N, 2) landmark positions and forward
    displacements in the face frame (IOD); held_fine: (B, 1, 2S, 2S), 1 where the mouth is held
    (none held: a training pair's mouth moves to the second frame's). Returns the warped crops
    (B, 3, S, S) in [-1, 1] and the flow (B, 2, S, S), forward displacement in IOD.
    Differentiable in `values`: the eyeballs are pixels copied within the source, so their
    gradient is passed straight through as the warp's.
    """
    at = crop.fine
    flow = crop_flow(points, values, crop=at, warp=warp)
    if held_fine is not None:
        flow = flow * (1.0 - held_fine)
    n = at.size
    face = crop_face_frame(at)
    warper = Warper(device=fine.device, config=warp)
    pts = points.detach().cpu().double().numpy()
    if warp.eye_sigma > 0 and points.shape[1] == mesh.N_LANDMARKS:
        dense = []
        for k in range(len(flow)):
            d = flow[k] * face.iod  # the crop's axes are the face frame's: IOD -> pixels
            for eye in EYES:
                d = warper.sharpen_eye(
                    d, face=face, points=pts[k], values=values[k], box=(0, 0, n, n), eye=eye
                )
            dense.append(d / face.iod)
        flow = torch.stack(dense)
    warped = warp_crop(fine, flow, crop=at)
    if warp.eyeballs:
        with torch.no_grad():
            drawn = (warped + 1.0) * 127.5  # 8-bit levels, as frames
            for k in range(len(flow)):
                warper.show_eyeballs(
                    drawn[k : k + 1],
                    source=(fine[k : k + 1] + 1.0) * 127.5,
                    dense=flow[k] * face.iod,
                    face=face,
                    points=pts[k],
                    region=(0, 0, n, n),
                )
            drawn = drawn / 127.5 - 1.0
        warped = warped + (drawn - warped).detach()
    return F.avg_pool2d(warped, 2), F.avg_pool2d(flow, 2)


def warp_crop(images: Tensor, flow: Tensor, *, crop: CropGeometry) -> Tensor:
    """Warp crops (B, C, S, S) by a forward flow (B, 2, S, S) in IOD: the output pixel x shows
    the source at x - flow(x), as `Warper.apply` does on frames."""
    n = crop.size
    base = crop.to_unit(crop.face_points(n).to(images))  # (S, S, 2)
    grid = base[None] - flow.permute(0, 2, 3, 1) * (2.0 / crop.side)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _distance_outside(polygon: np.ndarray, crop: CropGeometry) -> np.ndarray:
    """Distance (S, S) in IOD from each crop pixel to a filled polygon (M, 2) in the face
    frame, 0 inside: the polygon rasterised at the crop's resolution, then a Euclidean distance
    transform (accurate to about half a pixel, and a hundred times faster than measuring to
    every edge)."""
    # PIL truncates vertex coordinates to whole pixels; +0.5 makes that a rounding, so the
    # raster is not shifted half a pixel up and left (and a mirrored face gets the mirror).
    xy = (np.asarray(polygon) - [crop.left, crop.top]) * crop.pixels_per_iod + 0.5
    image = Image.new("1", (crop.size, crop.size), 0)
    ImageDraw.Draw(image).polygon([tuple(p) for p in xy.tolist()], fill=1)
    inside = np.asarray(image, dtype=bool)
    if not inside.any():
        # Entirely off the crop: measure to the polygon's nearest vertex instead.
        grid = crop.face_points().numpy()
        d = np.linalg.norm(grid[:, :, None, :] - np.asarray(polygon)[None, None], axis=-1)
        return d.min(axis=-1)
    return distance_transform_edt(~inside) / crop.pixels_per_iod


def _smoothstep_fade(dist: np.ndarray, *, start: float, width: float) -> np.ndarray:
    """1 up to `start`, then down to 0 over `width` with a smoothstep."""
    x = np.clip((dist - start) / width, 0.0, 1.0)
    return 1 - x * x * (3 - 2 * x)


def regions(points: np.ndarray, hold: HoldRegion | None, *, crop: CropGeometry) -> Tensor:
    """The crop's held mouth and allowed region, (2, S, S) float32: channel 0 is 1 where the
    mouth is held (as `warp.hold_weight` has it), channel 1 is 1 where the refiner may act (on
    the face, off the held mouth, away from the crop's border). points: (478, 2) face-frame
    landmarks of the frame.

    The allowed region stops GUARD_PX crop pixels short of the held mouth: the residual is
    mapped back to the frame by interpolation, which must not carry it into held pixels."""
    n = crop.size
    if hold is not None:
        dist = _distance_outside(hold.polygon, crop)
        held = _smoothstep_fade(dist, start=hold.band, width=hold.feather)
        guarded = _smoothstep_fade(
            dist, start=hold.band + GUARD_PX / crop.pixels_per_iod, width=hold.feather
        )
        if hold.release is not None and len(hold.release):
            grid = crop.face_points().numpy()
            dist = np.linalg.norm(
                grid[:, :, None, :] - np.asarray(hold.release)[None, None], axis=-1
            )
            let_go = 1 - np.exp(-0.5 * (dist / hold.release_radii()) ** 2).max(axis=-1)
            held, guarded = held * let_go, guarded * let_go
        free = 1 - guarded
    else:
        held, free = np.zeros((n, n)), np.ones((n, n))
    oval = np.asarray(points)[list(mesh.FACE_OVAL)]
    # Ends GUARD_PX short of FACE_MARGIN + FACE_FEATHER, so nothing reaches beyond that.
    guard = GUARD_PX / crop.pixels_per_iod
    face = _smoothstep_fade(
        _distance_outside(oval, crop), start=FACE_MARGIN, width=max(FACE_FEATHER - guard, 0.01)
    )
    ramp = np.linspace(0, 1, n)
    edge = np.clip(np.minimum(ramp, ramp[::-1]) * n / 4, 0, 1)
    allow = face * free * (edge[:, None] * edge[None, :])
    return torch.from_numpy(np.stack([held, allow]).astype(np.float32))


def network_inputs(*, warped: Tensor, source: Tensor, flow: Tensor, maps: Tensor) -> Tensor:
    """Stack the refiner's input channels (B, 10, S, S): warped and source crops (B, 3, S, S)
    in [-1, 1], flow (B, 2, S, S) in IOD, maps (B, 2, S, S) from `regions`."""
    return torch.cat([warped, source, flow * FLOW_SCALE, maps], dim=1)


def sample_fine(image: Tensor, pixel_grid: Tensor) -> Tensor:
    """Sample an image at the supersampled grid of a crop: the crop at twice its size.

    image: (1, C, H, W) float; pixel_grid: (2S, 2S, 2) pixel coordinates (x, y) of the
    supersampled grid (see `supersampled_points`). Returns (1, C, 2S, 2S).
    """
    h, w = image.shape[-2:]
    unit = torch.stack(
        [
            pixel_grid[..., 0] * (2.0 / max(w - 1, 1)) - 1,
            pixel_grid[..., 1] * (2.0 / max(h - 1, 1)) - 1,
        ],
        dim=-1,
    )
    return F.grid_sample(
        image, unit[None], mode="bilinear", padding_mode="border", align_corners=True
    )


def sample_crop(image: Tensor, pixel_grid: Tensor) -> Tensor:
    """Sample a crop from an image with 2x2 supersampling (less aliasing when the face is
    large in the frame): `sample_fine`, pooled. Returns (1, C, S, S)."""
    return F.avg_pool2d(sample_fine(image, pixel_grid), 2)


def supersampled_points(crop: CropGeometry) -> Tensor:
    """(2S, 2S, 2) face-frame points: each crop pixel's four sub-samples, a quarter pixel
    from its centre, so that 2x2 average pooling gives the pixel."""
    n = crop.size
    step = crop.side / (n - 1)
    t = torch.arange(n, dtype=torch.float32) * step
    sub = torch.stack([t - step / 4, t + step / 4], dim=1).reshape(-1)
    ys, xs = torch.meshgrid(sub + crop.top, sub + crop.left, indexing="ij")
    return torch.stack([xs, ys], dim=-1)


# --- editing: the refiner on one frame -------------------------------------------------------


def _crop_box(
    face: FaceFrame, crop: CropGeometry, box: tuple[int, int, int, int], *, width: int, height: int
) -> tuple[int, int, int, int]:
    """The union of the warp's face box and the crop's footprint in the image, clipped."""
    corners = face.to_image(
        np.array(
            [
                [crop.left, crop.top],
                [crop.left + crop.side, crop.top],
                [crop.left, crop.top + crop.side],
                [crop.left + crop.side, crop.top + crop.side],
            ]
        )
    )
    x0 = min(box[0], int(np.floor(corners[:, 0].min())))
    y0 = min(box[1], int(np.floor(corners[:, 1].min())))
    x1 = max(box[2], int(np.ceil(corners[:, 0].max())) + 1)
    y1 = max(box[3], int(np.ceil(corners[:, 1].max())) + 1)
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def _face_to_pixels(face: FaceFrame, points: Tensor, offset: tuple[int, int]) -> Tensor:
    """Face-frame points (..., 2) -> pixel coordinates relative to `offset` (x, y)."""
    lin = torch.as_tensor(face.rotation.T * face.iod, dtype=points.dtype, device=points.device)
    shift = torch.as_tensor(
        face.origin - np.asarray(offset, dtype=np.float64), dtype=points.dtype, device=points.device
    )
    return points @ lin + shift


def refine_frame(
    frame: np.ndarray,
    *,
    warper: Warper,
    refiner: Refiner,
    face: FaceFrame,
    points: np.ndarray,
    values: np.ndarray,
    hold: HoldRegion,
    delta: np.ndarray,
) -> np.ndarray:
    """Warp one frame and refine the face: the same warp as `Warper.apply`, then the refiner's
    masked residual, computed on the aligned crop and mapped back to the frame.

    frame: (H, W, 3) uint8 RGB; points, values: (478, 2) landmarks and forward displacements in
    the face frame (IOD); hold: the mouth held still; delta: (K,) AU change. Returns a new
    frame; pixels the warp and the residual both leave alone keep their exact source values,
    and nothing outside the face region changes.
    """
    height, width = frame.shape[:2]
    crop = refiner.config.crop
    dev = warper.device
    landmarks_px = face.to_image(points)
    box = face_box(landmarks_px, width=width, height=height, margin=warper.config.margin)
    if box[2] - box[0] < 4 or box[3] - box[1] < 4 or not np.any(values):
        return frame.copy()
    region = _crop_box(face, crop, box, width=width, height=height)
    rx0, ry0, rx1, ry1 = region
    h, w = ry1 - ry0, rx1 - rx0
    dense = torch.zeros(2, h, w, device=dev)
    bx0, by0, bx1, by1 = box
    dense[:, by0 - ry0 : by1 - ry0, bx0 - rx0 : bx1 - rx0] = warper.dense_flow(
        face=face, points=points, values=values, box=box, hold=hold
    )
    src_u8 = torch.from_numpy(np.ascontiguousarray(frame[ry0:ry1, rx0:rx1])).to(dev)
    src = src_u8.permute(2, 0, 1)[None].float()
    ys = torch.arange(h, device=dev, dtype=torch.float32)[:, None]
    xs = torch.arange(w, device=dev, dtype=torch.float32)[None, :]
    grid = torch.stack(
        [(xs - dense[0]) * (2.0 / max(w - 1, 1)) - 1, (ys - dense[1]) * (2.0 / max(h - 1, 1)) - 1],
        dim=-1,
    )
    warped = F.grid_sample(
        src, grid[None], mode="bilinear", padding_mode="border", align_corners=True
    )
    warper.show_eyeballs(warped, source=src, dense=dense, face=face, points=points, region=region)
    warped = warped.round_().clamp_(0, 255)

    with torch.no_grad():
        sub = _face_to_pixels(face, supersampled_points(crop).to(dev), (rx0, ry0))
        warped_crop = sample_crop(warped, sub) / 127.5 - 1
        source_crop = sample_crop(src, sub) / 127.5 - 1
        at = _face_to_pixels(face, crop.face_points().to(dev), (rx0, ry0))
        unit = torch.stack(
            [at[..., 0] * (2.0 / max(w - 1, 1)) - 1, at[..., 1] * (2.0 / max(h - 1, 1)) - 1], dim=-1
        )
        flow_px = F.grid_sample(dense[None], unit[None], mode="bilinear", align_corners=True)[0]
        # Pixels -> face frame: the inverse rotation, then IOD units.
        rot = torch.as_tensor(face.rotation, dtype=torch.float32, device=dev)
        flow = (flow_px.permute(1, 2, 0) @ rot / face.iod).permute(2, 0, 1)[None]
        maps = regions(points + values, hold, crop=crop).to(dev)[None]
        inputs = network_inputs(warped=warped_crop, source=source_crop, flow=flow, maps=maps)
        aus = torch.as_tensor(np.asarray(delta), dtype=torch.float32, device=dev)[None]
        residual, mask = refiner(inputs, aus)
        change = mask * residual * maps[:, 1:2] * 127.5  # (1, 3, S, S), 8-bit levels
        # Back to the frame: each pixel of the region reads the crop at its face-frame point.
        lin = torch.as_tensor(face.rotation / face.iod, dtype=torch.float32, device=dev)
        grid_xy = torch.stack(torch.broadcast_tensors(xs + rx0, ys + ry0), dim=-1)
        origin = torch.as_tensor(face.origin, dtype=torch.float32, device=dev)
        face_xy = (grid_xy - origin) @ lin
        back = F.grid_sample(
            change, crop.to_unit(face_xy)[None], mode="bilinear", padding_mode="zeros",
            align_corners=True,
        )  # fmt: skip
    out_region = (warped + back).round_().clamp_(0, 255)[0].permute(1, 2, 0).to(torch.uint8)
    still = (dense.square().sum(dim=0).sqrt() < warper.config.still_px) & (
        back[0].abs().amax(dim=0) < 0.5
    )
    out_region = torch.where(still[..., None], src_u8, out_region)
    out = frame.copy()
    out[ry0:ry1, rx0:rx1] = out_region.cpu().numpy()
    return out
