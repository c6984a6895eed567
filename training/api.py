"""``train(config, progress, cancel) -> TrainResult``: the one training entry point, used by
``retreg train`` and by the GUI (in a QThread: Lightning skips its signal handlers there)."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from torch.utils.data import ConcatDataset, DataLoader

from retreg.core.atomic import atomic_write_text
from retreg.core.cases import scan_cases
from retreg.core.matchers.loftr.weights import card_path, load_all, load_backbone, save_weights
from retreg.core.provenance import run_record
from retreg.training.callbacks import CurriculumScheduler, DelayedEarlyStopping, ProgressFn, ProgressReporter
from retreg.training.config import VALIDATION_SEED_START, TrainConfig
from retreg.training.datasets import AffinePairDataset, DiskSource, SynthSource
from retreg.training.module import LoftrLightning

MONITOR = ("val/mce_median_px512", "min")


@dataclass
class TrainResult:
    out_dir: Path
    weights: Path | None  # exported safetensors (None when stopped before the first step)
    card: Path | None
    steps: int
    epochs: int
    minutes: float
    metrics: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False


def _sources(cfg: TrainConfig) -> dict[str, object]:
    d = cfg.data
    if d.root is None:
        shared = SynthSource(d.seed_start, d.n_synth_cases, cache_limit=d.cache_limit)
        return {m: shared for m in d.modes}
    return {m: DiskSource(scan_cases(d.root, m)[0]) for m in d.modes}


def build_train_dataset(cfg: TrainConfig) -> ConcatDataset:
    """All modes mixed; every index has its own random warp, so the dataset is sized to the
    whole run (no pair is seen twice with the same augmentation)."""
    d = cfg.data
    per_mode = cfg.max_epochs * cfg.steps_per_epoch * d.batch_size // len(d.modes) + 1
    return ConcatDataset([
        AffinePairDataset(src, m, size=d.size, channels=cfg.model.channels,
                          aug=cfg.augment(m), length=per_mode, seed=cfg.seed * 1000 + k,
                          cache_limit=d.cache_limit)
        for k, (m, src) in enumerate(_sources(cfg).items())])


def build_val_items(cfg: TrainConfig) -> list[dict]:
    """Fixed held-out synthetic pairs (seeds >= VALIDATION_SEED_START), rendered once."""
    d = cfg.data
    n = d.val_pairs_per_mode
    source = SynthSource(VALIDATION_SEED_START, n, cache_limit=n)
    items = []
    for k, m in enumerate(d.modes):
        ds = AffinePairDataset(source, m, size=d.size, channels=cfg.model.channels,
                               aug=cfg.augment(m), length=n, seed=VALIDATION_SEED_START + k)
        items.extend(ds[i] for i in range(n))
    return items


def _loggers(cfg: TrainConfig, out_dir: Path) -> list[Logger]:
    """CSV always (the GUI and tools/plot_training.py read it); TensorBoard on request."""
    loggers: list[Logger] = [CSVLogger(out_dir, name="logs")]
    if cfg.tensorboard:
        if importlib.util.find_spec("tensorboard") is None and \
                importlib.util.find_spec("tensorboardX") is None:
            raise ValueError("tensorboard: true needs TensorBoard's writer: "
                             "pip install 'retreg[tensorboard]' (or set tensorboard: false)")
        loggers.append(TensorBoardLogger(out_dir, name="tb"))
    return loggers


def _card(cfg: TrainConfig, trainer: pl.Trainer, metrics: dict, minutes: float,
          n_cases: int) -> dict:
    d = cfg.data
    data = ({"kind": "pre-rendered synthetic cases", "root": d.root, "cases": n_cases} if d.root else
            {"kind": "synthetic, rendered on the fly", "seeds": [d.seed_start,
                                                                 d.seed_start + d.n_synth_cases - 1]})
    return {
        "format": "retreg-loftr-card", "version": 1, "name": cfg.name,
        "training": {"data": {**data, "modes": d.modes, "size": d.size,
                              "batch_size": d.batch_size},
                     "steps": trainer.global_step, "epochs": trainer.current_epoch,
                     "minutes": round(minutes, 1), "devices": trainer.num_devices},
        "validation": {"pairs": f"{d.val_pairs_per_mode} per mode, synthetic seeds >= "
                                f"{VALIDATION_SEED_START}", "metrics": metrics},
        "provenance": run_record(cfg.to_dict(), cfg.seed),
    }


def train(config: TrainConfig | dict | str | Path, progress: ProgressFn | None = None,
          cancel: Callable[[], bool] | None = None, *, devices: int = 1, strategy: str = "auto",
          resume: str | Path | None = None, max_minutes: float | None = None,
          progress_bar: bool = False) -> TrainResult:
    """Train, checkpoint under ``out_dir`` (resumable with ``resume``), then export the weights
    (safetensors + card) and a ``run.json`` provenance record."""
    cfg = TrainConfig.load(config)
    if max_minutes is not None:
        cfg.max_minutes = max_minutes
    torch.set_num_threads(cfg.torch_threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    module = LoftrLightning(cfg)
    if cfg.init_weights:
        load_all(module.model, cfg.init_weights)
    elif cfg.init_backbone:
        load_backbone(module.model, cfg.init_backbone)
    d = cfg.data
    train_set = build_train_dataset(cfg)
    n_cases = max(len(ds.source) for ds in train_set.datasets)
    train_loader = DataLoader(train_set, batch_size=d.batch_size, shuffle=True,
                              num_workers=d.num_workers, persistent_workers=d.num_workers > 0,
                              drop_last=True)
    val_loader = DataLoader(build_val_items(cfg), batch_size=d.batch_size, num_workers=0)
    total = cfg.max_epochs * cfg.steps_per_epoch
    callbacks = [CurriculumScheduler(cfg.curriculum),
                 DelayedEarlyStopping(cfg.early_stop_start_epoch, cfg.early_stop_patience, *MONITOR),
                 ModelCheckpoint(dirpath=out_dir / "checkpoints", monitor=MONITOR[0],
                                 mode=MONITOR[1], save_top_k=1),
                 # last.ckpt after every epoch (the monitored checkpoint's save_last is only
                 # written when validation improves, so a resume would lose epochs)
                 ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="last", save_top_k=1,
                                 every_n_epochs=1, enable_version_counter=False),
                 LearningRateMonitor(logging_interval="step"),
                 ProgressReporter(total, progress, cancel)]
    trainer = pl.Trainer(
        accelerator="cpu" if not torch.cuda.is_available() else "auto", devices=devices,
        strategy=strategy, max_epochs=cfg.max_epochs, limit_train_batches=cfg.steps_per_epoch,
        check_val_every_n_epoch=cfg.val_every_epochs, num_sanity_val_steps=0,
        max_time=dt.timedelta(minutes=cfg.max_minutes) if cfg.max_minutes else None,
        gradient_clip_val=cfg.optim.grad_clip, logger=_loggers(cfg, out_dir),
        callbacks=callbacks, enable_progress_bar=progress_bar,
        log_every_n_steps=max(1, min(5, cfg.steps_per_epoch)),
        default_root_dir=out_dir)
    start = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume, weights_only=True)
    cancelled = bool(cancel is not None and cancel())
    if trainer.world_size == 1 and trainer.global_step > 0:
        trainer.validate(module, val_loader, verbose=False)
    minutes = (time.perf_counter() - start) / 60
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    weights = card_file = None
    if trainer.is_global_zero:
        atomic_write_text(out_dir / "run.json", json.dumps(
            {**run_record(cfg.to_dict(), cfg.seed), "steps": trainer.global_step,
             "epochs": trainer.current_epoch, "minutes": minutes, "metrics": metrics},
            indent=2, default=str))
        if trainer.global_step > 0:
            weights = save_weights(module.model, cfg.export or out_dir / f"{cfg.name}.safetensors",
                                   _card(cfg, trainer, metrics, minutes, n_cases))
            card_file = card_path(weights)
    return TrainResult(out_dir, weights, card_file, trainer.global_step, trainer.current_epoch,
                       minutes, metrics, cancelled)
