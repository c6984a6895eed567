"""What the small training runs (``train-fusion``, ``train-fast``) share: how a run starts, its
config's fingerprint for the provenance record, and what it returns."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch

from retreg.training.config import RunConfig


def config_hash(cfg: RunConfig) -> str:
    """First 12 hex digits of the SHA-256 of the config as sorted JSON."""
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def start_run(cfg: RunConfig, max_minutes: float | None) -> Path:
    """Apply the time cap, the thread count and the seed; return the created ``out_dir``."""
    if max_minutes is not None:
        cfg.max_minutes = max_minutes
    torch.set_num_threads(cfg.torch_threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


@dataclass
class RunResult:
    out_dir: Path
    weights: Path | None  # None when stopped before the first step
    card: Path | None
    steps: int
    minutes: float
    metrics: dict[str, float]
    cancelled: bool = False  # stopped by the caller's ``cancel`` (the app's training panel)
