"""``finetune(config, progress, cancel) -> FinetuneResult``: sim-to-real fine-tuning of a trained
matcher on real annotated pairs, used by ``retreg finetune`` and the GUI.

Batches mix real pairs (supervised through H_computed with fresh random affine augmentation,
plus an anchor term at the annotated points) with a replay of synthetic pairs against
forgetting. Held-out real pairs (split by shared image) are registered with the full pipeline
before training and after every epoch; the weights that score best on them are exported.
"""
from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import ConcatDataset, DataLoader, WeightedRandomSampler

from retreg.core.annotations import sha256_file
from retreg.core.errors import DatasetError
from retreg.core.geometry import cell_centres, cell_of, pad_to_multiple, round_up
from retreg.core.io import read_image
from retreg.core.matchers.loftr import LoftrMatcher
from retreg.core.matchers.loftr.model import COARSE_STRIDE, RetRegLoFTR
from retreg.core.matchers.loftr.weights import card_path, load_model, save_weights
from retreg.core.metrics import Summary, Thresholds, control_point_errors, classify, summarise
from retreg.core.modality import prepare
from retreg.core.pipeline import register
from retreg.core.provenance import run_record
from retreg.core.representation import model_input
from retreg.core.types import Mode, PreparedImage
from retreg.training.augment import AugmentConfig
from retreg.training.callbacks import ProgressFn, ProgressReporter
from retreg.training.config import OptimConfig, RunConfig, TrainConfig, check_modes, check_transform
from retreg.training.datasets import AffinePairDataset, SynthSource
from retreg.core.evaluation import EvalPair, PairResult, format_table
from retreg.training.losses import loftr_loss
from retreg.training.module import LoftrLightning
from retreg.training.realpairs import (AnchoredItems, HCheck, RealPair, RealPairSource, load_realpairs,
                                       split_by_image)

HIT_CELLS = 1.5  # an annotated point is 'matched' when the coarse match is this close


# ---------------------------------------------------------------- configuration

@dataclass
class FinetuneData:
    """``size`` None = the model's working side rounded up to a multiple of 8 (real pairs are
    prepared at the working scale, so the FOV fills the frame as at inference)."""

    size: int | None = None
    batch_size: int = 4
    num_workers: int = 0
    real_fraction: float = 0.8  # share of real pairs in a batch; the rest is synthetic replay
    heldout_fraction: float = 0.25
    split_seed: int = 0
    default_mode: str | None = None  # for annotations that name no mode
    replay_modes: list[str] = field(default_factory=lambda: [m.value for m in Mode.clinical()])
    replay_cases: int = 50
    replay_seed_start: int = 0  # the main training's seeds: replay rehearses what it saw
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if not 0.0 < self.real_fraction <= 1.0:
            raise ValueError(f"real_fraction must be in (0, 1], got {self.real_fraction}")
        if self.size is not None and self.size % COARSE_STRIDE:
            raise ValueError(f"size must be a multiple of {COARSE_STRIDE}, got {self.size}")
        check_modes("replay_modes", self.replay_modes)


@dataclass
class FinetuneEval:
    """Held-out registration: the FIRE protocol table, and an early-stopping score = mean over
    pairs of min(mean control-point error, ``cap_px``) (failed pairs count ``cap_px``), which
    unlike AUC still moves when every pair is above 25 px."""

    transform: str = "homography"
    thresholds: list[float] = field(default_factory=lambda: [50.0, 20.0])  # max, median px
    cap_px: float = 100.0
    every_epochs: int = 1
    patience: int = 3

    def __post_init__(self) -> None:
        check_transform("transform", self.transform)
        if self.every_epochs < 1:
            raise ValueError("every_epochs must be >= 1")


@dataclass
class FinetuneConfig(RunConfig):
    """``annotations`` (an exported real-pair folder), ``init_weights`` and ``export`` are
    required by ``finetune`` but may be left empty while a form is being filled in."""

    name: str = "retreg_loftr_ft"
    out_dir: str = "runs/finetune"
    max_epochs: int = 30
    steps_per_epoch: int = 20
    annotations: str | None = None
    anchor_weight: float = 1.0
    h_computed: HCheck = field(default_factory=HCheck)
    data: FinetuneData = field(default_factory=FinetuneData)
    eval: FinetuneEval = field(default_factory=FinetuneEval)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, warmup_steps=20))


# ---------------------------------------------------------------- held-out evaluation

def model_tensors(model: RetRegLoFTR, img: PreparedImage) -> torch.Tensor:
    """(1, C, H8, W8) network input of a prepared image, zero-padded to multiples of 8."""
    x = model_input(img, channels=model.config.channels)
    return torch.from_numpy(pad_to_multiple(x, COARSE_STRIDE))[None]


@dataclass
class HeldOutEval:
    results: list[PairResult]
    summary: Summary
    score: float  # mean capped control-point error, px (lower is better)
    hit_rate: float  # share of annotated fixed points whose coarse match hits their partner
    table: str

    def better_than(self, other: "HeldOutEval") -> bool:
        """Lower score; at equal score (e.g. every pair still fails) more annotated points hit."""
        if self.score != other.score:
            return self.score < other.score
        return self.hit_rate > other.hit_rate

    def to_json(self) -> dict:
        return {"score_capped_mean_px": self.score, "anchor_hit_rate": self.hit_rate,
                "mauc": self.summary.mauc,
                "categories": {k: asdict(v) for k, v in self.summary.categories.items()},
                "pairs": {r.pair.pair_id: {"outcome": r.outcome, "mean_px": _finite(r.errors.mean)}
                          for r in self.results}}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def anchor_hits(model: RetRegLoFTR, pair: RealPair, fixed: np.ndarray,
                moving: np.ndarray) -> np.ndarray:
    """(N,) bool per annotated point: does the best coarse match of the cell holding the fixed
    point land within ``HIT_CELLS`` cells of the annotated moving point (working pixels)?
    Unlike a registration this still moves when the model is too weak to register at all."""
    side = model.config.working_side
    pf = prepare(fixed, pair.mode.fixed_modality, side)
    pm = prepare(moving, pair.mode.moving_modality, side)
    x0, x1 = model_tensors(model, pf), model_tensors(model, pm)
    with torch.no_grad():
        log_conf = model.forward_coarse(x0, x1).log_conf[0]
    (h0, w0), (h1, w1) = ((x.shape[2] // COARSE_STRIDE, x.shape[3] // COARSE_STRIDE)
                          for x in (x0, x1))
    p0 = np.clip(cell_of(pf.to_work(pair.fixed_pts), COARSE_STRIDE), 0, [w0 - 1, h0 - 1])
    j = log_conf[p0[:, 1] * w0 + p0[:, 0]].argmax(1).numpy()
    centre = cell_centres(h1, w1, COARSE_STRIDE)[j]
    return np.linalg.norm(centre - pm.to_work(pair.moving_pts), axis=1) < HIT_CELLS * COARSE_STRIDE


class HeldOutEvaluator:
    """Registers the held-out pairs (images read once) and scores them under the FIRE
    protocol against their annotated points; the category is the pair's mode."""

    def __init__(self, pairs: Sequence[RealPair], cfg: FinetuneEval):
        if not pairs:
            raise DatasetError("no held-out pairs to evaluate on")
        self.pairs, self.cfg = list(pairs), cfg
        self.thresholds = Thresholds(*cfg.thresholds)
        self._images = [(read_image(p.fixed_path), read_image(p.moving_path)) for p in pairs]

    def __call__(self, model: RetRegLoFTR) -> HeldOutEval:
        was_training = model.training
        matcher = LoftrMatcher(model)  # the product's matcher (rotation hypotheses included)
        results, hits = [], []
        for pair, (fixed, moving) in zip(self.pairs, self._images):
            t0 = time.perf_counter()
            res = register(fixed, moving, pair.mode, matcher=matcher, transform=self.cfg.transform)
            seconds = time.perf_counter() - t0
            errs = control_point_errors(res.matrix if res.ok else None, pair.moving_pts,
                                        pair.fixed_pts)
            ep = EvalPair(pair.pair_id, pair.mode.value, pair.fixed_path, pair.moving_path,
                          pair.fixed_path.parent / "annotation.json")
            results.append(PairResult(ep, res, errs, classify(errs, self.thresholds), seconds))
            hits.append(anchor_hits(model, pair, fixed, moving))
        model.train(was_training)
        summary = summarise([r.pair.category for r in results], [r.errors for r in results],
                            self.thresholds)
        score = float(np.mean([min(r.errors.mean, self.cfg.cap_px) for r in results]))
        hit_rate = float(np.mean(np.concatenate(hits)))
        table = (format_table(summary, results, self.thresholds)
                 + f"\nannotated points matched within {HIT_CELLS} cells: {100 * hit_rate:.1f}%")
        return HeldOutEval(results, summary, score, hit_rate, table)


# ---------------------------------------------------------------- training data and step

def build_hybrid_data(cfg: FinetuneConfig, pairs: Sequence[RealPair], channels: Sequence[str],
                      working_side: int, n_draws: int
                      ) -> tuple[ConcatDataset, WeightedRandomSampler]:
    """Real pairs (one dataset per mode) + synthetic replay, and a sampler that draws real
    items with probability ``real_fraction``. Every index has its own augmentation, so the
    datasets are sized to the draws of the whole run."""
    d = cfg.data
    size = d.size or round_up(working_side, COARSE_STRIDE)
    parts, weights = [], []
    by_mode: dict[Mode, list[RealPair]] = {}
    for p in pairs:
        by_mode.setdefault(p.mode, []).append(p)
    real_share = d.real_fraction if d.real_fraction < 1.0 and d.replay_cases > 0 else 1.0
    for k, (mode, mode_pairs) in enumerate(sorted(by_mode.items())):
        src = RealPairSource(mode_pairs, size, working_side)
        ds = AffinePairDataset(src, mode, size=size, channels=channels, aug=d.augment,
                               length=n_draws, seed=cfg.seed * 1000 + k, cache_limit=len(src))
        parts.append(AnchoredItems(ds, src))
    n_real = len(parts)
    if real_share < 1.0:
        synth = SynthSource(d.replay_seed_start, d.replay_cases)
        for k, mode in enumerate(d.replay_modes):
            ds = AffinePairDataset(synth, mode, size=size, channels=channels, aug=AugmentConfig(),
                                   length=n_draws, seed=cfg.seed * 1000 + 500 + k,
                                   cache_limit=d.replay_cases)
            parts.append(AnchoredItems(ds))
    for k, part in enumerate(parts):
        share = real_share / n_real if k < n_real else (1 - real_share) / (len(parts) - n_real)
        weights.append(np.full(len(part), share / len(part)))
    generator = torch.Generator().manual_seed(cfg.seed)
    sampler = WeightedRandomSampler(torch.from_numpy(np.concatenate(weights)),
                                    cfg.steps_per_epoch * d.batch_size, replacement=True,
                                    generator=generator)
    return ConcatDataset(parts), sampler


class FinetuneModule(LoftrLightning):
    """The main training's module (optimiser, schedule) with the anchor term added to the loss
    and no synthetic validation: held-out real pairs are scored by ``BestOnHeldOut``."""

    def __init__(self, train_cfg: TrainConfig, model: RetRegLoFTR, anchor_weight: float):
        super().__init__(train_cfg)
        self.model = model
        self.anchor_weight = anchor_weight

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        o = self.config.optim
        out = self.model.forward_coarse(batch["image0"], batch["image1"])
        terms = loftr_loss(self.model, out, batch["gt_j"], batch["gt_xy1"], batch["vessel0"],
                           1.0, o.fine_weight, o.max_fine, o.fine_std_weighting)
        anchor = loftr_loss(self.model, out, batch["anchor_j"], batch["anchor_xy1"], None, 1.0,
                            o.fine_weight, o.max_fine, o.fine_std_weighting)
        total = terms.total + self.anchor_weight * anchor.total
        bs = batch["image0"].shape[0]
        self.log_dict({"train/loss": total.detach(), "train/coarse": terms.coarse,
                       "train/fine": terms.fine, "train/anchor_coarse": anchor.coarse,
                       "train/anchor_fine": anchor.fine}, batch_size=bs)
        self.log("train/n_anchor", float(anchor.n_gt), batch_size=bs)
        return total


class BestOnHeldOut(Callback):
    """Scores the held-out pairs every ``every`` epochs, keeps the best weights in memory and
    stops after ``patience`` evaluations without improvement."""

    def __init__(self, evaluate: HeldOutEvaluator, model: RetRegLoFTR, before: HeldOutEval,
                 every: int, patience: int):
        self.evaluate, self.every, self.patience = evaluate, every, patience
        self.best, self.best_step, self.last_step = before, 0, 0
        self.best_state = copy.deepcopy(model.state_dict())
        self.last = before
        self.history: list[dict] = [self._row(0, before)]
        self._bad = 0

    @staticmethod
    def _row(step: int, ev: HeldOutEval) -> dict:
        return {"step": step, "score": ev.score, "hit_rate": ev.hit_rate, "mauc": ev.summary.mauc}

    def check(self, trainer: pl.Trainer, model: RetRegLoFTR) -> None:
        ev = self.evaluate(model)
        self.last, self.last_step = ev, trainer.global_step
        self.history.append(self._row(trainer.global_step, ev))
        if ev.better_than(self.best):
            self.best, self.best_step, self._bad = ev, trainer.global_step, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self._bad += 1
            if self._bad >= self.patience:
                trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every == 0:
            self.check(trainer, pl_module.model)


# ---------------------------------------------------------------- entry point

@dataclass
class FinetuneResult:
    weights: Path | None  # None when cancelled before the first step
    card: Path | None
    train_pairs: list[str]
    heldout_pairs: list[str]
    rejected: list[tuple[str, str]]
    before: HeldOutEval
    after: HeldOutEval  # the exported weights (the best held-out score, possibly the start)
    steps: int
    best_step: int  # 0: no fine-tuned state beat the starting weights
    minutes: float
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False

    @property
    def improved(self) -> bool:
        return self.after.better_than(self.before)


def _card(cfg: FinetuneConfig, result: FinetuneResult, n_accepted: int) -> dict:
    base = Path(cfg.init_weights)
    base_card = card_path(base)
    return {
        "format": "retreg-loftr-card", "version": 1, "name": cfg.name,
        "finetuned_from": {"weights": str(base), "sha256": sha256_file(base),
                           "card": (json.loads(base_card.read_text(encoding="utf-8"))
                                    if base_card.is_file() else None)},
        "finetune": {
            "annotations": str(cfg.annotations),
            "counts": {"accepted": n_accepted, "rejected": len(result.rejected),
                       "train": len(result.train_pairs), "heldout": len(result.heldout_pairs)},
            "train_pairs": result.train_pairs, "heldout_pairs": result.heldout_pairs,
            "rejected": [{"pair": p, "reason": r} for p, r in result.rejected],
            "real_fraction": cfg.data.real_fraction, "replay_modes": cfg.data.replay_modes,
            "steps": result.steps, "best_step": result.best_step,
            "minutes": round(result.minutes, 1), "cancelled": result.cancelled,
        },
        "metrics": {"heldout_before": result.before.to_json(),
                    "heldout_after": result.after.to_json(), "history": result.history,
                    "note": "held-out pairs also choose the exported step (early stopping); "
                            "judge generalisation on pairs outside the annotation set"},
        "provenance": run_record(cfg.to_dict(), cfg.seed),
    }


def finetune(config: FinetuneConfig | dict | str | Path, progress: ProgressFn | None = None,
             cancel: Callable[[], bool] | None = None) -> FinetuneResult:
    """Fine-tune ``config.init_weights`` on ``config.annotations``; export the weights that
    score best on the held-out pairs to ``config.export`` with a card saying what they saw."""
    cfg = FinetuneConfig.load(config)
    for key in ("annotations", "init_weights", "export"):
        if not getattr(cfg, key):
            raise ValueError(f"config.{key} is required")
    torch.set_num_threads(cfg.torch_threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    start = time.perf_counter()
    model = load_model(cfg.init_weights).train()
    mc = model.config
    pairs, rejected = load_realpairs(cfg.annotations, mc.working_side, cfg.h_computed,
                                     cfg.data.default_mode)
    train_pairs, heldout = split_by_image(pairs, cfg.data.heldout_fraction, cfg.data.split_seed)
    evaluate = HeldOutEvaluator(heldout, cfg.eval)
    before = evaluate(model)
    total = cfg.max_epochs * cfg.steps_per_epoch
    dataset, sampler = build_hybrid_data(cfg, train_pairs, mc.channels, mc.working_side,
                                         n_draws=total * cfg.data.batch_size)
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, sampler=sampler,
                        num_workers=cfg.data.num_workers, drop_last=True)
    train_cfg = TrainConfig(name=cfg.name, seed=cfg.seed, max_epochs=cfg.max_epochs,
                            steps_per_epoch=cfg.steps_per_epoch, model=mc, optim=cfg.optim)
    module = FinetuneModule(train_cfg, model, cfg.anchor_weight)
    best = BestOnHeldOut(evaluate, model, before, cfg.eval.every_epochs, cfg.eval.patience)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remaining = None if cfg.max_minutes is None else max(
        0.1, cfg.max_minutes - (time.perf_counter() - start) / 60)
    trainer = pl.Trainer(
        accelerator="cpu" if not torch.cuda.is_available() else "auto", devices=1,
        max_epochs=cfg.max_epochs, limit_train_batches=cfg.steps_per_epoch,
        max_time=None if remaining is None else {"minutes": remaining},
        gradient_clip_val=cfg.optim.grad_clip, logger=CSVLogger(out_dir, name="logs"),
        callbacks=[best, ProgressReporter(total, progress, cancel)], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=5, default_root_dir=out_dir)
    trainer.fit(module, loader)
    cancelled = bool(cancel is not None and cancel())
    if not cancelled and trainer.global_step > best.last_step:  # stopped mid-epoch (time limit)
        best.check(trainer, model)
    model.load_state_dict(best.best_state)
    result = FinetuneResult(None, None, [p.pair_id for p in train_pairs],
                            [p.pair_id for p in heldout], rejected, before, best.best,
                            trainer.global_step, best.best_step,
                            (time.perf_counter() - start) / 60, best.history, cancelled)
    if trainer.global_step > 0:
        result.weights = save_weights(model, cfg.export, _card(cfg, result, len(pairs)))
        result.card = card_path(result.weights)
    return result
