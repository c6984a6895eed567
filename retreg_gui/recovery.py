"""Crash recovery: the unsaved document is written (debounced, atomically) to a recovery file;
the file is removed when the work is saved or deliberately discarded, so finding it at start-up
means the last session ended without saving and its work can be offered back."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore

from retreg.core.annotations import Annotation, load_annotation, save_annotation
from retreg.core.errors import RetRegError
from retreg.gui.session import Session

RECOVERY_NAME = "recovery.json"
DEBOUNCE_MS = 800


def default_recovery_dir() -> Path:
    loc = QtCore.QStandardPaths.writableLocation(
        QtCore.QStandardPaths.StandardLocation.AppDataLocation)
    return Path(loc or Path.home() / ".retreg")


class RecoveryStore(QtCore.QObject):
    """Autosaves ``session`` to ``directory/recovery.json`` shortly after each change."""

    error = QtCore.Signal(str)

    def __init__(self, session: Session, directory: str | Path | None = None,
                 parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.path = Path(directory or default_recovery_dir()) / RECOVERY_NAME
        self.timer = QtCore.QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self.save_now)
        self.enabled = True
        # The undo stack's signals, not document_changed: they come after the index moved,
        # so "dirty" is already up to date.
        session.undo_stack.indexChanged.connect(self._on_change)
        session.undo_stack.cleanChanged.connect(self._on_change)

    def detach(self) -> None:
        """Stop watching the session (its undo stack emits while it is being destroyed)."""
        self.timer.stop()
        self.session.undo_stack.indexChanged.disconnect(self._on_change)
        self.session.undo_stack.cleanChanged.disconnect(self._on_change)

    def _on_change(self, *_) -> None:
        if not self.enabled:
            return
        if self.session.is_dirty:
            self.timer.start()
        else:
            self.timer.stop()
            self.discard()

    def save_now(self) -> None:
        s = self.session
        if not (s.has_images and s.fixed_path and s.moving_path and s.is_dirty):
            return
        try:
            save_annotation(self.path, s.to_annotation())
        except (OSError, RetRegError) as exc:
            self.error.emit(f"Autosave to {self.path} failed: {exc}")

    def discard(self) -> None:
        self.timer.stop()
        self.path.unlink(missing_ok=True)

    def pending(self) -> Path | None:
        """The recovery file left by a session that ended with unsaved work, if any."""
        return self.path if self.path.is_file() else None

    def load(self) -> Annotation:
        return load_annotation(self.path)
