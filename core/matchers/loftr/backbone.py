"""Dual-stream ResNet-FPN feature extractor (1/8 coarse, 1/2 fine).

The fixed and moving modalities look different (vessels dark in CF, bright in FA), so each side
gets its own, unshared backbone. The blocks are kornia's LoFTR ``ResNetFPN_8_2``; only the stem is
swapped so the network accepts as many input channels as the representation provides.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from kornia.feature.loftr.backbone.resnet_fpn import ResNetFPN_8_2
from torch import nn


@dataclass
class Features:
    """Feature maps of one image: ``coarse`` (B, Dc, H/8, W/8) and ``fine`` (B, Df, H/2, W/2)."""

    coarse: torch.Tensor
    fine: torch.Tensor


def make_resnet_fpn(in_channels: int, initial_dim: int, block_dims: tuple[int, int, int]) -> ResNetFPN_8_2:
    """kornia's ResNet-FPN 8/2 with a stem taking ``in_channels`` channels."""
    net = ResNetFPN_8_2({"initial_dim": initial_dim, "block_dims": list(block_dims)})
    net.conv1 = nn.Conv2d(in_channels, initial_dim, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return net


class DualBackbone(nn.Module):
    """Two unshared ResNet-FPNs: ``fixed`` for image0, ``moving`` for image1."""

    def __init__(self, in_channels: int, initial_dim: int, block_dims: tuple[int, int, int]) -> None:
        super().__init__()
        self.fixed = make_resnet_fpn(in_channels, initial_dim, block_dims)
        self.moving = make_resnet_fpn(in_channels, initial_dim, block_dims)

    def forward_fixed(self, image: torch.Tensor) -> Features:
        coarse, fine = self.fixed(image)
        return Features(coarse, fine)

    def forward_moving(self, image: torch.Tensor) -> Features:
        coarse, fine = self.moving(image)
        return Features(coarse, fine)
