"""Snap an annotated point's partner onto the matching vessel structure (the annotator's aid).

An annotator clicks a vessel junction on the moving image; with a rough transform (from the
pairs placed so far) its partner is predicted on the fixed image, usually a few pixels off. Here
the moving image's vessel map around the point is warped into the fixed frame with that transform
and found in the fixed vessel map by normalised cross-correlation within ``search_px``; the
sub-pixel peak is the snapped partner. A weak or ambiguous peak (a straight vessel matches all
along itself) is refused with the reason, so a snap never moves a point silently to a guess.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retreg.core.geometry import map_points
from retreg.core.refine import parabola_offset
from retreg.core.types import PreparedImage


@dataclass(frozen=True)
class Snap:
    """``fixed_xy`` (full-res fixed px) of the partner when ``ok``; ``ncc`` of the peak, its
    margin over the best position a template-quarter away, and ``reason`` when refused."""

    fixed_xy: tuple[float, float] | None
    ncc: float
    margin: float
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.fixed_xy is not None


def snap_partner(fixed: PreparedImage, moving: PreparedImage, moving_xy: tuple[float, float],
                 matrix: np.ndarray, patch_px: float = 40.0, search_px: float = 20.0,
                 min_ncc: float = 0.4, min_margin: float = 0.03) -> Snap:
    """The fixed-image partner of ``moving_xy`` (full-res moving px) near where ``matrix``
    (3x3 moving -> fixed, full res) puts it. ``patch_px`` (template half-side) and ``search_px``
    are in full-res fixed px; the correlation runs on both images' vessel maps at their
    working resolution."""
    matrix = np.asarray(matrix, np.float64)
    guess = map_points(matrix, np.asarray([moving_xy], np.float64))[0]
    to_work = np.diag([1 / fixed.scale[0], 1 / fixed.scale[1], 1.0])
    to_full = np.diag([moving.scale[0], moving.scale[1], 1.0])
    work_matrix = to_work @ matrix @ to_full  # moving work -> fixed work
    px = float(np.mean(fixed.scale))
    patch, search = max(3, round(patch_px / px)), max(2, round(search_px / px))
    reach = patch + search
    gx, gy = fixed.to_work(guess[None])[0]
    # the template: moving vessels warped into a window of the fixed working grid at the guess
    shift = np.array([[1, 0, patch - gx], [0, 1, patch - gy], [0, 0, 1.0]])
    side = 2 * patch + 1
    tmpl = cv2.warpPerspective(moving.vessels, shift @ work_matrix, (side, side),
                               flags=cv2.INTER_LINEAR, borderValue=0)
    fov = cv2.warpPerspective(moving.fov.astype(np.uint8), shift @ work_matrix, (side, side),
                              flags=cv2.INTER_NEAREST, borderValue=0)
    if fov.mean() < 0.6:
        return Snap(None, 0.0, 0.0, "the point is too close to the moving image's edge")
    cx, cy = int(round(gx)), int(round(gy))
    h, w = fixed.vessels.shape
    if not (reach <= cx < w - reach and reach <= cy < h - reach):
        return Snap(None, 0.0, 0.0, "the partner is too close to the fixed image's edge")
    window = fixed.vessels[cy - reach:cy + reach + 1, cx - reach:cx + reach + 1]
    if float(tmpl.std()) < 1e-4 or float(window.std()) < 1e-4:
        return Snap(None, 0.0, 0.0, "no vessel structure around the point")
    ncc = np.nan_to_num(cv2.matchTemplate(window, tmpl.astype(np.float32), cv2.TM_CCOEFF_NORMED),
                        nan=-1.0)
    _, best, _, (ix, iy) = cv2.minMaxLoc(ncc)
    n = ncc.shape[0]
    if not (0 < ix < n - 1 and 0 < iy < n - 1):
        return Snap(None, float(best), 0.0, "the best match lies at the search limit")
    away = ncc.copy()
    cv2.circle(away, (ix, iy), max(2, patch // 4), -1.0, -1)
    margin = float(best - away.max())
    if best < min_ncc:
        return Snap(None, float(best), margin, f"weak match (NCC {best:.2f} < {min_ncc})")
    if margin < min_margin:
        return Snap(None, float(best), margin, "ambiguous match (e.g. along a straight vessel)")
    dx = parabola_offset(ncc[iy, ix - 1], best, ncc[iy, ix + 1])
    dy = parabola_offset(ncc[iy - 1, ix], best, ncc[iy + 1, ix])
    # ncc[iy, ix]: the template's centre (the moving point) on fixed work px (cx-search+ix, ...)
    found = np.array([[cx - search + ix + dx, cy - search + iy + dy]])
    fx, fy = fixed.to_full(found)[0]
    return Snap((float(fx), float(fy)), float(best), margin)
