"""Random geometry and photometry for synthetic training pairs.

The geometry (rotation uniform in +-90 deg, scale, translation, optional horizontal / vertical
flips) is built about the image centre so most of image0 stays visible in
image1. Photometry varies gamma, contrast, brightness, blur and noise so the model cannot rely
on one exposure; the fixed image gets a milder dose than the moving one.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 90.0  # rotation uniform in [-rotation_deg, rotation_deg]
    scale_range: tuple[float, float] = (0.85, 1.15)  # log-uniform zoom
    translate_frac: float = 0.15  # shift uniform in +-frac * side, per axis
    # The fixed image is shifted too (+-frac * side, per axis), so that each image of a pair
    # shows part of the field the other lacks, as in real small-overlap pairs; 0 keeps the
    # fixed image whole (the moving image is then always a part of it).
    fixed_translate_frac: float = 0.0
    hflip_p: float = 0.2
    vflip_p: float = 0.2
    gamma_range: tuple[float, float] = (0.7, 1.4)  # log-uniform
    contrast_range: tuple[float, float] = (0.7, 1.3)
    brightness: float = 0.08  # additive, uniform in +-brightness (image in [0, 1])
    blur_p: float = 0.3
    blur_sigma_max: float = 1.5  # px at the training resolution
    noise_std_max: float = 0.03
    fixed_strength: float = 0.5  # photometric strength on the fixed image (moving: 1.0)

    @staticmethod
    def geometry_only() -> "AugmentConfig":
        """No photometric change (tests, clean validation renders)."""
        return AugmentConfig(gamma_range=(1.0, 1.0), contrast_range=(1.0, 1.0), brightness=0.0,
                             blur_p=0.0, noise_std_max=0.0)


def _about_centre(A: np.ndarray, width: int, height: int) -> np.ndarray:
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    C = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]])
    return C @ A @ np.linalg.inv(C)


def random_affine(rng: np.random.Generator, width: int, height: int,
                  cfg: AugmentConfig) -> np.ndarray:
    """3x3 float64 mapping image0 pixels -> image1 pixels (same frame size).

    Flip, then rotate + zoom about the centre, then translate.
    """
    flip = np.diag([-1.0 if rng.random() < cfg.hflip_p else 1.0,
                    -1.0 if rng.random() < cfg.vflip_p else 1.0, 1.0])
    angle = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    lo, hi = cfg.scale_range
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    c, si = np.cos(angle) * s, np.sin(angle) * s
    rot = np.array([[c, -si, 0], [si, c, 0], [0, 0, 1.0]])
    tx, ty = rng.uniform(-cfg.translate_frac, cfg.translate_frac, size=2) * (width, height)
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]])
    return shift @ _about_centre(rot @ flip, width, height)


def random_shift(rng: np.random.Generator, width: int, height: int, frac: float) -> np.ndarray:
    """3x3 translation uniform in +-frac * side per axis; the identity (and no random draw, so
    seeded streams are unchanged) when ``frac`` is 0."""
    if frac <= 0:
        return np.eye(3)
    tx, ty = rng.uniform(-frac, frac, size=2) * (width, height)
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]])


def warp(img: np.ndarray, T: np.ndarray, width: int, height: int,
         interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """``out(T p) = img(p)``: image0-frame content moved to image1's frame; zeros outside."""
    return cv2.warpAffine(img, np.asarray(T, np.float64)[:2], (width, height), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def photometric(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
                strength: float = 1.0) -> np.ndarray:
    """Random gamma, contrast, brightness, blur and noise on a uint8 / uint16 image (same dtype).

    ``strength`` in [0, 1] shrinks every parameter towards "no change".
    """
    if strength <= 0:
        return img
    peak = np.iinfo(img.dtype).max
    # gamma, contrast and brightness are per-level, so they go into one look-up table
    g_lo, g_hi = cfg.gamma_range
    gamma = float(np.exp(strength * rng.uniform(np.log(g_lo), np.log(g_hi))))
    table = np.power(np.arange(peak + 1, dtype=np.float32) / peak, gamma)
    mean = float(np.bincount(img.ravel(), minlength=peak + 1) @ table) / img.size
    contrast = 1.0 + strength * (rng.uniform(*cfg.contrast_range) - 1.0)
    table = (table - mean) * contrast + mean + strength * rng.uniform(-cfg.brightness, cfg.brightness)
    x = cv2.LUT(img, table) if img.dtype == np.uint8 else table[img]
    if rng.random() < cfg.blur_p:
        sigma = strength * rng.uniform(0.3, cfg.blur_sigma_max)
        if sigma > 0.1:
            x = cv2.GaussianBlur(x, (0, 0), sigma)
    std = strength * rng.uniform(0.0, cfg.noise_std_max)
    if std > 0:
        # OpenCV's generator, seeded from ``rng`` (so still deterministic), is ~7x faster than
        # numpy's normal sampler; one plane for all channels (only one channel is used anyway)
        cv2.setRNGSeed(int(rng.integers(2**31)))
        noise = np.empty(x.shape[:2], np.float32)
        cv2.randn(noise, 0.0, std)
        x += noise[..., None] if x.ndim == 3 else noise
    return np.rint(np.clip(x, 0.0, 1.0) * peak).astype(img.dtype)
