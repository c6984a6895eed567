"""Peer benchmark: PyPI ``retinalysis-registration`` (rtnls_registration) on FIRE category P.

This is a PEER, never a dependency of retreg: it runs in its own venv and does not import retreg.
Create that venv once (from the repository root):

    python -m venv ../rl_venv && ../rl_venv/bin/pip install retinalysis-registration

Usage (from the repository root, single-threaded):

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        ../rl_venv/bin/python benchmarks/peers/retinalysis_fire.py \
        --out benchmarks/results/peer_retinalysis_fire.json [--pairs P10 P11] [--fire DIR]

API used (read from rtnls_registration 1.0.0 source):
  * ``Registration()(image0, image1)`` matches SIFT keypoints of image0 (query) against image1 and
    returns a transform T whose ``T.apply(pts)`` maps full-resolution (x, y) pixels of image0 into
    image1 (its own evaluation does ``transform.apply(query_points)`` vs ``refer_points``).
    We therefore call ``Registration()(moving=Pk_2, fixed=Pk_1)`` and map the moving control points
    with ``T.apply``: no inversion needed.
  * On success with >= 20 refined matches T is
    ``CompositeTransform([ProjectiveTransform(H @ M0), Polynomial2DTransform, ProjectiveTransform(inv(M1))])``
    (M0/M1: the package's full-res -> 512 crop matrices, H: refined homography in crop space,
    the polynomial: a quadratic residual correction). "quadratic" = ``T.apply``; "homography" =
    the same chain without the polynomial, i.e. ``inv(M1) @ H @ M0`` = ``T.transforms[2].M @
    T.transforms[0].M``. With < 20 refined matches no quadratic is fitted and T is one
    ProjectiveTransform: both rows then use it (recorded as ``quadratic_fitted: false``).
  * Failure: ``run()`` catches the base-transform exception and returns
    ``ProjectiveTransform(np.eye(3))`` -- NOT composed with the crop matrices, so a successful
    result is never exactly eye(3). We count a pair as failed iff the returned object is a
    ProjectiveTransform whose M equals eye(3) exactly (cross-checked: a fresh ``Registration``
    instance only gets ``base_transform`` when the RANSAC stage succeeded), or if the call raises.
  * Images are read with the package's own ``open_image`` (PIL, RGB order; its mask uses the red
    channel, its features the green one).

Protocol (FIRE): pair error = mean L2 distance of mapped moving points to the fixed points; failed
pairs count as inf; inaccurate = max > 50 px or median > 20 px; AUC = mean over t = 1..25 px of the
share of pairs with mean error < t. P37 is excluded (wrong ground truth) -> 39 pairs.
OpenCV ignores OMP_NUM_THREADS (pthreads backend), so ``cv2.setNumThreads`` is set from --cv-threads.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata as md
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FIRE = ROOT.parent / "shared" / "data" / "FIRE_P"
ALL_PAIRS = [f"P{k:02d}" for k in range(10, 50) if k != 37]  # P37's ground truth is wrong
METHODS = ("quadratic", "homography")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def load_gt(fire: Path, pid: str) -> tuple[np.ndarray, np.ndarray]:
    gt = np.loadtxt(fire / "Ground_Truth" / f"control_points_{pid}_1_2.txt", ndmin=2)
    return gt[:, 0:2], gt[:, 2:4]  # fixed (Pk_1), moving (Pk_2)


def errors(mapped: np.ndarray, fixed: np.ndarray) -> dict:
    d = np.linalg.norm(mapped - fixed, axis=1)
    return {"mean": float(d.mean()), "median": float(np.median(d)), "max": float(d.max())}


def is_identity_failure(t, reg) -> bool:
    from rtnls_registration.transformation import ProjectiveTransform
    ident = isinstance(t, ProjectiveTransform) and np.array_equal(t.M, np.eye(3))
    if ident and hasattr(reg, "base_transform"):
        print("  warning: exact identity returned although RANSAC stage succeeded", flush=True)
    return ident


def split_transform(t):
    """Return (quadratic_map, homography_map, quadratic_fitted) as point-mapping callables."""
    from rtnls_registration.transformation import (CompositeTransform, Polynomial2DTransform,
                                                   ProjectiveTransform)
    if isinstance(t, ProjectiveTransform):
        return t.apply, t.apply, False
    ts = t.transforms if isinstance(t, CompositeTransform) else []
    if (len(ts) == 3 and isinstance(ts[0], ProjectiveTransform)
            and isinstance(ts[1], Polynomial2DTransform) and isinstance(ts[2], ProjectiveTransform)):
        H = ProjectiveTransform(ts[2].M @ ts[0].M)
        return t.apply, H.apply, True
    raise RuntimeError(f"unexpected transform structure: {t!r}")


def run_pair(fire: Path, pid: str) -> dict:
    from rtnls_registration import Registration, open_image
    fixed_img = open_image(fire / "data" / f"{pid}_1.jpg")
    moving_img = open_image(fire / "data" / f"{pid}_2.jpg")
    fixed_pts, moving_pts = load_gt(fire, pid)
    rec = {"pair": pid, "n_points": int(len(fixed_pts)),
           "identity_error": errors(moving_pts, fixed_pts)}
    reg = Registration()  # fresh instance per pair (default parameters)
    t0 = time.perf_counter()
    try:
        t = reg(moving_img, fixed_img)  # maps moving (Pk_2) -> fixed (Pk_1)
        exc = None
    except Exception as e:  # noqa: BLE001 - a crash is a failure for this benchmark
        t, exc = None, f"{type(e).__name__}: {e}"
    rec["seconds"] = time.perf_counter() - t0
    rec["stage_seconds"] = dict(reg.stats.times)
    rec["exception"] = exc
    failed = t is None or is_identity_failure(t, reg)
    rec["failed"] = failed
    rec["identity_returned"] = t is not None and failed
    rec["n_final_matches"] = len(getattr(reg, "final_matches", []) or [])
    if failed:
        rec["quadratic_fitted"] = False
        for m in METHODS:
            rec[m] = None
        return rec
    quad, homog, fitted = split_transform(t)
    rec["quadratic_fitted"] = fitted
    rec["transform"] = t.to_dict()
    rec["quadratic"] = errors(quad(moving_pts), fixed_pts)
    rec["homography"] = errors(homog(moving_pts), fixed_pts)
    return rec


def summarize(records: list[dict], method: str) -> dict:
    n = len(records)
    means, n_fail, n_inacc = [], 0, 0
    for r in records:
        e = r[method]
        if e is None:
            n_fail += 1
            means.append(np.inf)
            continue
        means.append(e["mean"])
        if e["max"] > 50 or e["median"] > 20:
            n_inacc += 1
    means = np.asarray(means, dtype=float)
    auc = float(np.mean([np.mean(means < t) for t in range(1, 26)])) if n else float("nan")
    return {"method": method, "n": n, "failed_pct": 100 * n_fail / n,
            "inaccurate_pct": 100 * n_inacc / n,
            "acceptable_pct": 100 * (n - n_fail - n_inacc) / n, "auc": auc,
            "median_mean_error": float(np.median(means)),
            "median_seconds": float(np.median([r["seconds"] for r in records]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fire", type=Path, default=DEFAULT_FIRE)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results"
                    / "peer_retinalysis_fire.json")
    ap.add_argument("--pairs", nargs="*", default=ALL_PAIRS)
    ap.add_argument("--cv-threads", type=int, default=1, help="cv2.setNumThreads (default 1)")
    args = ap.parse_args()
    cv2.setNumThreads(args.cv_threads)

    records = []
    for pid in args.pairs:
        r = run_pair(args.fire, pid)
        records.append(r)
        q, h = r["quadratic"], r["homography"]
        print(f"{pid}: {r['seconds']:6.2f} s  "
              + ("FAILED (identity)" if r["identity_returned"] else
                 f"FAILED ({r['exception']})" if r["failed"] else
                 f"quad mean {q['mean']:7.2f} med {q['median']:6.2f} max {q['max']:7.2f} | "
                 f"homog mean {h['mean']:7.2f} med {h['median']:6.2f} max {h['max']:7.2f}"
                 + ("" if r["quadratic_fitted"] else "  (no quadratic fitted)")), flush=True)

    summary = [summarize(records, m) for m in METHODS]
    print(f"\n{'method':<26}{'n':>4}{'failed%':>9}{'inacc%':>8}{'accept%':>9}{'AUC':>7}"
          f"{'med err':>9}{'med s/pair':>11}")
    for s in summary:
        print(f"{'retinalysis ' + s['method']:<26}{s['n']:>4}{s['failed_pct']:>9.1f}"
              f"{s['inaccurate_pct']:>8.1f}{s['acceptable_pct']:>9.1f}{s['auc']:>7.3f}"
              f"{s['median_mean_error']:>9.2f}{s['median_seconds']:>11.2f}")

    out = {
        "benchmark": "peer retinalysis-registration on FIRE category P",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": [sys.executable, *sys.argv],
        "python": sys.version,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "thread_env": {k: os.environ.get(k) for k in THREAD_VARS},
        "cv2_num_threads": cv2.getNumThreads(),
        "versions": {d: _version(d) for d in ("retinalysis-registration", "retinalysis-fundusprep",
                                              "numpy", "opencv-python-headless",
                                              "opencv-python", "scikit-learn", "scikit-image",
                                              "scipy")},
        "cv2_version": cv2.__version__,
        "fire_dir": str(args.fire),
        "registration_call": "Registration()(moving=Pk_2, fixed=Pk_1); T.apply(moving_pts) -> fixed",
        "failure_detection": "returned ProjectiveTransform with M == eye(3) exactly, or exception",
        "summary": summary,
        "pairs": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"recorded in {args.out}")


if __name__ == "__main__":
    main()
