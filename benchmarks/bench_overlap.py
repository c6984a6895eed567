"""Registration of synthetic pairs whose fields overlap little, as in FIRE's category P, through
the real pipeline: a development yardstick that needs no real test data.

Both images of a pair are views of one synthetic eye (seeds from 10_200_000: never trained on,
apart from the other benchmarks' and the training validation seeds) the way a fundus camera
sees a retina that moved: the retina is shifted by half of a random offset for the fixed image
and by the other half the opposite way (then turned by up to +-10 deg and zoomed by 0.95-1.05)
for the moving image, and both are seen through the camera's unmoved round field of view. The
synthetic retina ends at its own field of view, so the part of the camera's field it no longer
covers shows a plain fundus (the retina's median colour, no vessels): the field of view, and with
it the working scale, stay those of a real camera. The offset is 25-60 % of the side in a random
direction. Success = mean corner error < 5 px at 512 x 512; results are also given per overlap
bin (share of the retina seen in the fixed image that the moving image also shows).

    python benchmarks/bench_overlap.py --cases 20 --threads 2 --matcher loftr classical
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from retreg.core.matchers import DEFAULT_WEIGHTS, get_matcher
from retreg.core.metrics import mean_corner_error
from retreg.core.pipeline import RegistrationConfig, register
from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.training.synth import render_case

SEED_START = 10_200_000
SUCCESS_PX = 5.0
MODES = {"cfcf": ("cf", "cf"), "cffa": ("cf", "fa")}
OFFSET_FRAC = (0.25, 0.6)  # of the side
ROTATION_DEG = 10.0
SCALE = (0.95, 1.05)
BINS = ((0.0, 0.6), (0.6, 0.7), (0.7, 1.01))


def pair_geometry(rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, A): case pixel -> fixed pixel, case pixel -> moving pixel."""
    angle = rng.uniform(0, 2 * np.pi)
    d = rng.uniform(*OFFSET_FRAC) * side * np.array([np.cos(angle), np.sin(angle)])
    c = (side - 1) / 2.0
    theta = np.deg2rad(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    s = float(np.exp(rng.uniform(*np.log(SCALE))))
    R = s * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    S = np.array([[1, 0, -d[0] / 2], [0, 1, -d[1] / 2], [0, 0, 1.0]])
    A = np.eye(3)
    A[:2, :2] = R
    A[:2, 2] = d / 2 + c - R @ [c, c]
    return S, A


def seen(img: np.ndarray, fov: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The camera's view (field of view ``fov``) of the case's retina moved by ``M``: the image,
    plain fundus where the moved retina does not reach and black outside the field, and the
    part of the field that shows retina."""
    h, w = fov.shape
    moved = cv2.warpAffine(img, M[:2], (w, h), flags=cv2.INTER_LINEAR)
    retina = cv2.warpAffine(fov.astype(np.uint8), M[:2], (w, h), flags=cv2.INTER_NEAREST) > 0
    plain = np.median(img[fov], axis=0).astype(img.dtype)
    out = np.where(retina[..., None] if img.ndim == 3 else retina, moved, plain)
    out[~fov] = 0
    return out, retina & fov


def overlap(f: np.ndarray, m: np.ndarray, S: np.ndarray, A: np.ndarray) -> float:
    """Share of the fixed field of view ``f`` that the moving field of view ``m`` also shows."""
    h, w = f.shape
    back = cv2.warpAffine(m.astype(np.uint8), (S @ np.linalg.inv(A))[:2], (w, h),
                          flags=cv2.INTER_NEAREST) > 0
    return float((f & back).sum() / max(1, f.sum()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20, help="cases per mode")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--matcher", nargs="+", default=["loftr", "classical"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    matchers = {n: get_matcher(n, weights=args.weights if n == "loftr" else None)
                for n in args.matcher}
    rows = []  # (matcher, mode, overlap, error)
    for k in range(args.cases):
        case = render_case(SEED_START + k, size=512)
        for mode, (fixed_key, moving_key) in MODES.items():
            rng = np.random.default_rng([SEED_START, k, list(MODES).index(mode)])
            S, A = pair_geometry(rng, 512)
            fixed, f = seen(case[fixed_key], case["fov"], S)
            moving, m = seen(case[moving_key], case["fov"], A)
            share = overlap(f, m, S, A)
            for name, matcher in matchers.items():
                result = register(fixed, moving, mode, matcher=matcher, transform="affine",
                                  config=RegistrationConfig())
                err = mean_corner_error(result.matrix, S @ np.linalg.inv(A), 512, 512)
                rows.append((name, mode, share, err if np.isfinite(err) else float("inf")))
    print(f"weights: {args.weights}; {args.cases} cases per mode; threads {args.threads}")
    header = "".join(f"  ov {lo:.2f}-{min(hi, 1):.2f}" for lo, hi in BINS)
    print(f"{'matcher':10s} {'mode':6s} {'success':>8s} {'median px':>10s}{header}")
    results = {}
    for name in matchers:
        for mode in [*MODES, "all"]:
            sel = [r for r in rows if r[0] == name and mode in (r[1], "all")]
            e = np.array([r[3] for r in sel])
            ov = np.array([r[2] for r in sel])
            in_bin = [(ov >= lo) & (ov < hi) for lo, hi in BINS]
            per_bin = [np.mean(e[b] < SUCCESS_PX) if b.any() else float("nan") for b in in_bin]
            bins_txt = "".join(f"  {r:6.0%} ({int(b.sum()):2d})" for r, b in zip(per_bin, in_bin))
            print(f"{name:10s} {mode:6s} {np.mean(e < SUCCESS_PX):8.1%} {np.median(e):10.2f}"
                  f"{bins_txt}")
            results[f"{name}/{mode}"] = {
                "success": float(np.mean(e < SUCCESS_PX)), "median_px": float(np.median(e)),
                "success_per_overlap_bin": {f"{lo:.2f}-{min(hi, 1):.2f}": b
                                            for b, (lo, hi) in zip(per_bin, BINS)}}
    save("bench_overlap", vars(args), SEED_START, results)


if __name__ == "__main__":
    main()
