"""Resampling the moving image into the fixed image's frame, and whether that is worth doing."""
from __future__ import annotations

import cv2
import numpy as np

from retreg.core.transforms import Mapping, Quadratic, Smooth, global_matrix, inverse_map

MIN_INSIDE = 0.1  # share of the warped moving image that must land within the fixed frame
MAX_AREA_RATIO = 100.0  # warped moving area / fixed frame area beyond which a fit is absurd
MIN_AREA_RATIO = 1e-3
FRAME_MARGIN = 0.05  # share of the fixed frame's width and height added on each side


def warp_moving(moving: np.ndarray, matrix: Mapping, fixed_shape: tuple[int, ...]) -> np.ndarray:
    """``moving`` warped by ``matrix`` (moving -> fixed, full res: a 3x3 matrix or a non-rigid
    transform of ``core.transforms``) onto a fixed-sized canvas.

    Keeps dtype and channels; pixels with no moving data are 0.
    """
    h, w = int(fixed_shape[0]), int(fixed_shape[1])
    if isinstance(matrix, (Quadratic, Smooth)):
        map_x, map_y = inverse_map(matrix, (h, w))
        return cv2.remap(moving, map_x, map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    m = np.asarray(matrix, np.float64)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)):
        raise ValueError("matrix must be a finite 3x3 moving -> fixed transform")
    return cv2.warpPerspective(moving, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def placement_problem(matrix: Mapping, moving_shape: tuple[int, ...],
                      fixed_shape: tuple[int, ...], margin: float = FRAME_MARGIN) -> str | None:
    """Why the moving image warped by ``matrix`` (moving -> fixed) is not fit to draw over the
    fixed image (a phrase about the transform), or None when it is: the transform sends part
    of it through infinity, makes its area absurd against the fixed frame
    (``MIN_AREA_RATIO``, ``MAX_AREA_RATIO``), or leaves less than ``MIN_INSIDE`` of it within
    the fixed frame widened by ``margin``. A wild fit must be named, not drawn as a black or
    garbled overlay. A non-rigid transform is judged by its global matrix."""
    m = global_matrix(matrix)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)):
        return "it is not a finite 3x3 matrix"
    h, w = int(moving_shape[0]), int(moving_shape[1])
    fh, fw = int(fixed_shape[0]), int(fixed_shape[1])
    hom = np.array([[-0.5, -0.5, 1.0], [w - 0.5, -0.5, 1.0], [w - 0.5, h - 0.5, 1.0],
                    [-0.5, h - 0.5, 1.0]]) @ m.T
    z = hom[:, 2] * np.sign(hom[0, 2])  # a matrix and its negative are the same transform
    if not np.all(z > 0):
        return "it sends part of the moving image to infinity"
    quad = hom[:, :2] / hom[:, 2:3]
    ratio = _area(quad) / float(fw * fh)
    if ratio > MAX_AREA_RATIO:
        return f"it enlarges the moving image to {ratio:.0f}x the fixed image's area"
    if ratio < MIN_AREA_RATIO:
        return f"it shrinks the moving image to {ratio:.1e} of the fixed image's area"
    mx, my = margin * fw, margin * fh
    frame = np.array([[-0.5 - mx, -0.5 - my], [fw - 0.5 + mx, -0.5 - my],
                      [fw - 0.5 + mx, fh - 0.5 + my], [-0.5 - mx, fh - 0.5 + my]])
    lo, hi = quad.min(axis=0), quad.max(axis=0)
    if np.any(lo > frame[2]) or np.any(hi < frame[0]):
        inside = 0.0
    else:
        if np.cross(quad[1] - quad[0], quad[2] - quad[1]) < 0:  # mirrored: make it clockwise
            quad = quad[::-1]
        shared, _ = cv2.intersectConvexConvex(quad.astype(np.float32),
                                              frame.astype(np.float32))
        inside = float(shared) / _area(quad)
    if inside < MIN_INSIDE:
        return f"only {inside:.0%} of the moving image lands within the fixed frame"
    return None


def square_clip(img: np.ndarray, x0: int, y0: int, side: int, out_side: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """The ``side``-px square of ``img`` at (x0, y0), resampled to ``out_side``, and the 3x3
    matrix mapping clip pixels -> ``img`` pixels (pixel centres), so a moving -> clip transform
    becomes moving -> image as ``matrix @ H``."""
    h, w = img.shape[:2]
    if side < 8 or out_side < 8:
        raise ValueError(f"clip sides must be >= 8 px, got side={side}, out_side={out_side}")
    if not (0 <= x0 <= w - side and 0 <= y0 <= h - side):
        raise ValueError(f"clip {side} px at ({x0}, {y0}) leaves the {w}x{h} image")
    crop = img[y0:y0 + side, x0:x0 + side]
    interp = cv2.INTER_AREA if side > out_side else cv2.INTER_LINEAR
    clip = cv2.resize(crop, (out_side, out_side), interpolation=interp)
    s = side / out_side  # pixel centres: full = (c + 0.5) * s - 0.5 + x0
    matrix = np.array([[s, 0.0, x0 + 0.5 * s - 0.5], [0.0, s, y0 + 0.5 * s - 0.5], [0, 0, 1.0]])
    return clip, matrix
