"""Speed of the SuperRetina-style matcher beside the LoFTR and fast ones: ``match()`` (network +
detection + matching, preparation excluded) on the bundled sample pair prepared with a 512 px
field of view (a 512² pair) and at each matcher's own working side (what ``register`` feeds
it), median of ``--repeats`` after two warm-up runs, the fixed image's cache cleared each time.

    OMP_NUM_THREADS=1 python benchmarks/bench_superretina_speed.py --threads 1
"""
from __future__ import annotations

import argparse

import torch

from bench_fast_speed import match_ms
from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.core.io import read_image
from retreg.core.matchers import get_matcher
from retreg.core.modality import prepare
from retreg.resources import sample_pair


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--weights", default=None, help="superretina weights (default: bundled)")
    ap.add_argument("--matchers", nargs="+", default=["superretina", "fast", "loftr"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    f_path, m_path = sample_pair()
    f_img, m_img = read_image(f_path), read_image(m_path)
    results = {}
    for name in args.matchers:
        matcher = get_matcher(name, weights=args.weights if name == "superretina" else None)
        for label, side in (("512", 512), ("working", matcher.working_side)):
            fixed, moving = prepare(f_img, "cf", side), prepare(m_img, "fa", side)
            ms, n = match_ms(matcher, fixed, moving, args.repeats)
            results[f"{name}_{label}"] = {"ms": ms, "matches": n,
                                          "work_size": list(fixed.work.shape)}
    print(f"torch threads {args.threads}; match() on the sample pair, median ms")
    for k, v in results.items():
        print(f"{k:24s} {v['ms']:8.1f} ms  {v['matches']:5d} matches  work {v['work_size']}")
    save(f"bench_superretina_speed_t{args.threads}", vars(args), None, results)


if __name__ == "__main__":
    main()
