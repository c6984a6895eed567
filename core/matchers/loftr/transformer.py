"""Coarse-level context: sine position encoding + linear-attention self/cross transformer.

Linear attention keeps the cost linear in the number of 1/8 cells, which is what makes
full-image matching affordable on a CPU. Both blocks are kornia's LoFTR modules.
"""
from __future__ import annotations

import torch
from kornia.feature.loftr.loftr_module.transformer import LocalFeatureTransformer
from kornia.feature.loftr.utils.position_encoding import PositionEncodingSine
from torch import nn


class CoarseTransformer(nn.Module):
    """Maps two coarse feature maps (B, D, h, w) to transformed tokens (B, h*w, D)."""

    def __init__(self, d_model: int, nhead: int, n_layers: int) -> None:
        super().__init__()
        self.pos_encoding = PositionEncodingSine(d_model, temp_bug_fix=True)
        self.encoder = LocalFeatureTransformer(
            {"d_model": d_model, "nhead": nhead, "layer_names": ["self", "cross"] * n_layers,
             "attention": "linear"})

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole images attend (background included, as the plans prescribe)."""
        t0 = self.pos_encoding(feat0).flatten(2).transpose(1, 2)
        t1 = self.pos_encoding(feat1).flatten(2).transpose(1, 2)
        return self.encoder(t0, t1)
