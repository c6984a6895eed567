"""``train_superretina(config) -> RunResult``: the SuperRetina-style matcher
(``core.matchers.superretina``) trained in the phases of plan v5
(``/work/shared/plans/superretina_plan_v5.md``); used by ``retreg train-superretina``.

Phases (``phases.schedule``: (phase, epochs) blocks, switched by ``callbacks.PhaseSchedule``):
1. warm-up: descriptor loss (``superretina_losses.partner_loss``) at the ground-truth vessel
   junctions through ``T_0to1`` + Dice of the FIXED heatmap against the blurred junctions;
2. + geometric consistency: Dice of the fixed heatmap against the moving heatmap warped back
   through the true transform;
3. + progressive keypoint expansion (``superretina_losses.mine_pke``): accepted new points join
   both sides' detector labels (the moving side's through ``T_0to1``); the descriptor loss stays
   on the ground-truth junctions;
4. sim-to-real: real exported pairs (H_computed, ``training.realpairs``) mixed with synthetic
   replay (``real.data.real_fraction``); descriptor loss = anchor loss at the annotated points
   + ``pke_des_weight`` x the same loss at the PKE-mined points (found through H_computed).
Weights are exported at the end of every phase (``<name>_phase<k>.safetensors``: the ablation)
and at the end of the run.
"""
from __future__ import annotations

import bisect
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from retreg.core.atomic import atomic_write_text
from retreg.core.geometry import map_points as map_points_np
from retreg.core.hypotheses import coarse_fit
from retreg.core.matchers.keypoints import mutual_nearest
from retreg.core.matchers.superretina.model import (SuperRetinaConfig, SuperRetinaNet, detect,
                                                    sample_descriptors)
from retreg.core.matchers.superretina.weights import card_path, load_model, save_weights
from retreg.core.metrics import mean_corner_error
from retreg.core.provenance import run_record
from retreg.core.types import Matches
from retreg.training.callbacks import PhaseSchedule, ProgressFn, ProgressReporter
from retreg.training.config import VALIDATION_SEED_START, RunConfig
from retreg.training.datasets import MAX_KEYPOINTS, AffinePairDataset, SynthSource
from retreg.training.fast_train import FastDataConfig as SynthDataConfig
from retreg.training.fast_train import Rot90Pairs
from retreg.training.finetune import FinetuneData, build_hybrid_data
from retreg.training.module import RANSAC_THRESHOLD_PX, SUCCESS_PX_AT_512, warmup_cosine
from retreg.training.realpairs import HCheck, load_realpairs
from retreg.training.runs import RunResult, checkpoints, config_hash, small_trainer, start_run
from retreg.training.superretina_losses import (PKEConfig, descriptor_loss, dice_loss,
                                                gaussian_labels, map_points, mine_pke,
                                                random_points, warp_to_fixed)

PHASES = (1, 2, 3, 4)
DETECT_HIT_PX = 3.0  # a ground-truth junction counts as detected within this distance


@dataclass
class PhaseConfig:
    """The schedule and the loss weights of every phase (plan v5: lambda_det = lambda_des = 1,
    lambda_geo 0.5-1)."""

    schedule: list = field(default_factory=lambda: [[1, 6], [2, 4], [3, 8]])
    sigma: float = 2.0  # px, Gaussian of the keypoint labels
    det_weight: float = 1.0
    des_weight: float = 1.0
    geo_weight: float = 1.0
    pke_des_weight: float = 0.5  # phase 4's exploration loss (lambda)
    temperature: float = 0.1  # of the descriptor loss's softmax over candidates
    negatives: int = 256  # random negative positions per image, on top of the other keypoints
    negative_radius: float = 8.0  # px: candidates this close to the true partner are no negative
    pke: PKEConfig = field(default_factory=PKEConfig)

    def __post_init__(self) -> None:
        self.schedule = [list(s) for s in self.schedule]
        if not self.schedule or any(len(s) != 2 or s[0] not in PHASES or s[1] < 1
                                    for s in self.schedule):
            raise ValueError(f"schedule must be [phase, epochs] blocks, phase in {PHASES}, "
                             f"epochs >= 1; got {self.schedule}")
        if min(self.sigma, self.temperature) <= 0 or self.negatives < 1:
            raise ValueError("sigma > 0, temperature > 0 and negatives >= 1 required")
        if min(self.det_weight, self.des_weight, self.geo_weight, self.pke_des_weight) < 0:
            raise ValueError("loss weights must be >= 0")

    @property
    def epochs(self) -> int:
        return sum(e for _, e in self.schedule)


def split_schedule(epochs: int) -> list[list[int]]:
    """Phases 1-3 over ``epochs`` in the shipped config's proportions (10 : 8 : 12), each >= 1
    (the app's training panel asks for a number of epochs only)."""
    if epochs < 3:
        raise ValueError(f"phases 1-3 need at least 3 epochs, got {epochs}")
    p1 = max(1, round(epochs * 10 / 30))
    p2 = max(1, min(epochs - p1 - 1, round(epochs * 8 / 30)))
    return [[1, p1], [2, p2], [3, epochs - p1 - p2]]


@dataclass
class RealDataConfig:
    """Phase 4's real pairs: an exported real-pair folder (``tools/fire_to_realpairs.py``),
    H_computed checked as for fine-tuning, mixed with synthetic replay (``data``)."""

    annotations: str | None = None
    default_mode: str | None = None
    h_computed: HCheck = field(default_factory=HCheck)
    data: FinetuneData = field(default_factory=FinetuneData)


@dataclass
class SuperRetinaTrainConfig(RunConfig):
    name: str = "retreg_superretina"
    out_dir: str = "runs/retreg_superretina"
    max_epochs: int = 18
    steps_per_epoch: int = 25
    torch_threads: int = 1
    val_every_epochs: int = 2
    model: SuperRetinaConfig = field(default_factory=SuperRetinaConfig)
    data: SynthDataConfig = field(default_factory=lambda: SynthDataConfig(batch_size=4))
    phases: PhaseConfig = field(default_factory=PhaseConfig)
    real: RealDataConfig = field(default_factory=RealDataConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.phases.epochs != self.max_epochs:
            raise ValueError(f"phases.schedule covers {self.phases.epochs} epochs, "
                             f"max_epochs is {self.max_epochs}: make them agree")
        if any(p == 4 for p, _ in self.phases.schedule) and not self.real.annotations:
            raise ValueError("phase 4 trains on real pairs: give real.annotations")


# ------------------------------------------------------------------------------------ data
class RealAnchors(Dataset):
    """Items of ``build_hybrid_data``'s datasets with the annotated points as padded
    ``anchors0`` / ``anchors1`` (image0 / image1 pixels); synthetic replay items anchor at
    their ground-truth junctions."""

    def __init__(self, parts: ConcatDataset):
        self.parts = parts

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, index: int) -> dict:
        k = bisect.bisect_right(self.parts.cumulative_sizes, index)
        local = index - (self.parts.cumulative_sizes[k - 1] if k else 0)
        part = self.parts.datasets[k]
        item = part[local]
        if part.source is None:
            return item
        a0, a1 = part.source.anchors(local % len(part.source))
        a1 = map_points_np(item["T_0to1"].astype(np.float64), a1) if len(a1) else a1
        n = min(len(a0), MAX_KEYPOINTS)
        item["anchors0"] = np.zeros((MAX_KEYPOINTS, 2), np.float32)
        item["anchors1"] = np.zeros((MAX_KEYPOINTS, 2), np.float32)
        item["anchors_valid"] = np.zeros(MAX_KEYPOINTS, bool)
        item["anchors0"][:n], item["anchors1"][:n] = a0[:n], a1[:n]
        h, w = item["mask1"].shape
        inside = (a1[:n, 0] >= 0) & (a1[:n, 0] < w) & (a1[:n, 1] >= 0) & (a1[:n, 1] < h)
        item["anchors_valid"][:n] = inside
        return item


_KEEP = ("image0", "image1", "mask0", "mask1", "vessel0", "T_0to1", "kpts0", "kpts1",
         "kpts_valid")


def collate(items: list[dict]) -> dict:
    """Stacked tensors; ``anchors*`` default to the ground-truth junctions."""
    out = {k: torch.as_tensor(np.stack([it[k] for it in items])) for k in _KEEP}
    for a, k in (("anchors0", "kpts0"), ("anchors1", "kpts1"), ("anchors_valid", "kpts_valid")):
        out[a] = torch.as_tensor(np.stack([it.get(a, it[k]) for it in items]))
    return out


def synthetic_pairs(cfg: SuperRetinaTrainConfig, source: SynthSource, length: int, seed: int):
    d = cfg.data
    return ConcatDataset([
        Rot90Pairs(AffinePairDataset(source, mode, size=d.size, channels=cfg.model.channels,
                                     aug=d.augment(mode), length=length, seed=seed + k,
                                     cache_limit=d.n_synth_cases), d.rot90_p, seed + k)
        for k, mode in enumerate(d.modes)])


def real_pairs(cfg: SuperRetinaTrainConfig, n_draws: int):
    """(dataset, sampler, number of accepted pairs) of phase 4's hybrid batches."""
    r = cfg.real
    pairs, _ = load_realpairs(r.annotations, cfg.model.working_side, r.h_computed, r.default_mode)
    spec = SimpleNamespace(data=r.data, seed=cfg.seed, steps_per_epoch=cfg.steps_per_epoch)
    parts, sampler = build_hybrid_data(spec, pairs, cfg.model.channels, cfg.model.working_side,
                                       n_draws)
    return RealAnchors(parts), sampler, len(pairs)


# ------------------------------------------------------------------------------- lightning
class SuperRetinaLightning(pl.LightningModule):
    """The phased losses; ``phase`` is set by ``PhaseSchedule``."""

    def __init__(self, config: SuperRetinaTrainConfig) -> None:
        super().__init__()
        self.config = config
        self.model = SuperRetinaNet(config.model)
        self.phase = config.phases.schedule[0][0]
        self._val: dict[str, list[float]] = {}

    def terms(self, batch: dict, phase: int) -> dict[str, torch.Tensor]:
        """Every loss term of ``phase`` on one batch, and the total under ``loss``."""
        p = self.config.phases
        o0, o1 = self.model(batch["image0"], 0), self.model(batch["image1"], 1)
        hw, T = batch["image0"].shape[-2:], batch["T_0to1"]
        mask0, mask1 = batch["mask0"].bool(), batch["mask1"].bool()
        kv = batch["kpts_valid"].bool()
        neg0 = random_points(mask0, p.negatives)
        neg1 = random_points(mask1, p.negatives)
        des = descriptor_loss(o0.desc, o1.desc, batch["anchors0"], batch["anchors1"],
                              batch["anchors_valid"].bool(), neg0, neg1, p.temperature,
                              p.negative_radius)
        zero = des * 0
        label0 = gaussian_labels(batch["kpts0"], kv, hw, p.sigma)
        new = zero
        pke_des = zero
        if phase >= 3:
            new0, new_ok = mine_pke(o0.heatmap, o1.heatmap, o0.desc, o1.desc, T,
                                    batch["vessel0"], mask0, mask1, batch["kpts0"], kv, p.pke,
                                    max(p.pke.max_new, 1))
            new1 = map_points(T, new0)
            label0 = torch.maximum(label0, gaussian_labels(new0, new_ok, hw, p.sigma))
            label1 = torch.maximum(gaussian_labels(batch["kpts1"], kv, hw, p.sigma),
                                   gaussian_labels(new1, new_ok, hw, p.sigma))
            det = (dice_loss(o0.heatmap, label0, mask0) + dice_loss(o1.heatmap, label1, mask1)) / 2
            new = new_ok.float().sum(1).mean()
            if phase == 4:
                pke_des = descriptor_loss(o0.desc, o1.desc, new0, new1, new_ok, neg0, neg1,
                                          p.temperature, p.negative_radius)
        else:
            det = dice_loss(o0.heatmap, label0, mask0)
        geo = zero
        if phase >= 2:
            warped, inside = warp_to_fixed(o1.heatmap, mask1, T, hw)
            geo = dice_loss(o0.heatmap, warped, mask0 & inside)
        total = (p.det_weight * det + p.des_weight * des + p.geo_weight * geo
                 + p.pke_des_weight * pke_des)
        return {"loss": total, "det": det, "des": des, "geo": geo, "pke_des": pke_des,
                "pke_new": new.detach()}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.terms(batch, self.phase)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()},
                      batch_size=batch["image0"].shape[0])
        return terms["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        terms = self.terms(batch, min(self.phase, 3))
        self.log_dict({"val/loss": terms["loss"], "val/det": terms["det"],
                       "val/des": terms["des"]}, batch_size=batch["image0"].shape[0],
                      sync_dist=True)
        for k in range(batch["image0"].shape[0]):
            for name, value in validate_pair(self.model, {key: v[k] for key, v in batch.items()}
                                             ).items():
                self._val.setdefault(name, []).append(value)

    def on_validation_epoch_end(self) -> None:
        v, self._val = self._val, {}
        errors = np.asarray(v.get("error", [np.inf]))
        self.log_dict({"val/success": float(np.mean(errors < SUCCESS_PX_AT_512)),
                       "val/mce_median_px512": min(float(np.median(errors)), 1e4),
                       "val/det_recall": float(np.mean(v.get("det_recall", [0.0]))),
                       "val/gt_nn_correct": float(np.mean(v.get("gt_nn_correct", [0.0]))),
                       "val/keypoints": float(np.mean(v.get("keypoints", [0.0])))},
                      sync_dist=True)

    def configure_optimizers(self):
        o, total = self.config.optim, self.config.max_epochs * self.config.steps_per_epoch
        opt = torch.optim.AdamW(self.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        return warmup_cosine(opt, o.warmup_steps, total)


@torch.no_grad()
def validate_pair(model: SuperRetinaNet, item: dict) -> dict[str, float]:
    """One (C, H, W) pair: mean corner error @512 of the matcher's affine fit, share of the
    ground-truth junctions detected on the fixed side (plan v5's green-on-red check), share
    whose descriptor's nearest ground-truth partner is the true one (the perfect-detector
    bound, plan v5 4.1) and the number of fixed keypoints."""
    was = model.training
    model.eval()
    o0, o1 = model(item["image0"][None], 0), model(item["image1"][None], 1)
    model.train(was)
    k0 = detect(o0, item["mask0"][None], model.config)
    k1 = detect(o1, item["mask1"][None], model.config)
    m = mutual_nearest(k0, k1, model.config.temperature, model.config.ratio)
    matches = Matches(k0.xy[m.i].cpu().numpy(), k1.xy[m.j].cpu().numpy(), m.conf.cpu().numpy())
    h, w = item["image0"].shape[1:]
    H = coarse_fit(matches, (w, h), RANSAC_THRESHOLD_PX).model
    H_gt = np.linalg.inv(item["T_0to1"].double().cpu().numpy())
    err = mean_corner_error(H, H_gt, w, h) * (512.0 / max(h, w))
    gt0, gt1 = item["kpts0"][item["kpts_valid"]], item["kpts1"][item["kpts_valid"]]
    out = {"error": err if math.isfinite(err) else float("inf"), "keypoints": float(len(k0.xy))}
    if len(gt0):
        near = torch.cdist(gt0, k0.xy).min(1).values if len(k0.xy) else torch.full(
            (len(gt0),), np.inf)
        d0 = sample_descriptors(o0.desc, gt0[None])[0]
        d1 = sample_descriptors(o1.desc, gt1[None])[0]
        right = (d0 @ d1.T).argmax(1) == torch.arange(len(gt0))
        out.update(det_recall=float((near <= DETECT_HIT_PX).float().mean()),
                   gt_nn_correct=float(right.float().mean()))
    return out


# ----------------------------------------------------------------------------------- train
def _card(cfg: SuperRetinaTrainConfig, module: SuperRetinaLightning, record: dict, data: dict,
          steps: int, epochs: int, minutes: float, metrics: dict, phase: int) -> dict:
    return {"format": "retreg-superretina-card", "version": 1, "name": cfg.name,
            "parameters": sum(p.numel() for p in module.model.parameters()),
            "phase": phase, "schedule": cfg.phases.schedule,
            "training": {"data": data, "steps": steps, "epochs": epochs,
                         "minutes": round(minutes, 1), "batch_size": cfg.data.batch_size},
            "validation": {"metrics": metrics}, "provenance": record}


def train_superretina(config: SuperRetinaTrainConfig | dict | str | Path, *,
                      max_minutes: float | None = None, resume: str | Path | None = None,
                      progress: ProgressFn | None = None, cancel=None, devices: int = 1,
                      strategy: str = "auto") -> RunResult:
    """Train through ``phases.schedule``, checkpoint every epoch under ``out_dir`` (``resume``
    from ``checkpoints/last.ckpt``), export the weights at every phase end and at the end
    (``export`` or ``out_dir/<name>.safetensors``) with cards, and write ``run.json`` (config,
    config hash, seed, git commit, package versions, metrics). With ``devices`` > 1 (e.g.
    ``strategy="ddp"``) only rank 0 writes; the others return no weights."""
    cfg = SuperRetinaTrainConfig.load(config)
    out_dir = start_run(cfg, max_minutes)
    d = cfg.data
    record = {**run_record(cfg.to_dict(), cfg.seed), "config_hash": config_hash(cfg)}
    start = time.perf_counter()
    total = cfg.max_epochs * cfg.steps_per_epoch
    n_val = d.val_pairs_per_mode
    val_source = SynthSource(VALIDATION_SEED_START, n_val, cache_limit=n_val)
    val_set = synthetic_pairs(cfg, val_source, n_val, VALIDATION_SEED_START)
    val = [val_set[i] for i in range(len(val_set))]  # rendered once
    data = {"validation": {"seeds": [VALIDATION_SEED_START, VALIDATION_SEED_START + n_val - 1],
                           "pairs": len(val)}}
    if any(p == 4 for p, _ in cfg.phases.schedule):
        train_set, sampler, n_real = real_pairs(cfg, total * d.batch_size)
        loader = DataLoader(train_set, batch_size=d.batch_size, sampler=sampler, num_workers=0,
                            drop_last=True, collate_fn=collate)
        rd = cfg.real.data
        data["real"] = {"annotations": cfg.real.annotations, "accepted_pairs": n_real,
                        "real_fraction": rd.real_fraction, "replay_cases": rd.replay_cases,
                        "replay_seeds": [rd.replay_seed_start,
                                         rd.replay_seed_start + rd.replay_cases - 1]}
    else:
        source = SynthSource(d.seed_start, d.n_synth_cases, cache_limit=d.n_synth_cases)
        train_set = synthetic_pairs(cfg, source, total * d.batch_size // len(d.modes) + 1,
                                    cfg.seed * 1000)
        loader = DataLoader(train_set, batch_size=d.batch_size, shuffle=True, num_workers=0,
                            drop_last=True, collate_fn=collate)
        data["synthetic"] = {"kind": "rendered on the fly", "modes": d.modes,
                             "seeds": [d.seed_start, d.seed_start + d.n_synth_cases - 1],
                             "size": d.size}
    module = SuperRetinaLightning(cfg)
    if cfg.init_weights:  # a new stage (phase 4) from exported weights
        start_from = load_model(cfg.init_weights)
        if start_from.config != cfg.model:
            raise ValueError(f"init_weights {cfg.init_weights}: its architecture "
                             f"{start_from.config} differs from model {cfg.model}")
        module.model.load_state_dict(start_from.state_dict())

    def export(phase: int, path: Path) -> Path | None:
        if not trainer.is_global_zero:
            return None
        minutes = (time.perf_counter() - start) / 60
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        epochs = min(trainer.current_epoch + 1, cfg.max_epochs)  # the epoch counter runs on
        return save_weights(module.model, path, _card(cfg, module, record, data,
                                                      trainer.global_step, epochs, minutes,
                                                      metrics, phase))

    def export_phase(phase: int) -> None:
        export(phase, out_dir / f"{cfg.name}_phase{phase}.safetensors")

    callbacks = [PhaseSchedule(cfg.phases.schedule, export_phase), *checkpoints(out_dir)]
    if progress is not None or cancel is not None:
        callbacks.append(ProgressReporter(total, progress, cancel))
    trainer = small_trainer(cfg, out_dir, callbacks, cfg.val_every_epochs, log_every=5,
                            devices=devices, strategy=strategy)
    val_loader = DataLoader(val, batch_size=d.batch_size, num_workers=0, collate_fn=collate)
    trainer.fit(module, loader, val_loader, ckpt_path=resume, weights_only=True)
    if trainer.world_size == 1 and trainer.global_step > 0:
        trainer.validate(module, val_loader, verbose=False)
    minutes = (time.perf_counter() - start) / 60
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    weights = None
    if trainer.is_global_zero:
        atomic_write_text(out_dir / "run.json", json.dumps(
            {**record, "steps": trainer.global_step, "minutes": minutes, "metrics": metrics,
             "data": data}, indent=2, default=str))
        if trainer.global_step > 0:
            weights = export(module.phase,
                             Path(cfg.export or out_dir / f"{cfg.name}.safetensors"))
    return RunResult(out_dir, weights, card_path(weights) if weights else None,
                     trainer.global_step, minutes, metrics,
                     bool(cancel is not None and cancel()))
