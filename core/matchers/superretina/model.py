"""The SuperRetina-style cross-modal keypoint network (issue #14): SuperRetina's layout (a
VGG-like encoder to 1/8, a U-Net decoder to a full-resolution keypoint heatmap, a descriptor
head at 1/8 sampled at the detected points) scaled down to a few hundred thousand parameters,
on the same input and pixel scale as RetReg's other matchers (``core.representation``).

``streams`` = 1 shares every weight between the fixed and the moving image; 2 gives each side
its own encoder and heads (SuperRetina itself is one network for one modality). Which one ships
is a measurement (``training/configs/superretina_v1.yaml``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from retreg.core.matchers.keypoints import MIN_TEMPERATURE, Keypoints
from retreg.core.representation import CHANNELS
from retreg.core.weights_file import config_from_dict

STRIDE = 8  # the descriptor grid


@dataclass
class SuperRetinaConfig:
    """Architecture, input contract and detection/matching defaults; stored in the weights."""

    channels: tuple[str, ...] = ("vessels",)
    working_side: int = 310  # FOV side (px) at which images are matched (= the other matchers')
    widths: tuple[int, int, int, int] = (8, 16, 32, 64)  # encoder at 1, 1/2, 1/4, 1/8
    descriptor_dim: int = 64
    streams: int = 1  # 1: one network for both sides; 2: fixed and moving streams
    nms_radius: int = 4  # px: a keypoint is the maximum of its (2r+1)^2 neighbourhood
    det_threshold: float = 0.3  # heatmap value a keypoint needs
    top_k: int = 1024  # keypoints per image at matching
    ratio: float = 0.9  # Lowe ratio on descriptor distances; 1.0 turns it off
    temperature: float = 0.1  # dual-softmax temperature of the match confidence

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        self.widths = tuple(int(w) for w in self.widths)
        bad = [c for c in self.channels if c not in CHANNELS]
        if bad or not self.channels:
            raise ValueError(f"channels must be a non-empty subset of {CHANNELS}, "
                             f"got {self.channels}")
        if len(self.widths) != 4 or min(self.widths) < 4:
            raise ValueError(f"widths must be four channel counts >= 4, got {self.widths}")
        if self.streams not in (1, 2):
            raise ValueError(f"streams must be 1 or 2, got {self.streams}")
        if self.descriptor_dim < 8 or self.working_side < 64 or self.top_k < 1:
            raise ValueError("descriptor_dim >= 8, working_side >= 64 and top_k >= 1 required")
        if not 0 < self.ratio <= 1 or not 0 <= self.det_threshold < 1 or self.temperature < MIN_TEMPERATURE:
            raise ValueError("ratio in (0, 1], det_threshold in [0, 1), temperature >= "
                             f"{MIN_TEMPERATURE} required")
        if self.nms_radius < 1:
            raise ValueError("nms_radius >= 1 required")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "SuperRetinaConfig":
        return config_from_dict(SuperRetinaConfig, d, "superretina")


@dataclass
class SuperRetinaOutput:
    """Dense outputs of one batch of images."""

    heatmap: torch.Tensor  # (B, 1, H, W) keypoint probability in [0, 1], full resolution
    desc: torch.Tensor  # (B, D, H/8, W/8) L2-normalised


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _Stream(nn.Module):
    """Encoder (two 3x3 convs per level, max-pool between levels) + detector decoder + descriptor
    head, as SuperRetina, narrower."""

    def __init__(self, cin: int, widths: tuple[int, ...], dim: int) -> None:
        super().__init__()
        c1, c2, c3, c4 = widths
        self.enc = nn.ModuleList([nn.Sequential(_conv(a, b), _conv(b, b)) for a, b in
                                  ((cin, c1), (c1, c2), (c2, c3), (c3, c4))])
        self.dec = nn.ModuleList([_conv(c4 + c3, c3), _conv(c3 + c2, c2), _conv(c2 + c1, c1)])
        self.det = nn.Conv2d(c1, 1, 1)
        self.des = nn.Sequential(_conv(c4, c4), nn.Conv2d(c4, dim, 1))

    def forward(self, x: torch.Tensor) -> SuperRetinaOutput:
        skips = []
        for k, level in enumerate(self.enc):
            x = level(F.max_pool2d(x, 2) if k else x)
            skips.append(x)
        y = skips[-1]
        for block, skip in zip(self.dec, reversed(skips[:-1])):
            y = block(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="bilinear",
                                               align_corners=False), skip], 1))
        return SuperRetinaOutput(torch.sigmoid(self.det(y)),
                                 F.normalize(self.des(skips[-1]), dim=1))


class SuperRetinaNet(nn.Module):
    """``forward(x, side)``: side 0 = fixed, 1 = moving (the same weights when ``streams`` = 1).
    Input (B, C, H, W) with H, W multiples of 8."""

    def __init__(self, config: SuperRetinaConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or SuperRetinaConfig()
        self.streams = nn.ModuleList([_Stream(len(c.channels), c.widths, c.descriptor_dim)
                                      for _ in range(c.streams)])

    def forward(self, x: torch.Tensor, side: int = 0) -> SuperRetinaOutput:
        if x.ndim != 4 or x.shape[1] != len(self.config.channels):
            raise ValueError(f"input must be (B, {len(self.config.channels)}, H, W), "
                             f"got {tuple(x.shape)}")
        if x.shape[2] % STRIDE or x.shape[3] % STRIDE:
            raise ValueError(f"input height and width must be multiples of {STRIDE}")
        if side not in (0, 1):
            raise ValueError(f"side must be 0 (fixed) or 1 (moving), got {side}")
        return self.streams[side % len(self.streams)](x)


def sample_descriptors(desc: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """(B, N, D) L2-normalised descriptors of (B, D, h, w) at (B, N, 2) input-pixel positions,
    bilinear on the 1/8 grid whose cell centres sit at pixel 8 i + 3.5."""
    h, w = desc.shape[-2:]
    gx = (xy[..., 0] - (STRIDE - 1) / 2.0) / STRIDE / max(w - 1, 1) * 2 - 1
    gy = (xy[..., 1] - (STRIDE - 1) / 2.0) / STRIDE / max(h - 1, 1) * 2 - 1
    d = F.grid_sample(desc, torch.stack([gx, gy], -1)[:, None], mode="bilinear",
                      align_corners=True)[:, :, 0]
    return F.normalize(d.transpose(1, 2), dim=2)


def local_maxima(heatmap: torch.Tensor, radius: int, threshold: float) -> torch.Tensor:
    """(B, H, W) bool: pixels that are the maximum of their (2r+1)^2 window and >= threshold."""
    peak = F.max_pool2d(heatmap, 2 * radius + 1, stride=1, padding=radius)
    return ((heatmap == peak) & (heatmap >= threshold))[:, 0]


def detect(out: SuperRetinaOutput, valid: torch.Tensor | None, config: SuperRetinaConfig,
           index: int = 0) -> Keypoints:
    """The top-K strongest heatmap maxima of image ``index`` inside ``valid`` ((B, H, W) bool,
    the field of view), with their descriptors."""
    peaks = local_maxima(out.heatmap[index:index + 1], config.nms_radius, config.det_threshold)[0]
    if valid is not None:
        peaks &= valid[index].bool()
    ys, xs = torch.nonzero(peaks, as_tuple=True)
    score = out.heatmap[index, 0, ys, xs]
    top = score.topk(min(config.top_k, len(score))).indices
    xy = torch.stack([xs[top], ys[top]], -1).float()
    desc = sample_descriptors(out.desc[index:index + 1], xy[None])[0]
    return Keypoints(xy, desc, score[top])
