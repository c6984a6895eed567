"""`retreg train-fusion --config FILE [--max-minutes M]`: train the fusion-mask net of the
learned fused view (training/fusion_train.py), then export safetensors + card + run.json."""
from __future__ import annotations

from pathlib import Path

from retreg.cli.train import print_trained


def add_parser(sub) -> None:
    p = sub.add_parser("train-fusion", help="train the learned fused view's mask net from a YAML "
                                            "config (training/configs/fusion_v1.yaml)")
    p.add_argument("--config", required=True, type=Path, help="YAML file (training/configs/)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes (overrides the config's max_minutes)")
    p.set_defaults(func=run)


def run(args) -> int:
    from retreg.training.fusion_train import train_fusion  # torch and Lightning load only here

    print_trained(train_fusion(args.config, max_minutes=args.max_minutes))
    return 0
