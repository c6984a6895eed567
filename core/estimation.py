"""Robust transform estimation (OpenCV USAC / MAGSAC++) with explicit failure statuses.

A wrong matrix that looks like an answer is worse than no answer: every result is checked for
enough support and for a plausible geometry (retinal images of one eye differ by moderate zoom,
rotation and mild perspective), and a failed ``Estimate`` says why.
"""
from __future__ import annotations

import cv2
import numpy as np

from retreg.core.geometry import linear_shape
from retreg.core.types import GLOBAL_TRANSFORM_TYPES, Estimate

MIN_POINTS = {"similarity": 3, "affine": 3, "homography": 4}
SCALE_RANGE = (0.2, 5.0)
MAX_ANISOTROPY = 4.0  # ratio of the linear part's singular values (strong shear / squash)
MAX_PERSPECTIVE_RATIO = 2.0  # spread of the homogeneous w over the moving points' extent


def _check_type(transform_type: str) -> None:
    if transform_type not in GLOBAL_TRANSFORM_TYPES:
        raise ValueError(f"unknown transform type {transform_type!r}; "
                         f"expected one of {', '.join(GLOBAL_TRANSFORM_TYPES)}")


def _as_pts(pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2)


def implausibility(matrix: np.ndarray, moving_pts: np.ndarray) -> str:
    """Why ``matrix`` cannot be a real moving -> fixed retinal mapping, or "" if it can."""
    m = np.asarray(matrix, np.float64)
    if not np.all(np.isfinite(m)) or abs(m[2, 2]) < 1e-12:
        return "degenerate transform (non-finite or singular)"
    m = m / m[2, 2]
    pts = _as_pts(moving_pts)
    if len(pts):
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
        w = corners @ m[2, :2] + 1.0
        if w.min() <= 0 or w.max() / w.min() > MAX_PERSPECTIVE_RATIO:
            return "implausible perspective (the image would fold or stretch extremely)"
    if float(np.linalg.det(m[:2, :2])) <= 0:
        return "degenerate transform (mirrored or singular)"
    scale, anisotropy, _ = linear_shape(m)
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        return f"implausible scale {scale:.2f} (allowed {SCALE_RANGE[0]}-{SCALE_RANGE[1]})"
    if anisotropy > MAX_ANISOTROPY:
        return f"implausible shear/anisotropy (singular value ratio {anisotropy:.1f})"
    return ""


def _failed(transform_type: str, n: int, reason: str, inliers: np.ndarray | None = None
            ) -> Estimate:
    mask = np.zeros(n, bool) if inliers is None else inliers
    return Estimate(transform_type, None, mask, "failed", reason)


def _robust_fit(src: np.ndarray, dst: np.ndarray, transform_type: str, threshold_px: float,
                confidence: float, max_iters: int) -> tuple[np.ndarray | None, np.ndarray]:
    s32, d32 = src.astype(np.float32), dst.astype(np.float32)
    if transform_type == "homography":
        m, mask = cv2.findHomography(s32, d32, cv2.USAC_MAGSAC, threshold_px,
                                     maxIters=max_iters, confidence=confidence)
    elif transform_type == "affine":
        m, mask = cv2.estimateAffine2D(s32, d32, method=cv2.USAC_MAGSAC,
                                       ransacReprojThreshold=threshold_px, maxIters=max_iters,
                                       confidence=confidence)
    else:  # OpenCV offers no USAC for 4-DOF similarity; RANSAC + LM refinement instead
        m, mask = cv2.estimateAffinePartial2D(s32, d32, method=cv2.RANSAC,
                                              ransacReprojThreshold=threshold_px,
                                              maxIters=max_iters, confidence=confidence,
                                              refineIters=10)
    if m is None:
        return None, np.zeros(len(src), bool)
    if m.shape == (2, 3):
        m = np.vstack([m, [0.0, 0.0, 1.0]])
    return m.astype(np.float64), mask.reshape(-1).astype(bool)


def estimate(src_moving: np.ndarray, dst_fixed: np.ndarray, transform_type: str = "affine",
             threshold_px: float = 3.0, confidence: float = 0.999, max_iters: int = 10000,
             min_inliers: int = 6, polish: bool = False) -> Estimate:
    """Robust moving -> fixed fit; ``threshold_px`` is the inlier distance in fixed pixels.

    ``polish`` refits by least squares on the USAC inliers: with the loose thresholds curved
    retinas need, the minimal-sample model USAC keeps is noticeably noisier than that refit.
    """
    _check_type(transform_type)
    src, dst = _as_pts(src_moving), _as_pts(dst_fixed)
    if len(src) != len(dst):
        raise ValueError(f"point arrays differ in length: {len(src)} moving vs {len(dst)} fixed")
    n, need = len(src), MIN_POINTS[transform_type]
    if n < need:
        return _failed(transform_type, n, f"too few matches ({n}; {transform_type} needs {need})")
    matrix, inliers = _robust_fit(src, dst, transform_type, threshold_px, confidence, max_iters)
    if matrix is None:
        return _failed(transform_type, n, "no consistent transform found (degenerate matches)")
    n_in = int(inliers.sum())
    if n_in < max(min_inliers, need):
        return _failed(transform_type, n, f"too few inliers ({n_in} of {n}; need "
                                          f"{max(min_inliers, need)})", inliers)
    if polish:
        matrix = fit_least_squares(src[inliers], dst[inliers], transform_type)
    why = implausibility(matrix, src[inliers])
    if why:
        return _failed(transform_type, n, why, inliers)
    return Estimate(transform_type, matrix, inliers, "ok")


def estimate_with_affine_fallback(src_moving: np.ndarray, dst_fixed: np.ndarray,
                                  transform_type: str = "affine", **kwargs) -> Estimate:
    """``estimate``; when a homography fails, it is sought again among the inliers of an
    affine consensus, and the affine itself stands in when none is plausible there.

    Among many wrong matches USAC can assemble a folding homography from a few accidental
    agreements (8 DOF) while the 6-DOF affine consensus of the same matches is right (5 of 39
    FIRE-P pairs with the learned matcher's previous weights). The affine is also a sound start
    for the fine stage, which refits the homography on its own correspondences. An affine matrix
    is a homography without perspective, so the result keeps ``transform_type``.
    """
    est = estimate(src_moving, dst_fixed, transform_type, **kwargs)
    if est.ok or transform_type != "homography":
        return est
    src, dst = _as_pts(src_moving), _as_pts(dst_fixed)
    aff = estimate(src, dst, "affine", **kwargs)
    if not aff.ok:
        return est
    idx = np.flatnonzero(aff.inliers)
    hom = estimate(src[idx], dst[idx], "homography", **kwargs)
    if not hom.ok:
        return Estimate(transform_type, aff.matrix, aff.inliers, "ok")
    inliers = np.zeros(len(src), bool)
    inliers[idx[hom.inliers]] = True
    return Estimate(transform_type, hom.matrix, inliers, "ok")


def _similarity_lstsq(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    # x' = a x - b y + tx ; y' = b x + a y + ty  -> linear in (a, b, tx, ty)
    rows_x = np.c_[src[:, 0], -src[:, 1], np.ones(len(src)), np.zeros(len(src))]
    rows_y = np.c_[src[:, 1], src[:, 0], np.zeros(len(src)), np.ones(len(src))]
    a, b, tx, ty = np.linalg.lstsq(np.vstack([rows_x, rows_y]),
                                   np.r_[dst[:, 0], dst[:, 1]], rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty], [0.0, 0.0, 1.0]])


def fit_least_squares(src_moving: np.ndarray, dst_fixed: np.ndarray,
                      transform_type: str) -> np.ndarray:
    """Plain least-squares moving -> fixed fit using every point (no outlier rejection)."""
    _check_type(transform_type)
    src, dst = _as_pts(src_moving), _as_pts(dst_fixed)
    if transform_type == "similarity":
        return _similarity_lstsq(src, dst)
    if transform_type == "affine":
        coef = np.linalg.lstsq(np.c_[src, np.ones(len(src))], dst, rcond=None)[0]
        return np.vstack([coef.T, [0.0, 0.0, 1.0]])
    m, _ = cv2.findHomography(src, dst, 0)
    if m is None:
        return np.full((3, 3), np.nan)
    return m
