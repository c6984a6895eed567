"""Remembered preferences (QSettings): last folders, recent files, mode, transform, overlay,
match lines, matcher, window geometry. One typed accessor per key so key names live in one place."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore

ORG, APP = "RetReg", "RetReg"
MAX_RECENT = 8


class Settings:
    """Typed view of a ``QSettings`` store; pass ``path`` (an .ini file) to isolate tests."""

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            self.store = QtCore.QSettings(ORG, APP)
        else:
            self.store = QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat)

    def _get(self, key: str, default, kind=str):
        value = self.store.value(key, default)
        if value is None:
            return default
        if kind is bool and isinstance(value, str):  # ini files store booleans as text
            return value.lower() == "true"
        try:
            return kind(value)
        except (TypeError, ValueError):
            return default

    def _set(self, key: str, value) -> None:
        self.store.setValue(key, value)

    # -------------------------------------------------------------- folders and files
    def last_dir(self, kind: str) -> str:
        return self._get(f"dirs/{kind}", str(Path.home()))

    def set_last_dir(self, kind: str, path: str | Path) -> None:
        p = Path(path)
        self._set(f"dirs/{kind}", str(p if p.is_dir() else p.parent))

    def recent_pairs(self) -> list[tuple[str, str]]:
        """Most recent first; each entry is (fixed, moving)."""
        raw = self.store.value("recent/pairs", []) or []
        if isinstance(raw, str):
            raw = [raw]
        out = []
        for item in raw:
            parts = str(item).split("\n")
            if len(parts) == 2:
                out.append((parts[0], parts[1]))
        return out

    def add_recent_pair(self, fixed: str | Path, moving: str | Path) -> None:
        entry = (str(fixed), str(moving))
        pairs = [entry] + [p for p in self.recent_pairs() if p != entry]
        self._set("recent/pairs", ["\n".join(p) for p in pairs[:MAX_RECENT]])

    def clear_recent(self) -> None:
        self._set("recent/pairs", [])

    # -------------------------------------------------------------- choices
    def mode(self) -> str:
        return self._get("review/mode", "auto")

    def set_mode(self, mode: str) -> None:
        self._set("review/mode", mode)

    def transform(self) -> str:
        return self._get("review/transform", "affine")

    def set_transform(self, t: str) -> None:
        self._set("review/transform", t)

    def overlay(self) -> str:
        return self._get("review/overlay", "checkerboard")

    def set_overlay(self, kind: str) -> None:
        self._set("review/overlay", kind)

    def squares(self) -> int:
        return self._get("review/squares", 8, int)

    def set_squares(self, squares: int) -> None:
        self._set("review/squares", squares)

    def line_filter(self) -> str:
        return self._get("review/lines", "inliers")

    def set_line_filter(self, name: str) -> None:
        self._set("review/lines", name)

    def line_cap(self, default: int) -> int:
        return self._get("review/line_cap", default, int)

    def set_line_cap(self, cap: int) -> None:
        self._set("review/line_cap", cap)

    def matcher(self) -> str:
        return self._get("model/matcher", "default")

    def octa_field(self) -> str:
        """The cfocta scan size in mm as text, "" for unknown (try the usual sizes)."""
        return self._get("model/octa_field_mm", "")

    def set_octa_field(self, mm: str) -> None:
        self._set("model/octa_field_mm", mm)

    def set_matcher(self, name: str) -> None:
        self._set("model/matcher", name)

    def weights(self) -> str:
        return self._get("model/weights", "")

    def set_weights(self, path: str | Path | None) -> None:
        self._set("model/weights", str(path or ""))

    def dark(self) -> bool:
        return self._get("look/dark", False, bool)

    def set_dark(self, on: bool) -> None:
        self._set("look/dark", on)

    def recovery_dir(self) -> Path:
        """Where unsaved work is autosaved: the configured folder, else the app-data one."""
        configured = self._get("recovery/dir", "")
        if configured:
            return Path(configured)
        loc = QtCore.QStandardPaths.writableLocation(
            QtCore.QStandardPaths.StandardLocation.AppDataLocation)
        return Path(loc) if loc else Path.home() / ".retreg"

    # -------------------------------------------------------------- window
    def geometry(self) -> QtCore.QByteArray | None:
        return self.store.value("window/geometry")

    def window_state(self) -> QtCore.QByteArray | None:
        return self.store.value("window/state")

    def save_window(self, geometry: QtCore.QByteArray, state: QtCore.QByteArray) -> None:
        self._set("window/geometry", geometry)
        self._set("window/state", state)

    def sync(self) -> None:
        self.store.sync()
