"""A square window onto the normalised full field, rendered at some pixel size.

Every synthetic object (disc, fovea, vessels, lesions, smooth fields) lives in normalised
coordinates: the full frame is [0, 1]² with x to the right and y down. A ``View`` maps them
to output pixels (pixel centres at integer coordinates, as in OpenCV), so the full-field
images and the native-resolution clip around the disc are drawn from the same scene and stay
consistent: a clip view of box ``(x0, y0, x1, y1)`` full-field pixels equals, up to detail,
``cv2.resize(full[y0:y1, x0:x1], (size, size))``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class View:
    x0: float  # normalised left edge
    y0: float  # normalised top edge
    side: float  # normalised side length
    size: int  # output pixels per side

    @property
    def scale(self) -> float:
        """Output pixels per normalised unit (vessel widths and radii scale by this)."""
        return self.size / self.side

    def to_px(self, uv: np.ndarray) -> np.ndarray:
        """Normalised (…, 2) points → output pixel coordinates (centre convention)."""
        return (np.asarray(uv, np.float64) - (self.x0, self.y0)) * self.scale - 0.5

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Normalised (u, v) of every output pixel centre, each (size, size) float32 (cached)."""
        return _coords(self)

    def sample(self, field: np.ndarray) -> np.ndarray:
        """Resample a field covering the full frame (g×g, any g) into this view (bilinear)."""
        g = field.shape[1]
        a = self.side * g / self.size
        m = np.float32([[a, 0, self.x0 * g + 0.5 * a - 0.5], [0, a, self.y0 * g + 0.5 * a - 0.5]])
        return cv2.warpAffine(
            field, m, (self.size, self.size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT,
        )

    def gauss(self, centre, sigma: float) -> np.ndarray:
        """exp(-d²/2σ²) around a normalised centre, σ normalised; float32 (size, size)."""
        u, v = self.coords()
        d2 = (u - np.float32(centre[0])) ** 2 + (v - np.float32(centre[1])) ** 2
        return np.exp(-d2 / np.float32(2 * sigma * sigma))

    def dist(self, centre) -> np.ndarray:
        """Normalised distance of every pixel from a normalised centre; float32 (size, size)."""
        u, v = self.coords()
        return np.hypot(u - np.float32(centre[0]), v - np.float32(centre[1]))


@lru_cache(maxsize=8)
def _coords(view: View) -> tuple[np.ndarray, np.ndarray]:
    t = (np.arange(view.size, dtype=np.float32) + 0.5) / np.float32(view.scale)
    u, v = np.meshgrid(t + np.float32(view.x0), t + np.float32(view.y0))
    u.flags.writeable = False
    v.flags.writeable = False
    return u, v


def full_view(size: int) -> View:
    return View(0.0, 0.0, 1.0, size)


def box_view(box_px: tuple[int, int, int, int], full_size: int, size: int) -> View:
    """The view of an integer full-field pixel box (x0, y0, x1, y1), square, at ``size``."""
    x0, y0, x1, _ = box_px
    return View(x0 / full_size, y0 / full_size, (x1 - x0) / full_size, size)
