"""Rasterise a vessel tree into a view: soft opacity maps for rendering, binary masks for truth.

Opacity is drawn anti-aliased at ``SUPERSAMPLE``× and area-downsampled, so thin vessels come
out as smooth sub-pixel lines. Its value grows with calibre (1 − exp(−w/w₀), i.e. Beer–Lambert
absorption through the vessel), so wide veins are darker in CF / brighter in FA than
capillary-sized branches. Consecutive segments of equal integer thickness are drawn as one
polyline, which keeps a case to a few hundred OpenCV calls.
"""
from __future__ import annotations

import cv2
import numpy as np

from retreg.training.synth.view import View
from retreg.training.synth.vessel_tree import VesselTree

SUPERSAMPLE = 2
_SHIFT = 3  # fixed-point bits for sub-pixel polyline coordinates


def _runs(tree: VesselTree, view: View, kinds: tuple[int, ...], ss: int, width_gain: float, min_px: float):
    """(thickness_px, int32 polyline, width px at its start) runs of equal thickness, thinnest first."""
    runs = []
    for v in tree.vessels:
        if v.kind not in kinds or len(v.points) < 2:
            continue
        px = (view.to_px(v.points) + 0.5) * ss - 0.5
        wpx = v.widths * view.scale * width_gain
        keep = wpx >= min_px
        thick = np.maximum(1, np.rint(wpx * ss)).astype(int)
        fixed = np.rint(px * (1 << _SHIFT)).astype(np.int32)
        # split where the drawn thickness or visibility changes; runs share their joint point
        cuts = (np.flatnonzero((np.diff(thick) != 0) | (np.diff(keep) != 0)) + 1).tolist()
        for a, b in zip([0] + cuts, cuts + [len(px)]):
            end = min(b + 1, len(px))
            if keep[a] and end - a >= 2:
                runs.append((int(thick[a]), fixed[a:end], float(wpx[a])))
    runs.sort(key=lambda r: r[0])
    return runs


def opacity(tree: VesselTree, view: View, kinds: tuple[int, ...], width_gain: float = 1.0,
            w0_px: float = 2.5) -> np.ndarray:
    """Float32 (size, size) in [0, 1]: how much of each pixel's light a vessel absorbs/emits."""
    ss = SUPERSAMPLE
    canvas = np.zeros((view.size * ss, view.size * ss), np.uint8)
    for thick, pts, wpx in _runs(tree, view, kinds, ss, width_gain, min_px=0.25):
        level = int(round(255 * (1 - np.exp(-wpx / w0_px)) / (1 - np.exp(-6.0 / w0_px))))
        cv2.polylines(canvas, [pts], False, min(255, max(8, level)), thick, cv2.LINE_AA, _SHIFT)
    small = cv2.resize(canvas, (view.size, view.size), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def mask(tree: VesselTree, view: View, min_px: float, width_gain: float = 1.0) -> np.ndarray:
    """uint8 0/255 vessel mask of vessels at least ``min_px`` wide in this view."""
    canvas = np.zeros((view.size, view.size), np.uint8)
    for thick, pts, _ in _runs(tree, view, (0, 1), 1, width_gain, min_px=min_px):
        cv2.polylines(canvas, [pts], False, 255, thick, cv2.LINE_8, _SHIFT)
    return canvas
