"""Speed of the fast matcher: network + top-K + mutual NN per pair of 512 x 512 inputs (and at
its working size), and ``match()`` of the fast and the LoFTR matcher on the bundled sample pair
prepared at each one's working side (network and matching only; preparation excluded).

    OMP_NUM_THREADS=1 python benchmarks/bench_fast_speed.py --threads 1
    python benchmarks/bench_fast_speed.py --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ablation_fast import pair_ms
from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.core.io import read_image
from retreg.core.matchers import get_matcher
from retreg.core.modality import prepare
from retreg.resources import sample_pair


def match_ms(matcher, fixed, moving, repeats: int) -> tuple[float, int]:
    times, n = [], 0
    for k in range(repeats + 2):
        t = time.perf_counter()
        if hasattr(matcher, "_fixed"):
            matcher._fixed = None  # time both images, not the cached fixed keypoints
        n = len(matcher.match(fixed, moving))
        if k >= 2:
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--weights", default=None, help="fast matcher weights (default: bundled)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fast = get_matcher("fast", weights=args.weights)
    results = {"net_match_512_pair_ms": pair_ms(fast, 512, args.repeats),
               "net_match_working_pair_ms": pair_ms(fast, 320, args.repeats)}
    f_path, m_path = sample_pair()
    f_img, m_img = read_image(f_path), read_image(m_path)
    for name in ("fast", "loftr"):
        matcher = fast if name == "fast" else get_matcher("loftr")
        fixed = prepare(f_img, "cf", matcher.working_side)
        moving = prepare(m_img, "fa", matcher.working_side)
        ms, n = match_ms(matcher, fixed, moving, args.repeats)
        results[f"{name}_match_sample_ms"], results[f"{name}_matches"] = ms, n
        results[f"{name}_work_size"] = list(fixed.work.shape)
    print(f"torch threads {args.threads}")
    for k, v in results.items():
        print(f"{k:28s} {v:.1f}" if isinstance(v, float) else f"{k:28s} {v}")
    save(f"bench_fast_speed_t{args.threads}", vars(args), None, results)


if __name__ == "__main__":
    main()
