"""Speed of the learned matcher on one 512x512 cross-modal pair, on CPU.

Times (median of --repeats after one warm-up):
- ``model + RANSAC``: the hypothesis search (LoftrMatcher.match) on prepared images + spatial
  binning + USAC affine
  (what a registration costs once images are prepared);
- ``register()``: the whole pipeline including preprocessing and vessel maps;
- kornia's LoFTR (random weights, no download) on the same 512x512 gray pair, for scale.

    python benchmarks/bench_speed.py --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict

import numpy as np
import torch

from retreg.core.estimation import estimate
from retreg.core.hypotheses import search
from retreg.core.matchers import DEFAULT_WEIGHTS
from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.core.matchers.loftr import LoftrConfig, LoftrMatcher, RetRegLoFTR
from retreg.core.modality import prepare
from retreg.core.pipeline import register
from retreg.core.selection import spatial_binning
from retreg.training.config import VALIDATION_SEED_START
from retreg.training.synth import render_case


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def _pair(seed: int, angle: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    case = render_case(seed, size=512)
    M = cv2.getRotationMatrix2D((255.5, 255.5), angle, 1.0)
    return case["cf"], cv2.warpAffine(case["fa"], M, (512, 512))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        matcher = LoftrMatcher.from_weights(args.weights)
        source = args.weights
    except Exception as exc:  # noqa: BLE001 - speed does not depend on the weights' values
        matcher = LoftrMatcher(RetRegLoFTR(LoftrConfig()))
        source = f"random weights ({exc})"
    fixed_img, moving_img = _pair(VALIDATION_SEED_START + 777)
    fixed = prepare(fixed_img, "cf", matcher.working_side)
    moving = prepare(moving_img, "fa", matcher.working_side)

    def model_and_ransac():
        m, _ = search(matcher, fixed, moving)
        keep = spatial_binning(m, (512, 512))
        estimate(m.kpts_moving[keep], m.kpts_fixed[keep], "affine", threshold_px=6.0)

    ours = _median_ms(model_and_ransac, args.repeats)
    hyp = search(matcher, fixed, moving)[1]
    full = _median_ms(lambda: register(fixed_img, moving_img, "cffa", matcher=matcher),
                      args.repeats)
    from kornia.feature import LoFTR

    kornia_loftr = LoFTR(pretrained=None).eval()
    g0 = torch.rand(1, 1, 512, 512)
    g1 = torch.rand(1, 1, 512, 512)
    with torch.no_grad():
        theirs = _median_ms(lambda: kornia_loftr({"image0": g0, "image1": g1}),
                            max(3, args.repeats // 3))
    print(f"threads={args.threads}  weights: {source}")
    print(f"work image: fixed {fixed.work.shape[::-1]}, moving {moving.work.shape[::-1]}; "
          f"hypotheses used: {hyp}")
    print(f"ours: model + RANSAC        {ours:8.1f} ms (median of {args.repeats})")
    print(f"ours: register() end-to-end {full:8.1f} ms")
    print(f"kornia LoFTR, random weights {theirs:7.1f} ms at 512x512")
    print(f"speed-up (kornia / ours model+RANSAC): {theirs / ours:.1f}x")
    save("bench_speed", {**vars(args), "weights_used": source}, VALIDATION_SEED_START + 777,
         {"model_ransac_ms": ours, "register_ms": full, "kornia_loftr_ms": theirs,
          "speedup": theirs / ours, "hypotheses": asdict(hyp)})


if __name__ == "__main__":
    main()
