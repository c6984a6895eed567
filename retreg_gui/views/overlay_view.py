"""The registration result: fixed image and warped moving image combined by a core overlay.

The warped image and the fusion views are cached per transform (the learned ones run a net);
changing the overlay kind, tile size or alpha only recombines. Large images are combined at
display resolution (longest side ``DISPLAY_SIDE``): full-resolution overlays of a 2912-px fundus
pair take about a second each, too slow to follow live edits. The item is stretched back over full-resolution coordinates, so
the view stays linked to the fixed image's view. A transform that throws the moving image off
the fixed frame (``core.warp.placement_problem``) is not drawn: the view says why instead.
"""
from __future__ import annotations

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from retreg.core import overlays
from retreg.core.fusion import VIEWS as FUSION_VIEWS, fusion_view
from retreg.core.transforms import fingerprint
from retreg.core.warp import placement_problem, warp_moving
from retreg.gui.controller import overlay_refusal
from retreg.gui.session import Session
from retreg.gui.views.image_box import display_image

OVERLAY_KINDS = ("checkerboard", "blend", "difference", "two-colour", *FUSION_VIEWS, "flicker")
KIND_ALIASES = {"fusion": "two-colour"}  # the two-colour view's former name, in saved settings
FLICKER_MS = 500
DISPLAY_SIDE = 1280


def to_display(img: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """8-bit copy whose longest side is at most ``side`` (area-averaged when shrunk)."""
    img = display_image(img)
    scale = side / max(img.shape[:2])
    if scale >= 1.0:
        return img
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


class OverlayView(QtWidgets.QWidget):
    """Overlay kind selector, tile size and alpha controls above one image box."""

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = session.doc
        self._warped: np.ndarray | None = None
        self._warped_for: bytes | None = None
        self.not_drawn = ""  # why the current transform is not drawn, when it is not
        self._fixed_display: np.ndarray | None = None
        self._fused: dict[str, np.ndarray] = {}  # fusion view kind -> image
        self._fused_of: np.ndarray | None = None  # the warped image ``_fused`` was made with
        self._render_queued = False
        self._flicker_on_moving = False

        self.kind = QtWidgets.QComboBox()
        self.kind.addItems([k.capitalize() for k in OVERLAY_KINDS])
        self.kind.setToolTip("How fixed and warped moving are combined (Fusion-mask: white "
                             "where the fused view keeps the moving image's detail)")
        self.squares = QtWidgets.QSpinBox()  # per image, not px: one setting suits 320-px OCTA
        self.squares.setRange(2, 64)         # and 2912-px fundus photos alike
        self.squares.setValue(8)
        self.squares.setToolTip("Checkerboard squares across the fixed image's shorter side")
        self.alpha = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.alpha.setRange(0, 100)
        self.alpha.setValue(50)
        self.alpha.setToolTip("Blend: share of the warped moving image")
        self.alpha.setMaximumWidth(140)
        controls = QtWidgets.QHBoxLayout()
        controls.setContentsMargins(4, 2, 4, 2)
        controls.addWidget(QtWidgets.QLabel("Overlay:"))
        controls.addWidget(self.kind)
        self.squares_label = QtWidgets.QLabel("Squares")
        self.alpha_label = QtWidgets.QLabel("Alpha")
        for w in (self.squares_label, self.squares, self.alpha_label, self.alpha):
            controls.addWidget(w)
        controls.addStretch(1)

        self.glw = pg.GraphicsLayoutWidget()
        self.title = self.glw.addLabel("Result (fixed + warped moving)", row=0, col=0)
        self.box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.glw.addItem(self.box, row=1, col=0)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image)
        self.message = pg.TextItem("", color=(230, 230, 230), anchor=(0.5, 0.5))
        self.box.addItem(self.message)

        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(controls)
        lay.addWidget(self.glw)

        self.flicker_timer = QtCore.QTimer(self)
        self.flicker_timer.setInterval(FLICKER_MS)
        self.flicker_timer.timeout.connect(self._flip)
        self.kind.currentIndexChanged.connect(self._on_kind)
        self.squares.valueChanged.connect(self.render)
        self.alpha.valueChanged.connect(self.render)
        session.images_changed.connect(self._on_images)
        session.document_changed.connect(self.queue_render)
        self._on_kind()

    # ------------------------------------------------------------------ settings
    def current_kind(self) -> str:
        return OVERLAY_KINDS[self.kind.currentIndex()]

    def set_kind(self, kind: str) -> None:
        kind = KIND_ALIASES.get(kind, kind)
        if kind in OVERLAY_KINDS:
            self.kind.setCurrentIndex(OVERLAY_KINDS.index(kind))

    def cycle_kind(self) -> None:
        self.kind.setCurrentIndex((self.kind.currentIndex() + 1) % len(OVERLAY_KINDS))

    def _on_kind(self) -> None:
        kind = self.current_kind()
        for w, used in ((self.squares, kind == "checkerboard"),
                        (self.squares_label, kind == "checkerboard"),
                        (self.alpha, kind == "blend"), (self.alpha_label, kind == "blend")):
            w.setVisible(used)
        if kind == "flicker":
            self.flicker_timer.start()
        else:
            self.flicker_timer.stop()
        self.render()

    def _flip(self) -> None:
        self._flicker_on_moving = not self._flicker_on_moving
        self.render()

    # ------------------------------------------------------------------ rendering
    def _on_images(self) -> None:
        self._warped, self._warped_for = None, None
        s = self.doc
        self._fixed_display = to_display(s.fixed_img) if s.has_images else None
        self.render()
        self.box.autoRange(padding=0.02)

    def queue_render(self) -> None:
        """Render once after a burst of document changes (e.g. undo of several steps)."""
        if not self._render_queued:
            self._render_queued = True
            QtCore.QTimer.singleShot(0, self.render)

    def warped(self) -> np.ndarray | None:
        """The moving image warped into the fixed frame by the current transform, at display
        resolution (cached per transform); None when there is none or it is ``not_drawn``."""
        s = self.doc
        if s.matrix is None or not s.has_images:
            return None
        key = fingerprint(s.mapping)
        if key != self._warped_for:
            self.not_drawn = placement_problem(s.matrix, s.moving_img.shape,
                                               s.fixed_img.shape) or ""
            self._warped = None if self.not_drawn else to_display(
                warp_moving(s.moving_img, s.mapping, s.fixed_img.shape[:2]))
            self._warped_for = key
        return self._warped

    def composed(self) -> np.ndarray | None:
        """The image shown now (RGB uint8, display resolution), or None when there is
        nothing to overlay or the registration failed its quality check."""
        moving = None if overlay_refusal(self.doc) else self.warped()
        if moving is None:
            return None
        fixed = self._fixed_display
        kind = self.current_kind()
        if kind == "checkerboard":
            return overlays.checkerboard(fixed, moving, overlays.default_tile(
                fixed.shape, self.squares.value(), minimum=1))
        if kind == "blend":
            return overlays.blend(fixed, moving, self.alpha.value() / 100.0)
        if kind == "difference":
            return overlays.difference(fixed, moving)
        if kind == "two-colour":
            return overlays.two_colour(fixed, moving)
        if kind in FUSION_VIEWS:  # the slowest views: each made once per warped image
            if self._fused_of is not moving:
                self._fused, self._fused_of = {}, moving
            if kind not in self._fused:
                self._fused[kind] = fusion_view(kind, fixed, moving)
            return self._fused[kind]
        return moving if self._flicker_on_moving else fixed

    def render(self) -> None:
        self._render_queued = False
        s = self.doc
        img = self.composed()
        if img is None:
            self.image.clear()
            if s.has_images:
                h, w = s.fixed_img.shape[:2]
                self.message.setPos(w / 2, h / 2)
            refusal = overlay_refusal(s)
            if refusal:
                self.message.setText(refusal)
                return
            if s.matrix is not None and self.not_drawn:
                self.message.setText(f"Transform not drawn:\n{self.not_drawn}")
                return
            first = ("choose the mode in the toolbar" if s.has_images and s.mode is None
                     else "register (Ctrl+R)")
            self.message.setText(f"No transform yet: {first} or add point pairs"
                                 if not s.fit_reason or not s.pairs
                                 else f"No transform: {s.fit_reason}")
            return
        self.message.setText("")
        self.image.setImage(img, autoLevels=False, levels=(0, 255))
        h, w = s.fixed_img.shape[:2]
        self.image.setRect(QtCore.QRectF(0, 0, w, h))  # full-resolution coordinates
