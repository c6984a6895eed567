"""Matching defaults of trained SuperRetina-style weights (``det_threshold``, ``ratio``), chosen on
held-out VALIDATION cases (seeds 10,000,000+: never trained on, and apart from the benchmark
seeds 10,100,000+) through the whole pipeline, with ``bench_synthetic``'s warps (rotation ±90°,
scale 0.85-1.15, shift 10 %) in all four cross-modal modes. The setting with the most successes
(then the lowest median error) is written back into the weights file's config with ``--write``.
Records every setting.

    OMP_NUM_THREADS=1 python benchmarks/calibrate_superretina.py WEIGHTS --cases 3 --write
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from bench_synthetic import MODES, SUCCESS_PX, run_case
from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.core.matchers.superretina import SuperRetinaMatcher
from retreg.core.matchers.superretina.weights import card_path, load_model, save_weights
from retreg.core.pipeline import RegistrationConfig
from retreg.training.config import VALIDATION_SEED_START
from retreg.training.synth import render_case


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("--cases", type=int, default=3, help="validation cases per mode")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.1, 0.03])
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.9])
    ap.add_argument("--write", action="store_true", help="store the best setting in WEIGHTS")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases = [render_case(VALIDATION_SEED_START + k, size=512) for k in range(args.cases)]
    model = load_model(args.weights)
    rows = {}
    for thr in args.thresholds:
        for ratio in args.ratios:
            model.config = dataclasses.replace(model.config, det_threshold=thr, ratio=ratio)
            matcher = SuperRetinaMatcher(model)
            rng = np.random.default_rng(VALIDATION_SEED_START)
            err = np.array([run_case(matcher, case, mode, rng, RegistrationConfig())[0]
                            for case in cases for mode in MODES])
            r = rows[f"det_threshold={thr} ratio={ratio}"] = {
                "det_threshold": thr, "ratio": ratio, "pairs": len(err),
                "success": float(np.mean(err < SUCCESS_PX)), "median_px": float(np.median(err))}
            print(f"det_threshold {thr:5.2f} ratio {ratio:4.2f}: success "
                  f"{100 * r['success']:5.1f} %, median {r['median_px']:.2f} px", flush=True)
    best = min(rows.values(), key=lambda r: (-r["success"], r["median_px"]))
    print(f"best: det_threshold {best['det_threshold']}, ratio {best['ratio']}")
    if args.write:
        model.config = dataclasses.replace(model.config, det_threshold=best["det_threshold"],
                                           ratio=best["ratio"])
        card_file = card_path(args.weights)
        card = json.loads(card_file.read_text()) if card_file.is_file() else {}
        card.pop("architecture", None)
        card["matching_calibration"] = {
            "seeds": [VALIDATION_SEED_START, VALIDATION_SEED_START + args.cases - 1],
            "chosen": best, "script": "benchmarks/calibrate_superretina.py"}
        save_weights(model, args.weights, card)
    save(f"calibrate_superretina_{args.weights.stem}",
         {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
         VALIDATION_SEED_START, {"settings": rows, "best": best})


if __name__ == "__main__":
    main()
