"""Random textures shared by the renderers (all float32, roughly zero-mean unit-std or [0, 1])."""
from __future__ import annotations

import cv2
import numpy as np

from retreg.training.synth.view import View


def band_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """White noise blurred by σ pixels and renormalised to zero mean, unit std."""
    n = rng.standard_normal((size, size), dtype=np.float32)
    if sigma > 0:
        n = cv2.GaussianBlur(n, (0, 0), sigma)
    return (n - n.mean()) / (n.std() + 1e-6)


def smooth_field(rng: np.random.Generator, view: View, cells: int, grid: int = 64) -> np.ndarray:
    """A smooth full-frame random field with ~``cells`` bumps per side, sampled into ``view``.

    The field is defined on the full frame, so every view of the same scene sees the same one.
    """
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    full = cv2.resize(coarse, (grid, grid), interpolation=cv2.INTER_CUBIC)
    return view.sample(full)


def network(noise: np.ndarray, line_width: float) -> np.ndarray:
    """Thin curvy meshwork: the zero level set of band-limited noise, in [0, 1].

    Zero crossings of smooth noise form closed cells, which look like a capillary bed
    (fine noise) or the choroidal vessel pattern (coarse noise).
    """
    return np.exp(-(noise / np.float32(line_width)) ** 2)


def radial_streaks(rng: np.random.Generator, view: View, centre, along_px: float, across_px: float) -> np.ndarray:
    """Noise streaked radially around a normalised centre (nerve fibres, peripapillary capillaries).

    Built in polar coordinates (stretched along the radius) and mapped back with cv2.remap.
    """
    n_theta, n_r = 1024, 256  # radius sampled at half the view's resolution (streaks are long)
    polar = rng.standard_normal((n_theta, n_r), dtype=np.float32)
    r_scale = n_r / (1.5 * view.size)
    polar = cv2.GaussianBlur(polar, (0, 0), sigmaX=max(0.5, along_px * r_scale), sigmaY=across_px)
    polar /= polar.std() + 1e-6
    u, v = view.coords()
    dx = (u - np.float32(centre[0])) * np.float32(view.scale)
    dy = (v - np.float32(centre[1])) * np.float32(view.scale)
    r = np.hypot(dx, dy) * np.float32(r_scale)
    t = (np.arctan2(dy, dx) + np.float32(np.pi)) * np.float32(n_theta / (2 * np.pi))
    return cv2.remap(polar, r, t, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def speckle(rng: np.random.Generator, size: int, looks: float, corr_px: float = 0.0) -> np.ndarray:
    """Multiplicative speckle with mean 1 (gamma distributed, ``looks`` sets its spread)."""
    s = rng.gamma(looks, 1.0 / looks, (size, size)).astype(np.float32)
    if corr_px > 0:
        s = cv2.GaussianBlur(s, (0, 0), corr_px)
    return s


def finish(img: np.ndarray, rng: np.random.Generator, blur_px: float, noise: float, jpeg: bool,
           gamma=None) -> np.ndarray:
    """Camera chain: optical blur, sensor noise, 8-bit quantisation, per-channel gamma, JPEG.

    ``img`` is float32 in [0, 1], HxW or HxWx3; noise is drawn once per pixel (luminance
    noise) because per-channel noise costs three times as much and changes little.
    """
    if blur_px > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), blur_px)
    if noise > 0:
        n = rng.standard_normal(img.shape[:2], dtype=np.float32) * np.float32(noise)
        img = img + (n[..., None] if img.ndim == 3 else n)
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if gamma is not None:
        ramp = np.arange(256, dtype=np.float32) / 255.0
        lut = np.stack([ramp ** np.float32(g) for g in np.atleast_1d(gamma)], -1) * 255.0 + 0.5
        lut = lut.astype(np.uint8)
        out = cv2.LUT(out, lut[:, 0]) if out.ndim == 2 else cv2.LUT(out, lut.reshape(256, 1, -1))
    if jpeg:
        quality = int(rng.integers(55, 95))
        code = cv2.IMREAD_COLOR if out.ndim == 3 else cv2.IMREAD_GRAYSCALE
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(buf, code) if ok else out
    return out
