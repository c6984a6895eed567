"""`retreg train-fast --config FILE [--max-minutes M] [--resume CKPT]`: train the fast structural
matcher (training/fast_train.py), then export safetensors + card + run.json."""
from __future__ import annotations

from pathlib import Path

from retreg.cli.train import print_trained


def add_parser(sub) -> None:
    p = sub.add_parser("train-fast", help="train the fast structural matcher from a YAML config "
                                          "(training/configs/fast_v1.yaml)")
    p.add_argument("--config", required=True, type=Path, help="YAML file (training/configs/)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes (overrides the config's max_minutes)")
    p.add_argument("--resume", type=Path, default=None, help="Lightning checkpoint to resume")
    p.set_defaults(func=run)


def run(args) -> int:
    from retreg.training.fast_train import train_fast  # torch and Lightning load only here

    print_trained(train_fast(args.config, max_minutes=args.max_minutes, resume=args.resume))
    return 0
