"""A case folder of the clinic's layout (``retreg.core.cases``) as a list to step through;
skipped cases are listed greyed out with the reason, so a bad folder is visible."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from retreg.core.cases import scan_cases

CASE_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1


class CaseBrowser(QtWidgets.QWidget):
    case_chosen = QtCore.Signal(object)  # retreg.core.cases.Case

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.root: Path | None = None
        self.header = QtWidgets.QLabel("No case folder")
        self.header.setWordWrap(True)
        self.list = QtWidgets.QListWidget()
        self.list.itemActivated.connect(self._activated)
        self.list.currentItemChanged.connect(self._current_changed)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.header)
        lay.addWidget(self.list)

    def load(self, root: str | Path, mode: str) -> tuple[int, int]:
        """List the cases under ``root`` for ``mode`` (required: a case folder does not imply
        one); returns (usable, skipped) counts. Raises ``DatasetError`` when nothing is usable."""
        cases, skipped = scan_cases(root, mode)
        self.root = Path(root)
        self.list.blockSignals(True)
        self.list.clear()
        for case in cases:
            item = QtWidgets.QListWidgetItem(case.name)
            item.setData(CASE_ROLE, case)
            item.setToolTip(f"{case.fixed_path.name}\n{case.moving_path.name}")
            self.list.addItem(item)
        for name, reason in skipped:
            item = QtWidgets.QListWidgetItem(f"{name} (skipped)")
            item.setToolTip(reason)
            item.setFlags(QtCore.Qt.ItemFlag.NoItemFlags)
            item.setForeground(QtGui.QBrush(QtGui.QColor(140, 140, 140)))
            self.list.addItem(item)
        self.list.blockSignals(False)
        self.header.setText(f"{self.root.name} ({mode}): {len(cases)} cases"
                            + (f", {len(skipped)} skipped" if skipped else ""))
        return len(cases), len(skipped)

    def _activated(self, item: QtWidgets.QListWidgetItem) -> None:
        case = item.data(CASE_ROLE)
        if case is not None:
            self.case_chosen.emit(case)

    def _current_changed(self, current, _previous) -> None:
        if current is not None:
            self._activated(current)

    def step(self, delta: int) -> bool:
        """Go to the next (+1) or previous (-1) usable case; False at either end."""
        usable = [i for i in range(self.list.count()) if self.list.item(i).data(CASE_ROLE)]
        if not usable:
            return False
        row = self.list.currentRow()
        pos = usable.index(row) + delta if row in usable else (0 if delta > 0 else len(usable) - 1)
        if not 0 <= pos < len(usable):
            return False
        self.list.setCurrentRow(usable[pos])
        return True
