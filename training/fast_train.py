"""``train_fast(config) -> RunResult``: the fast structural matcher (``core.matchers.fast``)
on synthetic aligned pairs with known transforms; used by ``retreg train-fast``.

Losses, all on the 1/8 grid of the shared encoder:
- descriptor: dual-softmax log-likelihood of the true cell pairs (``training.supervision``'s
  ``gt_j``, through the true transform ``T_0to1``), as the LoFTR model's coarse loss;
- reliability: binary cross-entropy towards "this cell's nearest descriptor in the other image
  is its true partner" (matchability, recomputed every step, no gradient through the target),
  only on cells that have a partner;
- keypoint: XFeat's 65-way cell classification towards the vessel junction inside the cell
  (``kpts0`` / ``kpts1``), class 64 = none;
- structural distillation of the mid-level features (``loss.distill``): ``none``; ``vessels``,
  a small head regresses the vessel mask at 1/2 resolution from them; ``teacher``, a 1x1
  adapter per side maps them onto the frozen LoFTR model's coarse backbone features (cosine).
The distillation heads are training-only: the exported weights hold the ``FastNet`` alone.

Augmentation: the LoFTR training's random affine (``training.augment``; rotation, scale, shift,
photometry), then the moving side turned by a random multiple of 90 degrees.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from retreg.core.atomic import atomic_write_text
from retreg.core.geometry import map_points
from retreg.core.hypotheses import coarse_fit
from retreg.core.matchers.fast.model import (DUSTBIN, STRIDE, FastConfig, FastNet, FastOutput,
                                             detect)
from retreg.core.matchers.keypoints import mutual_nearest
from retreg.core.matchers.fast.weights import card_path, save_weights
from retreg.core.metrics import mean_corner_error
from retreg.core.provenance import run_record
from retreg.core.types import Matches
from retreg.training.augment import AugmentConfig
from retreg.training.config import (CROSS_MODAL_MODES, VALIDATION_SEED_START, RunConfig,
                                    augment_for, check_augment, check_modes)
from retreg.training.datasets import AffinePairDataset, SynthSource
from retreg.training.module import RANSAC_THRESHOLD_PX, SUCCESS_PX_AT_512, warmup_cosine
from retreg.training.runs import RunResult, checkpoints, config_hash, small_trainer, start_run
from retreg.training.supervision import coarse_fine_gt

DISTILL = ("none", "vessels", "teacher")
MONITOR = ("val/loss", "min")


@dataclass
class FastDataConfig:
    """Synthetic cases rendered on the fly from seeds ``seed_start`` .. + ``n_synth_cases`` - 1
    (each rendered once and kept); validation pairs from the held-out seeds
    ``VALIDATION_SEED_START`` + ..."""

    modes: list[str] = field(default_factory=lambda: list(CROSS_MODAL_MODES))
    n_synth_cases: int = 160
    seed_start: int = 0
    size: int = 320
    batch_size: int = 8
    val_pairs_per_mode: int = 4
    rot90_p: float = 0.5  # chance that the moving side is turned by 90, 180 or 270 degrees
    aug: dict = field(default_factory=dict)  # overrides of training.augment.AugmentConfig
    aug_by_mode: dict = field(default_factory=dict)  # mode -> overrides on top of ``aug``

    def __post_init__(self) -> None:
        if not self.modes:
            raise ValueError("modes: none given")
        check_modes("modes", self.modes)
        check_augment(self.aug, self.aug_by_mode, self.modes)
        if self.size % 32 or self.size < 64:
            raise ValueError(f"size must be a multiple of 32 and >= 64, got {self.size}")
        if not 0 <= self.rot90_p <= 1 or self.n_synth_cases < 1 or self.batch_size < 1:
            raise ValueError("rot90_p in [0, 1], n_synth_cases >= 1 and batch_size >= 1 required")

    def augment(self, mode: str) -> AugmentConfig:
        return augment_for(self.aug, self.aug_by_mode, mode)


@dataclass
class FastLossConfig:
    distill: str = "vessels"  # none | vessels | teacher
    distill_weight: float = 1.0
    teacher_weights: str | None = None  # LoFTR safetensors; None: the bundled model
    reliability_weight: float = 1.0
    keypoint_weight: float = 0.5
    dustbin_weight: float = 0.2  # weight of "no junction" cells in the keypoint loss

    def __post_init__(self) -> None:
        if self.distill not in DISTILL:
            raise ValueError(f"distill must be one of {DISTILL}, got {self.distill!r}")
        if min(self.distill_weight, self.reliability_weight, self.keypoint_weight,
               self.dustbin_weight) < 0:
            raise ValueError("loss weights must be >= 0")


@dataclass
class FastTrainConfig(RunConfig):
    name: str = "retreg_fast"
    out_dir: str = "runs/retreg_fast"
    max_epochs: int = 20
    steps_per_epoch: int = 50
    torch_threads: int = 1
    val_every_epochs: int = 5
    model: FastConfig = field(default_factory=FastConfig)
    data: FastDataConfig = field(default_factory=FastDataConfig)
    loss: FastLossConfig = field(default_factory=FastLossConfig)


# ------------------------------------------------------------------------------------ data
def rot90_matrix(k: int, size: int) -> np.ndarray:
    """3x3 pixel map of ``np.rot90(a, k)`` on a size x size image: (x, y) -> (y, size-1-x)."""
    R = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, size - 1.0], [0.0, 0.0, 1.0]])
    return np.linalg.matrix_power(R, k % 4)


class Rot90Pairs(Dataset):
    """``AffinePairDataset`` items whose moving side is turned by k x 90 degrees with
    probability ``p`` (k in 1..3, seeded by the item), labels recomputed through the new
    ``T_0to1``."""

    def __init__(self, base: AffinePairDataset, p: float, seed: int):
        self.base, self.p, self.seed = base, p, seed

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        item = self.base[index]
        rng = np.random.default_rng([self.seed, self.base.epoch, index, 90])
        if rng.random() >= self.p:
            return item
        k, size = int(rng.integers(1, 4)), item["mask1"].shape[0]
        R = rot90_matrix(k, size)
        T = (R @ item["T_0to1"].astype(np.float64))
        item["image1"] = np.ascontiguousarray(np.rot90(item["image1"], k, axes=(1, 2)))
        for key in ("mask1", "vessel1"):
            item[key] = np.ascontiguousarray(np.rot90(item[key], k))
        item["kpts1"] = np.where(item["kpts_valid"][:, None],
                                 map_points(R, item["kpts1"].astype(np.float64)), 0
                                 ).astype(np.float32)
        item["T_0to1"] = T.astype(np.float32)
        item["gt_j"], item["gt_xy1"] = coarse_fine_gt(T, item["mask0"], item["mask1"], STRIDE)
        return item


def _pairs(cfg: FastTrainConfig, source: SynthSource, length: int, seed: int, aug_override=None):
    d = cfg.data
    parts = []
    for k, mode in enumerate(d.modes):
        base = AffinePairDataset(source, mode, size=d.size, channels=cfg.model.channels,
                                 aug=aug_override or d.augment(mode), length=length,
                                 seed=seed + k, cache_limit=d.n_synth_cases)
        parts.append(Rot90Pairs(base, d.rot90_p, seed + k))
    return ConcatDataset(parts)


_KEEP = ("image0", "image1", "mask0", "mask1", "vessel0", "vessel1", "T_0to1", "gt_j",
         "kpts0", "kpts1", "kpts_valid")


def _collate(items: list[dict]) -> dict:
    return {k: torch.as_tensor(np.stack([it[k] for it in items])) for k in _KEEP}


# ---------------------------------------------------------------------------------- losses
def _cells(mask: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool -> (B, h, w) bool: cells mostly inside the mask."""
    return F.avg_pool2d(mask[:, None].float(), STRIDE)[:, 0] > 0.5


def keypoint_targets(kpts: torch.Tensor, valid: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) long: the junction's pixel (row-major within its 8x8 cell) or DUSTBIN."""
    b, (h, w) = kpts.shape[0], hw
    target = torch.full((b, h * w), DUSTBIN, dtype=torch.long, device=kpts.device)
    px = torch.round(kpts).long()
    ok = valid & (px[..., 0] >= 0) & (px[..., 0] < w * STRIDE) & (px[..., 1] >= 0) \
        & (px[..., 1] < h * STRIDE)
    bi, ki = torch.nonzero(ok, as_tuple=True)
    x, y = px[bi, ki, 0], px[bi, ki, 1]
    target[bi, (y // STRIDE) * w + x // STRIDE] = (y % STRIDE) * STRIDE + x % STRIDE
    return target.view(b, h, w)


def descriptor_terms(o0: FastOutput, o1: FastOutput, gt_j: torch.Tensor, temperature: float
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dual-softmax NLL of the true pairs, nearest-is-true targets of image0 / image1 cells,
    cells of image1 that have a partner)."""
    b = gt_j.shape[0]
    d0, d1 = o0.desc.flatten(2), o1.desc.flatten(2)
    sim = torch.einsum("bdl,bds->bls", d0, d1) / temperature
    valid = gt_j >= 0
    j = gt_j.clamp(min=0)
    picked = lambda logp: logp.gather(2, j[..., None])[..., 0]  # noqa: E731
    nll = -(picked(sim.log_softmax(2)) + picked(sim.log_softmax(1)))
    loss = nll[valid].mean() if valid.any() else sim.sum() * 0
    with torch.no_grad():
        right0 = (sim.argmax(2) == gt_j) & valid
        gt_i = torch.full((b, sim.shape[2]), -1, dtype=torch.long, device=gt_j.device)
        bi, li = torch.nonzero(valid, as_tuple=True)
        gt_i[bi, gt_j[bi, li]] = li
        has1 = gt_i >= 0
        right1 = (sim.argmax(1) == gt_i) & has1
    return loss, right0, right1, has1


def _keypoint_loss(out: FastOutput, kpts, valid, cells, dustbin_weight: float) -> torch.Tensor:
    target = keypoint_targets(kpts, valid, out.keypoint.shape[-2:])
    ce = F.cross_entropy(out.keypoint, target, reduction="none")
    weight = torch.where(target == DUSTBIN, dustbin_weight, 1.0) * cells
    return (ce * weight).sum() / weight.sum().clamp(min=1)


class VesselHead(nn.Module):
    """Mid-level features (1/8) -> vessel-mask logits at 1/2 resolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(32, 16, 1), nn.PixelShuffle(4))

    def forward(self, mid: torch.Tensor) -> torch.Tensor:
        return self.net(mid)


def load_teacher(path: str | None) -> nn.Module:
    """The frozen LoFTR model whose coarse backbone features the ``teacher`` variant distils."""
    from retreg.core.matchers.loftr.weights import load_model
    from retreg.resources import bundled_weights

    teacher = load_model(path or bundled_weights())
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


# ------------------------------------------------------------------------------- lightning
class FastLightning(pl.LightningModule):
    def __init__(self, config: FastTrainConfig) -> None:
        super().__init__()
        self.config = config
        self.model = FastNet(config.model)
        mid = config.model.widths[1]
        self.vessel_head = VesselHead(mid) if config.loss.distill == "vessels" else None
        self._teacher: list[nn.Module] = []  # a list: not a submodule (kept frozen, in eval)
        if config.loss.distill == "teacher":
            teacher = load_teacher(config.loss.teacher_weights)
            if tuple(teacher.config.channels) != tuple(config.model.channels):
                raise ValueError(f"the teacher takes {teacher.config.channels}, the student "
                                 f"{config.model.channels}: they must see the same input")
            dim = teacher.config.block_dims[2]
            self.adapters = nn.ModuleList([nn.Conv2d(mid, dim, 1), nn.Conv2d(mid, dim, 1)])
            self._teacher.append(teacher)
        self._val_errors: list[float] = []

    def _distill(self, outs, batch) -> torch.Tensor:
        kind = self.config.loss.distill
        if kind == "none":
            return torch.zeros((), device=outs[0].mid.device)
        terms = []
        for side, out in enumerate(outs):
            mask = batch[f"mask{side}"]
            if kind == "vessels":
                logits = self.vessel_head(out.mid)
                target = F.avg_pool2d(batch[f"vessel{side}"][:, None].float(), 2)
                keep = F.avg_pool2d(mask[:, None].float(), 2) > 0.5
                bce = F.binary_cross_entropy_with_logits(logits, target.clamp(0, 1),
                                                         reduction="none")
                terms.append(bce[keep].mean() if keep.any() else bce.sum() * 0)
            else:
                teacher = self._teacher[0]
                with torch.no_grad():
                    image = batch[f"image{side}"]
                    feats = (teacher.backbone.forward_fixed(image) if side == 0
                             else teacher.backbone.forward_moving(image)).coarse
                cos = F.cosine_similarity(self.adapters[side](out.mid), feats, dim=1)
                keep = _cells(mask)
                terms.append((1 - cos)[keep].mean() if keep.any() else cos.sum() * 0)
        return sum(terms) / len(terms)

    def _terms(self, batch: dict) -> dict[str, torch.Tensor]:
        c, lc = self.config.model, self.config.loss
        o0, o1 = self.model(batch["image0"]), self.model(batch["image1"])
        desc, right0, right1, has1 = descriptor_terms(o0, o1, batch["gt_j"], c.temperature)
        has0 = batch["gt_j"] >= 0
        rel = []
        for out, right, has in ((o0, right0, has0), (o1, right1, has1)):
            logit = out.reliability.flatten(1)
            bce = F.binary_cross_entropy_with_logits(logit, right.float(), reduction="none")
            rel.append(bce[has].mean() if has.any() else logit.sum() * 0)
        kp = (_keypoint_loss(o0, batch["kpts0"], batch["kpts_valid"], _cells(batch["mask0"]),
                             lc.dustbin_weight)
              + _keypoint_loss(o1, batch["kpts1"], batch["kpts_valid"], _cells(batch["mask1"]),
                               lc.dustbin_weight)) / 2
        distill = self._distill((o0, o1), batch)
        reliability = (rel[0] + rel[1]) / 2
        total = (desc + lc.reliability_weight * reliability + lc.keypoint_weight * kp
                 + lc.distill_weight * distill)
        hit = right0[has0].float().mean() if has0.any() else torch.zeros(())
        return {"loss": total, "desc": desc, "reliability": reliability, "keypoint": kp,
                "distill": distill, "nn_correct": hit}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self._terms(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()},
                      batch_size=batch["image0"].shape[0], prog_bar=False)
        return terms["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        terms = self._terms(batch)
        self.log_dict({"val/loss": terms["loss"], "val/nn_correct": terms["nn_correct"],
                       "val/distill": terms["distill"]}, batch_size=batch["image0"].shape[0])
        for k in range(batch["image0"].shape[0]):
            H = register_pair(self.model, batch["image0"][k], batch["image1"][k],
                              batch["mask0"][k], batch["mask1"][k])
            h, w = batch["image0"].shape[2:]
            H_gt = np.linalg.inv(batch["T_0to1"][k].double().cpu().numpy())
            err = mean_corner_error(H, H_gt, w, h) * (512.0 / max(h, w))
            self._val_errors.append(err if math.isfinite(err) else float("inf"))

    def on_validation_epoch_end(self) -> None:
        errors = np.asarray(self._val_errors or [np.inf])
        self._val_errors = []
        self.log_dict({"val/success": float(np.mean(errors < SUCCESS_PX_AT_512)),
                       "val/mce_median_px512": min(float(np.median(errors)), 1e4)})

    def configure_optimizers(self):
        o, total = self.config.optim, self.config.max_epochs * self.config.steps_per_epoch
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        return warmup_cosine(opt, o.warmup_steps, total)


@torch.no_grad()
def register_pair(model: FastNet, image0: torch.Tensor, image1: torch.Tensor,
                  mask0: torch.Tensor, mask1: torch.Tensor) -> np.ndarray | None:
    """3x3 image1 -> image0 matrix (input pixels) from one (C, H, W) pair, or None."""
    was = model.training
    model.eval()
    o0, o1 = model(image0[None]), model(image1[None])
    model.train(was)
    k0 = detect(o0, mask0[None], model.config)
    k1 = detect(o1, mask1[None], model.config)
    c = model.config
    m = mutual_nearest(k0, k1, c.temperature, c.ratio, c.min_confidence)
    matches = Matches(k0.xy[m.i].cpu().numpy(), k1.xy[m.j].cpu().numpy(), m.conf.cpu().numpy())
    h, w = image0.shape[1:]
    return coarse_fit(matches, (w, h), RANSAC_THRESHOLD_PX).model


# ----------------------------------------------------------------------------------- train
def train_fast(config: FastTrainConfig | dict | str | Path, *, max_minutes: float | None = None,
               resume: str | Path | None = None) -> RunResult:
    """Train, checkpoint under ``out_dir`` (best by validation loss, and last; ``resume`` from
    one), export the weights (``export`` or ``out_dir/<name>.safetensors``) with a card, and
    write ``run.json`` (config, config hash, seed, git commit, package versions, metrics)."""
    cfg = FastTrainConfig.load(config)
    out_dir = start_run(cfg, max_minutes)
    d = cfg.data
    # The record is taken now: the code as it was when the run started.
    record = {**run_record(cfg.to_dict(), cfg.seed), "config_hash": config_hash(cfg)}
    start = time.perf_counter()
    total = cfg.max_epochs * cfg.steps_per_epoch
    source = SynthSource(d.seed_start, d.n_synth_cases, cache_limit=d.n_synth_cases)
    train_set = _pairs(cfg, source, total * d.batch_size // len(d.modes) + 1, cfg.seed * 1000)
    n_val = d.val_pairs_per_mode
    val_source = SynthSource(VALIDATION_SEED_START, n_val, cache_limit=n_val)
    val_set = _pairs(cfg, val_source, n_val, VALIDATION_SEED_START)
    val = [val_set[i] for i in range(len(val_set))]  # rendered once
    module = FastLightning(cfg)
    if cfg.init_weights:  # a new stage from exported weights (fresh optimiser and schedule)
        from retreg.core.matchers.fast.weights import load_model

        start_from = load_model(cfg.init_weights)
        if start_from.config != cfg.model:
            raise ValueError(f"init_weights {cfg.init_weights}: its architecture "
                             f"{start_from.config} differs from model {cfg.model}")
        module.model.load_state_dict(start_from.state_dict())
    trainer = small_trainer(cfg, out_dir, checkpoints(out_dir, MONITOR), cfg.val_every_epochs)
    loader = DataLoader(train_set, batch_size=d.batch_size, shuffle=True, num_workers=0,
                        drop_last=True, collate_fn=_collate)
    val_loader = DataLoader(val, batch_size=d.batch_size, num_workers=0, collate_fn=_collate)
    trainer.fit(module, loader, val_loader, ckpt_path=resume, weights_only=True)
    if trainer.global_step > 0:
        trainer.validate(module, val_loader, verbose=False)
    minutes = (time.perf_counter() - start) / 60
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    data = {"synthetic": {"kind": "rendered on the fly", "modes": d.modes,
                          "seeds": [d.seed_start, d.seed_start + d.n_synth_cases - 1],
                          "size": d.size},
            "validation": {"seeds": [VALIDATION_SEED_START, VALIDATION_SEED_START + n_val - 1],
                           "pairs": len(val)}}
    atomic_write_text(out_dir / "run.json", json.dumps(
        {**record, "steps": trainer.global_step, "minutes": minutes, "metrics": metrics,
         "data": data}, indent=2, default=str))
    weights = None
    if trainer.global_step > 0:
        card = {"format": "retreg-fast-card", "version": 1, "name": cfg.name,
                "parameters": sum(p.numel() for p in module.model.parameters()),
                "distill": cfg.loss.distill,
                "training": {"data": data, "steps": trainer.global_step,
                             "epochs": trainer.current_epoch, "minutes": round(minutes, 1),
                             "batch_size": d.batch_size},
                "validation": {"metrics": metrics}, "provenance": record}
        weights = save_weights(module.model, cfg.export or out_dir / f"{cfg.name}.safetensors",
                               card)
    return RunResult(out_dir, weights, card_path(weights) if weights else None,
                           trainer.global_step, minutes, metrics)
