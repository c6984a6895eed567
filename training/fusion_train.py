"""``train_fusion(config) -> RunResult``: self-supervised training of the fusion-mask net
(``core.fusion_net``) on aligned pairs (``training.fusion_data``) with the losses of
``training.fusion_losses``; used by ``retreg train-fusion``. Lightning, like the matcher's
training: seed, CSV logs, checkpoints (best by validation loss, and last), then safetensors +
card + run.json with the provenance record."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from retreg.core.atomic import atomic_write_text
from retreg.core.fusion_net import FusionNet, FusionNetConfig, save_fusion_net
from retreg.core.weights_file import card_path
from retreg.core.provenance import run_record
from retreg.training.config import RunConfig
from retreg.training.fusion_data import (FusionCrops, FusionDataConfig, fire_pairs,
                                         fire_training_ids, synthetic_pairs, whole_pairs)
from retreg.training.fusion_losses import FusionLossConfig, detail_ratio, fusion_loss, pyramid_blend
from retreg.training.module import warmup_cosine
from retreg.training.runs import RunResult, checkpoints, config_hash, small_trainer, start_run

MONITOR = ("val/loss", "min")


@dataclass
class FusionTrainConfig(RunConfig):
    name: str = "retreg_fusion"
    out_dir: str = "runs/retreg_fusion"
    max_epochs: int = 40
    steps_per_epoch: int = 50
    torch_threads: int = 1
    val_every_epochs: int = 5
    model: FusionNetConfig = field(default_factory=FusionNetConfig)
    data: FusionDataConfig = field(default_factory=FusionDataConfig)
    loss: FusionLossConfig = field(default_factory=FusionLossConfig)


class FusionLightning(pl.LightningModule):
    def __init__(self, config: FusionTrainConfig) -> None:
        super().__init__()
        self.config = config
        self.model = FusionNet(config.model)

    def _terms(self, batch: dict) -> tuple[dict, torch.Tensor]:
        ab, valid = batch["ab"], batch["valid"]
        m = self.model(ab)
        return fusion_loss(ab[:, :1], ab[:, 1:], m, valid, self.config.loss), m

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms, _ = self._terms(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()},
                      batch_size=batch["ab"].shape[0])
        return terms["total"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        terms, m = self._terms(batch)
        ab, valid = batch["ab"], batch["valid"]
        fused = pyramid_blend(ab[:, :1], ab[:, 1:], m)
        self.log_dict({"val/loss": terms["total"], "val/grad": terms["grad"],
                       "val/lowfreq": terms["lowfreq"],
                       "val/detail": detail_ratio(fused, ab[:, :1], ab[:, 1:], valid)},
                      batch_size=1, prog_bar=True)

    def configure_optimizers(self):
        o, total = self.config.optim, self.config.max_epochs * self.config.steps_per_epoch
        opt = torch.optim.AdamW(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        return warmup_cosine(opt, o.warmup_steps, total)


def train_fusion(config: FusionTrainConfig | dict | str | Path, *,
                 max_minutes: float | None = None) -> RunResult:
    """Train, checkpoint under ``out_dir``, export the weights (``export`` or
    ``out_dir/<name>.safetensors``) with a card, and write ``run.json``."""
    cfg = FusionTrainConfig.load(config)
    out_dir = start_run(cfg, max_minutes)
    d = cfg.data
    # The record is taken now: the code as it was when the run started, not when it ended.
    record = {**run_record(cfg.to_dict(), cfg.seed), "config_hash": config_hash(cfg)}
    start = time.perf_counter()
    synth = synthetic_pairs(d.synth_seed_start, d.synth_cases, d.synth_size)
    fire_root = Path(d.fire_root) if d.fire_root else None
    have_fire = fire_root is not None and (fire_root / "data").is_dir()
    real = fire_pairs(fire_root, d.fire_side) if have_fire else []
    total = cfg.max_epochs * cfg.steps_per_epoch
    train_set = FusionCrops(synth, real, d.crop, d.real_fraction, total * d.batch_size, cfg.seed)
    val = whole_pairs(synthetic_pairs(d.val_seed_start, d.val_cases, d.synth_size))
    module = FusionLightning(cfg)
    trainer = small_trainer(cfg, out_dir, checkpoints(out_dir, MONITOR), cfg.val_every_epochs)
    trainer.fit(module, DataLoader(train_set, batch_size=d.batch_size, shuffle=False,
                                   num_workers=0, drop_last=True), DataLoader(val, batch_size=None))
    if trainer.global_step > 0:
        trainer.validate(module, DataLoader(val, batch_size=None), verbose=False)
    minutes = (time.perf_counter() - start) / 60
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    data = {"synthetic": {"seeds": [d.synth_seed_start, d.synth_seed_start + d.synth_cases - 1],
                          "pairs": len(synth), "size": d.synth_size,
                          "kinds": ["cf+fa", "cf+oct", "cf_clip+octa"]},
            "fire_p": ({"pairs": [f"P{k}" for k in fire_training_ids(fire_root)],
                        "side": d.fire_side, "warp": "homography fitted to the ground truth",
                        "left_out": "P10-P19 (fusion benchmark), P37 (wrong ground truth)"}
                       if have_fire else None),
            "validation": {"seeds": [d.val_seed_start, d.val_seed_start + d.val_cases - 1]}}
    atomic_write_text(out_dir / "run.json", json.dumps(
        {**record, "steps": trainer.global_step, "minutes": minutes, "metrics": metrics,
         "data": data}, indent=2, default=str))
    weights = None
    if trainer.global_step > 0:
        card = {"format": "retreg-fusion-card", "version": 1, "name": cfg.name,
                "parameters": sum(p.numel() for p in module.model.parameters()),
                "training": {"data": data, "steps": trainer.global_step,
                             "epochs": trainer.current_epoch, "minutes": round(minutes, 1),
                             "crop": d.crop, "batch_size": d.batch_size},
                "validation": {"metrics": metrics}, "provenance": record}
        weights = save_fusion_net(module.model, cfg.export or out_dir / f"{cfg.name}.safetensors",
                                  card)
    return RunResult(out_dir, weights, card_path(weights) if weights else None,
                             trainer.global_step, minutes, metrics)
