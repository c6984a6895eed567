"""FIRE-P AUC of the classical matcher (homography) without and with the NCC refinement stage.

Usage: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_fire_refine.py [--pairs P10 P11 ...]
       [--coarse-cache FILE.npz] [--side 1024 --patch 24 --search 24 --threshold 2 --iterations 2]
The coarse matrices can be cached (npz, one array per pair id) so tuning re-runs only refinement.
Prints per pair the mean control-point error before/after and the refinement time, then both AUCs.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from retreg.core.io import read_image
from retreg.core.matchers import get_matcher
from retreg.core.metrics import auc, control_point_errors
from retreg.core.modality import prepare
from retreg.core.pipeline import RegistrationConfig, register
from retreg.core.refine import RefineConfig, refine

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "FIRE_P"
ALL_PAIRS = [f"P{k:02d}" for k in range(10, 50) if k != 37]  # P37's ground truth is wrong


def _coarse(pid: str, fixed, moving, cache: dict) -> np.ndarray | None:
    if pid not in cache:
        res = register(fixed, moving, "cfcf", matcher=get_matcher("classical"),
                       transform="homography", config=RegistrationConfig(refine=None))
        cache[pid] = res.matrix if res.matrix is not None else np.full((3, 3), np.nan)
    m = cache[pid]
    return None if np.isnan(m).any() else m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="*", default=ALL_PAIRS)
    ap.add_argument("--coarse-cache", type=Path)
    ap.add_argument("--side", type=int, default=RefineConfig.working_side)
    for f in fields(RefineConfig):
        if f.name != "working_side":
            ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    args = ap.parse_args()
    cfg = RefineConfig(working_side=args.side, **{f.name: getattr(args, f.name)
                                                  for f in fields(RefineConfig)
                                                  if f.name != "working_side"})
    cache_path = args.coarse_cache
    cache = dict(np.load(cache_path)) if cache_path and cache_path.exists() else {}
    before, after, times = [], [], []
    for pid in args.pairs:
        fixed_img = read_image(DATA / "data" / f"{pid}_1.jpg")
        moving_img = read_image(DATA / "data" / f"{pid}_2.jpg")
        gt = np.loadtxt(DATA / "Ground_Truth" / f"control_points_{pid}_1_2.txt")
        coarse = _coarse(pid, fixed_img, moving_img, cache)
        t = time.perf_counter()
        final, note = coarse, "coarse failed"
        if coarse is not None:
            r = refine(prepare(fixed_img, "cf", cfg.working_side),
                       prepare(moving_img, "cf", cfg.working_side), coarse, "homography", cfg)
            final = r.matrix
            note = f"peaks={len(r.matches)} inliers={int(r.inliers.sum())} {r.reason}"
        times.append(time.perf_counter() - t)
        e0 = control_point_errors(coarse, gt[:, 2:], gt[:, :2]).mean
        e1 = control_point_errors(final, gt[:, 2:], gt[:, :2]).mean
        before.append(e0)
        after.append(e1)
        print(f"{pid} coarse {e0:7.2f}  refined {e1:7.2f}  {times[-1]:.1f}s  {note}", flush=True)
    if cache_path:
        np.savez(cache_path, **cache)
    print(f"pairs {len(args.pairs)}  AUC coarse {auc(before):.3f}  refined {auc(after):.3f}  "
          f"refine {np.mean(times):.2f} s/pair  config {cfg}")


if __name__ == "__main__":
    main()
