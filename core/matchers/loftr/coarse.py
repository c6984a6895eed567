"""Coarse matching at 1/8: dual-softmax scores, optional vessel prior, mutual nearest neighbours.

The vessel prior adds ``lambda * v0_i * v1_j`` to the similarity, where
``v`` is the vessel fraction of a cell: pairs of vessel cells get a head start while the
transformer learns, and ``lambda`` is weaned to 0 so inference needs no vessel masks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class CoarseMatches:
    """Mutual-nearest-neighbour matches: batch index, image0 cell, image1 cell, confidence."""

    b: torch.Tensor
    i: torch.Tensor
    j: torch.Tensor
    conf: torch.Tensor


def cell_fraction(mask: torch.Tensor, stride: int = 8) -> torch.Tensor:
    """(B, H, W) mask -> (B, L) fraction of each stride cell covered, row-major."""
    return F.avg_pool2d(mask[:, None].float(), stride).flatten(1)


class CoarseMatching(nn.Module):
    """Log dual-softmax scores between transformed tokens.

    ``vessel_soft_lambda`` is a plain attribute so a curriculum callback can change it.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature
        self.vessel_soft_lambda = 0.0

    def forward(self, tok0: torch.Tensor, tok1: torch.Tensor,
                vessel_cells0: torch.Tensor | None = None,
                vessel_cells1: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, D), (B, S, D) -> (B, L, S) log of softmax_rows * softmax_cols."""
        d = tok0.shape[-1]
        sim = torch.einsum("bld,bsd->bls", tok0, tok1) / (d * self.temperature)
        if self.vessel_soft_lambda and vessel_cells0 is not None and vessel_cells1 is not None:
            sim = sim + self.vessel_soft_lambda * vessel_cells0[:, :, None] * vessel_cells1[:, None, :]
        return F.log_softmax(sim, 1) + F.log_softmax(sim, 2)


def mutual_nearest(log_conf: torch.Tensor, threshold: float,
                   valid0: torch.Tensor | None = None,
                   valid1: torch.Tensor | None = None) -> CoarseMatches:
    """Cells that are each other's best match with confidence above ``threshold``.

    Keep ``threshold`` low: on large grids the dual-softmax mass spreads thin and a high fixed
    threshold leaves nothing; the robust estimator downstream removes the outliers.
    ``valid0``/``valid1`` (B, L)/(B, S) bool drop cells outside the field of view.
    """
    conf = log_conf.exp()
    if valid0 is not None:
        conf = conf * valid0[:, :, None]
    if valid1 is not None:
        conf = conf * valid1[:, None, :]
    best = (conf == conf.amax(2, keepdim=True)) & (conf == conf.amax(1, keepdim=True))
    b, i, j = torch.nonzero(best & (conf > threshold), as_tuple=True)
    return CoarseMatches(b, i, j, conf[b, i, j])
