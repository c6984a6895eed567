"""What the small training runs (``train-fusion``, ``train-fast``, ``train-superretina``) share:
how a run starts, its config's fingerprint for the provenance record, its Lightning trainer and
checkpoints, and what it returns."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

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


def checkpoints(out_dir: Path, monitor: tuple[str, str] | None = None) -> list[ModelCheckpoint]:
    """The run's ``last`` checkpoint (what ``resume`` reads), and the best by ``monitor``
    ((metric, "min" | "max")) when given, in ``out_dir / "checkpoints"``."""
    ckpt_dir = out_dir / "checkpoints"
    best = [] if monitor is None else [ModelCheckpoint(dirpath=ckpt_dir, monitor=monitor[0],
                                                       mode=monitor[1], save_top_k=1)]
    return best + [ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1,
                                   every_n_epochs=1, enable_version_counter=False)]


def small_trainer(cfg: RunConfig, out_dir: Path, callbacks: list[Callback], val_every: int,
                  log_every: int = 10, **trainer_args) -> pl.Trainer:
    """A CPU trainer for ``cfg``'s epochs, steps per epoch and time cap, gradient clipping and
    validation every ``val_every`` epochs, CSV logs under ``out_dir``; ``trainer_args`` go to
    ``pl.Trainer`` as they are (``devices``, ``strategy``; one device unless given)."""
    trainer_args.setdefault("devices", 1)
    return pl.Trainer(
        accelerator="cpu", max_epochs=cfg.max_epochs, limit_train_batches=cfg.steps_per_epoch,
        check_val_every_n_epoch=val_every, num_sanity_val_steps=0,
        max_time=dt.timedelta(minutes=cfg.max_minutes) if cfg.max_minutes else None,
        gradient_clip_val=cfg.optim.grad_clip, logger=CSVLogger(out_dir, name="logs"),
        callbacks=callbacks, enable_progress_bar=False,
        log_every_n_steps=min(log_every, cfg.steps_per_epoch), enable_model_summary=False,
        default_root_dir=out_dir, **trainer_args)


@dataclass
class RunResult:
    out_dir: Path
    weights: Path | None  # None when stopped before the first step
    card: Path | None
    steps: int
    minutes: float
    metrics: dict[str, float]
    cancelled: bool = False  # stopped by the caller's ``cancel`` (the app's training panel)
