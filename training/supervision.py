"""LoFTR-style ground truth from a known transform: which 1/8 cell of image1 each 1/8 cell of
image0 corresponds to (coarse loss), where exactly its centre lands (fine loss), and which cells
have no counterpart at all (unmatched loss).

``coarse_fine_gt`` works on one pair (``T`` 3x3, masks HxW) or on a batch (``T`` Bx3x3, masks
BxHxW) with the same numpy code, so the dataset can label per item and a training step could
relabel per batch.
"""
from __future__ import annotations

import cv2
import numpy as np

from retreg.core.geometry import cell_centres, cell_index, map_points, mask_at


def coarse_fine_gt(T_0to1: np.ndarray, mask0: np.ndarray, mask1: np.ndarray,
                   stride: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Coarse match labels ``gt_j`` (L0,) int64 (-1 = no match) and exact warped centres
    ``gt_xy1`` (L0, 2) float32, L0 = (H0/stride) * (W0/stride), row-major.

    An image0 cell is matched to the image1 cell nearest to its warped centre when the centre is
    valid in image0, lands inside image1 on a valid pixel, and the mutual check holds: that image1
    cell's centre, warped back with the inverse, falls in the original image0 cell. The mutual
    check drops ambiguous labels where the transform zooms or rotates cells across borders.
    """
    T = np.asarray(T_0to1, dtype=np.float64)
    mask0 = np.asarray(mask0, dtype=bool)
    mask1 = np.asarray(mask1, dtype=bool)
    h0, w0 = mask0.shape[-2:]
    h1, w1 = mask1.shape[-2:]
    c0 = cell_centres(h0 // stride, w0 // stride, stride)
    c1 = cell_centres(h1 // stride, w1 // stride, stride)
    xy1 = map_points(T, c0)
    j, inside1 = cell_index(xy1, h1 // stride, w1 // stride, stride)
    valid = mask_at(mask1, xy1, inside1)
    valid &= mask_at(mask0, np.broadcast_to(c0, xy1.shape), np.ones(xy1.shape[:-1], bool))
    back = map_points(np.linalg.inv(T), c1)  # centres of every image1 cell, in image0
    i_back, inside0 = cell_index(back, h0 // stride, w0 // stride, stride)
    i_back = np.where(inside0, i_back, -1)
    loop = np.take_along_axis(i_back, np.clip(j, 0, None), axis=-1)
    valid &= loop == np.arange(c0.shape[0])
    gt_j = np.where(valid, j, -1).astype(np.int64)
    return gt_j, xy1.astype(np.float32)


def unmatched_cells(T_0to1: np.ndarray, mask0: np.ndarray, mask1: np.ndarray,
                    stride: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Cells with no counterpart: (L0,) and (L1,) bool for one pair.

    A cell is unmatched when its centre lies in its own field of view and lands, warped into the
    other image, more than one cell away from that image's field of view. The coarse loss only
    rewards true matches, so without these labels nothing teaches the model to stay unsure
    about content the other image does not show, and small-overlap pairs drown in confident
    matches between their non-overlapping parts. The one-cell margin keeps border cells, whose
    content is partly visible, out of the labels.
    """
    T = np.asarray(T_0to1, dtype=np.float64)
    masks = (np.asarray(mask0, dtype=bool), np.asarray(mask1, dtype=bool))
    size = 2 * stride + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    reach = [cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks]
    out = []
    for src, dst, M in ((0, 1, T), (1, 0, np.linalg.inv(T))):
        h, w = masks[src].shape
        centres = cell_centres(h // stride, w // stride, stride)
        own = mask_at(masks[src], centres, np.ones(len(centres), bool))
        there = map_points(M, centres)
        hd, wd = masks[dst].shape
        near = ((there[:, 0] >= -stride) & (there[:, 0] <= wd - 1 + stride)
                & (there[:, 1] >= -stride) & (there[:, 1] <= hd - 1 + stride))
        out.append(own & ~mask_at(reach[dst], there, near))
    return out[0], out[1]
