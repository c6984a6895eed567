"""LoFTR-style losses: coarse NLL of the log dual-softmax at the ground-truth cell, fine L2 of the
sub-pixel offset, and (optionally) an unmatched term that keeps the match probability of cells
without a counterpart low. The first two accept a per-cell spatial weight (``1 + vessel * (scaler - 1)``) so vessel cells
can be stressed early in training (the vessel curriculum, ``training.callbacks``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from retreg.core.matchers.loftr.coarse import cell_fraction
from retreg.core.matchers.loftr.fine import FINE_STRIDE
from retreg.core.matchers.loftr.model import (COARSE_STRIDE, CoarseOutput, RetRegLoFTR,
                                              coarse_cell_centres)


@dataclass
class LossTerms:
    total: torch.Tensor
    coarse: torch.Tensor
    fine: torch.Tensor
    unmatched: torch.Tensor
    n_gt: int  # coarse ground-truth matches in the batch
    n_fine: int  # of those, used by the fine loss


def vessel_weight(vessel0: torch.Tensor | None, scaler: float, n_cells: int,
                  batch: int, device: torch.device) -> torch.Tensor:
    """(B, L) weight ``1 + v * (scaler - 1)``, ``v`` the vessel fraction of each image0 cell."""
    if vessel0 is None or scaler == 1.0:
        return torch.ones(batch, n_cells, device=device)
    return 1.0 + cell_fraction(vessel0, COARSE_STRIDE) * (scaler - 1.0)


def coarse_loss(log_conf: torch.Tensor, gt_j: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean of ``-log P(i, gt_j[i])`` over cells with a ground-truth match."""
    valid = gt_j >= 0
    if not valid.any():
        return log_conf.sum() * 0.0
    b, i = torch.nonzero(valid, as_tuple=True)
    nll = -log_conf[b, i, gt_j[b, i]]
    w = weight[b, i]
    return (nll * w).sum() / w.sum()


def unmatched_loss(log_conf: torch.Tensor, unmatched0: torch.Tensor,
                   unmatched1: torch.Tensor) -> torch.Tensor:
    """Mean ``-log(1 - p)`` over cells without a counterpart, ``p`` the dual-softmax mass of the
    cell's row (image0 cells, (B, L) ``unmatched0``) or column (image1 cells, (B, S)).

    The mass bounds every match probability of the cell from above, so pushing it down keeps
    such cells out of the mutual-nearest matches that pass the confidence threshold.
    """
    conf = log_conf.exp()
    mass = torch.cat([conf.sum(2)[unmatched0], conf.sum(1)[unmatched1]])
    if mass.numel() == 0:
        return log_conf.sum() * 0.0
    return -torch.log1p(-mass.clamp(max=1.0 - 1e-4)).mean()


def fine_targets(out: CoarseOutput, gt_xy1: torch.Tensor, b: torch.Tensor, i: torch.Tensor,
                 j: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised offset of the true position from the centre of cell ``j`` ((M, 2), window
    half-width = 1) and whether it lies inside the window."""
    centres1 = coarse_cell_centres(out.hw1, gt_xy1.device)[j]
    half = (window // 2) * FINE_STRIDE
    target = (gt_xy1[b, i] - centres1) / half
    return target, target.abs().amax(1) < 1.0


def fine_loss(expec: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
              std_weighting: bool) -> torch.Tensor:
    """Weighted L2 of the expected offset; with ``std_weighting`` confident windows count more
    (LoFTR's inverse-std weighting, detached, normalised to mean 1)."""
    l2 = ((expec[:, :2] - target) ** 2).sum(1)
    if std_weighting:
        inv_std = 1.0 / expec[:, 2].detach().clamp(min=1e-6)
        weight = weight * inv_std / inv_std.mean()
    return (l2 * weight).sum() / weight.sum()


def loftr_loss(model: RetRegLoFTR, out: CoarseOutput, gt_j: torch.Tensor, gt_xy1: torch.Tensor,
               vessel0: torch.Tensor | None, scaler: float, fine_weight: float = 1.0,
               max_fine: int = 512, std_weighting: bool = False,
               generator: torch.Generator | None = None,
               unmatched: tuple[torch.Tensor, torch.Tensor] | None = None,
               unmatched_weight: float = 0.0) -> LossTerms:
    """Coarse + ``fine_weight`` * fine + ``unmatched_weight`` * unmatched. The fine stage trains
    on (a random subset of at most ``max_fine``) ground-truth coarse matches, as in LoFTR, so it
    learns before the coarse stage is good. ``unmatched`` is the (B, L), (B, S) pair of
    ``training.supervision.unmatched_cells`` labels; without it the term is 0."""
    bsz, n_cells = gt_j.shape
    weight = vessel_weight(vessel0, scaler, n_cells, bsz, gt_j.device)
    lc = coarse_loss(out.log_conf, gt_j, weight)
    b, i = torch.nonzero(gt_j >= 0, as_tuple=True)
    if len(b) > max_fine:
        pick = torch.randperm(len(b), generator=generator, device="cpu")[:max_fine].to(b.device)
        b, i = b[pick], i[pick]
    j = gt_j[b, i]
    target, inside = fine_targets(out, gt_xy1, b, i, j, model.config.fine_window)
    b, i, j, target = b[inside], i[inside], j[inside], target[inside]
    if len(b) == 0:
        lf = out.log_conf.sum() * 0.0
    else:
        fine = model.refine(out, b, i, j)
        lf = fine_loss(fine.expec, target, weight[b, i], std_weighting)
    lu = (unmatched_loss(out.log_conf, *unmatched) if unmatched is not None and unmatched_weight
          else out.log_conf.sum() * 0.0)
    return LossTerms(lc + fine_weight * lf + unmatched_weight * lu, lc.detach(), lf.detach(),
                     lu.detach(), int((gt_j >= 0).sum()), len(b))
