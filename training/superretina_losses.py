"""Losses and progressive keypoint expansion (PKE) of the SuperRetina-style matcher
(``core.matchers.superretina``), as in ``/work/shared/plans/superretina_plan_v5.md``.

All positions are input pixels (x, y) with pixel centres at integers (the dataset's
``T_0to1`` convention); keypoint sets are padded (B, N, 2) tensors with a (B, N) valid flag.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from retreg.core.matchers.superretina.model import local_maxima, sample_descriptors


def map_points(T: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """(B, N, 2) points through (B, 3, 3) matrices (projective)."""
    ones = torch.ones_like(xy[..., :1])
    p = torch.cat([xy, ones], -1) @ T.transpose(1, 2)
    return p[..., :2] / p[..., 2:].clamp(min=1e-8)


def gaussian_labels(kpts: torch.Tensor, valid: torch.Tensor, hw: tuple[int, int],
                    sigma: float) -> torch.Tensor:
    """(B, 1, H, W) soft keypoint label: a Gaussian of peak 1 at every valid point (max where
    they overlap), as SuperRetina blurs its labels."""
    b, (h, w) = kpts.shape[0], hw
    px = torch.round(kpts).long()
    ok = valid & (px[..., 0] >= 0) & (px[..., 0] < w) & (px[..., 1] >= 0) & (px[..., 1] < h)
    impulses = torch.zeros(b, h * w, device=kpts.device)
    bi, ki = torch.nonzero(ok, as_tuple=True)
    impulses[bi, px[bi, ki, 1] * w + px[bi, ki, 0]] = 1.0
    r = max(1, math.ceil(3 * sigma))
    d = torch.arange(-r, r + 1, device=kpts.device, dtype=torch.float32)
    g = torch.exp(-d ** 2 / (2 * sigma ** 2))
    impulses = impulses.view(b, 1, h, w)
    # separable Gaussian; with one point per window this is exactly exp(-|d|^2 / 2 sigma^2)
    out = F.conv2d(impulses, g.view(1, 1, 1, -1), padding=(0, r))
    out = F.conv2d(out, g.view(1, 1, -1, 1), padding=(r, 0))
    return out.clamp(max=1.0)


def dice_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
              eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of (B, 1, H, W) maps inside (B, H, W) ``mask``, averaged over the batch
    (SuperRetina's detector loss)."""
    m = mask[:, None].float()
    p, t = pred * m, target * m
    inter = (p * t).flatten(1).sum(1)
    denom = (p * p).flatten(1).sum(1) + (t * t).flatten(1).sum(1)
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


def warp_to_fixed(heat1: torch.Tensor, mask1: torch.Tensor, T_0to1: torch.Tensor,
                  hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The moving heatmap resampled into the fixed frame (each fixed pixel x reads heat1 at
    T_0to1 x) and (B, H, W) bool where that lands inside the moving field of view."""
    b, (h, w) = heat1.shape[0], hw
    h1, w1 = heat1.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, device=heat1.device, dtype=torch.float32),
                            torch.arange(w, device=heat1.device, dtype=torch.float32),
                            indexing="ij")
    xy = map_points(T_0to1.float(), torch.stack([xs, ys], -1).view(1, -1, 2).expand(b, -1, -1))
    grid = torch.stack([xy[..., 0] / max(w1 - 1, 1), xy[..., 1] / max(h1 - 1, 1)], -1) * 2 - 1
    grid = grid.view(b, h, w, 2)
    warped = F.grid_sample(heat1, grid, mode="bilinear", align_corners=True)
    inside = F.grid_sample(mask1[:, None].float(), grid, mode="nearest", align_corners=True)
    return warped, inside[:, 0] > 0.5


def random_points(mask: torch.Tensor, n: int, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """(B, n, 2) pixels drawn uniformly from each (B, H, W) mask (anywhere when empty)."""
    b, h, w = mask.shape
    weights = mask.flatten(1).float() + (~mask.flatten(1).any(1, keepdim=True)).float()
    idx = torch.multinomial(weights, n, replacement=True, generator=generator)
    return torch.stack([idx % w, idx // w], -1).float()


def partner_loss(desc0: torch.Tensor, desc1: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor,
                 valid: torch.Tensor, neg1: torch.Tensor, temperature: float, radius: float
                 ) -> torch.Tensor:
    """One direction of the descriptor loss: for each valid pair (p0, p1), the negative
    log-likelihood of p1 among the candidates of the other image (softmax of cosine / temperature):
    the partners of the other pairs plus ``neg1`` (B, R, 2) random points, minus any within
    ``radius`` px of the true partner (they look alike legitimately).

    SuperRetina uses a hardest-negative triplet loss here; from scratch on our budget it
    collapsed (every descriptor alike, loss stuck at the margin for 120 steps: report), so the
    same candidates are contrasted with InfoNCE, which cannot settle on a collapsed solution."""
    if not valid.any():
        return desc0.sum() * 0
    d0 = sample_descriptors(desc0, p0)
    cand = torch.cat([p1, neg1], 1)
    cand_ok = torch.cat([valid, torch.ones(neg1.shape[:2], dtype=torch.bool,
                                           device=valid.device)], 1)
    logits = torch.einsum("bnd,bmd->bnm", d0, sample_descriptors(desc1, cand)) / temperature
    n = p0.shape[1]
    eye = torch.zeros(n, cand.shape[1], dtype=torch.bool, device=valid.device)
    eye[torch.arange(n), torch.arange(n)] = True
    blocked = ((torch.cdist(p1, cand) < radius) & ~eye) | ~cand_ok[:, None, :]
    logp = logits.masked_fill(blocked, float("-inf")).log_softmax(2)
    nll = -logp[:, torch.arange(n), torch.arange(n)]
    return nll[valid].mean()


def descriptor_loss(desc0, desc1, p0, p1, valid, neg0, neg1, temperature: float, radius: float
                    ) -> torch.Tensor:
    """``partner_loss`` in both directions (fixed -> moving and moving -> fixed)."""
    return (partner_loss(desc0, desc1, p0, p1, valid, neg1, temperature, radius)
            + partner_loss(desc1, desc0, p1, p0, valid, neg0, temperature, radius)) / 2


@dataclass
class PKEConfig:
    """Progressive keypoint expansion: which new points become labels (plan v5, 3.2).

    A candidate is a fixed-heatmap maximum >= ``geometric_threshold`` whose true counterpart
    (through T_0to1) also fires >= ``geometric_threshold`` on the moving heatmap (geometry), whose
    descriptors at both ends have cosine similarity >= ``content_threshold`` and are mutual
    nearest among the candidates (content), that lies inside the vessel mask and both fields of
    view, and is not already a label; at most ``max_new`` per image, best content first."""

    content_threshold: float = 0.75
    geometric_threshold: float = 0.5
    max_new: int = 300
    nms_radius: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.content_threshold < 1 or not 0 < self.geometric_threshold < 1:
            raise ValueError("content_threshold and geometric_threshold must be in (0, 1)")
        if self.max_new < 0 or self.nms_radius < 1:
            raise ValueError("max_new >= 0 and nms_radius >= 1 required")


def accept_pke(content: torch.Tensor, geometric: torch.Tensor, mutual: torch.Tensor,
               in_vessel: torch.Tensor, is_new: torch.Tensor, cfg: PKEConfig) -> torch.Tensor:
    """Indices (into the N candidates of one image) of the accepted ones, best content first:
    the acceptance rule of ``PKEConfig`` on per-candidate scores and flags, all (N,)."""
    ok = ((content >= cfg.content_threshold) & (geometric >= cfg.geometric_threshold) & mutual
          & in_vessel & is_new)
    idx = torch.nonzero(ok, as_tuple=True)[0]
    order = content[idx].argsort(descending=True)
    return idx[order[:cfg.max_new]]


@torch.no_grad()
def mine_pke(heat0: torch.Tensor, heat1: torch.Tensor, desc0: torch.Tensor, desc1: torch.Tensor,
             T_0to1: torch.Tensor, vessel0: torch.Tensor, mask0: torch.Tensor,
             mask1: torch.Tensor, labels0: torch.Tensor, labels_valid: torch.Tensor,
             cfg: PKEConfig, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """New fixed-frame labels (B, capacity, 2) and their valid flag (capacity >= max_new)."""
    b = heat0.shape[0]
    h1, w1 = heat1.shape[-2:]
    out = torch.zeros(b, capacity, 2, device=heat0.device)
    out_ok = torch.zeros(b, capacity, dtype=torch.bool, device=heat0.device)
    peaks = local_maxima(heat0, cfg.nms_radius, cfg.geometric_threshold) & mask0.bool()
    for k in range(b):
        ys, xs = torch.nonzero(peaks[k], as_tuple=True)
        if len(xs) == 0:
            continue
        p0 = torch.stack([xs, ys], -1).float()
        p1 = map_points(T_0to1[k:k + 1].float(), p0[None])[0]
        px1 = torch.round(p1).long()
        inside = (px1[:, 0] >= 0) & (px1[:, 0] < w1) & (px1[:, 1] >= 0) & (px1[:, 1] < h1)
        px1c = torch.stack([px1[:, 0].clamp(0, w1 - 1), px1[:, 1].clamp(0, h1 - 1)], -1)
        inside &= mask1[k, px1c[:, 1], px1c[:, 0]].bool()
        geometric = torch.where(inside, heat1[k, 0, px1c[:, 1], px1c[:, 0]],
                                torch.zeros_like(p0[:, 0]))
        d0 = sample_descriptors(desc0[k:k + 1], p0[None])[0]
        d1 = sample_descriptors(desc1[k:k + 1], p1[None])[0]
        sim = d0 @ d1.T
        content = sim.diagonal()
        ar = torch.arange(len(p0), device=p0.device)
        mutual = (sim.argmax(1) == ar) & (sim.argmax(0) == ar)
        in_vessel = vessel0[k, ys, xs] > 0.5
        known = labels0[k][labels_valid[k]]
        is_new = (torch.cdist(p0, known).min(1).values > cfg.nms_radius if len(known)
                  else torch.ones_like(in_vessel))
        keep = accept_pke(content, geometric, mutual, in_vessel, is_new, cfg)[:capacity]
        out[k, :len(keep)], out_ok[k, :len(keep)] = p0[keep], True
    return out, out_ok
