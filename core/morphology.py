"""Erosion of a mask by OpenCV's elliptic structuring element, exact and fast at large radii.

``cv2.erode`` with a (2r+1)^2 ``MORPH_ELLIPSE`` kernel costs time in proportion to r; the fine
stage erodes 1024-px field-of-view masks by 32-56 px several times per pair, which made
erosion its largest cost. Here an exact Euclidean distance transform settles every pixel whose
nearest background pixel is clearly inside or clearly outside the kernel, and only the thin
ring in between is checked against the kernel's rows. The result is the same mask as
``cv2.erode`` (outside the image counts as foreground there and here), bit for bit: the fine
stage's results must not move with this speed-up.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

_DIRECT_BELOW = 8  # radii this small: cv2.erode is already cheap


@lru_cache(maxsize=16)
def _kernel(radius: int) -> tuple[np.ndarray, int, int]:
    """(half-width of each kernel row, dy = -r..r), the largest squared norm of a kernel
    offset, and the smallest squared norm of an offset outside it."""
    side = 2 * radius + 1
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)) > 0
    dy, dx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    norm2 = dx * dx + dy * dy
    half = np.where(se, np.abs(dx), -1).max(axis=1)
    box = np.pad(se, 1)  # offsets one beyond the kernel's box are outside it too
    by, bx = np.mgrid[-radius - 1:radius + 2, -radius - 1:radius + 2]
    return half, int(norm2[se].max()), int((bx * bx + by * by)[~box].min())


def _row_background_counts(fg: np.ndarray) -> np.ndarray:
    """(h, w + 1) running count of background pixels along each row, from 0: the background
    in row y, columns [a, b) is ``counts[y, b] - counts[y, a]``."""
    out = np.zeros((fg.shape[0], fg.shape[1] + 1), np.int32)
    np.cumsum(~fg, axis=1, dtype=np.int32, out=out[:, 1:])
    return out


def erode_ellipse(mask: np.ndarray, radius: int) -> np.ndarray:
    """``cv2.erode(mask, MORPH_ELLIPSE of side 2 * radius + 1) > 0`` for a 2-D mask (non-zero =
    foreground), as a bool array."""
    fg = np.asarray(mask) != 0
    if radius < _DIRECT_BELOW:
        side = 2 * radius + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        return cv2.erode(fg.astype(np.uint8), kernel) > 0
    half, out2, in2 = _kernel(radius)
    dist = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # Squared distances are integers; the 0.5 margins absorb the float rounding.
    keep = dist > np.sqrt(out2 + 0.5)  # the nearest background lies beyond every kernel offset
    ys, xs = np.nonzero((dist > np.sqrt(in2 - 0.5)) & ~keep)  # in between: check kernel rows
    if len(ys):
        counts = _row_background_counts(fg)
        h, w = fg.shape
        ok = np.ones(len(ys), bool)
        for dy, hw in zip(range(-radius, radius + 1), half):
            y2 = ys + dy
            inside = (y2 >= 0) & (y2 < h)
            y2, x = y2[inside], xs[inside]
            ok[inside] &= (counts[y2, np.minimum(x + hw + 1, w)]
                           == counts[y2, np.maximum(x - hw, 0)])
        keep[ys[ok], xs[ok]] = True
    return keep
