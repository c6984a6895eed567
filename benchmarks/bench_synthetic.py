"""Registration accuracy on unseen synthetic pairs, all four cross-modal modes, through the
real pipeline (prepare -> LoftrMatcher -> spatial binning -> USAC affine).

Each case (seeds from 10_100_000: never trained on, and apart from the training validation
seeds) gets a random moving-image warp: rotation uniform in [-90, 90] deg, scale log-uniform in
[0.85, 1.15], shift up to 10 % of the side, no flips. Success = mean corner error < 5 px at
512 x 512; the bar is >= 98 % success and median error <= 1.5 px.

``--scales`` sweeps fixed moving-image scales instead (each case at exactly that zoom, e.g.
0.5 ... 2): the scale range real pairs have, beyond the matcher's trained 0.85-1.15.

    python benchmarks/bench_synthetic.py --cases 25 --threads 2
    python benchmarks/bench_synthetic.py --cases 10 --scales 0.5 0.7 1 1.4 2
    python benchmarks/bench_synthetic.py --cases 10 --matcher fast --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
import torch

from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.core.matchers import Matcher, available_matchers, get_matcher
from retreg.core.metrics import mean_corner_error
from retreg.core.pipeline import RegistrationConfig, register
from retreg.core.types import Hypothesis
from retreg.training.augment import AugmentConfig, random_affine
from retreg.training.synth import render_case

SEED_START = 10_100_000
SUCCESS_PX = 5.0
MODES = {"cffa": ("cf", "fa"), "cfoct": ("cf", "oct"), "octfa": ("oct", "fa"),
         "cfocta": ("cf_clip", "octa")}
GEOMETRY = AugmentConfig(rotation_deg=90.0, scale_range=(0.85, 1.15), translate_frac=0.1,
                         hflip_p=0.0, vflip_p=0.0)


def run_case(matcher: Matcher, case: dict, mode: str, rng: np.random.Generator,
             config: RegistrationConfig, geometry: AugmentConfig = GEOMETRY
             ) -> tuple[float, float, Hypothesis]:
    """(mean corner error px, seconds, hypothesis) for one warped pair."""
    fixed_key, moving_key = MODES[mode]
    fixed, moving = case[fixed_key], case[moving_key]
    h, w = fixed.shape[:2]
    T = random_affine(rng, w, h, geometry)  # original moving pixel -> warped moving pixel
    warped = cv2.warpAffine(moving, T[:2], (w, h), flags=cv2.INTER_LINEAR)
    t = time.perf_counter()
    result = register(fixed, warped, mode, matcher=matcher, transform="affine", config=config)
    secs = time.perf_counter() - t
    err = mean_corner_error(result.matrix, np.linalg.inv(T), w, h)  # warped -> fixed
    return (err if np.isfinite(err) else float("inf")), secs, result.hypothesis


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=25, help="cases per mode")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--matcher", choices=available_matchers(), default="default")
    ap.add_argument("--weights", default=None, help="weights of a learned matcher (default: bundled)")
    ap.add_argument("--record", default=None, help="results file name (default: bench_synthetic, "
                                                   "+ _MATCHER for a matcher other than default)")
    ap.add_argument("--ransac-px", type=float, default=RegistrationConfig().ransac_threshold_px,
                    help="RANSAC threshold in working pixels (pipeline default)")
    ap.add_argument("--scales", type=float, nargs="+", metavar="S",
                    help="sweep these exact moving-image scales instead of the default range")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    matcher = get_matcher(args.matcher, weights=args.weights)
    config = RegistrationConfig(ransac_threshold_px=args.ransac_px)
    if args.scales:
        return sweep(matcher, config, args)
    rng = np.random.default_rng(SEED_START)
    errors: dict[str, list[float]] = {m: [] for m in MODES}
    times, rotated, shifted = [], 0, 0
    for k in range(args.cases):
        case = render_case(SEED_START + k, size=512)
        for mode in MODES:
            err, secs, hyp = run_case(matcher, case, mode, rng, config)
            errors[mode].append(err)
            times.append(secs)
            rotated += hyp.rotation_deg != 0
            shifted += any(hyp.shift_px)
    print(f"matcher: {args.matcher}; weights: {args.weights or 'bundled'}; {args.cases} cases per mode; RANSAC {args.ransac_px} "
          f"working px; threads {args.threads}")
    print(f"{'mode':8s} {'success':>8s} {'median px':>10s} {'p90 px':>8s}")
    for mode, errs in errors.items():
        e = np.asarray(errs)
        print(f"{mode:8s} {np.mean(e < SUCCESS_PX):8.1%} {np.median(e):10.2f} "
              f"{np.percentile(e, 90):8.2f}")
    allerr = np.concatenate([np.asarray(v) for v in errors.values()])
    print(f"{'all':8s} {np.mean(allerr < SUCCESS_PX):8.1%} {np.median(allerr):10.2f} "
          f"{np.percentile(allerr, 90):8.2f}")
    print(f"median register() time {1000 * statistics.median(times):.0f} ms; "
          f"pairs needing a rotation hypothesis: {rotated}/{len(allerr)}, "
          f"a shift hypothesis: {shifted}/{len(allerr)}")
    per_mode = {m: {"success": float(np.mean(np.asarray(e) < SUCCESS_PX)),
                    "median_px": float(np.median(e)), "p90_px": float(np.percentile(e, 90))}
                for m, e in errors.items()}
    save(args.record or "bench_synthetic" + ("" if args.matcher == "default" else f"_{args.matcher}"),
         vars(args), SEED_START, {
        "per_mode": per_mode, "success": float(np.mean(allerr < SUCCESS_PX)),
        "median_px": float(np.median(allerr)), "median_register_ms": 1000 * statistics.median(times),
        "rotation_hypotheses": f"{rotated}/{len(allerr)}",
        "shift_hypotheses": f"{shifted}/{len(allerr)}"})


def sweep(matcher: Matcher, config: RegistrationConfig, args) -> None:
    """Success and median error per mode at each exact scale of ``args.scales``."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    print(f"{'scale':>6s} " + " ".join(f"{m:>16s}" for m in MODES) + "   (success / median px)")
    for scale in args.scales:
        geometry = AugmentConfig(rotation_deg=90.0, scale_range=(scale, scale),
                                 translate_frac=0.1, hflip_p=0.0, vflip_p=0.0)
        rng = np.random.default_rng(SEED_START)
        errors: dict[str, list[float]] = {m: [] for m in MODES}
        for k in range(args.cases):
            case = render_case(SEED_START + k, size=512)
            for mode in MODES:
                errors[mode].append(run_case(matcher, case, mode, rng, config, geometry)[0])
        table[str(scale)] = {m: {"success": float(np.mean(np.asarray(e) < SUCCESS_PX)),
                                 "median_px": float(np.median(e))} for m, e in errors.items()}
        print(f"{scale:6.2f} " + " ".join(
            f"{100 * r['success']:7.0f}% {r['median_px']:7.2f}" for r in table[str(scale)].values()),
            flush=True)
    save("bench_synthetic_scales", vars(args), SEED_START, {"per_scale": table})


if __name__ == "__main__":
    main()
