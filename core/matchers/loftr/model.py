"""The cross-modal LoFTR-style network: dual backbone -> coarse transformer -> dual-softmax
coarse matching -> fine refinement. Plain ``nn.Module`` with typed inputs and outputs so the
Lightning module, the matcher and the tests share one implementation."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from retreg.core.geometry import cell_centres
from retreg.core.weights_file import config_from_dict

from .backbone import DualBackbone, Features
from .coarse import CoarseMatching, cell_fraction, mutual_nearest
from .fine import FineOutput, FineRefiner
from .transformer import CoarseTransformer

COARSE_STRIDE = 8


def coarse_cell_centres(hw: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(h*w, 2) float32 ``core.geometry.cell_centres`` of a coarse grid of ``hw`` = (h, w)
    cells, on ``device``: the pixel each coarse match stands for."""
    return torch.as_tensor(cell_centres(*hw, COARSE_STRIDE), dtype=torch.float32, device=device)


@dataclass
class LoftrConfig:
    """Architecture and input contract. ``channels`` and ``working_side`` are part of the
    weights: inference must feed the representation and pixel scale the model was trained on."""

    channels: tuple[str, ...] = ("vessels",)
    working_side: int = 256  # FOV bounding-box side (px) at which the model sees images
    initial_dim: int = 16  # 1/2-resolution layers dominate CPU cost: keep them narrow
    block_dims: tuple[int, int, int] = (16, 32, 128)
    nhead: int = 4
    n_layers: int = 2  # self+cross pairs
    temperature: float = 0.1
    fine_window: int = 5
    match_threshold: float = 0.01  # low on purpose (see coarse.mutual_nearest)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "LoftrConfig":
        return config_from_dict(LoftrConfig, d, "LoFTR")


@dataclass
class CoarseOutput:
    """Everything the losses and the fine stage need from one forward pass."""

    log_conf: torch.Tensor  # (B, L, S) log dual-softmax
    tok0: torch.Tensor  # (B, L, Dc)
    tok1: torch.Tensor  # (B, S, Dc)
    fine0: torch.Tensor  # (B, Df, H0/2, W0/2)
    fine1: torch.Tensor  # (B, Df, H1/2, W1/2)
    hw0: tuple[int, int]  # coarse grid (h, w) of image0
    hw1: tuple[int, int]


@dataclass
class MatchOutput:
    """Inference matches in input-pixel coordinates of each image."""

    b: torch.Tensor  # (M,) batch index
    kpts0: torch.Tensor  # (M, 2)
    kpts1: torch.Tensor  # (M, 2)
    conf: torch.Tensor  # (M,) coarse dual-softmax confidence in [0, 1]
    extras: dict = field(default_factory=dict)


class RetRegLoFTR(nn.Module):
    """image0 = fixed side, image1 = moving side; inputs (B, C, H, W), H and W multiples of 8."""

    def __init__(self, config: LoftrConfig | None = None) -> None:
        super().__init__()
        self.config = config or LoftrConfig()
        c = self.config
        d_coarse, d_fine = c.block_dims[2], c.block_dims[0]
        self.backbone = DualBackbone(len(c.channels), c.initial_dim, c.block_dims)
        self.transformer = CoarseTransformer(d_coarse, c.nhead, c.n_layers)
        self.coarse_matching = CoarseMatching(c.temperature)
        self.fine = FineRefiner(d_coarse, d_fine, c.fine_window)

    def _check_input(self, name: str, img: torch.Tensor) -> None:
        if img.ndim != 4 or img.shape[1] != len(self.config.channels):
            raise ValueError(f"{name} must be (B, {len(self.config.channels)}, H, W), "
                             f"got {tuple(img.shape)}")
        if img.shape[2] % COARSE_STRIDE or img.shape[3] % COARSE_STRIDE:
            raise ValueError(f"{name} height and width must be multiples of {COARSE_STRIDE}")

    def encode_fixed(self, image0: torch.Tensor) -> Features:
        """The fixed side's backbone features: ``forward_coarse`` and ``match`` take them in
        place of ``image0``, so a search over moving variants encodes the fixed image once."""
        self._check_input("image0", image0)
        return self.backbone.forward_fixed(image0)

    def forward_coarse(self, image0: torch.Tensor | Features, image1: torch.Tensor,
                       vessel0: torch.Tensor | None = None,
                       vessel1: torch.Tensor | None = None) -> CoarseOutput:
        """``image0`` is the fixed image or its ``encode_fixed`` features; ``vessel0``/``vessel1``
        (B, H, W) feed the optional vessel prior (training only)."""
        f0 = image0 if isinstance(image0, Features) else self.encode_fixed(image0)
        self._check_input("image1", image1)
        f1 = self.backbone.forward_moving(image1)
        tok0, tok1 = self.transformer(f0.coarse, f1.coarse)
        v0 = cell_fraction(vessel0, COARSE_STRIDE) if vessel0 is not None else None
        v1 = cell_fraction(vessel1, COARSE_STRIDE) if vessel1 is not None else None
        log_conf = self.coarse_matching(tok0, tok1, v0, v1)
        return CoarseOutput(log_conf, tok0, tok1, f0.fine, f1.fine,
                            tuple(f0.coarse.shape[2:]), tuple(f1.coarse.shape[2:]))

    def refine(self, out: CoarseOutput, b: torch.Tensor, i: torch.Tensor,
               j: torch.Tensor) -> FineOutput:
        """Sub-pixel position in image1 of the centre of image0 cell ``i`` matched to cell ``j``."""
        dev = out.log_conf.device
        pts0 = coarse_cell_centres(out.hw0, dev)[i]
        pts1 = coarse_cell_centres(out.hw1, dev)[j]
        return self.fine(out.fine0, out.fine1, out.tok0[b, i], out.tok1[b, j], b, pts0, pts1)

    @torch.no_grad()
    def match(self, image0: torch.Tensor | Features, image1: torch.Tensor,
              valid0: torch.Tensor | None = None, valid1: torch.Tensor | None = None,
              threshold: float | None = None) -> MatchOutput:
        """Mutual-nearest coarse matches refined to sub-pixel; ``image0`` as in
        ``forward_coarse``; ``valid0``/``valid1`` (B, H, W) bool restrict matches to cells
        mostly inside the field of view."""
        out = self.forward_coarse(image0, image1)
        keep0 = cell_fraction(valid0, COARSE_STRIDE) > 0.5 if valid0 is not None else None
        keep1 = cell_fraction(valid1, COARSE_STRIDE) > 0.5 if valid1 is not None else None
        thr = self.config.match_threshold if threshold is None else threshold
        cm = mutual_nearest(out.log_conf, thr, keep0, keep1)
        fine = self.refine(out, cm.b, cm.i, cm.j)
        pts0 = coarse_cell_centres(out.hw0, image1.device)[cm.i]
        return MatchOutput(cm.b, pts0, fine.kpts1, cm.conf)
