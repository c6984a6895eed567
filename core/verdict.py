"""The quality verdict: ``ok``, ``low confidence`` or ``failed``, with reasons, for any matcher.

RANSAC's inlier count alone is easy to fake: a fundus against pure noise can yield a few dozen
"inliers" under a squashed affine. The verdict therefore weighs evidence that nonsense cannot
produce together:
- the inliers: their number and their share of the selected matches;
- their spread: the area of their convex hull over the area where the two fields overlap
  (a consensus in one corner says little about the rest);
- the plausibility of the whole linear part: scale, anisotropy and shear;
- the structure: the normalised cross-correlation of the fixed vessel map with the warped moving
  one inside the overlap, as a z-score against the same pair under random wrong transforms
  (so a pair whose vessel maps correlate anyway, e.g. through the field's rim, gains nothing).
The thresholds live in ``VerdictConfig``; how they were chosen is in docs/decisions.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from retreg.core.geometry import linear_shape, rescale_matrix
from retreg.core.types import PreparedImage, RegistrationResult

LEVELS = ("ok", "low confidence", "failed")
NULL_DRAWS = 12  # random wrong transforms per pair for the structure z-score
NULL_SEED = 0


@dataclass(frozen=True)
class VerdictConfig:
    """Where each piece of evidence turns a result into ``low confidence`` or ``failed``.

    Calibrated with the pipeline's defaults (refinement on): an accepted refinement leaves
    nearly every correspondence an inlier, so ``min_ratio_ok`` also asks that the fine stage
    confirmed the fit."""

    min_inliers_fail: int = 8
    min_inliers_ok: int = 15
    min_ratio_ok: float = 0.75
    min_spread_ok: float = 0.10
    max_anisotropy_fail: float = 2.0
    max_anisotropy_ok: float = 1.3
    scale_range_fail: tuple[float, float] = (0.25, 4.0)
    min_overlap_fail: float = 0.05  # overlap area / fixed field area
    min_structure_z_fail: float = 3.0
    min_structure_z_ok: float = 5.0
    min_structure_ncc_fail: float = 0.10
    min_structure_ncc_ok: float = 0.30


@dataclass(frozen=True)
class Evidence:
    """What the verdict is judged on (all unitless but the inlier count)."""

    inliers: int
    inlier_ratio: float
    spread: float
    overlap: float
    scale: float
    anisotropy: float
    shear_deg: float
    structure_ncc: float
    structure_z: float

    def to_json(self) -> dict:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Verdict:
    """``level`` is one of ``LEVELS``; ``reasons`` say what lowered it (empty when ok)."""

    level: str
    reasons: tuple[str, ...] = ()
    evidence: Evidence | None = None

    @property
    def ok(self) -> bool:
        return self.level == "ok"

    def summary(self) -> str:
        return self.level + (f": {'; '.join(self.reasons)}" if self.reasons else "")

    def to_json(self) -> dict:
        return {"level": self.level, "reasons": list(self.reasons),
                "evidence": None if self.evidence is None else self.evidence.to_json()}


def working_matrix(matrix: np.ndarray, fixed: PreparedImage, moving: PreparedImage) -> np.ndarray:
    """A full-resolution moving -> fixed matrix as one between the two working images."""
    return (np.linalg.inv(rescale_matrix(fixed.scale)) @ np.asarray(matrix, np.float64)
            @ rescale_matrix(moving.scale))


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    if mask.sum() < 50:
        return 0.0
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    # einsum, not BLAS: a threaded BLAS dot stalls for tens of ms when the cores are busy
    sxx, syy, sxy = (float(np.einsum("i,i->", u, v)) for u, v in ((x, x), (y, y), (x, y)))
    den = np.sqrt(sxx * syy)
    return sxy / den if den > 1e-12 else 0.0


def _warped(moving: PreparedImage, m_work: np.ndarray, size: tuple[int, int]
            ) -> tuple[np.ndarray, np.ndarray]:
    vessels = cv2.warpPerspective(moving.vessels, m_work, size, flags=cv2.INTER_LINEAR)
    fov = cv2.warpPerspective(moving.fov.astype(np.uint8), m_work, size,
                              flags=cv2.INTER_NEAREST) > 0
    return vessels, fov


def _random_wrong(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A rigid displacement about the fixed image's centre, far enough to be clearly wrong."""
    angle = np.radians(rng.uniform(20, 340))
    shift = rng.uniform(0.1, 0.3, 2) * np.array([w, h]) * rng.choice([-1, 1], 2)
    c, s = np.cos(angle), np.sin(angle)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    rot = np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0, 0, 1]])
    rot[:2, 2] += shift
    return rot


def gather_evidence(matrix: np.ndarray, fixed: PreparedImage, moving: PreparedImage,
                    inlier_fixed_pts: np.ndarray, n_selected: int) -> Evidence:
    """The evidence for a moving -> fixed ``matrix`` (full res) between two prepared images;
    ``inlier_fixed_pts`` are the inliers' full-resolution fixed-image points."""
    w, h = fixed.work_size
    m_work = working_matrix(matrix, fixed, moving)
    warped, warped_fov = _warped(moving, m_work, (w, h))
    overlap = fixed.fov & warped_fov
    area = float(overlap.sum())
    pts = fixed.to_work(inlier_fixed_pts).astype(np.float32)
    hull = float(cv2.contourArea(cv2.convexHull(pts))) if len(pts) >= 3 else 0.0
    scale, aniso, shear = linear_shape(matrix)
    ncc = _ncc(fixed.vessels, warped, overlap)
    rng = np.random.default_rng(NULL_SEED)
    null = []
    for _ in range(NULL_DRAWS):
        wrong_v, wrong_fov = _warped(moving, _random_wrong(rng, w, h) @ m_work, (w, h))
        null.append(_ncc(fixed.vessels, wrong_v, fixed.fov & wrong_fov))
    z = (ncc - float(np.mean(null))) / max(float(np.std(null)), 0.01)
    return Evidence(inliers=len(pts), inlier_ratio=len(pts) / max(n_selected, 1),
                    spread=min(1.0, hull / max(area, 1.0)),
                    overlap=area / max(float(fixed.fov.sum()), 1.0), scale=scale,
                    anisotropy=aniso, shear_deg=shear, structure_ncc=ncc, structure_z=z)


def judge(evidence: Evidence, config: VerdictConfig = VerdictConfig()) -> Verdict:
    """The verdict on the evidence: ``failed`` if any piece rules the result out, ``low
    confidence`` if any piece is weak, else ``ok``."""
    e, c = evidence, config
    fail, weak = [], []
    if e.overlap < c.min_overlap_fail:
        fail.append(f"the moving image lands mostly outside the fixed field "
                    f"(overlap {e.overlap:.0%})")
    if e.inliers < c.min_inliers_fail:
        fail.append(f"only {e.inliers} inliers")
    elif e.inliers < c.min_inliers_ok:
        weak.append(f"few inliers ({e.inliers})")
    if e.inlier_ratio < c.min_ratio_ok:
        weak.append(f"only {e.inlier_ratio:.0%} of the selected matches agree with the fit")
    if not c.scale_range_fail[0] <= e.scale <= c.scale_range_fail[1]:
        fail.append(f"implausible scale {e.scale:.2f}")
    if e.anisotropy > c.max_anisotropy_fail:
        fail.append(f"the transform squashes or shears the image ({e.anisotropy:.2f}:1)")
    elif e.anisotropy > c.max_anisotropy_ok:
        weak.append(f"the transform stretches one direction ({e.anisotropy:.2f}:1)")
    structure = f"(vessel-map NCC {e.structure_ncc:.2f}, z {e.structure_z:.1f})"
    if e.structure_z < c.min_structure_z_fail or e.structure_ncc < c.min_structure_ncc_fail:
        fail.append(f"the vessels do not line up after warping {structure}")
    elif e.structure_z < c.min_structure_z_ok or e.structure_ncc < c.min_structure_ncc_ok:
        weak.append(f"the vessels line up only weakly {structure}")
    if e.spread < c.min_spread_ok:
        weak.append(f"the inliers cover only {e.spread:.0%} of the overlap")
    if fail:
        return Verdict("failed", tuple(fail + weak), evidence)
    return Verdict("low confidence" if weak else "ok", tuple(weak), evidence)


def assess(result: RegistrationResult, fixed: PreparedImage, moving: PreparedImage,
           config: VerdictConfig = VerdictConfig()) -> Verdict:
    """The verdict on a registration result, judged on the prepared images it came from."""
    if result.matrix is None:
        return Verdict("failed", (result.reason or "no transform found",))
    inliers = result.matches.kpts_fixed[result.selected][result.inliers]
    return judge(gather_evidence(result.matrix, fixed, moving, inliers, len(result.selected)),
                 config)
