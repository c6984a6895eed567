"""Crash recovery: the unsaved document is written (atomically, by core) to a recovery file;
the file is removed when the work is saved or deliberately discarded, so finding it at start-up
means the last session ended without saving and its work can be offered back.

Plain Python: the caller debounces (``DEBOUNCE_MS``) and asks the user.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from retreg.core.annotations import Annotation, load_annotation, save_annotation
from retreg.core.errors import RetRegError
from retreg.gui.document import Document

RECOVERY_NAME = "recovery.json"
DEBOUNCE_MS = 800


class RecoveryStore:
    """The recovery file of one document, ``directory/recovery.json``."""

    def __init__(self, doc: Document, directory: str | Path) -> None:
        self.doc = doc
        self.path = Path(directory) / RECOVERY_NAME
        self.suspended = False  # while recovered work is being loaded: keep the file

    def on_history(self) -> bool:
        """After an edit, undo or save: True when an autosave should be scheduled; when
        nothing is unsaved the file is removed."""
        if self.suspended:
            return False
        if self.doc.is_dirty:
            return True
        self.discard()
        return False

    def save_now(self) -> str | None:
        """Write the unsaved document; returns an error message instead of raising."""
        d = self.doc
        if not (d.has_images and d.fixed_path and d.moving_path and d.is_dirty):
            return None
        try:
            save_annotation(self.path, d.to_annotation())
        except (OSError, RetRegError) as exc:
            return f"Autosave to {self.path} failed: {exc}"
        return None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def pending(self) -> Path | None:
        """The recovery file left by a session that ended with unsaved work, if any."""
        return self.path if self.path.is_file() else None

    def question(self) -> str | None:
        """What to ask at start-up, or None when there is nothing to offer."""
        path = self.pending()
        if path is None:
            return None
        when = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        return (f"RetReg did not close normally; unsaved point pairs from {when} were kept.\n"
                "Recover them?")

    def load(self) -> Annotation:
        return load_annotation(self.path)
