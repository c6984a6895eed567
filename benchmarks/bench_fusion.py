"""Fused views of registered pairs compared: average, max, two-colour (its luminance), the
classical detail-preserving fused view (``core.fusion.fused``) and the learned one
(``fused(..., method="learned")``, the bundled fusion-mask net).

Pairs: FIRE category P with the moving image warped by a homography fitted to the ground-truth
control points (so registration errors do not enter the fusion metrics), at half resolution;
CF_OCTA_dev eyes with the OCTA registered onto a disc-centred CF clip by the pipeline (as
tools/cfocta_dev_sheet.py does; eyes whose registration fails or is judged failed are left out);
and synthetic pixel-aligned CF + FA, CF + OCT and CF clip + OCTA. All metrics are taken on
luminance inside the overlap of the two fields (eroded by 2 % of the side), each image stretched
to its own 1st-99th percentile there:

- detail: mean gradient magnitude of the candidate / that of the pixel-wise max of both inputs'
  gradient magnitudes (the issue's bar: fused >= 0.95, above either input and the average);
- lowfreq: correlation of the candidate with the inputs' average after a Gaussian, sigma 8 px
  (bar: >= 0.95);
- sf: spatial frequency sqrt(RF^2 + CF^2) of the candidate;
- qabf: Xydeas & Petrovic's edge preservation Q^AB/F (Electronics Letters 36(4), 2000), from
  3x3 Sobel edge strength g and orientation alpha = atan(s_y / s_x): per input X, the relative
  strength G = min(g_X, g_F) / max(g_X, g_F) and orientation A = ||alpha_X - alpha_F| - pi/2|
  / (pi/2) go through sigmoids Q_g = 0.9994 / (1 + exp(-15 (G - 0.5))) and Q_a = 0.9879 /
  (1 + exp(-22 (A - 0.8))); Q^AB/F = sum(Q^AF g_A + Q^BF g_B) / sum(g_A + g_B) (L = 1);
- mi_f / mi_m: mutual information (bits, 64-bin joint histogram on [0, 1]) of the candidate
  with the fixed / moving input;
- ssim_f / ssim_m: mean SSIM of the candidate to the fixed / moving input.

The full-resolution time of both fused views on one 2912 px FIRE pair (median of 5, after one
warm-up) is printed too. The learned view's net runs on a copy no longer than
``core.fusion_net.NET_SIDE`` px; ``--net-side`` changes that (recorded as
``bench_fusion_net<side>``) to measure what the smaller copy costs.

    OMP_NUM_THREADS=1 python benchmarks/bench_fusion.py --fire 10 --synthetic 6 --threads 1
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.metrics import structural_similarity

from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.core.annotations import sha256_file
from retreg.core import fusion_net
from retreg.core.disc import clip_around_disc
from retreg.core.fusion_net import NET_SIDE
from retreg.core.fusion import METHODS, field, fused
from retreg.core.io import read_image
from retreg.core.matchers import get_matcher
from retreg.core.overlays import two_colour
from retreg.core.pipeline import register
from retreg.core.warp import warp_moving
from retreg.resources import bundled_fusion_weights

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIRE = DATA / "FIRE_P"
CFOCTA = DATA / "CF_OCTA_dev"
CFOCTA_FIELD_PX = {"3x3": 440, "6x6": 760}
CFOCTA_MARGIN = 1.3
SYNTH_SEED = 10_600_000
LOWFREQ_SIGMA = 8.0
CANDIDATES = ("fixed", "moving", "average", "max", "two-colour", "fused", "fused-learned")
METRICS = ("detail", "lowfreq", "sf", "qabf", "mi_f", "mi_m", "ssim_f", "ssim_m")
MI_BINS = 64
QG = (0.9994, -15.0, 0.5)  # Gamma_g, kappa_g, sigma_g
QA = (0.9879, -22.0, 0.8)  # Gamma_alpha, kappa_alpha, sigma_alpha


def _luma(img: np.ndarray) -> np.ndarray:
    """Luminance as float32 in [0, 1] (YCrCb's Y, as ``fused`` uses)."""
    img = np.asarray(img)
    if img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_RGB2YCrCb)[:, :, 0]
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return img.astype(np.float32) / np.float32(scale)


def _stretched(g: np.ndarray, inside: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(g[inside], (1, 99))
    return np.clip((g - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def _grad(g: np.ndarray) -> np.ndarray:
    return cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3),
                         cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)) / 8.0


def _spatial_frequency(g: np.ndarray, inside: np.ndarray) -> float:
    rows = (np.diff(g, axis=1) ** 2)[inside[:, 1:] & inside[:, :-1]]
    cols = (np.diff(g, axis=0) ** 2)[inside[1:, :] & inside[:-1, :]]
    return float(np.sqrt(rows.mean() + cols.mean()))


def _sobel(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(edge strength, orientation atan(s_y / s_x) in (-pi/2, pi/2))."""
    sx = cv2.Sobel(g, cv2.CV_64F, 1, 0, ksize=3)
    sy = cv2.Sobel(g, cv2.CV_64F, 0, 1, ksize=3)
    return np.hypot(sx, sy), np.arctan(sy / (sx + 1e-12))


def _preservation(x: tuple[np.ndarray, np.ndarray], f: tuple[np.ndarray, np.ndarray]
                  ) -> np.ndarray:
    """Q^XF per pixel: how much of input X's edge strength and orientation F keeps."""
    (gx, ax), (gf, af) = x, f
    strength = np.minimum(gx, gf) / np.maximum(np.maximum(gx, gf), 1e-12)
    orientation = np.abs(np.abs(ax - af) - np.pi / 2) / (np.pi / 2)
    qg = QG[0] / (1 + np.exp(QG[1] * (strength - QG[2])))
    qa = QA[0] / (1 + np.exp(QA[1] * (orientation - QA[2])))
    return qg * qa


def qabf(a: np.ndarray, b: np.ndarray, fused_img: np.ndarray, inside: np.ndarray) -> float:
    """Xydeas-Petrovic Q^AB/F of ``fused_img`` from inputs ``a`` and ``b`` inside ``inside``
    (weights: edge strength, L = 1)."""
    ea, eb, ef = _sobel(a), _sobel(b), _sobel(fused_img)
    wa, wb = ea[0][inside], eb[0][inside]
    num = (_preservation(ea, ef)[inside] * wa + _preservation(eb, ef)[inside] * wb).sum()
    return float(num / max((wa + wb).sum(), 1e-12))


def mutual_information(x: np.ndarray, y: np.ndarray, inside: np.ndarray) -> float:
    """Mutual information in bits of two [0, 1] images inside ``inside`` (64-bin histogram)."""
    joint, _, _ = np.histogram2d(np.clip(x[inside], 0, 1), np.clip(y[inside], 0, 1),
                                 bins=MI_BINS, range=((0, 1), (0, 1)))
    p = joint / joint.sum()
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log2(p[nz] / (px @ py)[nz])).sum())


def _ssim(a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> float:
    _, smap = structural_similarity(a, b, data_range=1.0, full=True)
    return float(smap[inside].mean())


def candidate_views(fixed: np.ndarray, warped: np.ndarray
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(every candidate as an image: luminance in [0, 1] for the inputs, average and max, RGB
    uint8 for the views the app shows; the eroded overlap, bool HxW)."""
    yf, ym = _luma(fixed), _luma(warped)
    overlap = field(yf) & field(ym)
    k = 2 * max(1, round(0.02 * min(yf.shape))) + 1
    overlap = cv2.erode(overlap.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
    a, b = _stretched(yf, overlap), _stretched(ym, overlap)
    return {"fixed": a, "moving": b, "average": 0.5 * (a + b), "max": np.maximum(a, b),
            "two-colour": two_colour(fixed, warped), "fused": fused(fixed, warped),
            "fused-learned": fused(fixed, warped, method="learned")}, overlap


def pair_metrics(fixed: np.ndarray, warped: np.ndarray) -> dict[str, dict[str, float]]:
    """Metrics of every candidate for one aligned pair (same height and width)."""
    views, overlap = candidate_views(fixed, warped)
    candidates = {name: _luma(img) if img.ndim == 3 else img for name, img in views.items()}
    a, b = candidates["fixed"], candidates["moving"]
    grad_max = np.maximum(_grad(a), _grad(b))[overlap].mean()
    low_avg = cv2.GaussianBlur(0.5 * (a + b), (0, 0), LOWFREQ_SIGMA)[overlap]
    out = {}
    for name, img in candidates.items():
        g = _stretched(img, overlap)
        low = cv2.GaussianBlur(g, (0, 0), LOWFREQ_SIGMA)[overlap]
        out[name] = {"detail": float(_grad(g)[overlap].mean() / grad_max),
                     "lowfreq": float(np.corrcoef(low, low_avg)[0, 1]),
                     "sf": _spatial_frequency(g, overlap), "qabf": qabf(a, b, g, overlap),
                     "mi_f": mutual_information(g, a, overlap),
                     "mi_m": mutual_information(g, b, overlap),
                     "ssim_f": _ssim(g, a, overlap), "ssim_m": _ssim(g, b, overlap)}
    return out


def fire_pairs(n: int):
    """(name, fixed, warped moving) at half resolution, moving warped by the ground truth."""
    ids = [k for k in range(10, 50) if k != 37][:n]  # P37's ground truth is wrong (README)
    half = np.diag([0.5, 0.5, 1.0])
    for k in ids:
        pts = np.loadtxt(FIRE / "Ground_Truth" / f"control_points_P{k}_1_2.txt")
        hom, _ = cv2.findHomography(pts[:, 2:], pts[:, :2])
        fixed, moving = (read_image(FIRE / "data" / f"P{k}_{i}.jpg") for i in (1, 2))
        fixed, moving = (cv2.resize(im, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
                         for im in (fixed, moving))
        yield f"P{k}", fixed, warp_moving(moving, half @ hom @ np.linalg.inv(half), fixed.shape)


def cfocta_pairs(matcher_name: str):
    """(name, CF clip, registered OCTA) for each CF_OCTA_dev eye that registers."""
    matcher = get_matcher(matcher_name)
    for size, side in CFOCTA_FIELD_PX.items():
        for cf_path in sorted((CFOCTA / size / "B_Fundus").glob("*.jpg")):
            octa_path = CFOCTA / size / "A_OCTA" / "C_optic_nerve_head" / cf_path.name
            if not octa_path.is_file():
                continue
            clip, _ = clip_around_disc(read_image(cf_path), int(side * CFOCTA_MARGIN))
            octa = read_image(octa_path)
            res = register(clip, octa, "cfocta", matcher=matcher, transform="similarity")
            if not res.ok or (res.verdict is not None and res.verdict.level == "failed"):
                print(f"  {size}/{cf_path.stem}: not registered, left out")
                continue
            yield f"{size}/{cf_path.stem}", clip, warp_moving(octa, res.matrix, clip.shape)


def synthetic_pairs(n: int):
    """(name, fixed, moving) pixel-aligned synthetic CF + FA / OCT and CF clip + OCTA."""
    from retreg.training.synth import render_case
    for seed in range(SYNTH_SEED, SYNTH_SEED + n):
        case = render_case(seed, 512)
        for fixed, moving in (("cf", "fa"), ("cf", "oct"), ("cf_clip", "octa")):
            yield f"{seed}/{moving}", case[fixed], case[moving]


def full_res_seconds(method: str, repeats: int = 5) -> float | None:
    if not (FIRE / "data" / "P10_1.jpg").is_file():
        return None
    pts = np.loadtxt(FIRE / "Ground_Truth" / "control_points_P10_1_2.txt")
    hom, _ = cv2.findHomography(pts[:, 2:], pts[:, :2])
    fixed, moving = (read_image(FIRE / "data" / f"P10_{i}.jpg") for i in (1, 2))
    warped = warp_moving(moving, hom, fixed.shape)
    fused(fixed, warped, method=method)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fused(fixed, warped, method=method)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fire", type=int, default=10, help="FIRE-P pairs (0: none)")
    ap.add_argument("--cfocta", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--synthetic", type=int, default=6, help="synthetic eyes (0: none)")
    ap.add_argument("--matcher", default="default", help="matcher for the CF_OCTA_dev eyes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--net-side", type=int, default=NET_SIDE,
                    help="longest side the learned view's net runs at (what the cost of running "
                         "it on a smaller copy is)")
    args = ap.parse_args()
    fusion_net.NET_SIDE = args.net_side  # read by predict_mask at each call
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)

    groups = {}
    if args.fire and FIRE.is_dir():
        groups["FIRE-P (half res)"] = fire_pairs(args.fire)
    if args.cfocta and CFOCTA.is_dir():
        groups["CF_OCTA_dev"] = cfocta_pairs(args.matcher)
    if args.synthetic:
        groups["synthetic"] = synthetic_pairs(args.synthetic)

    results = {"per_pair": {}, "mean": {}}
    for group, pairs in groups.items():
        rows = {}
        for name, fixed, moving in pairs:
            rows[name] = pair_metrics(fixed, moving)
            print(f"  {group} {name}: detail fused {rows[name]['fused']['detail']:.3f}, "
                  f"learned {rows[name]['fused-learned']['detail']:.3f}")
        if not rows:
            continue
        results["per_pair"][group] = rows
        mean = {c: {m: float(np.mean([r[c][m] for r in rows.values()])) for m in METRICS}
                for c in CANDIDATES}
        results["mean"][group] = mean | {"pairs": len(rows)}
        print(f"\n{group}: {len(rows)} pairs, means")
        print(f"{'candidate':14s}" + "".join(f"{m:>9s}" for m in METRICS))
        for c in CANDIDATES:
            print(f"{c:14s}" + "".join(f"{mean[c][m]:9.3f}" for m in METRICS))
        print()
    for method in METHODS:
        seconds = full_res_seconds(method)
        results[f"fused_{method}_2912px_seconds"] = seconds
        if seconds is not None:
            print(f"fused ({method}), 2912 x 2912 FIRE pair, {args.threads} threads: "
                  f"{seconds:.3f} s (median of 5)")
    weights = bundled_fusion_weights()
    config = vars(args) | {"fusion_weights": weights.name,
                           "fusion_weights_sha256": sha256_file(weights)}
    name = "bench_fusion" if args.net_side == NET_SIDE else f"bench_fusion_net{args.net_side}"
    save(name, config, SYNTH_SEED, results)


if __name__ == "__main__":
    main()
