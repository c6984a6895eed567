"""Grow a retinal vessel tree: arteries and veins leaving the disc in the four arcades.

Each vessel is a random walk in normalised coordinates whose curvature is an AR(1) process
(smooth tortuosity), pulled by a steering rule: the temporal trunks orbit the fovea (the
arcades), everything else drifts radially away from the disc and is pushed away from the
fovea (vessels stop at the foveal avascular zone). Vessels branch as they go; widths split
by Murray's law (w³ = w₁³ + w₂³) and taper, and a vessel ends when it gets too thin or leaves
the field. Bifurcations are recorded as they happen; artery/vein crossings are found
afterwards by segment intersection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from retreg.training.synth.anatomy import Anatomy

ARTERY, VEIN = 0, 1
BIFURCATION, CROSSING = 0, 1
STEP = 0.007  # normalised step length (≈ 3.6 px at 512)
W_MIN = 0.0012  # vessels thinner than this (≈ 0.6 px at 512) stop growing
MAX_BRANCHES = 160  # bounds render time; denser trees add little for matching


@dataclass
class Vessel:
    points: np.ndarray  # (n, 2) normalised centreline
    widths: np.ndarray  # (n,) normalised diameter at each point
    kind: int  # ARTERY or VEIN
    parent: int  # index of the parent vessel, -1 for trunks


@dataclass
class VesselTree:
    vessels: list[Vessel] = field(default_factory=list)
    # (x, y, width_of_thinner_branch) of every branch point, normalised
    branches: list[tuple[float, float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class _Style:
    """Per-case growth style, so trees differ in tortuosity, density and calibre."""

    curl: float  # std of curvature noise
    persistence: float  # AR(1) coefficient of curvature
    branch_gap: float  # mean distance between branch points
    taper: float  # width factor per step
    calibre: float  # multiplies trunk widths


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def grow_tree(an: Anatomy, rng: np.random.Generator) -> VesselTree:
    style = _Style(
        curl=rng.uniform(3.0, 10.0), persistence=rng.uniform(0.6, 0.9),
        branch_gap=rng.uniform(0.035, 0.075), taper=rng.uniform(0.990, 0.997),
        calibre=rng.uniform(0.8, 1.2),
    )
    tree = VesselTree()
    queue: list[tuple] = []
    dx, dy = an.disc
    fx, fy = an.fovea
    temporal = math.atan2(fy - dy, fx - dx)  # direction disc → fovea
    for kind, w0 in ((ARTERY, 0.0085), (VEIN, 0.0115)):
        w0 *= style.calibre * rng.uniform(0.9, 1.1)
        for sup in (1.0, -1.0):
            # Temporal arcade trunk: leaves the disc towards superior/inferior, orbits the fovea.
            a = temporal - sup * math.radians(rng.uniform(70, 100)) * (1 if an.right_eye else -1)
            queue.append((dx, dy, a, w0, kind, ("arcade",), -1))
            # Nasal trunk: radial, thinner.
            a = temporal + math.pi + sup * math.radians(rng.uniform(25, 70)) * (1 if an.right_eye else -1)
            queue.append((dx, dy, a, w0 * rng.uniform(0.6, 0.8), kind, ("radial",), -1))
        # Small extra vessels straight from the disc (nasal horizontal, papillomacular).
        for _ in range(rng.integers(1, 4)):
            a = rng.uniform(-math.pi, math.pi)
            queue.append((dx, dy, a, w0 * rng.uniform(0.3, 0.5), kind, ("radial",), -1))
    while queue:
        _grow(queue.pop(0), an, style, rng, tree, queue)
    return tree


def _steer(mode: tuple, x: float, y: float, theta: float, s: float, an: Anatomy, st: dict) -> tuple[float, float]:
    """(desired heading, pull strength) for a vessel at (x, y) after arc length s."""
    fx, fy = an.fovea
    rfx, rfy = x - fx, y - fy
    rf = math.hypot(rfx, rfy) + 1e-9
    if mode[0] == "arcade" and not st.get("free"):
        phi = math.atan2(rfy, rfx)
        if "phi0" not in st:
            phi0 = phi
            # orbit in the direction the trunk already heads (up or down from the disc)
            along = -math.sin(phi0) * math.cos(theta) + math.cos(phi0) * math.sin(theta)
            st["phi0"], st["sign"] = phi0, (1.0 if along > 0 else -1.0)
            st["r0"] = rf * st["rng"].uniform(0.8, 1.2)  # artery and vein take different orbits
            st["grow"] = st["rng"].uniform(0.0, 0.25)
            st["sweep"] = math.radians(st["rng"].uniform(95, 135))
        sign = st["sign"]
        if abs(_wrap(phi - st["phi0"])) > st["sweep"] or s > 2.5 * st["r0"]:
            st["free"] = True
            return theta, 0.0
        tx, ty = -sign * math.sin(phi), sign * math.cos(phi)
        err = (st["r0"] * (1 + st["grow"] * s / st["r0"]) - rf) / st["r0"]
        return math.atan2(ty + 3.0 * err * rfy / rf, tx + 3.0 * err * rfx / rf), 0.35
    if mode[0] == "macular":  # inner arcade branches converge on the fovea
        return math.atan2(-rfy, -rfx), 0.04
    # radial drift away from the disc, repelled by the fovea
    dx, dy = x - an.disc[0], y - an.disc[1]
    rd = math.hypot(dx, dy) + 1e-9
    vx, vy = math.cos(theta) + 0.4 * dx / rd, math.sin(theta) + 0.4 * dy / rd
    near = max(0.0, 1.0 - rf / (6.0 * an.faz_r))
    vx += 2.5 * near * rfx / rf
    vy += 2.5 * near * rfy / rf
    return math.atan2(vy, vx), 0.05


def _grow(item: tuple, an: Anatomy, style: _Style, rng: np.random.Generator, tree: VesselTree, queue: list) -> None:
    x, y, theta, w, kind, mode, parent = item
    n_max = 400
    noise = rng.standard_normal(n_max)
    pts, ws = [(x, y)], [w]
    kappa, s = 0.0, 0.0
    next_branch = rng.exponential(style.branch_gap) + (1.5 * an.disc_r if parent < 0 else 0.0)
    sig = style.curl * math.sqrt(1 - style.persistence ** 2)
    st: dict = {"rng": rng}
    index = len(tree.vessels)
    for i in range(n_max):
        kappa = style.persistence * kappa + sig * noise[i]
        want, pull = _steer(mode, x, y, theta, s, an, st)
        theta += kappa * STEP + pull * _wrap(want - theta)
        x += STEP * math.cos(theta)
        y += STEP * math.sin(theta)
        s += STEP
        w *= style.taper
        # vessels end short of the fovea: only capillaries (not drawn here) reach the FAZ rim
        if w < W_MIN or not an.in_fov(x, y, 0.03) or math.hypot(x - an.fovea[0], y - an.fovea[1]) < 2.5 * an.faz_r:
            break
        pts.append((x, y))
        ws.append(w)
        if s >= next_branch:
            next_branch = s + rng.exponential(style.branch_gap) + STEP
            alpha = rng.uniform(0.3, 0.95)
            w = w / (1 + alpha ** 3) ** (1 / 3)
            wc = alpha * w
            side = 1.0 if rng.random() < 0.5 else -1.0
            child_theta = theta + side * math.radians(rng.uniform(35, 80))
            theta -= side * math.radians(rng.uniform(3, 15)) * alpha
            if wc > 1.5 * W_MIN and len(tree.branches) < MAX_BRANCHES:
                tree.branches.append((x, y, wc))
                to_fovea = math.atan2(an.fovea[1] - y, an.fovea[0] - x)
                macular = mode[0] == "arcade" and math.cos(child_theta - to_fovea) > 0.3
                queue.append((x, y, child_theta, wc, kind, ("macular" if macular else "radial",), index))
    tree.vessels.append(Vessel(np.asarray(pts, np.float64), np.asarray(ws, np.float64), kind, parent))


def keypoints(tree: VesselTree, an: Anatomy, min_width: float) -> np.ndarray:
    """Bifurcations and crossings of vessels at least ``min_width`` wide, outside the disc.

    Returns float64 (K, 3): normalised x, y and type (BIFURCATION or CROSSING).
    """
    out = [(x, y, BIFURCATION) for x, y, w in tree.branches if w >= min_width]
    segs, owner = [], []
    for i, v in enumerate(tree.vessels):
        keep = np.minimum(v.widths[:-1], v.widths[1:]) >= min_width
        if keep.any():
            segs.append(np.concatenate([v.points[:-1][keep], v.points[1:][keep]], 1))
            owner.append(np.full(int(keep.sum()), i))
    if segs:
        out += [(x, y, CROSSING) for x, y in _crossings(np.concatenate(segs), np.concatenate(owner), tree)]
    kp = np.asarray(out, np.float64).reshape(-1, 3)
    far = np.hypot(kp[:, 0] - an.disc[0], kp[:, 1] - an.disc[1]) > 1.3 * an.disc_r
    inside = np.hypot(kp[:, 0] - an.fov_c[0], kp[:, 1] - an.fov_c[1]) < an.fov_r
    return _dedupe(kp[far & inside], 1.5 * STEP)


def _crossings(seg: np.ndarray, owner: np.ndarray, tree: VesselTree) -> list[tuple[float, float]]:
    """Proper intersections between segments of different, non parent/child vessels."""
    mid = 0.5 * (seg[:, :2] + seg[:, 2:])
    pairs = cKDTree(mid).query_pairs(1.2 * STEP, output_type="ndarray")
    if len(pairs) == 0:
        return []
    i, j = pairs[:, 0], pairs[:, 1]
    oi, oj = owner[i], owner[j]
    parent = np.array([v.parent for v in tree.vessels])
    ok = (oi != oj) & (parent[oi] != oj) & (parent[oj] != oi)
    i, j = i[ok], j[ok]
    p, r = seg[i, :2], seg[i, 2:] - seg[i, :2]
    q, t = seg[j, :2], seg[j, 2:] - seg[j, :2]
    den = r[:, 0] * t[:, 1] - r[:, 1] * t[:, 0]
    qp = q - p
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (qp[:, 0] * t[:, 1] - qp[:, 1] * t[:, 0]) / den
        b = (qp[:, 0] * r[:, 1] - qp[:, 1] * r[:, 0]) / den
    hit = (np.abs(den) > 1e-12) & (a > 0) & (a < 1) & (b > 0) & (b < 1)
    return [tuple(xy) for xy in (p[hit] + a[hit, None] * r[hit])]


def _dedupe(kp: np.ndarray, radius: float) -> np.ndarray:
    """Drop keypoints closer than ``radius`` to an earlier one (a crossing drawn twice)."""
    if len(kp) < 2:
        return kp
    drop = set()
    for a, b in sorted(cKDTree(kp[:, :2]).query_pairs(radius)):
        if a not in drop:
            drop.add(b)
    return kp[[k for k in range(len(kp)) if k not in drop]]
