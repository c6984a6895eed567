"""Every point pair with its residual under the current transform; sortable, checkable.

Selecting rows selects the pairs in the document (and the main window centres the views on the
current one); the check box in the "Use" column includes or excludes a pair, and a typed
coordinate moves its point (both undoable).
"""
from __future__ import annotations

import math

from PySide6 import QtCore, QtGui, QtWidgets

from retreg.gui.session import Session

COLUMNS = ("ID", "Use", "Source", "Residual px", "Confidence", "Fixed x", "Fixed y",
           "Moving x", "Moving y")
SORT_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1
ID_ROLE = QtCore.Qt.ItemDataRole.UserRole + 2
# editable coordinate columns: (side, axis)
COORD_COLUMNS = {5: ("fixed", 0), 6: ("fixed", 1), 7: ("moving", 0), 8: ("moving", 1)}
_ALIGN_RIGHT = QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter


class PairTableModel(QtCore.QAbstractTableModel):
    def __init__(self, session: Session, parent=None) -> None:
        super().__init__(parent)
        self.doc = session.doc
        session.document_changed.connect(self._reset)

    def _reset(self) -> None:
        self.beginResetModel()
        self.endResetModel()

    def rowCount(self, parent=QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.doc.pairs)

    def columnCount(self, parent=QtCore.QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(self, section, orientation, role=QtCore.Qt.ItemDataRole.DisplayRole):
        if orientation == QtCore.Qt.Orientation.Horizontal and role == QtCore.Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def _values(self, row: int) -> tuple:
        p = self.doc.pairs[row]
        res = self.doc.residuals.get(p.id, math.nan)
        conf = self.doc.confidence.get(p.id, math.nan)
        return (p.id, p.include, p.source, res, conf, *p.fixed, *p.moving)

    def data(self, index, role=QtCore.Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        values = self._values(row)
        value = values[col]
        if role == ID_ROLE:
            return values[0]
        if role == SORT_ROLE:
            if isinstance(value, float) and math.isnan(value):
                return math.inf  # pairs without a residual sort last
            return int(value) if isinstance(value, bool) else value
        if role == QtCore.Qt.ItemDataRole.CheckStateRole and col == 1:
            return QtCore.Qt.CheckState.Checked if value else QtCore.Qt.CheckState.Unchecked
        if role == QtCore.Qt.ItemDataRole.EditRole and col in COORD_COLUMNS:
            return value
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            if col == 1:
                return None
            if isinstance(value, float):
                return "–" if math.isnan(value) else (f"{value:.2f}" if col in (3, 4)
                                                      else f"{value:.1f}")
            return value
        if role == QtCore.Qt.ItemDataRole.TextAlignmentRole and col not in (1, 2):
            return _ALIGN_RIGHT
        if role == QtCore.Qt.ItemDataRole.ForegroundRole and not values[1]:
            return QtGui.QBrush(QtGui.QColor(150, 150, 150))
        return None

    def flags(self, index):
        f = super().flags(index)
        if index.column() == 1:
            f |= QtCore.Qt.ItemFlag.ItemIsUserCheckable
        elif index.column() in COORD_COLUMNS:
            f |= QtCore.Qt.ItemFlag.ItemIsEditable
        return f

    def setData(self, index, value, role=QtCore.Qt.ItemDataRole.EditRole) -> bool:
        if role == QtCore.Qt.ItemDataRole.CheckStateRole and index.column() == 1:
            pid = self.doc.pairs[index.row()].id
            include = QtCore.Qt.CheckState(value) == QtCore.Qt.CheckState.Checked
            self.doc.set_included([pid], include)
            return True
        if role == QtCore.Qt.ItemDataRole.EditRole and index.column() in COORD_COLUMNS:
            try:
                value = float(value)
            except (TypeError, ValueError):
                return False
            if not math.isfinite(value):
                return False
            side, axis = COORD_COLUMNS[index.column()]
            self.doc.set_coordinate(self.doc.pairs[index.row()].id, side, axis, value)
            return True
        return False


class ResidualTable(QtWidgets.QWidget):
    """The sortable pair table plus a one-line summary."""

    pair_activated = QtCore.Signal(int)

    def __init__(self, session: Session, parent=None) -> None:
        super().__init__(parent)
        self.doc = session.doc
        self.model = PairTableModel(session, self)
        self.proxy = QtCore.QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.view = QtWidgets.QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(3, QtCore.Qt.SortOrder.DescendingOrder)
        self.view.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(20)
        self.view.horizontalHeader().setSectionResizeMode(
            QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.view.setAlternatingRowColors(True)
        self.summary = QtWidgets.QLabel()
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.summary)
        lay.addWidget(self.view)
        self._syncing = False
        self.view.selectionModel().selectionChanged.connect(self._on_rows_selected)
        session.selection_changed.connect(self._select_from_session)
        session.document_changed.connect(self._on_document)

    def _on_document(self) -> None:
        s = self.doc
        n_inc, med = s.inlier_residual_summary()
        text = f"{len(s.pairs)} pairs, {n_inc} used"
        if med is not None:
            text += f"; median residual of used pairs {med:.2f} px ({s.transform_type})"
            if s.polish_note:
                text += f"\n{s.polish_note[0].upper()}{s.polish_note[1:]}"
        elif s.pairs:
            text += f"; no transform ({s.fit_reason})"
        self.summary.setText(text)
        self._select_from_session()

    def row_of(self, pid: int) -> int | None:
        """Visible (sorted) row of a pair id."""
        for r in range(self.proxy.rowCount()):
            if self.proxy.index(r, 0).data(ID_ROLE) == pid:
                return r
        return None

    def selected_ids(self) -> list[int]:
        rows = self.view.selectionModel().selectedRows()
        return [self.proxy.data(i, ID_ROLE) for i in rows]

    def _on_rows_selected(self, *_):
        if self._syncing:
            return
        ids = self.selected_ids()
        self._syncing = True
        try:
            self.doc.select(ids)
        finally:
            self._syncing = False
        current = self.view.currentIndex()
        if len(ids) == 1:
            self.pair_activated.emit(ids[0])
        elif current.isValid() and current.data(ID_ROLE) in ids:
            self.pair_activated.emit(current.data(ID_ROLE))

    def _select_from_session(self) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            sel = QtCore.QItemSelection()
            for pid in self.doc.selected_ids:
                r = self.row_of(pid)
                if r is not None:
                    sel.select(self.proxy.index(r, 0),
                               self.proxy.index(r, self.proxy.columnCount() - 1))
            sm = self.view.selectionModel()
            sm.select(sel, QtCore.QItemSelectionModel.SelectionFlag.ClearAndSelect)
            if self.doc.selected_ids:
                r = self.row_of(self.doc.selected_ids[-1])
                if r is not None:
                    self.view.scrollTo(self.proxy.index(r, 0))
        finally:
            self._syncing = False
