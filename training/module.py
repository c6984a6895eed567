"""Lightning wrapper of the LoFTR-style model: losses, layered learning rates, and validation
by full registration (model -> spatial binning -> RANSAC) on held-out synthetic pairs."""
from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import torch

from retreg.core.hypotheses import coarse_fit
from retreg.core.matchers.loftr.model import RetRegLoFTR
from retreg.core.metrics import mean_corner_error
from retreg.core.types import Matches
from retreg.training.config import TrainConfig
from retreg.training.losses import loftr_loss

def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
                  ) -> dict:
    """Lightning's ``configure_optimizers`` answer: linear warm-up over ``warmup_steps``, then
    cosine decay to 5 % by ``total_steps``, stepped every optimiser step."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


SUCCESS_PX_AT_512 = 5.0  # a registration succeeds when its mean corner error is below this
RANSAC_THRESHOLD_PX = 3.0  # at the model's input resolution


def register_pair(model: RetRegLoFTR, image0: torch.Tensor, image1: torch.Tensor,
                  mask0: torch.Tensor, mask1: torch.Tensor) -> np.ndarray | None:
    """3x3 image1 -> image0 matrix (input pixels) from one (C, H, W) pair, or None on failure."""
    out = model.match(image0[None], image1[None], mask0[None], mask1[None])
    h, w = image0.shape[1:]
    matches = Matches(out.kpts0.cpu().numpy(), out.kpts1.cpu().numpy(), out.conf.cpu().numpy())
    return coarse_fit(matches, (w, h), RANSAC_THRESHOLD_PX).model


class LoftrLightning(pl.LightningModule):
    """``vessel_loss_scaler`` is set by ``CurriculumScheduler`` each epoch."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self.model = RetRegLoFTR(config.model)
        self.vessel_loss_scaler = 1.0
        self._val_errors: list[float] = []

    def _loss(self, batch: dict):
        use_prior = self.model.coarse_matching.vessel_soft_lambda > 0
        out = self.model.forward_coarse(batch["image0"], batch["image1"],
                                        batch["vessel0"] if use_prior else None,
                                        batch["vessel1"] if use_prior else None)
        o = self.config.optim
        return loftr_loss(self.model, out, batch["gt_j"], batch["gt_xy1"], batch["vessel0"],
                          self.vessel_loss_scaler, o.fine_weight, o.max_fine, o.fine_std_weighting,
                          unmatched=(batch["unmatched0"], batch["unmatched1"]),
                          unmatched_weight=o.unmatched_weight)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self._loss(batch)
        bs = batch["image0"].shape[0]
        self.log_dict({"train/loss": terms.total.detach(), "train/coarse": terms.coarse,
                       "train/fine": terms.fine}, prog_bar=True, batch_size=bs)
        if self.config.optim.unmatched_weight:
            self.log("train/unmatched", terms.unmatched, prog_bar=True, batch_size=bs)
        self.log("train/n_gt", float(terms.n_gt), batch_size=bs)
        return terms.total

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        terms = self._loss(batch)
        self.log("val/loss", terms.total, batch_size=batch["image0"].shape[0], sync_dist=True)
        for k in range(batch["image0"].shape[0]):
            h, w = batch["image0"].shape[2:]
            H = register_pair(self.model, batch["image0"][k], batch["image1"][k],
                              batch["mask0"][k], batch["mask1"][k])
            H_gt = np.linalg.inv(batch["T_0to1"][k].double().cpu().numpy())
            err = mean_corner_error(H, H_gt, w, h) * (512.0 / max(h, w))
            self._val_errors.append(err if math.isfinite(err) else float("inf"))

    def on_validation_epoch_end(self) -> None:
        errors = np.asarray(self._val_errors or [np.inf])
        self._val_errors = []
        success = float(np.mean(errors < SUCCESS_PX_AT_512))
        median = float(np.median(errors))
        self.log_dict({"val/success": success, "val/mce_median_px512": min(median, 1e4)},
                      prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        o, total = self.config.optim, self.config.max_epochs * self.config.steps_per_epoch
        backbone = list(self.model.backbone.parameters())
        ids = {id(p) for p in backbone}
        rest = [p for p in self.model.parameters() if id(p) not in ids]
        opt = torch.optim.AdamW([{"params": backbone, "lr": o.lr * o.backbone_lr_mult},
                                 {"params": rest, "lr": o.lr}], weight_decay=o.weight_decay)
        return warmup_cosine(opt, o.warmup_steps, total)
