"""The fast structural matcher's network: an XFeat-sized detector/descriptor (kornia's XFeat
layer recipe, narrower, no pretrained weights) on the vessel representation.

One encoder is shared by both images: the input is the modality-normalised vessel map
(``core.representation``, vessels bright in every modality), so the two sides already look
alike; sharing halves the parameters and lets every training pair teach the same weights twice.

Outputs at 1/8 resolution: L2-normalised descriptors, a reliability logit per cell (how likely
the cell's descriptor finds its true partner) and a 65-way keypoint logit per cell (which of the
8x8 pixels holds a vessel junction, or none: XFeat's keypoint head on the raw 8x8 patch). The
mid-level features (after ``block3``, 1/8) are returned too: structural distillation attaches
its heads there during training (``training.fast_train``); they are not part of the weights.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from kornia.feature.xfeat import BasicLayer
from torch import nn

from retreg.core.matchers.keypoints import MIN_TEMPERATURE, Keypoints
from retreg.core.representation import CHANNELS
from retreg.core.weights_file import config_from_dict

STRIDE = 8
DUSTBIN = STRIDE * STRIDE  # keypoint class "no junction in this cell"


@dataclass
class FastConfig:
    """Architecture, input contract and matching defaults; stored in the weights file.

    ``channels`` and ``working_side`` are part of the weights: inference must feed the
    representation and pixel scale the network was trained on (as for the LoFTR model)."""

    channels: tuple[str, ...] = ("vessels",)
    working_side: int = 310  # FOV side (px) at which images are matched (= the LoFTR model's)
    widths: tuple[int, int, int] = (16, 48, 96)  # 1/4, 1/8 (mid level) and 1/32 channels
    descriptor_dim: int = 64
    temperature: float = 0.1  # dual-softmax temperature (training loss, match confidence); >= 0.03
    top_k: int = 1024  # keypoints per image at matching
    ratio: float = 1.0  # Lowe ratio on descriptor distances; 1.0 turns it off
    min_confidence: float = 0.0  # matches below this dual-softmax confidence are dropped
    junction_threshold: float = 0.5  # keypoint-head probability that moves a point to a junction

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        self.widths = tuple(int(w) for w in self.widths)
        bad = [c for c in self.channels if c not in CHANNELS]
        if bad or not self.channels:
            raise ValueError(f"channels must be a non-empty subset of {CHANNELS}, got {self.channels}")
        if len(self.widths) != 3 or min(self.widths) < 4:
            raise ValueError(f"widths must be three channel counts >= 4, got {self.widths}")
        if self.descriptor_dim < 8 or self.working_side < 64 or self.top_k < 1:
            raise ValueError("descriptor_dim >= 8, working_side >= 64 and top_k >= 1 required")
        if not 0 < self.ratio <= 1 or not 0 <= self.min_confidence < 1 or self.temperature < MIN_TEMPERATURE:
            raise ValueError("ratio in (0, 1], min_confidence in [0, 1), temperature >= "
                             f"{MIN_TEMPERATURE} required")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "FastConfig":
        return config_from_dict(FastConfig, d, "fast matcher")


@dataclass
class FastOutput:
    """Per-image dense outputs, all at 1/8 resolution (h, w) = (H/8, W/8)."""

    desc: torch.Tensor  # (B, D, h, w) L2-normalised
    reliability: torch.Tensor  # (B, 1, h, w) logits
    keypoint: torch.Tensor  # (B, 65, h, w) logits (class 64: no junction)
    mid: torch.Tensor  # (B, widths[1], h, w) mid-level features (distillation attaches here)


class FastNet(nn.Module):
    """Shared encoder + heads. Input (B, C, H, W) with H, W multiples of 8."""

    def __init__(self, config: FastConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or FastConfig()
        cin, (c2, c3, c5), dim = len(c.channels), c.widths, c.descriptor_dim
        self.skip1 = nn.Sequential(nn.AvgPool2d(4, stride=4), nn.Conv2d(cin, c2, 1))
        self.block1 = nn.Sequential(BasicLayer(cin, 4), BasicLayer(4, 8, stride=2),
                                    BasicLayer(8, 8), BasicLayer(8, c2, stride=2))
        self.block2 = nn.Sequential(BasicLayer(c2, c2), BasicLayer(c2, c2))
        self.block3 = nn.Sequential(BasicLayer(c2, c3, stride=2), BasicLayer(c3, c3),
                                    BasicLayer(c3, c3, 1, padding=0))
        self.block4 = nn.Sequential(BasicLayer(c3, c3, stride=2), BasicLayer(c3, c3),
                                    BasicLayer(c3, c3))
        self.block5 = nn.Sequential(BasicLayer(c3, c5, stride=2), BasicLayer(c5, c5),
                                    BasicLayer(c5, c5), BasicLayer(c5, c3, 1, padding=0))
        self.fusion = nn.Sequential(BasicLayer(c3, c3), BasicLayer(c3, c3), nn.Conv2d(c3, dim, 1))
        self.reliability_head = nn.Sequential(BasicLayer(dim, dim, 1, padding=0),
                                              nn.Conv2d(dim, 1, 1))
        patch = cin * STRIDE * STRIDE
        self.keypoint_head = nn.Sequential(BasicLayer(patch, 64, 1, padding=0),
                                           BasicLayer(64, 64, 1, padding=0),
                                           nn.Conv2d(64, DUSTBIN + 1, 1))

    def forward(self, x: torch.Tensor) -> FastOutput:
        if x.ndim != 4 or x.shape[1] != len(self.config.channels):
            raise ValueError(f"input must be (B, {len(self.config.channels)}, H, W), "
                             f"got {tuple(x.shape)}")
        if x.shape[2] % STRIDE or x.shape[3] % STRIDE:
            raise ValueError(f"input height and width must be multiples of {STRIDE}")
        x2 = self.block2(self.block1(x) + self.skip1(x))
        mid = self.block3(x2)
        x4 = self.block4(mid)
        x5 = self.block5(x4)
        size = mid.shape[-2:]
        fused = mid + F.interpolate(x4, size=size, mode="bilinear", align_corners=False) \
            + F.interpolate(x5, size=size, mode="bilinear", align_corners=False)
        raw = self.fusion(fused)
        patches = F.pixel_unshuffle(x, STRIDE)  # (B, C*64, h, w): the raw 8x8 patch of each cell
        return FastOutput(F.normalize(raw, dim=1), self.reliability_head(raw),
                          self.keypoint_head(patches), mid)


def keypoint_positions(keypoint_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, h, w, 2) pixel (x, y) of each cell's keypoint: the most likely junction pixel when
    the head gives it at least ``threshold``, else the cell centre (the training position)."""
    b, _, h, w = keypoint_logits.shape
    prob = keypoint_logits.softmax(1)
    best_p, best = prob[:, :DUSTBIN].max(1)  # (B, h, w)
    ys, xs = torch.meshgrid(torch.arange(h, device=prob.device), torch.arange(w, device=prob.device),
                            indexing="ij")
    centre = torch.stack([xs, ys], -1).float() * STRIDE + (STRIDE - 1) / 2.0
    offset = torch.stack([best % STRIDE, best // STRIDE], -1).float()
    junction = torch.stack([xs, ys], -1).float()[None] * STRIDE + offset
    use = (best_p >= threshold)[..., None]
    return torch.where(use, junction, centre[None].expand(b, h, w, 2))


def cell_centres(h: int, w: int, device=None) -> torch.Tensor:
    """(h*w, 2) pixel centres of the 1/8 cells, row-major (``core.geometry.cell_centres``)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                            indexing="ij")
    return torch.stack([xs, ys], -1).reshape(-1, 2).float() * STRIDE + (STRIDE - 1) / 2.0


def detect(out: FastOutput, valid: torch.Tensor | None, config: FastConfig,
           index: int = 0) -> Keypoints:
    """The top-K most reliable cells of image ``index`` whose centre lies in ``valid``
    ((B, H, W) bool, the field of view), with descriptors sampled (bilinearly) at their
    keypoint positions."""
    desc, rel = out.desc[index:index + 1], out.reliability[index, 0].sigmoid()
    h, w = rel.shape
    xy = keypoint_positions(out.keypoint[index:index + 1], config.junction_threshold)[0]
    xy, score = xy.reshape(-1, 2), rel.reshape(-1)
    if valid is not None:
        c = cell_centres(h, w, rel.device).long()
        inside = valid[index][c[:, 1].clamp(max=valid.shape[1] - 1),
                              c[:, 0].clamp(max=valid.shape[2] - 1)]
        score = torch.where(inside, score, torch.full_like(score, -1.0))
    k = min(config.top_k, int((score >= 0).sum()))
    top = score.topk(k).indices
    xy, score = xy[top], score[top]
    # grid_sample coordinates: cell centres of the 1/8 map sit at pixel 8 i + 3.5
    grid = torch.stack([(xy[:, 0] - (STRIDE - 1) / 2.0) / STRIDE / max(w - 1, 1),
                        (xy[:, 1] - (STRIDE - 1) / 2.0) / STRIDE / max(h - 1, 1)], -1) * 2 - 1
    d = F.grid_sample(desc, grid[None, None], mode="bilinear", align_corners=True)[0, :, 0].T
    return Keypoints(xy, F.normalize(d, dim=1), score)
