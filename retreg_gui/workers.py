"""Background work off the GUI thread: registration and training.

Qt delivers a worker's signal in the GUI thread only when the receiver is a slot of a QObject
living there; a lambda or plain function would run in the worker thread. So every signal here
is meant to be connected to methods of GUI-thread widgets, never to lambdas.
"""
from __future__ import annotations

import threading
import traceback
from pathlib import Path
from typing import Any, Callable

from PySide6 import QtCore

from retreg.core.errors import RetRegError
from retreg.core.matchers import get_matcher
from retreg.core.pipeline import reestimate, register
from retreg.gui.controller import RegisterJob


def user_message(exc: BaseException) -> str:
    """One line for an error dialog: our errors carry user-facing text; others get their type."""
    if isinstance(exc, (RetRegError, ValueError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class RegisterWorker(QtCore.QObject):
    """Runs ``core.pipeline.register``; keeps loaded matchers so weights load only once."""

    finished = QtCore.Signal(object, object)  # job, RegistrationResult
    failed = QtCore.Signal(object, str, str)  # job, message, traceback

    def __init__(self) -> None:
        super().__init__()
        self._matchers: dict[tuple[str, str], Any] = {}

    def matcher(self, name: str, weights: Path | None):
        key = (name, str(weights or ""))
        if key not in self._matchers:
            self._matchers[key] = get_matcher(name, weights=weights)
        return self._matchers[key]

    @QtCore.Slot(object)
    def run(self, job: RegisterJob) -> None:
        try:
            result = register(job.fixed_img, job.moving_img, job.mode,
                              matcher=self.matcher(job.matcher, job.weights),
                              transform=job.transform_type, config=job.config())
        except Exception as exc:  # reported in a dialog, never a crash of the app
            self.failed.emit(job, user_message(exc), traceback.format_exc())
            return
        self.finished.emit(job, result)


class SwitchPreparer(QtCore.QObject):
    """Re-estimates the model's result under the slow transform types (``reestimate``, the
    non-rigid ones take ~0.5 s on a 2912-px pair) on a background thread while the user looks
    at the result, so a later switch to one of them is instant (``Document.offer_prepared``).
    ``ready`` (base result, transform type, re-estimated result) is emitted per type."""

    ready = QtCore.Signal(object, str, object)

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QtCore.QThreadPool(self)
        self.pool.setMaxThreadCount(1)

    def prepare(self, base: Any, types: tuple[str, ...]) -> None:
        if types:
            self.pool.start(_Reestimate(self, base, types))

    def shutdown(self) -> None:
        """Wait for the work in flight (at most one re-estimate per type)."""
        self.pool.waitForDone()


class _Reestimate(QtCore.QRunnable):
    def __init__(self, owner: SwitchPreparer, base: Any, types: tuple[str, ...]) -> None:
        super().__init__()
        self.owner, self.base, self.types = owner, base, types

    def run(self) -> None:
        for t in self.types:
            try:
                out = reestimate(self.base, t)
            except Exception:  # noqa: BLE001 - the switch itself refits and reports it
                continue
            self.owner.ready.emit(self.base, t, out)


class RegisterRunner(QtCore.QObject):
    """Owns one long-lived registration thread (so a loaded model stays loaded)."""

    _requested = QtCore.Signal(object)
    busy_changed = QtCore.Signal(bool)

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.thread = QtCore.QThread(self)
        self.thread.setObjectName("retreg-register")
        self.worker = RegisterWorker()
        self.worker.moveToThread(self.thread)
        self._requested.connect(self.worker.run)
        self.worker.finished.connect(self._done)
        self.worker.failed.connect(self._done)
        self.thread.start()
        self.busy = False

    def start(self, job: RegisterJob) -> bool:
        if self.busy:
            return False
        self.busy = True
        self.busy_changed.emit(True)
        self._requested.emit(job)
        return True

    @QtCore.Slot()
    def _done(self, *_) -> None:
        self.busy = False
        self.busy_changed.emit(False)

    def shutdown(self) -> None:
        """Finish the job in progress, stop the thread, and deliver no more results."""
        self.worker.finished.disconnect()
        self.worker.failed.disconnect()
        self.thread.quit()
        self.thread.wait()


class TrainWorker(QtCore.QObject):
    """Runs ``train_fn(config, progress, cancel, **kwargs)`` (``training.api.train`` or
    ``training.finetune.finetune``); cancel is a flag the run polls after every step."""

    progress = QtCore.Signal(int, int, object)  # step, total, metrics
    finished = QtCore.Signal(object)
    failed = QtCore.Signal(str, str)

    def __init__(self, train_fn: Callable, config: Any, kwargs: dict | None = None) -> None:
        super().__init__()
        self.train_fn, self.config, self.kwargs = train_fn, config, dict(kwargs or {})
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def _report(self, step: int, total: int, metrics: dict) -> None:
        self.progress.emit(int(step), int(total), dict(metrics))

    @QtCore.Slot()
    def run(self) -> None:
        import torch

        threads = torch.get_num_threads()  # training sets the process-wide count; restore it
        try:
            result = self.train_fn(self.config, progress=self._report,
                                   cancel=self._cancel.is_set, **self.kwargs)
        except Exception as exc:
            self.failed.emit(user_message(exc), traceback.format_exc())
            return
        finally:
            torch.set_num_threads(threads)
        self.finished.emit(result)


def start_training(train_fn: Callable, config: Any, kwargs: dict | None,
                   parent: QtCore.QObject) -> tuple[QtCore.QThread, TrainWorker]:
    """A thread (not yet started) that runs a ``TrainWorker`` and quits when it ends; the
    caller connects the worker's signals to GUI-thread slots, then starts the thread."""
    thread = QtCore.QThread(parent)
    thread.setObjectName("retreg-train")
    worker = TrainWorker(train_fn, config, kwargs)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit)
    worker.failed.connect(thread.quit)
    return thread, worker
