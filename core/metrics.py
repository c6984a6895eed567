"""Registration accuracy: the FIRE control-point protocol and the corner error of synthetic pairs.

FIRE protocol (Hernandez-Matas et al. 2017, as used by SuperRetina): warp the moving control
points with the estimated moving->fixed matrix and measure the L2 distance to the fixed points.
A pair is *failed* when there is no matrix, *inaccurate* when its max error exceeds ``max_px`` or
its median error exceeds ``median_px``, else *acceptable*. AUC averages, over t = 1..25 px, the
share of pairs whose mean error is below t; failed pairs count as infinitely wrong so a method
cannot improve its AUC by refusing hard pairs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retreg.core import transforms
from retreg.core.geometry import corners, map_points, residuals
from retreg.core.transforms import Mapping

FAILED, INACCURATE, ACCEPTABLE = "failed", "inaccurate", "acceptable"
OUTCOMES = (FAILED, INACCURATE, ACCEPTABLE)
AUC_MAX_T = 25


@dataclass(frozen=True)
class Thresholds:
    """Limits (px, full resolution) beyond which a registered pair is 'inaccurate'."""

    max_px: float = 50.0
    median_px: float = 20.0


SAME_MODALITY = Thresholds(50.0, 20.0)
MULTIMODAL = Thresholds(100.0, 60.0)


@dataclass(frozen=True)
class PairErrors:
    """Per-point control-point errors of one pair (all ``inf`` when registration failed)."""

    per_point: np.ndarray
    failed: bool

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_point))

    @property
    def median(self) -> float:
        return float(np.median(self.per_point))

    @property
    def max(self) -> float:
        return float(np.max(self.per_point))


def control_point_errors(matrix: Mapping | None, moving_pts: np.ndarray,
                         fixed_pts: np.ndarray) -> PairErrors:
    """Distances (px, fixed image) between warped moving control points and the fixed ones;
    ``matrix`` is a 3x3 matrix or a non-rigid transform (``core.transforms``)."""
    moving_pts = np.asarray(moving_pts, dtype=np.float64).reshape(-1, 2)
    fixed_pts = np.asarray(fixed_pts, dtype=np.float64).reshape(-1, 2)
    if len(moving_pts) != len(fixed_pts) or len(fixed_pts) == 0:
        raise ValueError(f"control points: need the same non-zero number of fixed and moving "
                         f"points, got {len(fixed_pts)} and {len(moving_pts)}")
    if matrix is None:
        return PairErrors(np.full(len(fixed_pts), np.inf), failed=True)
    dist = transforms.residuals(matrix, moving_pts, fixed_pts)
    # A matrix that sends a point to infinity (w = 0) is as wrong as it gets, not a crash.
    return PairErrors(np.where(np.isfinite(dist), dist, np.inf), failed=False)


def classify(errors: PairErrors, thresholds: Thresholds = SAME_MODALITY) -> str:
    """``"failed"`` / ``"inaccurate"`` / ``"acceptable"`` under the FIRE rule."""
    if errors.failed:
        return FAILED
    if errors.max > thresholds.max_px or errors.median > thresholds.median_px:
        return INACCURATE
    return ACCEPTABLE


def auc(mean_errors: Sequence[float], max_t: int = AUC_MAX_T) -> float:
    """Mean over t = 1..max_t px of the share of pairs with mean error < t (inf for failed)."""
    e = np.asarray(mean_errors, dtype=np.float64).reshape(-1)
    if e.size == 0:
        return float("nan")
    t = np.arange(1, max_t + 1, dtype=np.float64)
    return float(np.mean((e[None, :] < t[:, None]).mean(axis=1)))


@dataclass(frozen=True)
class CategorySummary:
    n: int
    failed: float  # share of pairs, 0..1
    inaccurate: float
    acceptable: float
    auc: float


@dataclass(frozen=True)
class Summary:
    categories: dict[str, CategorySummary]
    mauc: float  # mean of the per-category AUCs


def summarise(categories: Sequence[str], errors: Sequence[PairErrors],
              thresholds: Thresholds = SAME_MODALITY) -> Summary:
    """Protocol table: per category the outcome shares and AUC, plus mAUC over categories."""
    if len(categories) != len(errors):
        raise ValueError("summarise: one category per pair is needed")
    rows: dict[str, CategorySummary] = {}
    for cat in sorted(set(categories)):
        errs = [e for c, e in zip(categories, errors) if c == cat]
        outcomes = [classify(e, thresholds) for e in errs]
        n = len(errs)
        rows[cat] = CategorySummary(
            n=n,
            failed=outcomes.count(FAILED) / n,
            inaccurate=outcomes.count(INACCURATE) / n,
            acceptable=outcomes.count(ACCEPTABLE) / n,
            auc=auc([e.mean for e in errs]),
        )
    mauc = float(np.mean([r.auc for r in rows.values()])) if rows else float("nan")
    return Summary(rows, mauc)


def mean_corner_error(H_est: np.ndarray | None, H_gt: np.ndarray, w: int, h: int) -> float:
    """Mean distance (px) between the image corners mapped by ``H_est`` and by ``H_gt``.

    Corners are pixel centres (0, 0) .. (w-1, h-1), the convention of the HPatches protocol;
    ``inf`` when there is no estimate.
    """
    if H_est is None:
        return float("inf")
    d = residuals(H_est, corners(w, h), map_points(H_gt, corners(w, h)))
    return float(np.mean(np.where(np.isfinite(d), d, np.inf)))
