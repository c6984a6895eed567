"""Self-supervised losses of the fusion-mask net, on the same Laplacian-pyramid blend as
``core.fusion`` (differentiable here): the net's mask m chooses the moving image's share at the
finest ``FINE_LEVELS`` levels, coarser levels are averaged. Training through the blend the app
uses means the net is judged on the picture it will produce, not on a plain m*a + (1-m)*b,
whose low frequencies would fight the detail terms (a binary m copies one image's background).

Terms (after the notes in /work/shared/plans/fusion_hybridnet_notes.md), each inside the
overlap:
- ``grad``: L1(|Sobel(F)|, max(|Sobel(a)|, |Sobel(b)|)), divided by the target's mean so the
  term does not depend on the pair's contrast;
- ``log``: L1(LoG(F), the input's LoG with the larger magnitude), likewise divided;
- ``lowfreq``: L1(blur(F), blur(0.5 a + 0.5 b));
- ``bin``: mean(m (1 - m)), a small push towards a decision;
- ``tv``: mean |dm/dx| + |dm/dy|, against speckle in the choice.
"""
from __future__ import annotations

from dataclasses import dataclass

import kornia.filters as KF
import torch
import torch.nn.functional as F

from retreg.core.fusion import FINE_LEVELS, pyramid_levels

_K1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
LOWFREQ_SIGMA = 4.0
LOG_SIGMA = 1.0


@dataclass
class FusionLossConfig:
    grad: float = 1.0
    log: float = 1.0
    lowfreq: float = 1.0
    bin: float = 0.01
    tv: float = 0.02


def _gauss5(x: torch.Tensor) -> torch.Tensor:
    k = (_K1[:, None] * _K1[None, :]).to(x)[None, None].expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=x.shape[1])


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """cv2.pyrDown: 5x5 binomial blur (reflect-101 border), every second pixel."""
    return _gauss5(x)[:, :, ::2, ::2]


def pyr_up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """cv2.pyrUp to ``size``: zeros between the pixels, the binomial blur times 4."""
    up = torch.zeros(*x.shape[:2], 2 * x.shape[2], 2 * x.shape[3], dtype=x.dtype, device=x.device)
    up[:, :, ::2, ::2] = x
    return 4.0 * _gauss5(up)[:, :, :size[0], :size[1]]


def pyramid_blend(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) images and b's share m -> the blend ``core.fusion`` makes inside the
    overlap: m (area-averaged to each level) at the fine levels, one half at the coarse ones."""
    n = pyramid_levels(tuple(a.shape[2:]))
    ga, gb = [a], [b]
    for _ in range(n - 1):
        ga.append(pyr_down(ga[-1]))
        gb.append(pyr_down(gb[-1]))
    out = None
    w = m
    weights = []
    for lev in range(n):
        if lev:
            w = F.adaptive_avg_pool2d(w, ga[lev].shape[2:])
        weights.append(w if lev < FINE_LEVELS else 0.5)
    for lev in range(n - 1, -1, -1):
        if lev == n - 1:
            la, lb = ga[lev], gb[lev]
        else:
            size = tuple(ga[lev].shape[2:])
            la = ga[lev] - pyr_up(ga[lev + 1], size)
            lb = gb[lev] - pyr_up(gb[lev + 1], size)
        band = la + weights[lev] * (lb - la)
        out = band if out is None else pyr_up(out, tuple(band.shape[2:])) + band
    return out


def _grad(x: torch.Tensor) -> torch.Tensor:
    g = KF.spatial_gradient(x, "sobel")  # (B, 1, 2, H, W), normalised by 8 like the benchmark
    return torch.sqrt(g.pow(2).sum(2) + 1e-8)


def _log(x: torch.Tensor) -> torch.Tensor:
    return KF.laplacian(KF.gaussian_blur2d(x, (7, 7), (LOG_SIGMA, LOG_SIGMA)), 3)


def _mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return (x * valid).sum() / valid.sum().clamp_min(1.0)


def detail_ratio(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                 valid: torch.Tensor) -> torch.Tensor:
    """Mean |Sobel(fused)| / mean max(|Sobel(a)|, |Sobel(b)|) inside ``valid`` (the benchmark's
    detail ratio)."""
    return _mean(_grad(fused), valid) / _mean(torch.maximum(_grad(a), _grad(b)), valid)


def fusion_loss(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor, valid: torch.Tensor,
                cfg: FusionLossConfig) -> dict[str, torch.Tensor]:
    """The weighted terms and their sum (``total``) for (B, 1, H, W) inputs, mask and overlap
    (``valid``, 0/1)."""
    fused = pyramid_blend(a, b, m)
    g_target = torch.maximum(_grad(a), _grad(b))
    la, lb = _log(a), _log(b)
    l_target = torch.where(la.abs() >= lb.abs(), la, lb)
    blur = lambda x: KF.gaussian_blur2d(x, (17, 17), (LOWFREQ_SIGMA, LOWFREQ_SIGMA))  # noqa: E731
    terms = {
        "grad": _mean((_grad(fused) - g_target).abs(), valid) / _mean(g_target, valid),
        "log": _mean((_log(fused) - l_target).abs(), valid) / _mean(l_target.abs(), valid),
        "lowfreq": _mean((blur(fused) - blur(0.5 * (a + b))).abs(), valid),
        "bin": _mean(m * (1 - m), valid),
        "tv": (m[:, :, 1:] - m[:, :, :-1]).abs().mean() + (m[..., 1:] - m[..., :-1]).abs().mean(),
    }
    terms["total"] = sum(getattr(cfg, k) * v for k, v in terms.items())
    return terms
