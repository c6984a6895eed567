"""Point and pixel conventions shared by the product and training: one home for each.

Pixel centres sit at integer coordinates, so pixel (c, r) spans [c - 0.5, c + 0.5) x
[r - 0.5, r + 0.5) and an image W px wide covers x in [-0.5, W - 0.5). Every function here
follows that convention; points are (x, y), float64, in the ``(..., N, 2)`` layout.
"""
from __future__ import annotations

import numpy as np


def map_points(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(..., N, 2) points through (..., 3, 3) matrices, projective division included.

    A point sent to infinity (w = 0) comes back non-finite, without a warning: callers decide
    what such a point means (a metric counts it as infinitely wrong).
    """
    pts = np.asarray(pts, dtype=np.float64)
    hom = (np.concatenate([pts, np.ones(pts.shape[:-1] + (1,))], axis=-1)
           @ np.swapaxes(np.asarray(matrix, dtype=np.float64), -1, -2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return hom[..., :2] / hom[..., 2:3]


def residuals(matrix: np.ndarray, moving_pts: np.ndarray, fixed_pts: np.ndarray) -> np.ndarray:
    """(N,) distance in fixed-image pixels between mapped moving points and fixed points."""
    return np.linalg.norm(map_points(matrix, moving_pts) - np.asarray(fixed_pts, np.float64),
                          axis=-1)


def corners(width: int, height: int) -> np.ndarray:
    """(4, 2) centres of the corner pixels of a ``width`` x ``height`` image, clockwise from
    (0, 0): the points of the HPatches-style corner error."""
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]],
                    dtype=np.float64)


def rescale_matrix(scale: tuple[float, float]) -> np.ndarray:
    """3x3 map from an image to the same image resampled so one of its pixels spans
    ``scale`` = (sx, sy) pixels of the other: ``x' = (x + 0.5) * sx - 0.5`` (centres aligned)."""
    sx, sy = scale
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def rescale_points(pts: np.ndarray, scale: tuple[float, float] | np.ndarray) -> np.ndarray:
    """``pts`` under ``rescale_matrix(scale)``: ``(pts + 0.5) * scale - 0.5``."""
    return (np.asarray(pts) + 0.5) * np.asarray(scale, np.float64) - 0.5


def cell_centres(rows: int, cols: int, stride: int) -> np.ndarray:
    """(rows * cols, 2) float64 (x, y) pixel coordinates of the centres of a grid of
    ``stride`` x ``stride`` cells, row-major; ``rows`` and ``cols`` count cells, not pixels.

    Cell (r, c) covers pixels [c*s, (c+1)*s), so its centre is ``c*s + s/2 - 0.5``: the
    coarse matcher's match positions and the supervision's labels use these same points.
    """
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    half = stride / 2.0 - 0.5
    return np.stack([cc.ravel() * stride + half, rr.ravel() * stride + half],
                    axis=1).astype(np.float64)


def cell_of(pts: np.ndarray, stride: int) -> np.ndarray:
    """(..., 2) int64 (col, row) of the ``stride`` cell whose pixels hold each (x, y) point,
    i.e. whose centre is nearest: ``floor((x + 0.5) / stride)``; may lie outside the grid."""
    return np.floor((np.asarray(pts, np.float64) + 0.5) / stride).astype(np.int64)


def cell_index(pts: np.ndarray, rows: int, cols: int, stride: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Row-major index (``-1`` outside) into a ``rows`` x ``cols`` grid of ``stride`` cells
    of the cell holding each (..., N, 2) point, and whether the point is inside the grid."""
    cell = cell_of(pts, stride)
    col, row = cell[..., 0], cell[..., 1]
    inside = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
    return np.where(inside, row * cols + col, -1), inside


def mask_at(mask: np.ndarray, pts: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Value of an (H, W) or (B, H, W) bool mask at the pixel nearest each (..., N, 2) point,
    False where ``inside`` is False (points beyond the border read the edge pixel first)."""
    h, w = mask.shape[-2:]
    x = np.clip(np.rint(pts[..., 0]), 0, w - 1).astype(np.int64)
    y = np.clip(np.rint(pts[..., 1]), 0, h - 1).astype(np.int64)
    if mask.ndim == 2:
        return mask[y, x] & inside
    b = np.arange(mask.shape[0])[:, None]
    return mask[b, y, x] & inside


def round_up(n: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``n``."""
    return -(-n // multiple) * multiple


def pad_to_multiple(a: np.ndarray, multiple: int) -> np.ndarray:
    """``a`` (..., H, W) zero-padded at the bottom and right to multiples of ``multiple``:
    the coarse matcher needs whole cells, and padding there keeps pixel coordinates."""
    h, w = a.shape[-2:]
    pad = [(0, 0)] * (a.ndim - 2) + [(0, round_up(h, multiple) - h), (0, round_up(w, multiple) - w)]
    return np.pad(a, pad)


def linear_shape(matrix: np.ndarray) -> tuple[float, float, float]:
    """(scale, anisotropy, shear in degrees) of the linear part of a 3x3 matrix: the geometric
    mean of its singular values, their ratio, and how far its images of the x and y axes are
    from perpendicular."""
    m = np.asarray(matrix, np.float64)
    lin = m[:2, :2] / m[2, 2]
    s = np.linalg.svd(lin, compute_uv=False)
    ax, ay = lin[:, 0], lin[:, 1]
    cos = float(ax @ ay / max(np.linalg.norm(ax) * np.linalg.norm(ay), 1e-12))
    return float(np.sqrt(s[0] * s[1])), float(s[0] / max(s[1], 1e-12)), \
        float(abs(90.0 - np.degrees(np.arccos(np.clip(cos, -1, 1)))))
