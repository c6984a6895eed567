"""Training from the app: pretraining on synthetic data, sim-to-real fine-tuning on exported
real pairs, or the SuperRetina-style matcher's phases 1-3, in a QThread with progress, live
loss/metric curves, cancel and resume.

The panel only builds a config and calls ``training.api.train`` / ``training.finetune.finetune``
/ ``training.superretina_train.train_superretina``; when a LoFTR run ends with weights,
``weights_ready`` offers them to the main window.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import NamedTuple

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from retreg.core.types import Mode
from retreg.gui.dialogs import show_error
from retreg.gui.settings import Settings
from retreg.gui.workers import start_training

PRETRAIN, FINETUNE, SUPERRETINA = "pretrain", "finetune", "superretina"


class PathField(NamedTuple):
    """A line edit with a browse button; ``widget`` holds both."""

    edit: QtWidgets.QLineEdit
    widget: QtWidgets.QWidget


class CurvePlot(pg.PlotWidget):
    """Step-indexed curves, one per metric name, added as names appear."""

    def __init__(self, title: str) -> None:
        super().__init__(title=title)
        self.showGrid(x=True, y=True, alpha=0.3)
        self.addLegend(offset=(5, 5))
        self.setLabel("bottom", "step")
        self.data: dict[str, tuple[list[float], list[float]]] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}

    def clear_curves(self) -> None:
        for c in self.curves.values():
            self.removeItem(c)
        self.data, self.curves = {}, {}
        self.plotItem.legend.clear()

    def add(self, name: str, step: float, value: float) -> None:
        if not math.isfinite(value):
            return
        xs, ys = self.data.setdefault(name, ([], []))
        if xs and xs[-1] == step and ys[-1] == value:
            return
        xs.append(step)
        ys.append(value)
        if name not in self.curves:
            pen = pg.intColor(len(self.curves), hues=6, values=1, maxValue=230)
            self.curves[name] = self.plot(name=name, pen=pg.mkPen(pen, width=1.5))
        self.curves[name].setData(xs, ys)


class TrainingPanel(QtWidgets.QWidget):
    """Settings form, start/cancel, progress bar and curves for one training run at a time."""

    weights_ready = QtCore.Signal(str)
    run_finished = QtCore.Signal(str)  # "done" | "cancelled" | "failed"

    def __init__(self, settings: Settings, parent=None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.thread: QtCore.QThread | None = None
        self.worker = None
        self._t0 = 0.0
        self._run_kind = PRETRAIN
        self._build()

    # ------------------------------------------------------------------ form
    def _build(self) -> None:
        self.kind = QtWidgets.QComboBox()
        self.kind.addItem("Pretrain on synthetic data", PRETRAIN)
        self.kind.addItem("Fine-tune on exported real pairs (sim-to-real)", FINETUNE)
        self.kind.addItem("Pretrain the SuperRetina-style matcher (phases 1-3, synthetic)",
                          SUPERRETINA)
        self.data_dir = self._path_field("Synthetic case folder (empty: render on the fly)",
                                         directory=True)
        self.real_dir = self._path_field("Exported real-pair folder (manifest.json)",
                                         directory=True)
        self.base_weights = self._path_field("Start from weights (.safetensors)",
                                             filt="safetensors (*.safetensors)")
        self.out_dir = self._path_field("Output folder", directory=True)
        self.out_dir.edit.setText(str(Path.cwd() / "runs" / "gui"))
        self.modes = {}
        mode_row = QtWidgets.QHBoxLayout()
        for m in Mode:
            cb = QtWidgets.QCheckBox(m.value)
            cb.setChecked(m in (Mode.CFFA, Mode.CFOCT, Mode.OCTFA))
            self.modes[m.value] = cb
            mode_row.addWidget(cb)
        self.n_cases = self._spin(1, 100000, 200)
        self.size = self._spin(64, 1024, 256, step=32)
        self.batch = self._spin(1, 64, 4)
        self.steps = self._spin(1, 100000, 40)
        self.epochs = self._spin(1, 10000, 20)
        self.minutes = self._spin(0, 10000, 0)
        self.minutes.setSpecialValueText("no limit")
        self.lr = QtWidgets.QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(1e-3)
        self.val_pairs = self._spin(1, 100, 8)
        self.resume = QtWidgets.QCheckBox("Resume from the last checkpoint in the output folder")

        form = QtWidgets.QFormLayout()
        form.addRow("Run", self.kind)
        self.rows = {
            "data": self._add_row(form, "Synthetic data", self.data_dir.widget),
            "cases": self._add_row(form, "Synthetic cases", self.n_cases),
            "real": self._add_row(form, "Real pairs", self.real_dir.widget),
        }
        self._add_row(form, "Start weights", self.base_weights.widget)
        self.base_weights.edit.setToolTip("Pretraining loads only the backbone from these weights")
        self._add_row(form, "Modes", mode_row)
        self._add_row(form, "Image size", self.size)
        self._add_row(form, "Batch size", self.batch)
        self._add_row(form, "Steps per epoch", self.steps)
        self._add_row(form, "Epochs", self.epochs)
        self._add_row(form, "Time limit (min)", self.minutes)
        self._add_row(form, "Learning rate", self.lr)
        self._add_row(form, "Validation pairs/mode", self.val_pairs)
        self._add_row(form, "Output", self.out_dir.widget)
        form.addRow(self.resume)

        self.start_btn = QtWidgets.QPushButton("Start training")
        self.cancel_btn = QtWidgets.QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(self.cancel)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.start_btn)
        buttons.addWidget(self.cancel_btn)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setFormat("%v / %m steps")
        self.status = QtWidgets.QLabel("Idle")
        self.status.setWordWrap(True)
        self.loss_plot = CurvePlot("Loss")
        self.metric_plot = CurvePlot("Validation metrics")
        for p in (self.loss_plot, self.metric_plot):
            p.setMinimumHeight(150)

        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.loss_plot, 1)
        lay.addWidget(self.metric_plot, 1)
        self.kind.currentIndexChanged.connect(self._on_kind)
        self._on_kind()

    @staticmethod
    def _add_row(form: QtWidgets.QFormLayout, label: str, field) -> QtWidgets.QLabel:
        lbl = QtWidgets.QLabel(label)
        form.addRow(lbl, field)
        return lbl

    @staticmethod
    def _spin(lo: int, hi: int, value: int, step: int = 1) -> QtWidgets.QSpinBox:
        s = QtWidgets.QSpinBox()
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setValue(value)
        return s

    def _path_field(self, tip: str, directory: bool = False, filt: str = "") -> "PathField":
        edit = QtWidgets.QLineEdit()
        edit.setPlaceholderText(tip)
        edit.setToolTip(tip)
        btn = QtWidgets.QToolButton()
        btn.setText("…")

        def browse() -> None:
            start = edit.text() or self.settings.last_dir("training")
            if directory:
                path = QtWidgets.QFileDialog.getExistingDirectory(self, tip, start)
            else:
                path, _ = QtWidgets.QFileDialog.getOpenFileName(self, tip, start, filt)
            if path:
                edit.setText(path)
                self.settings.set_last_dir("training", path)

        btn.clicked.connect(browse)
        box = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit)
        row.addWidget(btn)
        return PathField(edit, box)

    def _on_kind(self) -> None:
        kind = self.kind.currentData()
        pre = kind != FINETUNE
        # the SuperRetina-style trainer renders its synthetic cases on the fly
        for key, visible in (("data", kind == PRETRAIN), ("real", not pre)):
            self.rows[key].setVisible(visible)
        self.data_dir.widget.setVisible(kind == PRETRAIN)
        self.real_dir.widget.setVisible(not pre)
        self.rows["cases"].setText("Synthetic cases" if pre else "Synthetic replay cases")
        self.lr.setValue(1e-3 if pre else 1e-4)
        if kind == SUPERRETINA:
            self.size.setValue(320)  # its working scale (training/configs/superretina_v1.yaml)
        # Fine-tuning keeps the best held-out weights rather than checkpoints: no resume.
        self.resume.setEnabled(pre)
        if not pre:
            self.resume.setChecked(False)

    # ------------------------------------------------------------------ run
    @property
    def running(self) -> bool:
        return self.thread is not None

    def checkpoint(self) -> Path:
        """Where a run in the output folder leaves its resumable checkpoint."""
        return Path(self.out_dir.edit.text()) / "checkpoints" / "last.ckpt"

    def build_config(self):
        """The training or fine-tuning config from the form (raises ValueError with a reason)."""
        modes = [m for m, cb in self.modes.items() if cb.isChecked()]
        if not modes:
            raise ValueError("choose at least one mode to train")
        out = self.out_dir.edit.text().strip()
        if not out:
            raise ValueError("choose an output folder")
        init = self.base_weights.edit.text().strip() or None
        if init and not Path(init).is_file():
            raise ValueError(f"start weights {init} do not exist")
        if self.kind.currentData() == FINETUNE:
            return self._finetune_config(out, init, modes)
        if self.kind.currentData() == SUPERRETINA:
            return self._superretina_config(out, init, modes)
        return self._pretrain_config(out, init, modes)

    def _finetune_config(self, out: str, init: str | None, modes: list[str]):
        from retreg.training.config import OptimConfig
        from retreg.training.finetune import FinetuneConfig, FinetuneData

        real = self.real_dir.edit.text().strip()
        if not real or not (Path(real) / "manifest.json").is_file():
            raise ValueError("choose an exported real-pair folder (File > Export for "
                             "fine-tuning writes one, with its manifest.json)")
        if init is None:
            raise ValueError("fine-tuning needs start weights (a trained model)")
        name = Path(out).name or "retreg_loftr_ft"
        data = FinetuneData(size=self.size.value(), batch_size=self.batch.value(),
                            num_workers=0, replay_modes=modes,
                            replay_cases=self.n_cases.value())
        return FinetuneConfig(name=name, annotations=real, init_weights=init,
                              export=str(Path(out) / f"{name}.safetensors"), out_dir=out,
                              max_epochs=self.epochs.value(), steps_per_epoch=self.steps.value(),
                              max_minutes=self.minutes.value() or None, torch_threads=1,
                              data=data, optim=OptimConfig(lr=self.lr.value(), warmup_steps=20))

    def _pretrain_config(self, out: str, init: str | None, modes: list[str]):
        from retreg.training.config import DataConfig, OptimConfig, TrainConfig

        data = DataConfig(modes=modes, root=self.data_dir.edit.text().strip() or None,
                          n_synth_cases=self.n_cases.value(), size=self.size.value(),
                          batch_size=self.batch.value(), num_workers=0,
                          val_pairs_per_mode=self.val_pairs.value())
        return TrainConfig(name=Path(out).name or "retreg_loftr", out_dir=out,
                           max_epochs=self.epochs.value(), steps_per_epoch=self.steps.value(),
                           max_minutes=self.minutes.value() or None,
                           val_every_epochs=max(1, min(5, self.epochs.value())),
                           init_backbone=init, torch_threads=1, data=data,
                           optim=OptimConfig(lr=self.lr.value()))

    def _superretina_config(self, out: str, init: str | None, modes: list[str]):
        from retreg.training.config import OptimConfig
        from retreg.training.fast_train import FastDataConfig
        from retreg.training.superretina_train import (PhaseConfig, SuperRetinaTrainConfig,
                                                       split_schedule)

        data = FastDataConfig(modes=modes, n_synth_cases=self.n_cases.value(),
                              size=self.size.value(), batch_size=self.batch.value(),
                              val_pairs_per_mode=self.val_pairs.value())
        epochs = self.epochs.value()
        return SuperRetinaTrainConfig(
            name=Path(out).name or "retreg_superretina", out_dir=out, max_epochs=epochs,
            steps_per_epoch=self.steps.value(), max_minutes=self.minutes.value() or None,
            val_every_epochs=max(1, min(2, epochs)), init_weights=init, torch_threads=1,
            data=data, phases=PhaseConfig(schedule=split_schedule(epochs)),
            optim=OptimConfig(lr=self.lr.value(), weight_decay=0.01, warmup_steps=50))

    def _train_function(self):
        if self.kind.currentData() == SUPERRETINA:
            from retreg.training.superretina_train import train_superretina

            return train_superretina
        if self.kind.currentData() == PRETRAIN:
            from retreg.training.api import train

            return train
        from retreg.training.finetune import finetune

        return finetune

    def start(self) -> None:
        if self.running:
            return
        try:
            config = self.build_config()
            train_fn = self._train_function()
        except (ValueError, ImportError) as exc:
            show_error(self, "Cannot start training", str(exc))
            return
        kwargs = {}
        if self.resume.isChecked():
            if not self.checkpoint().is_file():
                show_error(self, "Cannot resume", f"No checkpoint at {self.checkpoint()}: start "
                           "a new run, or choose the output folder of the run to resume.")
                return
            kwargs["resume"] = str(self.checkpoint())
        self.loss_plot.clear_curves()
        self.metric_plot.clear_curves()
        self.progress.setRange(0, config.max_epochs * config.steps_per_epoch)
        self.progress.setValue(0)
        self.thread, self.worker = start_training(train_fn, config, kwargs, self)
        self.worker.progress.connect(self.on_progress)
        self.worker.finished.connect(self.on_finished)
        self.worker.failed.connect(self.on_failed)
        self.thread.finished.connect(self._on_thread_finished)
        self._t0 = time.perf_counter()
        self._run_kind = self.kind.currentData()
        self.status.setText("Starting (preparing data)…")
        self.start_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.thread.start()

    @QtCore.Slot(int, int, object)
    def on_progress(self, step: int, total: int, metrics: dict) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(step, total))
        for name, value in metrics.items():
            if name.startswith("val/"):
                self.metric_plot.add(name, step, float(value))
            elif name.startswith("train/") and not name.startswith("train/n_"):
                self.loss_plot.add(name, step, float(value))
        elapsed = time.perf_counter() - self._t0
        eta = elapsed / step * (total - step) if step else math.nan
        loss = metrics.get("train/loss")
        self.status.setText(f"Step {step}/{total}"
                            + (f", loss {loss:.4f}" if loss is not None else "")
                            + (f", about {eta / 60:.1f} min left" if math.isfinite(eta) else ""))

    @QtCore.Slot(object)
    def on_finished(self, result) -> None:
        """``result`` is a ``training.api.TrainResult`` or ``training.finetune.FinetuneResult``."""
        state = "cancelled" if result.cancelled else "done"
        weights = result.weights
        text = (f"{'Cancelled' if state == 'cancelled' else 'Finished'} after "
                f"{result.steps} steps ({result.minutes:.1f} min).")
        if hasattr(result, "improved"):  # fine-tuning: judged on held-out real pairs
            text += (f" Held-out error {result.before.score:.1f} → {result.after.score:.1f} px"
                     + ("" if result.improved else " (no improvement: start weights kept)") + ".")
        elif state == "cancelled":
            text += f" Resume from {self.checkpoint()} with the checkbox above."
        self.status.setText(text + (f" Weights: {weights}" if weights else ""))
        self.run_finished.emit(state)
        if weights and self._run_kind == SUPERRETINA:  # not LoFTR weights: no re-registration
            self.status.setText(self.status.text() + " (the app's superretina matcher uses the "
                                "bundled weights; use these with `retreg register --matcher "
                                "superretina --weights`)")
        elif weights:
            self.weights_ready.emit(str(weights))

    @QtCore.Slot(str, str)
    def on_failed(self, message: str, details: str) -> None:
        self.status.setText(f"Failed: {message}")
        self.run_finished.emit("failed")
        show_error(self, "Training failed", message, details)

    @QtCore.Slot()
    def _on_thread_finished(self) -> None:
        self.thread.deleteLater()
        self.thread, self.worker = None, None
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.status.setText("Cancelling after the current step…")
            self.cancel_btn.setEnabled(False)

    def confirm_stop(self) -> bool:
        """Before closing the app: a running training is cancelled (if the user agrees)."""
        if not self.running:
            return True
        answer = QtWidgets.QMessageBox.question(
            self, "Training is running", "Cancel the training run and quit? (Its last "
            "checkpoint is kept; resume it later.)")
        if answer != QtWidgets.QMessageBox.StandardButton.Yes:
            return False
        self.cancel()
        self.thread.wait()
        return True
