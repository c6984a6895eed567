"""`retreg finetune`: fine-tune a trained matcher on exported real annotated pairs, report the
held-out FIRE-protocol table before and after, export safetensors + card."""
from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

DEFAULT_CONFIG = Path(str(files("retreg.training").joinpath("configs", "finetune_default.yaml")))


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune the matcher on real annotated pairs",
                       description="Computes H from each pair's annotated points, trains on "
                                   "hybrid real + synthetic batches and keeps the weights that "
                                   "register the held-out pairs best.")
    p.add_argument("--annotations", type=Path, required=True, metavar="DIR",
                   help="real-pair export folder (manifest.json + one folder per pair)")
    p.add_argument("--from", dest="init_weights", type=Path, required=True, metavar="WEIGHTS",
                   help="safetensors weights to start from")
    p.add_argument("--out", type=Path, required=True, metavar="WEIGHTS",
                   help="output safetensors (a .card.json is written beside it)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="YAML",
                   help="fine-tuning config (default: training/configs/finetune_default.yaml)")
    p.add_argument("--max-minutes", type=float, metavar="M", help="wall-clock limit")
    p.set_defaults(func=run)


def _print_progress(step: int, total: int, metrics: dict) -> None:
    if step % 20 == 0 or step == total:
        loss = metrics.get("train/loss")
        print(f"step {step}/{total}" + (f"  loss {loss:.3f}" if loss is not None else ""),
              file=sys.stderr, flush=True)


def run(args) -> int:
    from retreg.training.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig.load(args.config)
    cfg.annotations, cfg.init_weights, cfg.export = (str(args.annotations),
                                                     str(args.init_weights), str(args.out))
    if args.max_minutes is not None:
        if args.max_minutes <= 0:
            raise ValueError(f"--max-minutes must be positive, got {args.max_minutes}")
        cfg.max_minutes = args.max_minutes
    res = finetune(cfg, progress=_print_progress)
    for pair_id, reason in res.rejected:
        print(f"rejected {pair_id}: {reason}")
    print(f"pairs: {len(res.train_pairs)} train, {len(res.heldout_pairs)} held out "
          f"({', '.join(res.heldout_pairs)})")
    print("held-out BEFORE fine-tuning\n" + res.before.table)
    print(f"held-out AFTER fine-tuning (best of {len(res.history) - 1} checks, step "
          f"{res.best_step} of {res.steps})\n" + res.after.table)
    print(f"capped mean error: {res.before.score:.2f} -> {res.after.score:.2f} px"
          + ("" if res.improved else "  (no improvement: the starting weights were kept)"))
    if res.weights is None:
        print("no training step ran; nothing exported")
        return 1
    print(f"wrote {res.weights} and {res.card} ({res.minutes:.1f} min)")
    return 0
