"""Spatial binning: keep the best matches per grid cell so RANSAC sees the whole overlap,
not a cluster of easy matches around the optic disc."""
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
