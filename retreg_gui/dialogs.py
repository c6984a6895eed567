"""Small dialogs: readable errors, the shortcut list, the About box with the model card,
and the recovery question."""
from __future__ import annotations

import html
import json
from pathlib import Path

from PySide6 import QtGui, QtWidgets

from retreg.core.matchers import DEFAULT_WEIGHTS

MODELS_DIR = DEFAULT_WEIGHTS.parent


def show_error(parent: QtWidgets.QWidget | None, title: str, message: str,
               details: str = "") -> None:
    """An error dialog with the user-facing message; a traceback, if any, hides in Details."""
    box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, title, message,
                                QtWidgets.QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.exec()


def ask_load_anyway(parent: QtWidgets.QWidget | None, title: str, question: str) -> bool:
    """Ask "Load anyway" or "Cancel" (the default); True for "Load anyway"."""
    box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, title, question,
                                QtWidgets.QMessageBox.StandardButton.Cancel, parent)
    load = box.addButton("Load anyway", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
    box.setDefaultButton(QtWidgets.QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is load


def model_cards(models_dir: Path | None = None) -> list[tuple[str, dict]]:
    """(file name, card) for every readable ``*.card.json`` beside the bundled weights."""
    cards = []
    for path in sorted(Path(models_dir or MODELS_DIR).glob("*.card.json")):
        try:
            cards.append((path.name, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, json.JSONDecodeError) as exc:
            cards.append((path.name, {"error": f"unreadable card: {exc}"}))
    return cards


def _card_html(name: str, card: dict) -> str:
    rows = []
    for key, value in card.items():
        if isinstance(value, (dict, list)):
            text = json.dumps(value, indent=1)
            if len(text) > 600:
                text = text[:600] + " …"
            value = f"<pre style='margin:0'>{html.escape(text)}</pre>"
        else:
            value = html.escape(str(value))
        rows.append(f"<tr><td valign='top'><b>{html.escape(str(key))}</b></td>"
                    f"<td>{value}</td></tr>")
    return f"<h4>{html.escape(name)}</h4><table cellspacing=4>{''.join(rows)}</table>"


def about_html(matcher_name: str, weights: str | None) -> str:
    from importlib import metadata

    try:
        version = metadata.version("retreg")
    except metadata.PackageNotFoundError:
        version = "dev"
    cards = model_cards()
    parts = [f"<h3>RetReg {version}</h3>",
             "<p>Multimodal retinal image registration (colour fundus, fluorescein angiography, "
             "OCT and OCTA en-face): a learned cross-modal keypoint matcher, spatial binning and "
             "robust (USAC/MAGSAC) estimation, with review and manual correction.</p>",
             f"<p><b>Matcher in use:</b> {matcher_name}"
             + (f" (weights: {weights})" if weights else "") + "</p>"]
    if cards:
        parts += [_card_html(n, c) for n, c in cards]
    else:
        parts.append(f"<p>No model card found in {MODELS_DIR}: no bundled model; the "
                     "default matcher is the classical one (SIFT on vessel maps).</p>")
    return "".join(parts)


class AboutDialog(QtWidgets.QDialog):
    def __init__(self, matcher_name: str, weights: str | None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About RetReg")
        self.resize(620, 520)
        text = QtWidgets.QTextBrowser()
        text.setHtml(about_html(matcher_name, weights))
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(text)
        lay.addWidget(buttons)


class ShortcutsDialog(QtWidgets.QDialog):
    """Every action that has a shortcut, read from the actions themselves (never stale)."""

    def __init__(self, actions: list[QtGui.QAction], parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(480, 560)
        rows = [(a.text().replace("&", ""), a.shortcut().toString(
                    QtGui.QKeySequence.SequenceFormat.NativeText))
                for a in actions if not a.shortcut().isEmpty()]
        rows += [("Accept the predicted partner point", "Enter"),
                 ("Cancel the pending point", "Esc"),
                 ("Select a pair / add to the selection", "Click / Ctrl+Click"),
                 ("Move a point", "Drag it"),
                 ("Pan / zoom", "Drag empty area / mouse wheel")]
        self.table = QtWidgets.QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Action", "Shortcut"])
        for r, (name, keys) in enumerate(rows):
            self.table.setItem(r, 0, QtWidgets.QTableWidgetItem(name))
            self.table.setItem(r, 1, QtWidgets.QTableWidgetItem(keys))
        self.table.horizontalHeader().setSectionResizeMode(
            0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(buttons)
