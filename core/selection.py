"""Spatial selection of matches: keep the best matches per grid cell so RANSAC sees the whole
overlap (not a cluster of easy matches around the optic disc), and a spatially even subset for
display."""
from __future__ import annotations

import numpy as np

from retreg.core.types import Matches


def spatial_binning(matches: Matches, image_size_fixed: tuple[int, int], grid: int = 8,
                    top_k: int = 16) -> np.ndarray:
    """Indices (ascending) of the ``top_k`` most confident matches in each cell of a
    ``grid`` x ``grid`` partition of the fixed image (``image_size_fixed`` = (w, h))."""
    if grid < 1 or top_k < 1:
        raise ValueError(f"grid and top_k must be >= 1, got grid={grid}, top_k={top_k}")
    n = len(matches)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    w, h = image_size_fixed
    xy = matches.kpts_fixed
    cx = np.clip((xy[:, 0] * grid / w).astype(np.int64), 0, grid - 1)
    cy = np.clip((xy[:, 1] * grid / h).astype(np.int64), 0, grid - 1)
    cell = cy * grid + cx
    order = np.lexsort((-matches.confidence, cell))  # by cell, best first inside a cell
    sorted_cell = cell[order]
    first = np.searchsorted(sorted_cell, sorted_cell, side="left")
    rank = np.arange(n) - first
    return np.sort(order[rank < top_k])


def even_subset(points: np.ndarray, size: tuple[int, int], cap: int,
                scores: np.ndarray | None = None) -> np.ndarray:
    """Indices (ascending) of at most ``cap`` of ``points`` (N x 2, (x, y)) spread evenly over
    an image of ``size`` = (w, h): the best-scoring point of each cell of a grid of about
    ``cap`` cells, then the second best of each, and so on (higher ``scores`` are better; ties
    keep the earlier point). All points when there are no more than ``cap``.

    So a display of many matches stays readable without hiding any region of the image."""
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(pts)
    if n <= cap:
        return np.arange(n)
    w, h = size
    gx = max(1, min(cap, round(np.sqrt(cap * w / h))))
    gy = max(1, cap // gx)  # at most ``cap`` cells: the first round never overflows the cap
    cx = np.clip((pts[:, 0] * gx / w).astype(np.int64), 0, gx - 1)
    cy = np.clip((pts[:, 1] * gy / h).astype(np.int64), 0, gy - 1)
    cell = cy * gx + cx
    neg = -(np.zeros(n) if scores is None else np.nan_to_num(
        np.asarray(scores, dtype=np.float64), nan=-np.inf))
    index = np.arange(n)
    order = np.lexsort((index, neg, cell))  # by cell, best first inside a cell
    sorted_cell = cell[order]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = index - np.searchsorted(sorted_cell, sorted_cell, side="left")
    return np.sort(np.lexsort((index, neg, rank))[:cap])
