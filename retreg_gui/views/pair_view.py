"""Fixed and moving image side by side: linked zoom/pan, point pairs, match lines and the
click-click (with predicted partner) way of adding a pair.

Linking maps the visible area through the current transform when there is one (so both views
show the same anatomy), otherwise by the ratio of the image sizes. Lines and points are
coloured by residual (legend below the images); which lines are drawn is the controller's
``choose_lines``.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from retreg.core.warp import placement_problem
from retreg.gui.controller import (LINE_CAP, LineChoice, choose_lines, legend_labels,
                                   residual_class, residual_edges)
from retreg.gui.document import FIXED, MOVING
from retreg.gui.session import Session
from retreg.gui.views.image_box import ImageBox

# One colour per residual class (``controller.RESIDUAL_STEPS`` plus the class above the last).
RESIDUAL_COLORS = ((0, 200, 80), (150, 220, 0), (255, 215, 0), (255, 140, 0), (235, 50, 50))
NO_RESIDUAL_COLOR = (160, 160, 160)  # no transform to measure against
SELECTED_COLOR = (255, 255, 255)
MAX_CAP = 5000


def residual_color(cls: int | None) -> tuple[int, int, int]:
    return NO_RESIDUAL_COLOR if cls is None else RESIDUAL_COLORS[cls]


def _swatch(color: tuple[int, int, int], text: str) -> str:
    return (f'<span style="color:rgb{color}; font-size:large">&#9632;</span>&nbsp;{text}'
            "&nbsp;&nbsp;")


def _map_to_scene(box: pg.ViewBox, pts: np.ndarray) -> np.ndarray:
    t = box.childGroup.sceneTransform()
    x, y = pts[:, 0], pts[:, 1]
    return np.c_[t.m11() * x + t.m21() * y + t.dx(), t.m12() * x + t.m22() * y + t.dy()]


def _inside(box: pg.ViewBox, pts: np.ndarray) -> np.ndarray:
    r = box.viewRect()
    return ((pts[:, 0] >= r.left()) & (pts[:, 0] <= r.right())
            & (pts[:, 1] >= r.top()) & (pts[:, 1] <= r.bottom()))


class PairView(QtWidgets.QWidget):
    """Two linked image boxes with point markers and match lines drawn across both, above a
    bar with the residual legend, the number of lines shown and the line cap."""

    status_message = QtCore.Signal(str)

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = session.doc
        self.line_filter = "inliers"
        self.shown = LineChoice((), 0, self.line_filter)
        self.add_mode = False
        self.pending: tuple[str, tuple[float, float]] | None = None
        self.predicted: tuple[float, float] | None = None
        self._drag_preview: tuple[int, str, float, float] | None = None
        self._syncing = False
        self._lines: list[QtWidgets.QGraphicsPathItem] = []
        self._classes_now: dict[int, int | None] = {}

        self.glw = pg.GraphicsLayoutWidget()
        self.title = {FIXED: self.glw.addLabel("Fixed", row=0, col=0),
                      MOVING: self.glw.addLabel("Moving", row=0, col=1)}
        self.box = {FIXED: ImageBox("fixed"), MOVING: ImageBox("moving")}
        self.scatter, self.marker = {}, {}
        self.detected, self.reference = {}, {}  # detector-keypoint overlay (show_keypoints)
        for col, side in enumerate((FIXED, MOVING)):
            box = self.box[side]
            self.glw.addItem(box, row=1, col=col)
            self.scatter[side] = pg.ScatterPlotItem(pxMode=True, size=8, hoverable=False)
            self.marker[side] = pg.ScatterPlotItem(pxMode=True)
            box.addItem(self.scatter[side])
            box.addItem(self.marker[side])
            self.scatter[side].setZValue(10)
            self.marker[side].setZValue(20)
            self.detected[side] = pg.ScatterPlotItem(pxMode=True, size=5, pen=None,
                                                     brush=pg.mkBrush(0, 220, 0, 220))
            self.reference[side] = pg.ScatterPlotItem(pxMode=True, size=11, brush=None,
                                                      pen=pg.mkPen(230, 0, 0, width=2))
            for item in (self.detected[side], self.reference[side]):
                item.setZValue(15)
                box.addItem(item)
            box.hit_test = lambda x, y, r, s=side: self.pair_at(s, x, y, r)
            box.clicked.connect(lambda x, y, mods, s=side: self._on_click(s, x, y, mods))
            box.drag_moved.connect(lambda pid, x, y, s=side: self._on_drag(s, pid, x, y))
            box.drag_finished.connect(lambda pid, x, y, s=side: self._on_drop(s, pid, x, y))
            box.sigRangeChanged.connect(lambda *_, s=side: self._on_range_changed(s))
        self.legend = QtWidgets.QLabel()
        self.legend.setToolTip("Residual of each pair under the current transform, in "
                               "fixed-image pixels; the classes end at 1/4, 1/2, 1 and 2 times "
                               "the matcher's inlier threshold. Dashed lines and hollow points "
                               "are excluded pairs, diamonds are pairs placed by hand")
        self.count = QtWidgets.QLabel()
        self.cap = QtWidgets.QSpinBox()
        self.cap.setRange(10, MAX_CAP)
        self.cap.setSingleStep(50)
        self.cap.setValue(LINE_CAP)
        self.cap.setToolTip("Most match lines drawn at once, spread evenly over the image "
                            "(the selected pairs are always drawn)")
        self.cap.valueChanged.connect(self.refresh)
        bar = QtWidgets.QHBoxLayout()
        bar.setContentsMargins(6, 2, 6, 2)
        bar.addWidget(self.legend)
        bar.addStretch(1)
        bar.addWidget(self.count)
        bar.addSpacing(12)
        bar.addWidget(QtWidgets.QLabel("Max lines"))
        bar.addWidget(self.cap)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.glw)
        lay.addLayout(bar)

        session.images_changed.connect(self._on_images)
        session.document_changed.connect(self.refresh)
        session.selection_changed.connect(self.refresh)

    # ------------------------------------------------------------------ model -> view
    def show_keypoints(self, detected: dict[str, np.ndarray] | None) -> None:
        """Detector keypoints in green on each side and the document's point pairs (annotated
        or ground truth) as red rings beside them; None hides both."""
        for side in (FIXED, MOVING):
            if detected is None:
                self.detected[side].setData([])
                self.reference[side].setData([])
            else:
                self.detected[side].setData(pos=np.asarray(detected[side], float).reshape(-1, 2))
                self.reference[side].setData(pos=self._points(side))

    def _on_images(self) -> None:
        s = self.doc
        self.show_keypoints(None)
        self.cancel_pending()
        self.box[FIXED].set_image(s.fixed_img)
        self.box[MOVING].set_image(s.moving_img)
        self.update_titles()
        self.refresh()
        # Fit once the layout has settled (a box fitted before it has its size is zoomed in).
        QtCore.QTimer.singleShot(0, self.reset_zoom)

    def update_titles(self) -> None:
        """'Fixed CF: name.png' / 'Moving FA: name.png' for the current mode and files
        ('Fixed: name.png' while the mode is unknown)."""
        s = self.doc
        for side, path in ((FIXED, s.fixed_path), (MOVING, s.moving_path)):
            modality = ""
            if s.mode is not None:
                modality = s.mode.fixed_modality if side == FIXED else s.mode.moving_modality
            name = path.name if path else "(none)"
            self.title[side].setText(f"{side.capitalize()} {modality.upper()}".rstrip()
                                     + f": {name}")

    def set_line_filter(self, name: str) -> None:
        self.line_filter = name
        self.refresh()

    def _classes(self) -> dict[int, int | None]:
        """Residual colour class of each pair id."""
        s = self.doc
        edges = residual_edges(s)
        return {p.id: residual_class(s.residuals.get(p.id), edges) for p in s.pairs}

    def _point_style(self, classes: dict[int, int | None]) -> tuple[list, list, list]:
        """Brushes, pens, symbols: filled in the residual colour when included (hollow when
        excluded), a diamond when placed by hand, a white ring when selected."""
        sel = set(self.doc.selected_ids)
        brushes, pens, symbols = [], [], []
        for p in self.doc.pairs:
            color = residual_color(classes[p.id])
            brushes.append(pg.mkBrush(*color) if p.include else pg.mkBrush(None))
            pens.append(pg.mkPen(SELECTED_COLOR, width=2.5) if p.id in sel
                        else pg.mkPen(0, 0, 0, 200, width=1) if p.include
                        else pg.mkPen(*color, width=1.5))
            symbols.append("d" if p.source == "manual" else "o")
        return brushes, pens, symbols

    def update_legend(self) -> None:
        labels = legend_labels(residual_edges(self.doc))
        self.legend.setText("Residual: " + "".join(
            _swatch(c, t) for c, t in zip(RESIDUAL_COLORS, labels)))
        self.count.setText(self.shown.text())

    def refresh(self) -> None:
        s = self.doc
        classes = self._classes()
        brushes, pens, symbols = self._point_style(classes)
        sel = set(s.selected_ids)
        sizes = [13 if p.id in sel else 8 if p.include else 6 for p in s.pairs]
        for side in (FIXED, MOVING):
            pts = self._points(side)
            self.scatter[side].setData(pos=pts, brush=brushes, pen=pens, size=sizes,
                                       symbol=symbols, data=[p.id for p in s.pairs])
        self._update_markers()
        self.shown = choose_lines(s, self.line_filter, self.cap.value())
        self._classes_now = classes
        self.update_legend()
        self.update_lines()

    def _points(self, side: str) -> np.ndarray:
        pts = np.array([getattr(p, side) for p in self.doc.pairs], float).reshape(-1, 2)
        if self._drag_preview is not None:
            pid, dside, x, y = self._drag_preview
            if dside == side:
                for i, p in enumerate(self.doc.pairs):
                    if p.id == pid:
                        pts[i] = (x, y)
        return pts

    def _update_markers(self) -> None:
        for side in (FIXED, MOVING):
            self.marker[side].setData([])
        if self.pending is None:
            return
        side, xy = self.pending
        other = MOVING if side == FIXED else FIXED
        self.marker[side].setData(pos=[xy], symbol="+", size=18,
                                  pen=pg.mkPen(255, 255, 0, width=2), brush=None)
        if self.predicted is not None:
            self.marker[other].setData(pos=[self.predicted, self.predicted], symbol=["o", "+"],
                                       size=[20, 10], brush=None,
                                       pen=pg.mkPen(255, 0, 255, width=2))

    def update_lines(self) -> None:
        """Rebuild the chosen match lines in scene coordinates (called on any pan/zoom too):
        dashed for excluded pairs, below solid included ones, the worst residuals on top."""
        scene = self.glw.scene()
        for item in self._lines:
            scene.removeItem(item)
        self._lines = []
        s = self.doc
        if not self.shown.ids:
            return
        index = {p.id: i for i, p in enumerate(s.pairs)}
        rows = np.array([index[pid] for pid in self.shown.ids if pid in index], int)
        if not len(rows):
            return
        pf, pm = self._points(FIXED)[rows], self._points(MOVING)[rows]
        visible = _inside(self.box[FIXED], pf) & _inside(self.box[MOVING], pm)
        a, b = _map_to_scene(self.box[FIXED], pf), _map_to_scene(self.box[MOVING], pm)
        styles = [(self._classes_now.get(s.pairs[r].id), s.pairs[r].include) for r in rows]
        for style in sorted(set(styles), key=lambda st: (st[1], -1 if st[0] is None else st[0])):
            m = visible & np.array([st == style for st in styles])
            if not m.any():
                continue
            xs = np.c_[a[m, 0], b[m, 0]].ravel()
            ys = np.c_[a[m, 1], b[m, 1]].ravel()
            item = QtWidgets.QGraphicsPathItem(pg.arrayToQPath(xs, ys, connect="pairs"))
            cls, include = style
            pen = QtGui.QPen(QtGui.QColor(*residual_color(cls), 210 if include else 170), 1.2)
            if not include:
                pen.setStyle(QtCore.Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            item.setPen(pen)
            item.setZValue(1000)
            scene.addItem(item)
            self._lines.append(item)

    # ------------------------------------------------------------------ linked zoom/pan
    def _on_range_changed(self, side: str) -> None:
        if not self._syncing:
            self._syncing = True
            try:
                self._follow(side)
            finally:
                self._syncing = False
        self.update_lines()

    def _follow(self, side: str) -> None:
        src = self.box[side]
        other = MOVING if side == FIXED else FIXED
        dst = self.box[other]
        if src.image_shape() is None or dst.image_shape() is None:
            return
        r = src.viewRect()
        c = np.array([r.center().x(), r.center().y()])
        probe = np.array([c, c + (r.width() / 2, 0), c + (0, r.height() / 2)])
        drawable = self.doc.matrix is not None and placement_problem(
            self.doc.matrix, self.doc.moving_img.shape, self.doc.fixed_img.shape) is None
        mapped = self.doc.map_points(side, probe) if drawable else None
        if mapped is None or not np.all(np.isfinite(mapped)):
            ratio = dst.image_shape()[1] / src.image_shape()[1]
            mapped = probe * ratio
        hw = float(np.linalg.norm(mapped[1] - mapped[0]))
        hh = float(np.linalg.norm(mapped[2] - mapped[0]))
        if not (np.isfinite(hw) and np.isfinite(hh)) or hw <= 0 or hh <= 0:
            return
        cx, cy = mapped[0]
        dst.setRange(xRange=(cx - hw, cx + hw), yRange=(cy - hh, cy + hh), padding=0)

    def center_on_pair(self, pid: int) -> None:
        """Centre both views on a pair, keeping the zoom."""
        p = self.doc.pair(pid)
        if p is None:
            return
        self._syncing = True
        try:
            for side in (FIXED, MOVING):
                box = self.box[side]
                r = box.viewRect()
                x, y = getattr(p, side)
                box.setRange(xRange=(x - r.width() / 2, x + r.width() / 2),
                             yRange=(y - r.height() / 2, y + r.height() / 2), padding=0)
        finally:
            self._syncing = False
        self.update_lines()

    def reset_zoom(self) -> None:
        """Fit the fixed image; the moving view follows through the link."""
        self.box[FIXED].autoRange(padding=0.02)

    # ------------------------------------------------------------------ interaction
    def pair_at(self, side: str, x: float, y: float, radius: float) -> int | None:
        """The id of the pair whose ``side`` point is nearest (x, y) within ``radius``."""
        pts = self._points(side)
        if not len(pts):
            return None
        d = np.hypot(pts[:, 0] - x, pts[:, 1] - y)
        i = int(np.argmin(d))
        return self.doc.pairs[i].id if d[i] <= radius else None

    def set_add_mode(self, on: bool) -> None:
        self.add_mode = on
        self.cancel_pending()
        if on:
            self.status_message.emit("Add pair: click a point in either image, then its partner "
                                     "in the other (Enter accepts the prediction, Esc cancels)")

    def cancel_pending(self) -> None:
        self.pending, self.predicted = None, None
        self._update_markers()

    def accept_prediction(self) -> bool:
        """Complete the pending pair at the predicted partner (the Enter key)."""
        if self.pending is None or self.predicted is None:
            return False
        side, xy = self.pending
        self._complete(side, xy, self.predicted)
        return True

    def _complete(self, first_side: str, first_xy, second_xy) -> None:
        fixed, moving = (first_xy, second_xy) if first_side == FIXED else (second_xy, first_xy)
        self.cancel_pending()
        pid = self.doc.add_pair(fixed, moving)
        if pid is None:  # refused: the document has said why
            return
        self.doc.select([pid])
        self.status_message.emit(f"Added pair {pid}")

    def _on_click(self, side: str, x: float, y: float, mods) -> None:
        if self.add_mode:
            if self.pending is not None and self.pending[0] != side:
                self._complete(self.pending[0], self.pending[1], (x, y))
            else:
                self.pending = (side, (x, y))
                self.predicted = self.doc.predict_partner(side, (x, y))
                self._update_markers()
                self.status_message.emit(
                    "Now click the partner point" + (" or press Enter to accept the prediction"
                                                     if self.predicted else ""))
            return
        pid = self.pair_at(side, x, y, 9.0 * self.box[side].pixel_size())
        if mods & QtCore.Qt.KeyboardModifier.ControlModifier and pid is not None:
            ids = set(self.doc.selected_ids) ^ {pid}
            self.doc.select(sorted(ids))
        else:
            self.doc.select([] if pid is None else [pid])

    def _on_drag(self, side: str, pid: int, x: float, y: float) -> None:
        self._drag_preview = (pid, side, x, y)
        self.refresh()

    def _on_drop(self, side: str, pid: int, x: float, y: float) -> None:
        self._drag_preview = None
        self.doc.move_point(pid, side, (x, y))
        self.doc.select([pid])
