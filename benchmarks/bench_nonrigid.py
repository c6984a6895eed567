"""Global vs non-rigid transforms: FIRE category P and synthetic pairs with a known smooth
deformation, through the real pipeline (``register`` once per transform type, timed).

FIRE-P (39 pairs, P37 excluded): the FIRE-protocol table per type (homography, quadratic,
smooth): acceptable %, AUC, median mean-error, median s/pair, and the pairs a polish makes more
than 2 px worse than the homography. ``--peer-python`` runs the peer
``benchmarks/peers/retinalysis_fire.py`` in its own venv in the same run and adds its rows.

Synthetic: each case (seeds from 10_700_000, never trained on) moves the FA of an aligned CF/FA
case by a random similarity (rotation up to 20 deg, scale 0.9-1.1, shift up to 5 %) plus a
smooth deformation (a bowl of up to 10 px and three Gaussian bumps of 6-15 px, sigma 50-110 px
at 512 px: the 50-150 px peripheral motion of ultra-widefield pairs of ~4000 px, scaled). Two
errors, each the mean distance between the estimated and the true moving -> fixed map:
- ``control``: at the eye's vessel junctions (its ground-truth keypoints inside the field of
  view), the synthetic counterpart of FIRE's control points;
- ``overlap``: over a 16 x 16 grid of moving pixels that land inside the fixed field of view,
  including rims and vessel-free areas where no method has evidence and any polish extrapolates.
The bar: the polished map's mean error <= 1/3 of the global fit's.

    OMP_NUM_THREADS=1 python benchmarks/bench_nonrigid.py --fire --synthetic 20 \
        --peer-python ../rl_venv/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.core.evaluation import fire_pairs
from retreg.core.annotations import read_fire_points
from retreg.core.io import read_image
from retreg.core.matchers import get_matcher
from retreg.core.metrics import SAME_MODALITY, auc, control_point_errors
from retreg.core.pipeline import register
from retreg.core.transforms import map_points
from retreg.training.synth import render_case

ROOT = Path(__file__).resolve().parents[1]
FIRE = ROOT.parent / "shared" / "data" / "FIRE_P"
TYPES = ("homography", "quadratic", "smooth")
SYNTH_SEED = 10_700_000
WORSE_PX = 2.0


def _row(name: str, stats: list[tuple[float, float, float]], seconds: list[float]) -> dict:
    """A table row from per-pair (mean, median, max) errors (inf for a failed pair)."""
    ok = [mean < np.inf and mx <= SAME_MODALITY.max_px and med <= SAME_MODALITY.median_px
          for mean, med, mx in stats]
    means = [s[0] for s in stats]
    return {"method": name, "n": len(stats), "acceptable": sum(ok) / len(stats),
            "auc": auc(means), "median_error": statistics.median(means),
            "median_s": statistics.median(seconds) if seconds else float("nan")}


def fire(matcher, peer_python: str | None, limit: int | None) -> dict:
    pairs, _ = fire_pairs(FIRE)
    pairs = pairs[:limit] if limit else pairs
    errors = {t: [] for t in TYPES}
    seconds = {t: [] for t in TYPES}
    per_pair = {}
    for pair in pairs:
        gt = read_fire_points(pair.gt)
        fixed, moving = read_image(pair.fixed), read_image(pair.moving)
        mov, fix = [p.moving for p in gt], [p.fixed for p in gt]
        per_pair[pair.pair_id] = {}
        for t in TYPES:
            t0 = time.perf_counter()
            res = register(fixed, moving, "cfcf", matcher=matcher, transform=t)
            seconds[t].append(time.perf_counter() - t0)
            err = control_point_errors(res.mapping if res.ok else None, mov, fix)
            errors[t].append((err.mean, err.median, err.max))
            per_pair[pair.pair_id][t] = {"mean": err.mean, "polish_note": res.polish_note}
        print(pair.pair_id, "  ".join(f"{t} {per_pair[pair.pair_id][t]['mean']:.2f}"
                                      for t in TYPES), flush=True)
    rows = [_row(t, errors[t], seconds[t]) for t in TYPES]
    worse = {t: [p for p, v in per_pair.items() if v[t]["mean"] > v["homography"]["mean"] + WORSE_PX]
             for t in TYPES[1:]}
    if peer_python:
        rows += _peer_rows(peer_python, [p.pair_id for p in pairs])
    return {"rows": rows, "worse_than_homography": worse, "pairs": per_pair}


def _peer_rows(python: str, pair_ids: list[str]) -> list[dict]:
    """Rows of the retinalysis peer, run now in its own interpreter (single-threaded)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        subprocess.run([python, str(ROOT / "benchmarks" / "peers" / "retinalysis_fire.py"),
                        "--fire", str(FIRE), "--out", str(out), "--pairs", *pair_ids],
                       check=True, env=env)
        peer = json.loads(out.read_text())
    inf = (np.inf, np.inf, np.inf)
    return [_row(f"retinalysis {kind}",
                 [inf if p["failed"] else (p[kind]["mean"], p[kind]["median"], p[kind]["max"])
                  for p in peer["pairs"]], [p["seconds"] for p in peer["pairs"]])
            for kind in ("quadratic", "homography")]


def _deformation(rng: np.random.Generator, size: int):
    """A random moving -> fixed map (similarity + bowl + Gaussian bumps), vectorised."""
    a, s = np.deg2rad(rng.uniform(-20, 20)), rng.uniform(0.9, 1.1)
    c = size / 2
    lin = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    shift = rng.uniform(-0.05, 0.05, 2) * size
    bowl = rng.uniform(-10, 10, 2)
    bumps = [(rng.uniform(0.2, 0.8, 2) * size, rng.uniform(6, 15) * rng.choice([-1, 1], 2),
              rng.uniform(50, 110)) for _ in range(3)]

    def to_fixed(pts: np.ndarray) -> np.ndarray:
        u = (pts - c) / c
        out = (pts - c) @ lin.T + c + shift + bowl * (u ** 2)
        for centre, amp, sigma in bumps:
            out += amp * np.exp(-np.sum((pts - centre) ** 2, 1) / (2 * sigma ** 2))[:, None]
        return out
    return to_fixed


def _inverse_image(img: np.ndarray, to_fixed, size: int) -> np.ndarray:
    """``img`` (fixed frame) resampled into the moving frame of ``to_fixed``."""
    gy, gx = np.mgrid[0:size, 0:size].astype(np.float64)
    src = to_fixed(np.stack([gx.ravel(), gy.ravel()], 1)).astype(np.float32)
    return cv2.remap(img, src[:, 0].reshape(size, size), src[:, 1].reshape(size, size),
                     cv2.INTER_LINEAR)


def _preimage(to_fixed, fixed_pts: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Moving points that ``to_fixed`` sends onto ``fixed_pts`` (Newton, numeric Jacobian)."""
    m = fixed_pts.copy()
    for _ in range(iterations):
        at = to_fixed(m)
        jx, jy = to_fixed(m + [1.0, 0]) - at, to_fixed(m + [0, 1.0]) - at
        jac = np.stack([jx, jy], axis=2)  # (N, 2 outputs, 2 inputs)
        m = m - np.linalg.solve(jac, (at - fixed_pts)[..., None])[..., 0]
    return m


def synthetic(matcher, cases: int) -> dict:
    errors = {(t, where): [] for t in TYPES for where in ("control", "overlap")}
    seconds = {t: [] for t in TYPES}
    rng = np.random.default_rng(SYNTH_SEED)
    g = np.linspace(16, 496, 16)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    for k in range(cases):
        case = render_case(SYNTH_SEED + k, 512)
        to_fixed = _deformation(rng, 512)
        moving = _inverse_image(case["fa"], to_fixed, 512)
        fov = case["fov"]
        truth = to_fixed(grid)
        inside = fov[np.clip(truth[:, 1].round().astype(int), 0, 511),
                     np.clip(truth[:, 0].round().astype(int), 0, 511)] > 0
        junctions = case["keypoints"][:, :2].astype(np.float64)
        control = _preimage(to_fixed, junctions)
        on_image = np.all((control >= 0) & (control <= 511), axis=1)
        points = {"control": (control[on_image], junctions[on_image]),
                  "overlap": (grid[inside], truth[inside])}
        for t in TYPES:
            t0 = time.perf_counter()
            res = register(case["cf"], moving, "cffa", matcher=matcher, transform=t)
            seconds[t].append(time.perf_counter() - t0)
            for where, (mov, fix) in points.items():
                err = (np.linalg.norm(map_points(res.mapping, mov) - fix, axis=1).mean()
                       if res.ok else np.inf)
                errors[(t, where)].append(float(err))
        print(f"case {k}", "  ".join(f"{t} {errors[(t, 'control')][-1]:.2f} / "
                                     f"{errors[(t, 'overlap')][-1]:.2f}" for t in TYPES),
              flush=True)
    return {where: {"mean_error": {t: float(np.mean(errors[(t, where)])) for t in TYPES},
                    "median_error": {t: float(np.median(errors[(t, where)])) for t in TYPES},
                    "per_case": {t: errors[(t, where)] for t in TYPES}}
            for where in ("control", "overlap")} | {
        "median_s": {t: statistics.median(seconds[t]) for t in TYPES}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fire", action="store_true", help="run the FIRE-P table")
    ap.add_argument("--limit", type=int, help="only the first N FIRE pairs")
    ap.add_argument("--peer-python", help="python of a venv with retinalysis-registration")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N", help="synthetic cases")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    matcher = get_matcher("default")
    results = {}
    if args.fire:
        results["fire"] = fire(matcher, args.peer_python, args.limit)
        print(f"\nFIRE-P ({results['fire']['rows'][0]['n']} pairs; {args.threads} thread(s))")
        print(f"{'method':<24}{'accept.%':>9}{'AUC':>7}{'med err':>9}{'s/pair':>8}")
        for r in results["fire"]["rows"]:
            print(f"{r['method']:<24}{100 * r['acceptable']:>9.1f}{r['auc']:>7.3f}"
                  f"{r['median_error']:>9.2f}{r['median_s']:>8.2f}")
        for t, pairs in results["fire"]["worse_than_homography"].items():
            print(f"{t}: {len(pairs)} pairs > {WORSE_PX:g} px worse than homography {pairs}")
    if args.synthetic:
        syn = results["synthetic"] = synthetic(matcher, args.synthetic)
        print(f"\nsynthetic smooth deformation ({args.synthetic} CF-FA cases, 512 px): mean "
              f"(median) error in px at the control points / over the overlap")
        c, o = syn["control"], syn["overlap"]
        for t in TYPES:
            print(f"{t:<12} {c['mean_error'][t]:6.2f} ({c['median_error'][t]:.2f}) / "
                  f"{o['mean_error'][t]:6.2f} ({o['median_error'][t]:.2f}), "
                  f"{syn['median_s'][t]:.2f} s/pair")
        for where, e in (("control points", c), ("overlap", o)):
            for t in TYPES[1:]:
                print(f"{t} / homography mean error, {where}: "
                      f"{e['mean_error'][t] / e['mean_error']['homography']:.2f} (bar <= 0.33)")
    save("bench_nonrigid", vars(args), SYNTH_SEED, results)


if __name__ == "__main__":
    sys.exit(main())
