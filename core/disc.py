"""Optic-disc localisation and the disc-centred CF clip of the ``cfocta`` mode.

OCTA scans cover a few millimetres around the disc, a small part of a 45-degree fundus photo;
the clinic registers them to a CF clipped to about that field (``_cf_clip_512``). Real fundus
photos are not clipped yet, so this finds the disc and cuts the clip, keeping the exact mapping
back to the full photo.
"""
from __future__ import annotations

import cv2
import numpy as np

from core.io import to_float01
from core.modality import fov_mask

_PROBE_SIDE = 256
# Blur at about a disc radius (the disc spans ~1/6 of a 45-degree field): exudates and
# reflexes are brighter than the disc but much smaller, so they average away.
_BLUR_FRACTION = 1 / 24


def locate_disc(cf_rgb: np.ndarray) -> tuple[float, float]:
    """(x, y) of the optic disc centre in full-resolution pixels: the brightest broad blob
    inside the field of view."""
    img = to_float01(np.asarray(cf_rgb))
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    h, w = gray.shape
    f = _PROBE_SIDE / max(h, w)
    small = cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))),
                       interpolation=cv2.INTER_AREA)
    fov = cv2.erode(fov_mask(small).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    blur = cv2.GaussianBlur(small, (0, 0), _BLUR_FRACTION * _PROBE_SIDE)
    blur[~fov] = -np.inf
    y, x = np.unravel_index(int(np.argmax(blur)), blur.shape)
    return (x + 0.5) / f - 0.5, (y + 0.5) / f - 0.5


def clip_around_disc(cf_rgb: np.ndarray, side_px: int, out_side: int = 512
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A square ``side_px`` clip centred on the disc (shifted to stay inside the photo),
    resampled to ``out_side``; returns (clip, 3x3 matrix mapping clip pixels -> photo pixels)."""
    h, w = cf_rgb.shape[:2]
    side = int(min(side_px, h, w))
    cx, cy = locate_disc(cf_rgb)
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    crop = cf_rgb[y0:y0 + side, x0:x0 + side]
    interp = cv2.INTER_AREA if side > out_side else cv2.INTER_LINEAR
    clip = cv2.resize(crop, (out_side, out_side), interpolation=interp)
    s = side / out_side  # pixel centres: full = (c + 0.5) * s - 0.5 + x0
    matrix = np.array([[s, 0.0, x0 + 0.5 * s - 0.5], [0.0, s, y0 + 0.5 * s - 0.5], [0, 0, 1.0]])
    return clip, matrix
