"""Visual checks of a registration: fixed image + warped moving image -> RGB uint8.

All functions take two images of the same height and width (gray or RGB, uint8 / uint16 /
float in [0, 1]). Cross-modal pairs differ in brightness, so the gray-based views (difference,
two-colour) stretch each image to its own 1st-99th percentile first. Full-resolution fundus
photos are ~8.5 MP, so the arithmetic stays in uint8 / float32, percentiles come from a
strided subsample, and 8-bit images are stretched through a lookup table.
"""
from __future__ import annotations

import cv2
import numpy as np

from retreg.core.io import to_float01


def _rgb01(img: np.ndarray) -> np.ndarray:
    f = to_float01(np.asarray(img))
    return np.repeat(f[:, :, None], 3, axis=2) if f.ndim == 2 else f[:, :, :3]


def rgb_u8(img: np.ndarray) -> np.ndarray:
    """Any image as read (8/16-bit or float, gray, gray + alpha, RGB, RGBA) as RGB uint8."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] < 3:  # (H, W, 1) or gray + alpha
        img = img[:, :, 0]
    if img.dtype != np.uint8:
        img = _to_u8(to_float01(img))
    return np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img[:, :, :3]


_PERCENTILE_SAMPLES = 250_000


def percentile_range(g: np.ndarray, inside: np.ndarray | None = None,
                     min_span: float = 1e-6) -> tuple[float, float]:
    """(1st percentile, 99th - 1st) of ``g`` (within ``inside`` when given) from a strided
    subsample: exact enough for display and fast on a 2912-px photograph."""
    step = max(1, int(np.sqrt(g.size / _PERCENTILE_SAMPLES)))
    vals = g[::step, ::step]
    if inside is not None:
        vals = vals[inside[::step, ::step]]
        if vals.size == 0:
            return 0.0, 1.0
    lo, hi = np.percentile(vals, (1, 99))
    return float(lo), float(max(hi - lo, min_span))


def _gray_stretched_u8(img: np.ndarray) -> np.ndarray:
    """Mean of the colour channels stretched to its 1st-99th percentile, as uint8 HxW."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] < 3:  # (H, W, 1) or gray + alpha
        img = img[:, :, 0]
    if img.dtype == np.uint8:  # channel sum (exact in uint16) through a lookup table
        total = img if img.ndim == 2 else (img[:, :, 0].astype(np.uint16) + img[:, :, 1]
                                           + img[:, :, 2])
        top = 255 * (1 if img.ndim == 2 else 3)
        lo, span = percentile_range(total)
        lut = _to_u8((np.arange(top + 1, dtype=np.float64) - lo) / span)
        return lut[total]
    f = to_float01(img)
    g = f if f.ndim == 2 else f[:, :, :3].mean(axis=2, dtype=np.float32)
    lo, span = percentile_range(g)
    return _to_u8((g - np.float32(lo)) / np.float32(span))


def _to_u8(rgb01: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb01, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"overlay needs images of the same size, got {a.shape[:2]} and "
                         f"{b.shape[:2]} (warp the moving image onto the fixed one first)")


def default_tile(shape: tuple[int, ...], squares: int = 8, minimum: int = 8) -> int:
    """Tile size giving about ``squares`` squares across the shorter side (64 px is lost on a
    2912-px fundus photo and too coarse on a 320-px OCTA), at least ``minimum`` px."""
    return max(minimum, round(min(shape[:2]) / squares))


def checkerboard(a: np.ndarray, b: np.ndarray, tile: int = 64) -> np.ndarray:
    """Alternating ``tile``-px squares of ``a`` (top-left) and ``b``: edges show misalignment."""
    _check_pair(a, b)
    if tile < 1:
        raise ValueError(f"tile must be >= 1 px, got {tile}")
    h, w = a.shape[:2]
    row_odd = (np.arange(h) // tile) % 2 == 1
    col_odd = (np.arange(w) // tile) % 2 == 1
    use_b = row_odd[:, None] ^ col_odd[None, :]  # tile parity, built as bool directly
    return np.where(use_b[:, :, None], rgb_u8(b), rgb_u8(a))


def blend(a: np.ndarray, b: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``(1 - alpha) * a + alpha * b``."""
    _check_pair(a, b)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return _to_u8((1.0 - alpha) * _rgb01(a) + alpha * _rgb01(b))


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute difference of the stretched gray images, shown in gray."""
    _check_pair(a, b)
    d = cv2.absdiff(_gray_stretched_u8(a), _gray_stretched_u8(b))
    return np.repeat(d[:, :, None], 3, axis=2)


def two_colour(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fixed in magenta (R + B), moving in green: aligned structures turn white/gray."""
    _check_pair(a, b)
    ga, gb = _gray_stretched_u8(a), _gray_stretched_u8(b)
    return np.stack([ga, gb, ga], axis=2)
