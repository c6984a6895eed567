"""Light and dark palettes (Fusion style), so every widget stays readable in both."""
from __future__ import annotations

from PySide6 import QtGui, QtWidgets

_DARK = {
    "Window": (45, 45, 48), "WindowText": (220, 220, 220), "Base": (30, 30, 32),
    "AlternateBase": (45, 45, 48), "ToolTipBase": (60, 60, 64), "ToolTipText": (230, 230, 230),
    "Text": (220, 220, 220), "Button": (55, 55, 58), "ButtonText": (220, 220, 220),
    "BrightText": (255, 80, 80), "Link": (90, 170, 255), "Highlight": (42, 130, 218),
    "HighlightedText": (255, 255, 255), "PlaceholderText": (140, 140, 140),
}


def dark_palette() -> QtGui.QPalette:
    pal = QtGui.QPalette()
    for role, rgb in _DARK.items():
        pal.setColor(getattr(QtGui.QPalette.ColorRole, role), QtGui.QColor(*rgb))
    for role in ("WindowText", "Text", "ButtonText"):
        pal.setColor(QtGui.QPalette.ColorGroup.Disabled, getattr(QtGui.QPalette.ColorRole, role),
                     QtGui.QColor(120, 120, 120))
    return pal


def apply(app: QtWidgets.QApplication, dark: bool) -> None:
    app.setStyle("Fusion")
    app.setPalette(dark_palette() if dark else app.style().standardPalette())
