"""The Qt face of a ``Document``: its notifications as Qt signals, so widgets connect as usual.

Views read the document (``session.doc``) and edit it directly; this adapter holds no state.
"""
from __future__ import annotations

import weakref

from PySide6 import QtCore

from retreg.gui.document import CONTENT, HISTORY, IMAGES, REFUSED, SELECTION, Document


class Session(QtCore.QObject):
    """Emits ``images_changed``, ``document_changed`` (pairs, transform or result),
    ``selection_changed``, ``history_changed`` (undo position, saved state) and
    ``edit_refused`` (``doc.refusal`` says why) for ``doc``."""

    images_changed = QtCore.Signal()
    document_changed = QtCore.Signal()
    selection_changed = QtCore.Signal()
    history_changed = QtCore.Signal()
    edit_refused = QtCore.Signal()

    def __init__(self, doc: Document, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        # The document must not keep this QObject alive: a Python reference cycle through a
        # Qt-owned object crashes when the garbage collector breaks it.
        me = weakref.ref(self)

        def forward(signal: str):
            def emit() -> None:
                adapter = me()
                if adapter is not None:
                    getattr(adapter, signal).emit()
            return emit

        for event, signal in ((IMAGES, "images_changed"), (CONTENT, "document_changed"),
                              (SELECTION, "selection_changed"), (HISTORY, "history_changed"),
                              (REFUSED, "edit_refused")):
            doc.observe(event, forward(signal))
