"""Fine registration: NCC template matching on vessel maps around a coarse transform.

A coarse matcher localises to a few *working* pixels, which is 10-20 full-resolution pixels on a
2912-px fundus. Here the moving vessel map is warped into the fixed frame with the coarse matrix at
a higher resolution, well-spread fixed patches are found in it by normalised cross-correlation
within a small window, and their sub-pixel peaks become new correspondences for a tighter robust
refit. Vessel maps (bright vessels in every modality) make this work across modalities.

The refit is deliberately loose: the eye is curved, so no 3x3 model fits a wide pair to better
than several pixels, and a tight RANSAC threshold fits one region and bends the rest (the
measurements behind the threshold, template size and peak share: docs/decisions.md).

It can only correct a roughly right answer: from a start far off few templates find a distinct
peak, and the refit is rejected unless enough of them agree, it stays within the search range of
the start and it fits the peaks no worse than the start. A rejected refinement keeps the input.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retreg.core.estimation import estimate
from retreg.core.geometry import map_points, rescale_matrix
from retreg.core.morphology import erode_ellipse
from retreg.core.transforms import Mapping, Quadratic, Smooth, inverse_map, inverse_points
from retreg.core.types import Matches, PreparedImage


@dataclass(frozen=True)
class RefineConfig:
    """Knobs of ``refine``; lengths are in pixels of the refinement working resolution.

    ``working_side`` is the FOV's longest side for the vessel maps (``core.modality.prepare``):
    higher than the coarse matcher's, so a 1-px NCC step is a fraction of the coarse error.
    """

    working_side: int = 1024
    grid: int = 16  # template centres: the most vessel-rich spot of each cell of a grid x grid tiling
    patch_radius: int = 32  # template = (2r+1)^2 patch of the fixed vessel map
    search_radius: int = 24  # +- displacement searched around the coarse position
    min_ncc: float = 0.5  # a peak weaker than this is no match
    min_peak_margin: float = 0.05  # best NCC minus the best NCC away from the peak (ambiguity)
    min_vessel_density: float = 0.05  # mean vessel response a template needs (no blank patches)
    threshold_px: float = 16.0  # USAC outlier cut; the final fit is least squares on its inliers
    min_inliers: int = 20
    min_inlier_ratio: float = 0.5  # of the NCC peaks that passed
    min_peak_share: float = 0.1  # of the templates tried; from a wrong start few find a peak
    iterations: int = 2  # later passes search a third of the radius around the previous result


@dataclass
class Refinement:
    """Outcome of ``refine``. ``matrix`` is the refined one when ``accepted``, else the input.

    ``matches`` are the NCC correspondences (full-res, confidence = NCC peak) of the last pass,
    ``inliers`` flags those the refit kept, ``threshold_px`` is its inlier distance in full-res
    fixed pixels; ``reason`` says why the refit was rejected ("" when accepted).
    """

    matrix: np.ndarray
    accepted: bool
    reason: str
    matches: Matches
    inliers: np.ndarray
    threshold_px: float


def _work_matrix(matrix: np.ndarray, fixed: PreparedImage, moving: PreparedImage) -> np.ndarray:
    """Moving-work -> fixed-work version of a full-resolution moving -> fixed matrix."""
    return (np.linalg.inv(rescale_matrix(fixed.scale)) @ np.asarray(matrix, np.float64)
            @ rescale_matrix(moving.scale))


def _warp_moving(moving: PreparedImage, mapping: Mapping, fixed: PreparedImage
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Moving vessel map and FOV resampled into the fixed working frame by a full-resolution
    moving -> fixed mapping (3x3 matrix or non-rigid transform)."""
    size = fixed.work_size
    if isinstance(mapping, (Quadratic, Smooth)):
        map_x, map_y = inverse_map(mapping, fixed.work.shape,
                                   frame_to_fixed=rescale_matrix(fixed.scale),
                                   moving_to_frame=np.linalg.inv(rescale_matrix(moving.scale)))
        vessels = cv2.remap(moving.vessels, map_x, map_y, cv2.INTER_LINEAR)
        fov = cv2.remap(moving.fov.astype(np.uint8), map_x, map_y, cv2.INTER_NEAREST) > 0
        return vessels, fov
    work_matrix = _work_matrix(mapping, fixed, moving)
    vessels = cv2.warpPerspective(moving.vessels, work_matrix, size, flags=cv2.INTER_LINEAR)
    fov = cv2.warpPerspective(moving.fov.astype(np.uint8), work_matrix, size,
                              flags=cv2.INTER_NEAREST) > 0
    return vessels, fov


def _template_centres(fixed_vessels: np.ndarray, valid: np.ndarray, grid: int, radius: int,
                      min_density: float) -> np.ndarray:
    """(N, 2) int (x, y): per grid cell, the valid pixel whose patch holds the most vessel."""
    density = cv2.boxFilter(fixed_vessels, -1, (2 * radius + 1, 2 * radius + 1))
    density = np.where(valid, density, 0.0)
    h, w = density.shape
    ys, xs = np.nonzero(valid)
    if len(xs) == 0:
        return np.zeros((0, 2), int)
    x_edges = np.linspace(xs.min(), xs.max() + 1, grid + 1).astype(int)
    y_edges = np.linspace(ys.min(), ys.max() + 1, grid + 1).astype(int)
    centres = []
    for y0, y1 in zip(y_edges[:-1], y_edges[1:]):
        for x0, x1 in zip(x_edges[:-1], x_edges[1:]):
            cell = density[y0:y1, x0:x1]
            if cell.size == 0:
                continue
            iy, ix = np.unravel_index(int(np.argmax(cell)), cell.shape)
            if cell[iy, ix] >= min_density:
                centres.append((x0 + ix, y0 + iy))
    return np.array(centres, int).reshape(-1, 2)


def parabola_offset(left: float, mid: float, right: float) -> float:
    """Sub-pixel position of a peak from three samples (0 when the fit is flat)."""
    curv = left - 2.0 * mid + right
    return 0.0 if curv >= 0 else float(np.clip(0.5 * (left - right) / curv, -0.5, 0.5))


def _match_template(fixed_vessels: np.ndarray, warped: np.ndarray, centre: np.ndarray,
                    patch: int, search: int, config: RefineConfig
                    ) -> tuple[float, float, float] | None:
    """(dx, dy, ncc) of the fixed patch at ``centre`` in the warped moving map, or None."""
    cx, cy = int(centre[0]), int(centre[1])
    tmpl = fixed_vessels[cy - patch:cy + patch + 1, cx - patch:cx + patch + 1]
    reach = patch + search
    window = warped[cy - reach:cy + reach + 1, cx - reach:cx + reach + 1]
    ncc = cv2.matchTemplate(window, tmpl, cv2.TM_CCOEFF_NORMED)
    ncc = np.nan_to_num(ncc, nan=-1.0, posinf=-1.0, neginf=-1.0)
    _, best, _, (ix, iy) = cv2.minMaxLoc(ncc)
    side = ncc.shape[0]
    if best < config.min_ncc or not (0 < ix < side - 1 and 0 < iy < side - 1):
        return None  # too weak, or on the window's rim (the true peak may lie beyond it)
    away = ncc.copy()
    cv2.circle(away, (ix, iy), max(2, patch // 4), -1.0, -1)
    if best - float(away.max()) < config.min_peak_margin:
        return None  # another, nearly as good position: ambiguous (e.g. along a straight vessel)
    dx = ix - search + parabola_offset(ncc[iy, ix - 1], best, ncc[iy, ix + 1])
    dy = iy - search + parabola_offset(ncc[iy - 1, ix], best, ncc[iy + 1, ix])
    return dx, dy, best


def correspondences(fixed: PreparedImage, moving: PreparedImage, mapping: Mapping,
                    search: int, config: RefineConfig = RefineConfig()) -> tuple[Matches, int]:
    """NCC correspondences (full-res) around a full-res moving -> fixed ``mapping`` (3x3 or
    non-rigid), found within ``search`` working px, and how many templates were tried."""
    warped, warped_fov = _warp_moving(moving, mapping, fixed)
    patch = config.patch_radius
    reach = patch + search
    valid = erode_ellipse(fixed.fov, patch) & erode_ellipse(warped_fov, reach)
    h, w = valid.shape
    border = np.zeros_like(valid)
    border[reach:h - reach, reach:w - reach] = True
    centres = _template_centres(fixed.vessels, valid & border, config.grid, patch,
                                config.min_vessel_density)
    rows = [(c, r) for c in centres
            if (r := _match_template(fixed.vessels, warped, c, patch, search, config)) is not None]
    if not rows:
        return Matches.empty(), len(centres)
    pts_fixed = np.array([c for c, _ in rows], np.float64)
    found = pts_fixed + np.array([r[:2] for _, r in rows])  # in the warped moving map
    pts_moving = inverse_points(mapping, fixed.to_full(found))
    keep = np.all(np.isfinite(pts_moving), axis=1)
    return Matches(fixed.to_full(pts_fixed[keep]), pts_moving[keep],
                   np.array([r[2] for _, r in rows])[keep]), len(centres)


def _refit(cand: Matches, transform_type: str, threshold: float, config: RefineConfig
           ) -> tuple[np.ndarray | None, np.ndarray, str]:
    """USAC outlier cut, then least squares on the inliers: (matrix or None, inliers, why not)."""
    est = estimate(cand.kpts_moving, cand.kpts_fixed, transform_type, threshold_px=threshold,
                   min_inliers=config.min_inliers, polish=True)
    return (est.matrix, est.inliers, "" if est.ok else f"refit failed: {est.reason}")


def _rejection(matrix: np.ndarray, inliers: np.ndarray, cand: Matches, n_tried: int,
               start: np.ndarray, search: int, px: float, config: RefineConfig) -> str:
    """Why a refit must not replace ``start``, or "" when it may (``px``: full-res per work px)."""
    n_in, n = int(inliers.sum()), len(cand)
    if n < config.min_peak_share * n_tried:
        return f"only {n} of {n_tried} templates found a distinct match (start too far off?)"
    if n_in < config.min_inlier_ratio * n:
        return f"too few NCC peaks agree ({n_in} of {n})"
    src, dst = cand.kpts_moving, cand.kpts_fixed
    # Beyond the searched range the refit extrapolates from peaks never looked for there.
    moved = np.linalg.norm(map_points(matrix, src) - map_points(start, src), axis=1).max() / px
    if moved > 1.5 * search:
        return f"refit moves the overlap by {moved:.0f} px, beyond the search range"
    rms = [float(np.sqrt(np.mean((map_points(m, src[inliers]) - dst[inliers]) ** 2)))
           for m in (matrix, start)]
    if rms[0] > rms[1]:
        return f"refit fits the NCC peaks worse than the start (RMS {rms[0]:.1f} > {rms[1]:.1f})"
    return ""


def refine(fixed: PreparedImage, moving: PreparedImage, matrix: np.ndarray,
           transform_type: str, config: RefineConfig = RefineConfig()) -> Refinement:
    """Refine a full-res moving -> fixed ``matrix`` by NCC on the prepared images' vessel maps.

    ``fixed``/``moving`` are prepared at ``config.working_side``. Each pass must be accepted to
    replace the current matrix; the first rejection ends the loop and keeps the last good one.
    """
    current = np.asarray(matrix, np.float64)
    px = float(np.mean(fixed.scale))
    threshold = config.threshold_px * px
    accepted, reason = False, ""
    matches, inliers = Matches.empty(), np.zeros(0, bool)
    for i in range(config.iterations):
        search = config.search_radius if i == 0 else max(3, config.search_radius // 3)
        cand, n_tried = correspondences(fixed, moving, current, search, config)
        new, cand_inliers, reason = _refit(cand, transform_type, threshold, config)
        if new is not None:
            reason = _rejection(new, cand_inliers, cand, n_tried, current, search, px, config)
        if reason:
            break
        current, accepted, matches, inliers = new, True, cand, cand_inliers
    return Refinement(current, accepted, "" if accepted else reason, matches, inliers, threshold)
