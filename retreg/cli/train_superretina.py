"""`retreg train-superretina --config FILE [--max-minutes M] [--resume CKPT] [--devices N
--strategy ddp]`: train the
SuperRetina-style matcher in phases (training/superretina_train.py), then export safetensors +
card + run.json (and one weights file per phase end)."""
from __future__ import annotations

from pathlib import Path

from retreg.cli.train import print_trained


def add_parser(sub) -> None:
    p = sub.add_parser("train-superretina",
                       help="train the SuperRetina-style matcher from a YAML config "
                            "(training/configs/superretina_v1.yaml; phase 4: "
                            "superretina_v1_phase4.yaml)")
    p.add_argument("--config", required=True, type=Path, help="YAML file (training/configs/)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes (overrides the config's max_minutes)")
    p.add_argument("--resume", type=Path, default=None, help="Lightning checkpoint to resume")
    p.add_argument("--devices", type=int, default=1, help="processes / accelerators (default 1)")
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (default auto)")
    p.set_defaults(func=run)


def run(args) -> int:
    from retreg.training.superretina_train import train_superretina  # torch + Lightning load here

    if args.devices < 1:
        raise ValueError(f"--devices must be >= 1, got {args.devices}")
    print_trained(train_superretina(args.config, max_minutes=args.max_minutes, resume=args.resume,
                                    devices=args.devices, strategy=args.strategy))
    return 0
