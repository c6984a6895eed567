"""The learned fusion decision mask (HybridFusion-style): a small CNN stem plus one shifted-window
attention stage predicts, per pixel, the moving image's share m in [0, 1] of the fine detail.

Input: the two normalised luminances (1 x 2 x H x W, fixed then moving, each stretched to its
1st-99th percentile as ``core.fusion`` does). Output: m (1 x 1 x H x W). The net only decides
*which* input's fine detail to keep; ``core.fusion`` applies m to its three finest Laplacian
levels and averages the coarse ones, so the learned view keeps the classical view's field
handling, seams and colour. Architecture: two 3x3 convolutions at full resolution; a 2x2
patch embedding (patch 2); two Swin blocks (window 8, the second shifted by 4 with the
attention mask that keeps rolled-in pixels apart); a pixel-shuffle back to full resolution,
joined with the stem's features; a 1x1 head. Inputs are padded (reflect) to multiples of 16
(patch x window) and the output cropped back. Weights live in safetensors (architecture in the
metadata): loading never unpickles anything.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from retreg.core.weights_file import NetworkFile, config_from_dict

CONFIG_KEY = "retreg_fusion_config"
PATCH = 2


@dataclass
class FusionNetConfig:
    stem: int = 8         # channels of the full-resolution convolutions
    dim: int = 32         # token width of the attention stage
    heads: int = 2
    window: int = 8
    mlp_ratio: float = 2.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FusionNetConfig:
        return config_from_dict(cls, values, "fusion net")


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, w * w, C)."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def _unwindows(x: torch.Tensor, w: int, b: int, h: int, wd: int) -> torch.Tensor:
    x = x.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, wd, -1)


def shift_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """(nW, window², window²) additive mask for the shifted block: 0 between tokens from the same
    region of the unrolled map, -100 between tokens the roll brought together (they are not
    neighbours in the image)."""
    region = torch.zeros(1, h, w, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in cuts:
        for cols in cuts:
            region[:, rows, cols, :] = label
            label += 1
    r = _windows(region, window).squeeze(-1)
    return (r[:, None, :] != r[:, :, None]).float() * -100.0


class WindowAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias, std=0.02)
        yy, xx = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        pos = torch.stack([yy.flatten(), xx.flatten()])
        rel = (pos[:, :, None] - pos[:, None, :]) + window - 1
        self.register_buffer("index", rel[0] * (2 * window - 1) + rel[1], persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n_win, n, c = x.shape
        qkv = self.qkv(x).view(n_win, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.bias[self.index].permute(2, 0, 1)[None]  # (1, heads, n, n)
        if mask is not None:  # mask: (nW, n, n), repeated per image of the batch
            bias = bias + mask.repeat(n_win // mask.shape[0], 1, 1)[:, None]
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(n_win, n, c))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        y = self.norm1(x)
        mask = None
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
            mask = shift_mask(h, w, self.window, self.shift).to(x.dtype)
        y = _unwindows(self.attn(_windows(y, self.window), mask), self.window, b, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class FusionNet(nn.Module):
    """(B, 2, H, W) normalised luminances (fixed, moving) -> (B, 1, H, W) moving share m."""

    def __init__(self, config: FusionNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or FusionNetConfig()
        self.stem = nn.Sequential(nn.Conv2d(2, cfg.stem, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(cfg.stem, cfg.stem, 3, padding=1), nn.GELU())
        self.embed = nn.Conv2d(cfg.stem, cfg.dim, PATCH, stride=PATCH)
        self.blocks = nn.ModuleList(
            SwinBlock(cfg.dim, cfg.heads, cfg.window, shift, cfg.mlp_ratio)
            for shift in (0, cfg.window // 2))
        self.norm = nn.LayerNorm(cfg.dim)
        self.up = nn.Conv2d(cfg.dim, cfg.stem * PATCH * PATCH, 1)
        self.head = nn.Sequential(nn.Conv2d(2 * cfg.stem, cfg.stem, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(cfg.stem, 1, 1))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        t = self.embed(s).permute(0, 2, 3, 1)
        for block in self.blocks:
            t = block(t)
        t = self.up(self.norm(t).permute(0, 3, 1, 2))
        return self.head(torch.cat([s, F.pixel_shuffle(t, PATCH)], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Antisymmetric by construction: m = sigmoid(f(a, b) - f(b, a)), so swapped inputs give
        1 - m. Unconstrained, training settled within 40 steps on one input everywhere (any
        binary mask beats a mix on the detail loss, and a constant one is the easiest to reach
        through the output bias); this way the net can only win by comparing the two."""
        b, _, h, w = x.shape
        m = PATCH * self.config.window
        x = F.pad(x, (0, -w % m, 0, -h % m), mode="reflect" if min(h, w) > m else "replicate")
        logits = self._logits(torch.cat([x, x.flip(1)]))
        return torch.sigmoid(logits[:b] - logits[b:])[:, :, :h, :w]


FILE = NetworkFile(FusionNetConfig, FusionNet, CONFIG_KEY, "fusion net")
save_fusion_net, load_fusion_net = FILE.save, FILE.load


NET_SIDE = 768  # the net runs on a copy no longer than this; its mask is resized back


@functools.lru_cache(maxsize=1)
def bundled_net() -> FusionNet:
    """The bundled net, loaded once; ModelLoadError when it is missing."""
    from retreg.resources import bundled_fusion_weights

    return load_fusion_net(bundled_fusion_weights())


def run_net(net: FusionNet, nf: np.ndarray, nm: np.ndarray) -> np.ndarray:
    """The net's mask m (float32 HxW) for two normalised luminances of one size."""
    x = torch.from_numpy(np.stack([nf, nm])[None].astype(np.float32, copy=False))
    with torch.inference_mode():
        return net(x)[0, 0].numpy()


def predict_mask(nf: np.ndarray, nm: np.ndarray, net: FusionNet | None = None) -> np.ndarray:
    """The moving image's share m (float32 HxW in [0, 1]) for two normalised luminances
    (``core.fusion.normalised_pair``), by ``net`` or the bundled one. Images longer than
    ``NET_SIDE`` go through a copy of that size and the mask is resized back bilinearly: the
    net takes about 2.4 s for 768² and 4.3 s for 1024² on one core, so a 2912-px photo at full
    resolution would take about a minute."""
    net = net or bundled_net()
    h, w = nf.shape
    f = min(1.0, NET_SIDE / max(h, w))
    if f == 1.0:
        return run_net(net, nf, nm)
    size = (max(16, round(w * f)), max(16, round(h * f)))
    small = [cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (nf, nm)]
    return cv2.resize(run_net(net, *small), (w, h), interpolation=cv2.INTER_LINEAR)
