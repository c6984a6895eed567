"""A pyqtgraph ViewBox showing one image, with point picking and point dragging.

The box knows nothing about pairs: it reports clicks and drags in image coordinates and asks
a ``hit_test`` callback which point (if any) lies under the cursor, so the pair view decides
what a click means.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

from retreg.core.io import to_float01

# How close (screen pixels) the cursor must be to a point to grab or select it.
PICK_RADIUS_PX = 9.0

HitTest = Callable[[float, float, float], "int | None"]


def display_image(img: np.ndarray) -> np.ndarray:
    """8-bit view of an 8/16-bit image (16-bit is scaled, not clipped)."""
    if img.dtype == np.uint8:
        return img
    return (to_float01(img) * 255.0 + 0.5).astype(np.uint8)


class ImageBox(pg.ViewBox):
    """Locked-aspect, y-down image box that emits clicks and point drags in image pixels."""

    clicked = QtCore.Signal(float, float, object)  # x, y, Qt.KeyboardModifiers
    drag_started = QtCore.Signal(int)  # pair id
    drag_moved = QtCore.Signal(int, float, float)
    drag_finished = QtCore.Signal(int, float, float)

    def __init__(self, name: str) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False, name=name)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.addItem(self.image_item)
        self.hit_test: HitTest | None = None
        self._dragged: int | None = None

    def set_image(self, img: np.ndarray | None) -> None:
        if img is None:
            self.image_item.clear()
            return
        self.image_item.setImage(display_image(img), autoLevels=False, levels=(0, 255))
        self.autoRange(padding=0.02)

    def image_shape(self) -> tuple[int, int] | None:
        img = self.image_item.image
        return None if img is None else img.shape[:2]

    def pixel_size(self) -> float:
        """Image pixels per screen pixel (for distance thresholds that feel the same at any zoom)."""
        px = self.viewPixelSize()
        return float(max(px[0], px[1]))

    def _view_pos(self, ev) -> QtCore.QPointF:
        return self.mapSceneToView(ev.scenePos())

    def _hit(self, pos: QtCore.QPointF) -> int | None:
        if self.hit_test is None:
            return None
        return self.hit_test(pos.x(), pos.y(), PICK_RADIUS_PX * self.pixel_size())

    def mouseClickEvent(self, ev) -> None:
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            pos = self._view_pos(ev)
            self.clicked.emit(pos.x(), pos.y(), ev.modifiers())
            return
        super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:
        if ev.button() != QtCore.Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        if ev.isStart():
            self._dragged = self._hit(self.mapSceneToView(ev.buttonDownScenePos()))
            if self._dragged is not None:
                self.drag_started.emit(self._dragged)
        if self._dragged is None:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        pos = self._view_pos(ev)
        if ev.isFinish():
            pid, self._dragged = self._dragged, None
            self.drag_finished.emit(pid, pos.x(), pos.y())
        else:
            self.drag_moved.emit(self._dragged, pos.x(), pos.y())
