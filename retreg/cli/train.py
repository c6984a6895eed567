"""`retreg train --config FILE [--devices N] [--strategy ddp] [--resume CKPT] [--max-minutes M]`:
train the LoFTR-style matcher (training/api.py), with checkpoints, CSV logs and a progress bar,
then export safetensors + card."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train the learned cross-modal matcher from a YAML config")
    p.add_argument("--config", required=True, type=Path, help="YAML file (training/configs/)")
    p.add_argument("--devices", type=int, default=1, help="processes / accelerators (default 1)")
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (default auto)")
    p.add_argument("--resume", type=Path, default=None, help="Lightning checkpoint to resume from")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes (overrides the config's max_minutes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log files only)")
    p.set_defaults(func=run)


def run(args) -> int:
    from retreg.training.api import train  # torch and Lightning load only when training

    if args.devices < 1:
        raise ValueError(f"--devices must be >= 1, got {args.devices}")
    if args.resume is not None and not args.resume.is_file():
        raise FileNotFoundError(f"{args.resume}: checkpoint does not exist")
    result = train(args.config, devices=args.devices, strategy=args.strategy,
                   resume=args.resume, max_minutes=args.max_minutes,
                   progress_bar=not args.no_progress)
    print_trained(result)
    return 0


def print_trained(result) -> None:
    """One line on a finished training run (nothing when it exported no weights)."""
    if result.weights is not None:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items())
                            if k.startswith("val/"))
        print(f"trained {result.steps} steps ({result.minutes:.1f} min); weights: {result.weights}; "
              f"card: {result.card}; {metrics}")
