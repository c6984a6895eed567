"""Resampling the moving image into the fixed image's frame."""
from __future__ import annotations

import cv2
import numpy as np


def warp_moving(moving: np.ndarray, matrix: np.ndarray, fixed_shape: tuple[int, ...]) -> np.ndarray:
    """``moving`` warped by ``matrix`` (moving -> fixed, full res) onto a fixed-sized canvas.

    Keeps dtype and channels; pixels with no moving data are 0.
    """
    h, w = int(fixed_shape[0]), int(fixed_shape[1])
    m = np.asarray(matrix, np.float64)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)):
        raise ValueError("matrix must be a finite 3x3 moving -> fixed transform")
    return cv2.warpPerspective(moving, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
