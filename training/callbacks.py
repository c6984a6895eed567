"""Training callbacks: the vessel curriculum (``CurriculumConfig``), early stopping that waits out the noisy
start, and progress/cancel hooks for the GUI and the CLI."""
from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, EarlyStopping

from retreg.training.config import CurriculumConfig


def curriculum_values(epoch: int, cfg: CurriculumConfig) -> tuple[float, float]:
    """(vessel_soft_lambda, vessel_loss_weight_scaler) for ``epoch``: constant while teaching,
    linear weaning, then (0, 1) for good."""
    if epoch < cfg.teach_until:
        progress = 0.0
    elif epoch >= cfg.wean_until:
        progress = 1.0
    else:
        progress = (epoch - cfg.teach_until) / (cfg.wean_until - cfg.teach_until)
    lam = cfg.lambda_start * (1.0 - progress)
    scaler = cfg.scaler_start + (1.0 - cfg.scaler_start) * progress
    return lam, scaler


class CurriculumScheduler(Callback):
    """Sets the vessel prior (model) and the vessel loss weight (module) at each epoch start."""

    def __init__(self, cfg: CurriculumConfig) -> None:
        self.cfg = cfg

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lam, scaler = curriculum_values(trainer.current_epoch, self.cfg)
        pl_module.model.coarse_matching.vessel_soft_lambda = lam
        pl_module.vessel_loss_scaler = scaler
        pl_module.log_dict({"sched/lambda": lam, "sched/loss_scaler": scaler},
                           on_step=False, on_epoch=True, sync_dist=True)


class DelayedEarlyStopping(EarlyStopping):
    """Early stopping that ignores every check before ``start_epoch`` (the loss oscillates while
    the randomly initialised transformer settles; stopping then would be premature)."""

    def __init__(self, start_epoch: int, patience: int, monitor: str, mode: str) -> None:
        super().__init__(monitor=monitor, patience=patience, mode=mode, check_on_train_epoch_end=False)
        self.start_epoch = start_epoch

    def _should_skip_check(self, trainer: pl.Trainer) -> bool:
        return trainer.current_epoch < self.start_epoch or super()._should_skip_check(trainer)


ProgressFn = Callable[[int, int, dict], None]


class ProgressReporter(Callback):
    """Calls ``progress(step, total, metrics)`` after every step and stops cleanly (checkpoint
    kept) as soon as ``cancel()`` returns True."""

    def __init__(self, total_steps: int, progress: ProgressFn | None = None,
                 cancel: Callable[[], bool] | None = None) -> None:
        self.total_steps, self.progress, self.cancel = total_steps, progress, cancel

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs,
                           batch, batch_idx: int) -> None:
        if self.progress is not None:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
            self.progress(trainer.global_step, self.total_steps, metrics)
        if self.cancel is not None and self.cancel():
            trainer.should_stop = True


def phase_at(epoch: int, schedule: list[tuple[int, int]]) -> int:
    """The phase of ``epoch`` (0-based) in a schedule of (phase, epochs) blocks; past the end,
    the last phase."""
    end = 0
    for phase, epochs in schedule:
        end += epochs
        if epoch < end:
            return phase
    return schedule[-1][0]


class PhaseSchedule(Callback):
    """Training in phases (the SuperRetina-style matcher's warm-up -> geometry -> PKE, plan v5):
    sets ``pl_module.phase`` at each epoch start from ``schedule`` (the loss reads it), and
    calls ``on_phase_end(phase)`` after the last epoch of each phase (snapshot weights for the
    phase ablation). Derived from the epoch alone, so a resumed run lands in the right phase."""

    def __init__(self, schedule: list[tuple[int, int]],
                 on_phase_end: Callable[[int], None] | None = None) -> None:
        self.schedule, self.on_phase_end = [tuple(s) for s in schedule], on_phase_end

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.phase = phase_at(trainer.current_epoch, self.schedule)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.log("sched/phase", float(pl_module.phase), on_epoch=True)
        epoch, end = trainer.current_epoch, 0
        for phase, epochs in self.schedule:
            end += epochs
            if epoch == end - 1 and self.on_phase_end is not None:
                self.on_phase_end(phase)
