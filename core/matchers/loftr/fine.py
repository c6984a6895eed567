"""Fine refinement at 1/2 resolution: a 5x5 window around each coarse match in image1 is
correlated with the image0 feature at the cell centre; the expectation of the softmax heatmap
(kornia's LoFTR ``FineMatching``) gives a sub-pixel offset.

Windows are sampled bilinearly at exact pixel positions (not unfolded on the 1/2 grid), so the
window centre is the cell centre in the same pixel convention as the ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.feature.loftr.utils.fine_matching import FineMatching
from torch import nn

FINE_STRIDE = 2  # pixels per 1/2-resolution feature cell


@dataclass
class FineOutput:
    """``expec`` (M, 3): normalised offset (x, y) in [-1, 1] of the window and its std;
    ``kpts1`` (M, 2) refined image1 positions in pixels."""

    expec: torch.Tensor
    kpts1: torch.Tensor


def sample_windows(fine: torch.Tensor, b: torch.Tensor, centres: torch.Tensor,
                   window: int) -> torch.Tensor:
    """(B, C, Hf, Wf) features -> (M, window**2, C) sampled at ``centres`` (M, 2) px + 2 px steps."""
    _, c, hf, wf = fine.shape
    r = torch.arange(window, device=fine.device, dtype=centres.dtype) - window // 2
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    offsets = torch.stack([dx.flatten(), dy.flatten()], 1) * FINE_STRIDE  # (WW, 2) px
    pts = centres[:, None, :] + offsets[None]  # (M, WW, 2) px
    # feature cell k covers pixels [2k, 2k+2): its centre is at pixel 2k + 0.5
    u = (pts - (FINE_STRIDE - 1) / 2.0) / FINE_STRIDE
    grid = torch.stack([u[..., 0] / max(wf - 1, 1), u[..., 1] / max(hf - 1, 1)], -1) * 2 - 1
    out = fine.new_zeros(centres.shape[0], window * window, c)
    for bi in torch.unique(b):
        sel = b == bi
        sampled = F.grid_sample(fine[bi:bi + 1], grid[sel][None], mode="bilinear",
                                padding_mode="zeros", align_corners=True)  # (1, C, m, WW)
        out[sel] = sampled[0].permute(1, 2, 0)
    return out


class FineRefiner(nn.Module):
    """Merges each window with its coarse token (LoFTR's ``cat_c_feat``) then takes the expectation."""

    def __init__(self, d_coarse: int, d_fine: int, window: int = 5) -> None:
        super().__init__()
        self.window = window
        self.down_proj = nn.Linear(d_coarse, d_fine)
        self.merge = nn.Linear(2 * d_fine, d_fine)
        self.expectation = FineMatching()

    def _with_context(self, win: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
        ctx = self.down_proj(tok)[:, None, :].expand(-1, win.shape[1], -1)
        return self.merge(torch.cat([win, ctx], -1))

    def forward(self, fine0: torch.Tensor, fine1: torch.Tensor, tok0: torch.Tensor,
                tok1: torch.Tensor, b: torch.Tensor, pts0: torch.Tensor,
                pts1: torch.Tensor) -> FineOutput:
        """``tok0``/``tok1`` (M, Dc) coarse tokens of the matched cells, ``pts0``/``pts1`` their
        centres (M, 2) px. Image0 contributes only its centre feature."""
        ww = self.window * self.window
        win0 = sample_windows(fine0, b, pts0, 1).expand(-1, ww, -1)
        win1 = sample_windows(fine1, b, pts1, self.window)
        f0, f1 = self._with_context(win0, tok0), self._with_context(win1, tok1)
        data = {"mkpts0_c": pts0, "mkpts1_c": pts1, "mconf": pts0[:, 0], "b_ids": b,
                "stride_f": FINE_STRIDE}
        if len(b) == 0:
            return FineOutput(pts0.new_zeros(0, 3), pts1)
        self.expectation(f0, f1, data)
        return FineOutput(data["expec_f"], data["mkpts1_f"])
