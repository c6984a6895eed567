"""Optic-disc localisation on colour fundus photographs, and the disc-centred clip cfocta needs.

An OCTA scan of the optic nerve head covers only a few millimetres around the disc, so the
cfocta mode registers it onto a CF clipped to about that field. The disc is found from two cues
that fail in different places: it is a bright blob about one disc wide (a difference of
Gaussians of red + green), and the big vessels converge on it (density of the vessel map).
Brightness alone is fooled by the pale fundus beside a dark lens shadow; vessel density alone
sits up to a disc radius off the disc; their z-scored sum is used (how often it hits:
docs/decisions.md).
"""
from __future__ import annotations

import cv2
import numpy as np

from retreg.core.io import to_float01
from retreg.core.modality import Source, prepare
from retreg.core.warp import square_clip

WORKING_SIDE = 512  # the FOV is normalised to this side; the disc is ~1/8 of it across
DISC_RADIUS_PX = WORKING_SIDE / 16  # working px; sets every blur scale below
_RIM_MARGIN_PX = DISC_RADIUS_PX / 2  # the disc centre is never this close to the FOV edge


def _blur_inside(img: np.ndarray, fov: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur that averages over FOV pixels only, so the black surround does not
    darken (and a bright rim does not brighten) the disc's neighbourhood."""
    m = fov.astype(np.float32)
    num = cv2.GaussianBlur(img * m, (0, 0), sigma)
    return num / np.maximum(cv2.GaussianBlur(m, (0, 0), sigma), 1e-3)


def _zscore(score: np.ndarray, inside: np.ndarray) -> np.ndarray:
    vals = score[inside]
    return (score - vals.mean()) / (vals.std() + 1e-9)


def locate_disc(cf_rgb: np.ndarray | Source) -> tuple[float, float]:
    """Full-resolution (x, y) of the optic-disc centre of a colour fundus image (RGB or gray),
    or of its ``Source`` (which spares the full-resolution channel and FOV)."""
    prep = prepare(cf_rgb, "cf", WORKING_SIDE)
    h, w = prep.work.shape
    img = to_float01(np.asarray(prep.original))
    small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    bright = small if small.ndim == 2 else small[:, :, :2].mean(axis=2)  # red + green
    bright = bright.astype(np.float32)
    r = DISC_RADIUS_PX
    blob = _blur_inside(bright, prep.fov, r / 2) - _blur_inside(bright, prep.fov, 3 * r)
    density = _blur_inside(prep.vessels, prep.fov, 1.5 * r)
    k = 2 * int(round(_RIM_MARGIN_PX)) + 1
    inside = cv2.erode(prep.fov.astype(np.uint8),
                       cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0
    if not inside.any():
        inside = prep.fov
    score = np.where(inside, _zscore(blob, inside) + _zscore(density, inside), -np.inf)
    y, x = np.unravel_index(int(np.argmax(score)), score.shape)
    fx, fy = prep.to_full(np.array([[x, y]], np.float64))[0]
    return float(fx), float(fy)


def clip_around_disc(cf_rgb: np.ndarray, side_px: int, out_side: int = 512,
                     centre: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A square ``side_px`` clip centred on the disc (shifted to stay inside the photo),
    resampled to ``out_side``; returns (clip, 3x3 matrix mapping clip pixels -> photo pixels),
    so a moving -> clip transform composes to moving -> photo as ``matrix @ H``. ``centre``:
    the disc's ``locate_disc`` position when already known."""
    if side_px < 8 or out_side < 8:
        raise ValueError(f"clip sides must be >= 8 px, got side_px={side_px}, out_side={out_side}")
    h, w = cf_rgb.shape[:2]
    side = int(min(side_px, h, w))
    cx, cy = locate_disc(cf_rgb) if centre is None else centre
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    return square_clip(cf_rgb, x0, y0, side, out_side)
