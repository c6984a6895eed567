"""Ablation of the fast matcher's structural distillation: trains the three variants
(``loss.distill`` = none / vessels / teacher) with one equal, short schedule from one base
config, then prints one table: synthetic success rate and median corner error per mode on
unseen synthetic cases (``bench_synthetic``'s seeds 10,100,000+ and warps, through the whole
pipeline: hypothesis search, binning, USAC affine, refinement) and the network + matching time
per 512 x 512 pair (one thread). ``--with-loftr`` adds the bundled LoFTR model as a reference
row on the same cases. Records config hashes, seed, git commit and package versions
(``record.save``).

    OMP_NUM_THREADS=1 python benchmarks/ablation_fast.py --steps 250 --cases 6 --with-loftr
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from bench_synthetic import MODES, SEED_START, SUCCESS_PX, run_case
from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.core.matchers import get_matcher
from retreg.core.matchers.fast import FastMatcher
from retreg.core.matchers.keypoints import mutual_nearest
from retreg.core.pipeline import RegistrationConfig
from retreg.training.fast_train import DISTILL, FastTrainConfig, config_hash, train_fast
from retreg.training.synth import render_case

ROOT = Path(__file__).resolve().parent.parent


def pair_ms(matcher: FastMatcher, side: int = 512, repeats: int = 10) -> float:
    """Median ms of network (both images) + top-K + mutual NN on a side x side pair, through the
    matcher's own inference path."""
    cfg = matcher.config
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, len(cfg.channels), side, side, generator=g)
    x1 = torch.rand(1, len(cfg.channels), side, side, generator=g)
    times = []
    for k in range(repeats + 2):
        t = time.perf_counter()
        mutual_nearest(matcher.detect(x0, None), matcher.detect(x1, None), cfg.temperature,
                       cfg.ratio, cfg.min_confidence)
        if k >= 2:  # two warm-up passes
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def evaluate(matcher, cases: int) -> dict:
    """Per mode: success (< 5 px mean corner error at 512) and median error; median register ms."""
    rng = np.random.default_rng(SEED_START)
    config = RegistrationConfig()
    errors: dict[str, list[float]] = {m: [] for m in MODES}
    secs = []
    for k in range(cases):
        case = render_case(SEED_START + k, size=512)
        for mode in MODES:
            err, s, _ = run_case(matcher, case, mode, rng, config)
            errors[mode].append(err)
            secs.append(s)
    out = {m: {"success": float(np.mean(np.asarray(e) < SUCCESS_PX)),
               "median_px": float(np.median(e))} for m, e in errors.items()}
    allerr = np.concatenate([np.asarray(e) for e in errors.values()])
    out["all"] = {"success": float(np.mean(allerr < SUCCESS_PX)),
                  "median_px": float(np.median(allerr))}
    out["register_ms"] = 1000 * statistics.median(secs)
    return out


def variant_config(base: dict, distill: str, steps: int, out: Path) -> FastTrainConfig:
    cfg = dict(base)
    name = f"fast_ablation_{distill}"
    cfg.update(name=name, out_dir=str(out / name), export=str(out / name / f"{name}.safetensors"),
               max_epochs=max(1, steps // 50), steps_per_epoch=min(50, steps), max_minutes=None,
               val_every_epochs=max(1, steps // 50))
    cfg["loss"] = {**base.get("loss", {}), "distill": distill}
    return FastTrainConfig.from_dict(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "training/configs/fast_v1.yaml",
                    help="base config; only loss.distill and the schedule change per variant")
    ap.add_argument("--steps", type=int, default=250, help="training steps of every variant")
    ap.add_argument("--cases", type=int, default=6, help="unseen synthetic cases per mode")
    ap.add_argument("--variants", nargs="+", choices=DISTILL, default=list(DISTILL))
    ap.add_argument("--out", type=Path, default=ROOT / "runs/ablation_fast")
    ap.add_argument("--reuse", action="store_true",
                    help="evaluate weights already in --out instead of training again")
    ap.add_argument("--with-loftr", action="store_true", help="add the bundled LoFTR model")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    rows, hashes = {}, {}
    for distill in args.variants:
        cfg = variant_config(base, distill, args.steps, args.out)
        hashes[distill] = config_hash(cfg)
        weights = Path(cfg.export)
        t = time.perf_counter()
        if not (args.reuse and weights.is_file()):
            result = train_fast(cfg)
            weights = result.weights
        train_min = (time.perf_counter() - t) / 60
        matcher = FastMatcher.from_weights(weights)
        rows[distill] = {**evaluate(matcher, args.cases), "ms_512_pair": pair_ms(matcher),
                         "train_minutes": train_min, "config_hash": hashes[distill]}
        print(f"{distill}: {rows[distill]['all']}", flush=True)
    if args.with_loftr:
        rows["loftr (default)"] = {**evaluate(get_matcher("loftr"), args.cases),
                                   "ms_512_pair": float("nan"), "train_minutes": float("nan")}
    head = "".join(f"{m:>14s}" for m in MODES)
    print(f"\n{args.steps} steps per variant; {args.cases} unseen synthetic cases per mode "
          f"(seeds {SEED_START}+); success = mean corner error < {SUCCESS_PX:g} px at 512; "
          f"one torch thread")
    print(f"{'distill':16s}{head}{'all':>14s}{'ms/512² pair':>14s}{'register ms':>13s}")
    for name, r in rows.items():
        cells = "".join(f"{100 * r[m]['success']:6.0f}% {r[m]['median_px']:6.2f}"
                        for m in (*MODES, "all"))
        print(f"{name:16s}{cells}{r['ms_512_pair']:14.1f}{r['register_ms']:13.0f}")
    print("(each cell: success %, median corner error px)")
    save("ablation_fast", {"base_config": base, "config_file": str(args.config),
                           "steps": args.steps, "cases_per_mode": args.cases,
                           "config_hashes": hashes},
         base.get("seed", 0), rows)


if __name__ == "__main__":
    main()
