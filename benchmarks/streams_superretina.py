"""Shared encoder or two streams for the SuperRetina-style matcher: trains ``model.streams`` = 1
and 2 from one base config with the same short phase-1 schedule (the warm-up: descriptor +
fixed detector), then prints the held-out synthetic validation of each (all four cross-modal
modes, CF / OCT fixed vs FA / OCT / OCTA moving): descriptor nearest-neighbour accuracy at the
true junctions, junction recall of the fixed detector, and success / median corner error of
the network's own affine fit. Records config hashes, seed, git commit and package versions.

    OMP_NUM_THREADS=1 python benchmarks/streams_superretina.py --steps 160
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.core.matchers.superretina.weights import load_model
from retreg.training.runs import config_hash
from retreg.training.superretina_train import SuperRetinaTrainConfig, train_superretina

ROOT = Path(__file__).resolve().parent.parent
SHOWN = ("val/gt_nn_correct", "val/det_recall", "val/success", "val/mce_median_px512",
         "val/des", "val/det")


def variant(base: dict, streams: int, steps: int, cases: int, out: Path) -> SuperRetinaTrainConfig:
    cfg = dict(base)
    name = f"superretina_streams{streams}"
    epochs = max(1, steps // 40)
    cfg.update(name=name, out_dir=str(out / name), export=str(out / name / f"{name}.safetensors"),
               max_epochs=epochs, steps_per_epoch=min(40, steps), max_minutes=None,
               val_every_epochs=epochs)
    cfg["model"] = {**base["model"], "streams": streams}
    cfg["data"] = {**base["data"], "n_synth_cases": cases}
    cfg["phases"] = {**base["phases"], "schedule": [[1, epochs]]}
    return SuperRetinaTrainConfig.from_dict(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "training/configs/superretina_v1.yaml")
    ap.add_argument("--steps", type=int, default=160)
    ap.add_argument("--cases", type=int, default=60, help="synthetic training cases")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/streams_superretina")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    rows = {}
    for streams in (1, 2):
        cfg = variant(base, streams, args.steps, args.cases, args.out)
        t = time.perf_counter()
        result = train_superretina(cfg)
        rows[f"streams={streams}"] = {
            **{k: result.metrics.get(k, float("nan")) for k in SHOWN},
            "parameters": sum(p.numel() for p in load_model(result.weights).parameters()),
            "train_minutes": (time.perf_counter() - t) / 60, "config_hash": config_hash(cfg)}
        print(f"streams={streams}: {rows[f'streams={streams}']}", flush=True)
    print(f"\n{args.steps} phase-1 steps each; validation: 16 held-out synthetic pairs")
    print(f"{'variant':12s}" + "".join(f"{k.split('/')[1]:>20s}" for k in SHOWN))
    for name, r in rows.items():
        print(f"{name:12s}" + "".join(f"{r[k]:20.3f}" for k in SHOWN))
    save("streams_superretina", {"base_config": base, "steps": args.steps, "cases": args.cases},
         base.get("seed", 0), rows)


if __name__ == "__main__":
    main()
