"""Training from the app: pretraining on synthetic data or sim-to-real fine-tuning on exported
real pairs, in a QThread with progress, live loss/metric curves, cancel and resume.

The panel only builds a config and calls ``training.api.train`` / ``training.finetune.finetune``;
when a run ends with weights, ``weights_ready`` offers them to the main window.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from core.types import Mode
from retreg_gui.dialogs import show_error
from retreg_gui.settings import Settings
from retreg_gui.workers import start_training

PRETRAIN, FINETUNE = "pretrain", "finetune"


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
        self._build()

    # ------------------------------------------------------------------ form
    def _build(self) -> None:
        self.kind = QtWidgets.QComboBox()
        self.kind.addItem("Pretrain on synthetic data", PRETRAIN)
        self.kind.addItem("Fine-tune on exported real pairs (sim-to-real)", FINETUNE)
        self.data_dir = self._path_field("Synthetic case folder (empty: render on the fly)",
                                         directory=True)
        self.real_dir = self._path_field("Exported real-pair folder (manifest.json)",
                                         directory=True)
        self.base_weights = self._path_field("Start from weights (.safetensors)",
                                             filt="safetensors (*.safetensors)")
        self.out_dir = self._path_field("Output folder", directory=True)
        self.out_dir[0].setText(str(Path.cwd() / "runs" / "gui"))
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
        self.resume = QtWidgets.QCheckBox("Resume from the last checkpoint in the output folder")

        form = QtWidgets.QFormLayout()
        form.addRow("Run", self.kind)
        self.rows = {
            "data": self._add_row(form, "Synthetic data", self.data_dir[2]),
            "cases": self._add_row(form, "Synthetic cases", self.n_cases),
            "real": self._add_row(form, "Real pairs", self.real_dir[2]),
        }
        self._add_row(form, "Start weights", self.base_weights[2])
        self._add_row(form, "Modes", mode_row)
        self._add_row(form, "Image size", self.size)
        self._add_row(form, "Batch size", self.batch)
        self._add_row(form, "Steps per epoch", self.steps)
        self._add_row(form, "Epochs", self.epochs)
        self._add_row(form, "Time limit (min)", self.minutes)
        self._add_row(form, "Learning rate", self.lr)
        self._add_row(form, "Output", self.out_dir[2])
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
        if isinstance(field, QtWidgets.QLayout):
            form.addRow(lbl, field)
        else:
            form.addRow(lbl, field)
        return lbl

    @staticmethod
    def _spin(lo: int, hi: int, value: int, step: int = 1) -> QtWidgets.QSpinBox:
        s = QtWidgets.QSpinBox()
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setValue(value)
        return s

    def _path_field(self, tip: str, directory: bool = False, filt: str = ""):
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
        return edit, btn, box

    def _on_kind(self) -> None:
        pre = self.kind.currentData() == PRETRAIN
        for key, visible in (("data", pre), ("cases", pre), ("real", not pre)):
            self.rows[key].setVisible(visible)
        self.data_dir[2].setVisible(pre)
        self.n_cases.setVisible(pre)
        self.real_dir[2].setVisible(not pre)

    # ------------------------------------------------------------------ run
    @property
    def running(self) -> bool:
        return self.thread is not None

    def build_config(self):
        """The training config from the form (raises ValueError with a reason)."""
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

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
