"""Non-rigid moving -> fixed transforms on top of a global 3x3 fit: the quadratic polynomial and
the smooth polish, their robust fits, their inverse and their JSON encoding.

The eye is curved, so no 3x3 matrix fits a wide pair to better than several pixels; the classic
retinal model is a second-order polynomial (12 parameters). ``Smooth`` adds a regularised
displacement grid over the moving image to a quadratic, for motion no polynomial explains.
Both keep the global homography they were fitted beside (``matrix``): it starts the inverse,
judges placement, and is what fine-tuning and the verdict use.

A *mapping* is either a 3x3 matrix or one of these objects; ``map_points`` here is the one home
for pushing points through either. A polish is only returned when the evidence supports it
(``fit_polish``): enough points, spread over the overlap, no fold, and a cross-validated error
below the simpler model's; otherwise the fit says why and the caller keeps the global model.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retreg.core import geometry
from retreg.core.estimation import fit_least_squares
from retreg.core.types import NONRIGID_TYPES

ENCODING = {"quadratic": "retreg.quadratic/1", "smooth": "retreg.smooth/1"}
MIN_POINTS = {"quadratic": 12, "smooth": 24}  # the cross-validation guard does the rest
MIN_SPREAD = 0.2  # minor / major standard deviation of the evidence (not along one line)
CV_FOLDS = 5
TRIM = 3.0  # trimmed least squares: drop residuals beyond TRIM x their median ...
TRIM_FLOOR_PX = 2.0  # ... but never below this many fixed px
SMOOTH_NODES = 16  # displacement grid nodes per side of the moving image
SMOOTH_LAMBDA = 0.1  # weight of the grid's second-difference (bending) penalty
SMOOTH_RIDGE = 1e-3  # pulls nodes without evidence to zero displacement (the quadratic)
INVERSE_STEP = 16  # px between the fixed-frame nodes where a warp's inverse is solved


def _pts(pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, np.float64).reshape(-1, 2)


@dataclass(frozen=True)
class Quadratic:
    """``fixed = coef.T @ [1, u, v, u², uv, v²]`` with ``(u, v) = (moving - centre) / half``;
    ``matrix`` is the global homography fitted beside it."""

    coef: np.ndarray  # (6, 2)
    centre: tuple[float, float]
    half: float
    matrix: np.ndarray  # 3x3 global moving -> fixed
    kind: str = "quadratic"

    def _design(self, pts: np.ndarray) -> np.ndarray:
        uv = (pts - np.asarray(self.centre)) / self.half
        u, v = uv[:, 0], uv[:, 1]
        return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)

    def map_points(self, pts: np.ndarray) -> np.ndarray:
        uv = (_pts(pts) - np.asarray(self.centre)) / self.half
        u, v = uv[:, :1], uv[:, 1:]
        c = self.coef
        return c[0] + u * (c[1] + u * c[3] + v * c[4]) + v * (c[2] + v * c[5])

    def after(self, affine: np.ndarray) -> "Quadratic":
        """This transform followed by the affine 3x3 ``affine`` (e.g. clip -> photo px)."""
        a = np.asarray(affine, np.float64)
        coef = self.coef @ a[:2, :2].T
        coef[0] += a[:2, 2]
        return Quadratic(coef, self.centre, self.half, a @ self.matrix)

    def to_json(self) -> dict:
        return {"encoding": ENCODING["quadratic"], "centre": list(self.centre), "half": self.half,
                "coef": self.coef.T.tolist(),
                "formula": "fixed = coef @ [1, u, v, u*u, u*v, v*v], (u, v) = (moving - centre)"
                           " / half"}


@dataclass(frozen=True)
class Smooth:
    """``base`` plus a displacement (fixed px) bilinearly interpolated from ``grid`` (n x n x 2),
    whose nodes span the moving image from pixel centre (0, 0) to (w - 1, h - 1)."""

    base: Quadratic
    grid: np.ndarray  # (n, n, 2)
    extent: tuple[int, int]  # moving (w, h)
    kind: str = "smooth"

    @property
    def matrix(self) -> np.ndarray:
        return self.base.matrix

    def map_points(self, pts: np.ndarray) -> np.ndarray:
        pts = _pts(pts)
        i0, f = _cell(pts, self.extent, self.grid.shape[0])
        g = self.grid
        fx, fy = f[:, :1], f[:, 1:]
        x0, y0 = i0[:, 0], i0[:, 1]
        return (self.base.map_points(pts)
                + (1 - fy) * ((1 - fx) * g[y0, x0] + fx * g[y0, x0 + 1])
                + fy * ((1 - fx) * g[y0 + 1, x0] + fx * g[y0 + 1, x0 + 1]))

    def after(self, affine: np.ndarray) -> "Smooth":
        a = np.asarray(affine, np.float64)
        return Smooth(self.base.after(a), self.grid @ a[:2, :2].T, self.extent)

    def to_json(self) -> dict:
        return {"encoding": ENCODING["smooth"], "base": self.base.to_json(),
                "extent": list(self.extent), "grid": self.grid.tolist(),
                "formula": "fixed = base(moving) + bilinear(grid)(moving); grid nodes span the "
                           "moving image's pixel centres, (rows, cols, [dx, dy]) in fixed px"}


NonRigid = Quadratic | Smooth
Mapping = np.ndarray | Quadratic | Smooth


def from_json(d: dict, matrix: np.ndarray) -> NonRigid:
    """A non-rigid transform from its ``to_json`` encoding and its global ``matrix``; raises
    ``ValueError`` on an unknown encoding or malformed numbers."""
    enc = d.get("encoding")
    try:
        if enc == ENCODING["quadratic"]:
            coef = np.asarray(d["coef"], np.float64).T
            if coef.shape != (6, 2) or not np.all(np.isfinite(coef)):
                raise ValueError("quadratic coef must be 2 x 6 finite numbers")
            return Quadratic(coef, tuple(float(c) for c in d["centre"]), float(d["half"]),
                             np.asarray(matrix, np.float64))
        if enc == ENCODING["smooth"]:
            grid = np.asarray(d["grid"], np.float64)
            if grid.ndim != 3 or grid.shape[0] != grid.shape[1] or grid.shape[2] != 2:
                raise ValueError("smooth grid must be n x n x 2")
            return Smooth(from_json(d["base"], matrix), grid,
                          tuple(int(v) for v in d["extent"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed {enc} transform: {exc}") from exc
    raise ValueError(f"unknown non-rigid encoding {enc!r}")


def global_matrix(t: Mapping) -> np.ndarray:
    """The 3x3 global part of a mapping (the matrix itself for a matrix)."""
    return t.matrix if isinstance(t, (Quadratic, Smooth)) else np.asarray(t, np.float64)


def fingerprint(t: Mapping) -> bytes:
    """Bytes that differ whenever the mapping does (a cache key for warped images)."""
    if isinstance(t, Smooth):
        return fingerprint(t.base) + t.grid.tobytes()
    if isinstance(t, Quadratic):
        return (t.coef.tobytes() + np.asarray(t.centre + (t.half,)).tobytes()
                + t.matrix.tobytes())
    return np.asarray(t, np.float64).tobytes()


def map_points(t: Mapping, pts: np.ndarray) -> np.ndarray:
    """(N, 2) moving points -> fixed through a 3x3 matrix or a non-rigid transform."""
    if isinstance(t, (Quadratic, Smooth)):
        return t.map_points(pts)
    return geometry.map_points(t, _pts(pts))


def residuals(t: Mapping, moving_pts: np.ndarray, fixed_pts: np.ndarray) -> np.ndarray:
    """(N,) fixed-px distance between mapped moving points and the fixed points."""
    return np.linalg.norm(map_points(t, moving_pts) - _pts(fixed_pts), axis=1)


def after(affine: np.ndarray, t: Mapping) -> Mapping:
    """``t`` followed by the affine 3x3 ``affine``."""
    return t.after(affine) if isinstance(t, (Quadratic, Smooth)) else affine @ np.asarray(t)


def inverse_points(t: Mapping, fixed_pts: np.ndarray, iterations: int = 8,
                   tol_px: float = 0.05) -> np.ndarray:
    """(N, 2) moving points that ``t`` maps onto ``fixed_pts``; NaN where Newton's method,
    started from the global matrix's inverse, does not converge (a fold or far outside)."""
    fixed_pts = _pts(fixed_pts)
    g = global_matrix(t)
    m = geometry.map_points(np.linalg.inv(g), fixed_pts)
    if not isinstance(t, (Quadratic, Smooth)):
        return m
    for _ in range(iterations):
        at = t.map_points(m)
        err = at - fixed_pts
        if np.all(np.abs(err) < tol_px / 4):
            break
        jx, jy = t.map_points(m + [1.0, 0]) - at, t.map_points(m + [0, 1.0]) - at
        det = jx[:, 0] * jy[:, 1] - jy[:, 0] * jx[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.stack([(jy[:, 1] * err[:, 0] - jy[:, 0] * err[:, 1]) / det,
                             (-jx[:, 1] * err[:, 0] + jx[:, 0] * err[:, 1]) / det], axis=1)
        m = m - step
    bad = ~(np.linalg.norm(t.map_points(m) - fixed_pts, axis=1) < tol_px)
    m[bad] = np.nan
    return m


def inverse_map(t: Mapping, fixed_shape: tuple[int, ...], step: int = INVERSE_STEP,
                frame_to_fixed: np.ndarray | None = None,
                moving_to_frame: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float32 (map_x, map_y) of the fixed frame for ``cv2.remap``: the moving pixel each
    fixed pixel shows. Solved every ``step`` px and interpolated bilinearly (the transforms
    are smooth); pixels with no inverse read far outside the moving image.

    ``frame_to_fixed`` / ``moving_to_frame`` (3x3) put the map in other frames than ``t``'s
    own, e.g. working resolutions: frame px -> ``t``'s fixed px, ``t``'s moving px -> map
    values."""
    h, w = int(fixed_shape[0]), int(fixed_shape[1])
    gx, gy = np.meshgrid(np.arange(0, w + step, step, dtype=np.float64),
                         np.arange(0, h + step, step, dtype=np.float64))
    nodes = np.stack([gx.ravel(), gy.ravel()], axis=1)
    if frame_to_fixed is not None:
        nodes = geometry.map_points(frame_to_fixed, nodes)
    inv = inverse_points(t, nodes)
    if moving_to_frame is not None:
        inv = geometry.map_points(moving_to_frame, inv)
    inv = np.where(np.isfinite(inv), inv, -1e6).reshape(gx.shape + (2,)).astype(np.float32)
    down = np.array([[1.0 / step, 0, 0], [0, 1.0 / step, 0]])
    maps = cv2.warpAffine(inv, down, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
    return maps[..., 0], maps[..., 1]


# ----------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class PolishFit:
    """Outcome of ``fit_polish``: the transform when the evidence supports it, else None and
    why; ``inliers`` flags the points the trimmed fit kept."""

    transform: NonRigid | None
    inliers: np.ndarray
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.transform is not None

    @property
    def note(self) -> str:
        """What a user is told when the polish was refused ("" when it was fitted)."""
        return "" if self.ok else f"{self.reason}; the homography stands"


def _normalisation(moving: np.ndarray) -> tuple[tuple[float, float], float]:
    lo, hi = moving.min(axis=0), moving.max(axis=0)
    return (float((lo[0] + hi[0]) / 2), float((lo[1] + hi[1]) / 2)), \
        float(max(hi[0] - lo[0], hi[1] - lo[1], 1.0) / 2)


def _quadratic_lstsq(moving: np.ndarray, fixed: np.ndarray, matrix: np.ndarray,
                     norm: tuple[tuple[float, float], float]) -> Quadratic:
    q = Quadratic(np.zeros((6, 2)), norm[0], norm[1], matrix)
    return Quadratic(np.linalg.lstsq(q._design(moving), fixed, rcond=None)[0], *norm, matrix)


def _cell(pts: np.ndarray, extent: tuple[int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(col, row) of the grid cell holding each point and its fraction across that cell, on
    an n x n node grid spanning ``extent`` (w, h); points beyond it take the edge value."""
    w, h = extent
    g = np.clip(pts / np.maximum([w - 1, h - 1], 1) * (n - 1), 0, n - 1)
    i0 = np.minimum(np.floor(g).astype(np.int64), n - 2)
    return i0, g - i0


def _bilinear(pts: np.ndarray, extent: tuple[int, int], n: int) -> np.ndarray:
    """(N, n*n) bilinear weights of ``pts`` on an n x n node grid spanning ``extent`` (w, h)."""
    i0, f = _cell(pts, extent, n)
    out = np.zeros((len(pts), n * n))
    rows = np.arange(len(pts))
    for dy in (0, 1):
        for dx in (0, 1):
            wgt = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1])
            np.add.at(out, (rows, (i0[:, 1] + dy) * n + i0[:, 0] + dx), wgt)
    return out


def _second_differences(n: int) -> np.ndarray:
    """Second differences along rows and columns of an n x n grid (x[i-1] - 2 x[i] + x[i+1]):
    a bending penalty, so beyond the evidence the grid carries its slope on rather than
    flattening out (a first-difference penalty did, and extrapolated worse)."""
    idx = np.arange(n * n).reshape(n, n)
    triples = np.concatenate([
        np.stack([idx[:, :-2].ravel(), idx[:, 1:-1].ravel(), idx[:, 2:].ravel()], 1),
        np.stack([idx[:-2, :].ravel(), idx[1:-1, :].ravel(), idx[2:, :].ravel()], 1)])
    d = np.zeros((len(triples), n * n))
    rows = np.arange(len(triples))
    for col, weight in zip(triples.T, (1.0, -2.0, 1.0)):
        d[rows, col] = weight
    return d


def _smooth_lstsq(moving: np.ndarray, fixed: np.ndarray, matrix: np.ndarray,
                  extent: tuple[int, int]) -> Smooth:
    """Quadratic and displacement grid fitted together, the grid's differences penalised: the
    grid takes the local motion, the quadratic the curvature of the whole. (Fitting the grid to
    the quadratic's residuals let local bumps bend the quadratic, which then extrapolated them
    beyond the evidence.)"""
    n = SMOOTH_NODES
    q0 = Quadratic(np.zeros((6, 2)), *_normalisation(moving), matrix)
    a = np.hstack([q0._design(moving), _bilinear(moving, extent, n)])
    d = _second_differences(n)
    pen = np.zeros((6 + n * n, 6 + n * n))
    pen[6:, 6:] = SMOOTH_LAMBDA * d.T @ d + SMOOTH_RIDGE * np.eye(n * n)
    x = np.linalg.solve(a.T @ a + pen, a.T @ fixed)
    return Smooth(Quadratic(x[:6], q0.centre, q0.half, matrix), x[6:].reshape(n, n, 2), extent)


def _fit(kind: str, moving: np.ndarray, fixed: np.ndarray, matrix: np.ndarray,
         extent: tuple[int, int]) -> NonRigid:
    if kind == "smooth":
        return _smooth_lstsq(moving, fixed, matrix, extent)
    return _quadratic_lstsq(moving, fixed, matrix, _normalisation(moving))


def _trimmed(kind: str, moving: np.ndarray, fixed: np.ndarray, matrix: np.ndarray,
             extent: tuple[int, int], rounds: int = 3) -> tuple[NonRigid, np.ndarray]:
    """Trimmed least squares: refit on the points within TRIM x the median residual."""
    keep = np.ones(len(moving), bool)
    t = _fit(kind, moving, fixed, matrix, extent)
    for _ in range(rounds):
        res = residuals(t, moving, fixed)
        keep = res < max(TRIM * float(np.median(res)), TRIM_FLOOR_PX)
        if keep.sum() < MIN_POINTS["quadratic"] // 2:
            break
        t = _fit(kind, moving[keep], fixed[keep], matrix, extent)
    return t, keep


def _cv_error(fit_fn, moving: np.ndarray, fixed: np.ndarray, folds: int = CV_FOLDS) -> float:
    """Median held-out residual of ``fit_fn(moving, fixed) -> mapping`` over ``folds`` folds."""
    order = np.random.default_rng(0).permutation(len(moving))
    errs = []
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        errs.append(residuals(fit_fn(moving[train], fixed[train]), moving[test], fixed[test]))
    return float(np.median(np.concatenate(errs)))


def _spread(pts: np.ndarray) -> float:
    s = np.linalg.svd(pts - pts.mean(axis=0), compute_uv=False)
    return float(s[1] / max(s[0], 1e-12))


def _folds(t: NonRigid, moving: np.ndarray) -> bool:
    """Whether ``t`` folds (Jacobian determinant <= 0) anywhere on the evidence's bounding box."""
    lo, hi = moving.min(axis=0), moving.max(axis=0)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 16), np.linspace(lo[1], hi[1], 16))
    p = np.stack([gx.ravel(), gy.ravel()], axis=1)
    jx = t.map_points(p + [0.5, 0]) - t.map_points(p - [0.5, 0])
    jy = t.map_points(p + [0, 0.5]) - t.map_points(p - [0, 0.5])
    return bool(np.any(jx[:, 0] * jy[:, 1] - jy[:, 0] * jx[:, 1] <= 0))


def fit_polish(kind: str, moving_pts: np.ndarray, fixed_pts: np.ndarray, matrix: np.ndarray,
               moving_shape: tuple[int, ...]) -> PolishFit:
    """A ``kind`` ("quadratic" | "smooth") moving -> fixed transform over the global ``matrix``
    from correspondences that already agree with it (e.g. the refinement's inliers).

    Fitted by trimmed least squares; refused (``transform`` None, ``reason`` why) when there
    are too few points, they lie along a line, the fit folds, or its cross-validated median
    error is not below the simpler model's (homography for quadratic, quadratic for smooth).
    """
    if kind not in NONRIGID_TYPES:
        raise ValueError(f"unknown non-rigid type {kind!r}; expected one of "
                         f"{', '.join(NONRIGID_TYPES)}")
    moving, fixed = _pts(moving_pts), _pts(fixed_pts)
    matrix = np.asarray(matrix, np.float64)
    n = len(moving)
    extent = (int(moving_shape[1]), int(moving_shape[0]))
    if n < MIN_POINTS[kind]:
        return PolishFit(None, np.zeros(n, bool),
                         f"too few correspondences for a {kind} polish ({n}; needs "
                         f"{MIN_POINTS[kind]})")
    if _spread(moving) < MIN_SPREAD:
        return PolishFit(None, np.zeros(n, bool),
                         f"the correspondences lie too close to one line for a {kind} polish")
    t, keep = _trimmed(kind, moving, fixed, matrix, extent)
    if _folds(t, moving[keep]):
        return PolishFit(None, keep, f"the {kind} fit folds over the matched area")
    simpler = "homography" if kind == "quadratic" else "quadratic"
    m_in, f_in = moving[keep], fixed[keep]
    mine = _cv_error(lambda a, b: _fit(kind, a, b, matrix, extent), m_in, f_in)
    if simpler == "homography":
        base = _cv_error(lambda a, b: fit_least_squares(a, b, "homography"), m_in, f_in)
    else:
        base = _cv_error(lambda a, b: _fit("quadratic", a, b, matrix, extent), m_in, f_in)
    if not mine < base:
        return PolishFit(None, keep, f"a {kind} fit predicts held-out correspondences no better "
                                     f"than a {simpler} ({mine:.1f} vs {base:.1f} px)")
    return PolishFit(t, keep)
