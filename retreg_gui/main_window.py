"""The main window: views around one ``Document``, actions with shortcuts, dialogs.

Layout and wiring only: decisions are the ``Controller``'s, edits the ``Document``'s, and every
computation is tested core/training code.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
import qtawesome as qta
from PySide6 import QtCore, QtGui, QtWidgets

from retreg.core.errors import RetRegError
from retreg.core.field import OCTA_FIELDS_MM
from retreg.core.io import read_image
from retreg.core.matchers import available_matchers
from retreg.core.types import TRANSFORM_TYPES, Mode, RegistrationResult
from retreg.gui import palette
from retreg.gui.case_browser import CaseBrowser
from retreg.gui.controller import (AUTO_MODE, LINE_CAP, LINE_FILTERS, Controller, RegisterJob,
                                   counts_text, detector_keypoints, order_pair, verdict_note,
                                   window_title)
from retreg.gui.dialogs import AboutDialog, ShortcutsDialog, show_error
from retreg.gui.document import Document
from retreg.gui.file_actions import AnnotationFilesMixin
from retreg.gui.recovery import DEBOUNCE_MS, RecoveryStore
from retreg.gui.session import Session
from retreg.gui.settings import Settings
from retreg.gui.training_panel import TrainingPanel
from retreg.gui.views.overlay_view import OverlayView
from retreg.gui.views.pair_view import PairView
from retreg.gui.views.residual_table import ResidualTable
from retreg.gui.workers import RegisterRunner, SwitchPreparer

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)"
# Banner and overlay frame colours of a verdict that is not ok: (background, text).
VERDICT_COLORS = {"low confidence": ("#f5a623", "#1e1e1e"), "failed": ("#d0342c", "#ffffff")}


class MainWindow(AnnotationFilesMixin, QtWidgets.QMainWindow):
    """RetReg's review and annotation window."""

    # ok; for scripted use (screenshots, tests). False too when a pair opened without a mode.
    registration_done = QtCore.Signal(bool)

    def __init__(self, settings: Settings | None = None, recovery_dir: str | Path | None = None
                 ) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.doc = Document()
        self.session = Session(self.doc, self)
        self.controller = Controller(self.doc, Path(self.settings.weights())
                                     if self.settings.weights() else None)
        self.runner = RegisterRunner(self)
        self.switches = SwitchPreparer(self)  # slow transform switches, made ahead
        self.recovery = RecoveryStore(self.doc, recovery_dir or self.settings.recovery_dir())
        self.autosave = QtCore.QTimer(self)
        self.autosave.setSingleShot(True)
        self.autosave.setInterval(DEBOUNCE_MS)
        self._closed = False
        self.setWindowTitle("RetReg")
        self.setAcceptDrops(True)
        self._icons: dict[QtGui.QAction, str] = {}

        self.pair_view = PairView(self.session)
        self.overlay_view = OverlayView(self.session)
        self.overlay_view.box.setXLink(self.pair_view.box["fixed"])
        self.overlay_view.box.setYLink(self.pair_view.box["fixed"])
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        split.addWidget(self.pair_view)
        split.addWidget(self.overlay_view)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 1)
        self.verdict_banner = QtWidgets.QLabel()
        self.verdict_banner.setWordWrap(True)
        self.verdict_banner.hide()
        central = QtWidgets.QWidget()
        col = QtWidgets.QVBoxLayout(central)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        col.addWidget(self.verdict_banner)
        col.addWidget(split, 1)
        self.setCentralWidget(central)

        self.table = ResidualTable(self.session)
        self.table_dock = self._dock("Point pairs", self.table,
                                     QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
        self.training = TrainingPanel(self.settings)
        self.training_dock = self._dock("Training", self.training,
                                        QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        self.training_dock.hide()
        self.cases = CaseBrowser()
        self.cases_dock = self._dock("Cases", self.cases,
                                     QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        self.cases_dock.hide()

        self._build_toolbar_widgets()
        self._build_actions()
        self._build_status()
        self._connect()
        self._restore_settings()
        self._update_undo_actions()
        self._update_title()
        self._update_status()

    # ================================================================== construction
    def _dock(self, title: str, widget: QtWidgets.QWidget, area) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_"))
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_toolbar_widgets(self) -> None:
        self.mode_combo = QtWidgets.QComboBox()
        self.mode_combo.addItem("Mode: auto (names, then content)", AUTO_MODE)
        for m in Mode:
            self.mode_combo.addItem(f"Mode: {m.value} ({m.fixed_modality.upper()} ← "
                                    f"{m.moving_modality.upper()})", m.value)
        self.mode_combo.setToolTip("Registration mode: fixed ← moving modality")
        self.matcher_combo = QtWidgets.QComboBox()
        for name in available_matchers():
            self.matcher_combo.addItem(f"Matcher: {name}", name)
        self.matcher_combo.setToolTip("Which matcher registers the pair (default: the bundled "
                                      "model when present, else classical)")
        self.field_combo = QtWidgets.QComboBox()
        self.field_combo.addItem("OCTA field: auto", "")
        for mm in OCTA_FIELDS_MM:
            self.field_combo.addItem(f"OCTA field: {mm:g} mm", f"{mm:g}")
        self.field_combo.setToolTip("CF-OCTA with a whole fundus photo: the OCTA scan's size, "
                                    "so its field is looked for at the right scale (auto tries "
                                    "3 and 6 mm)")
        self.transform_combo = QtWidgets.QComboBox()
        for t in TRANSFORM_TYPES:
            self.transform_combo.addItem(t.capitalize(), t)
        self.transform_combo.setToolTip("Transform type; switching re-estimates instantly")
        self.lines_combo = QtWidgets.QComboBox()
        for name in LINE_FILTERS:
            self.lines_combo.addItem(f"Lines: {name}", name)
        self.lines_combo.setToolTip("Match lines: the pairs in use (inliers), all, the excluded "
                                    "ones (outliers) or none; coloured by residual")

    def _action(self, text: str, slot, shortcut=None, icon: str | None = None,
                checkable: bool = False, tip: str = "") -> QtGui.QAction:
        act = QtGui.QAction(text, self)
        if shortcut:
            seqs = shortcut if isinstance(shortcut, (list, tuple)) else [shortcut]
            act.setShortcuts([QtGui.QKeySequence(s) for s in seqs])
        if icon:
            self._icons[act] = icon
        act.setCheckable(checkable)
        if tip:
            act.setStatusTip(tip)
            act.setToolTip(f"{tip} ({act.shortcut().toString()})" if shortcut else tip)
        act.triggered.connect(slot)
        self.addAction(act)  # shortcuts work even when menus/toolbars are hidden
        return act

    def _build_actions(self) -> None:
        A = self._action
        self.act_open = A("&Open pair…", self.open_pair_dialog, "Ctrl+O", "fa5s.folder-open",
                          tip="Open a fixed and a moving image")
        self.act_open_fixed = A("Open &fixed image…", lambda: self.open_one_dialog("fixed"),
                                "Ctrl+Shift+F")
        self.act_open_moving = A("Open &moving image…", lambda: self.open_one_dialog("moving"),
                                 "Ctrl+Shift+M")
        self.act_open_cases = A("Open &case folder…", self.open_case_folder_dialog,
                                "Ctrl+Shift+O", "fa5s.folder", tip="Step through a case folder")
        self.act_next_case = A("&Next case", lambda: self.step_case(1), "PgDown",
                               "fa5s.chevron-right")
        self.act_prev_case = A("&Previous case", lambda: self.step_case(-1), "PgUp",
                               "fa5s.chevron-left")
        self.act_load = A("&Load annotation…", self.load_annotation_dialog, "Ctrl+L",
                          "fa5s.file-import")
        self.act_save = A("&Save annotation", self.save, "Ctrl+S", "fa5s.save",
                          tip="Save the point pairs and transform")
        self.act_save_as = A("Save annotation &as…", self.save_as, "Ctrl+Shift+S")
        self.act_import_fire = A("Import FIRE points (.txt)…", lambda: self.import_points("fire"))
        self.act_import_csv = A("Import CSV points…", lambda: self.import_points("csv"))
        self.act_export_fire = A("Export FIRE points (.txt)…", lambda: self.export_points("fire"))
        self.act_export_csv = A("Export CSV points…", lambda: self.export_points("csv"))
        self.act_export_real = A("&Export for fine-tuning…", self.export_realpair_dialog,
                                 "Ctrl+E", "fa5s.file-export",
                                 tip="Add this pair to a real-pair set for sim-to-real fine-tuning")
        self.act_save_png = A("Save overlay image (PNG)…", self.save_overlay_png)
        self.act_quit = A("&Quit", self.close, "Ctrl+Q")

        self.act_register = A("&Register", self.register, "Ctrl+R", "fa5s.play",
                              tip="Run the matcher and estimate the transform")
        self.act_weights = A("Choose model &weights…", self.choose_weights, None,
                             "fa5s.weight-hanging")
        self.act_undo = A("&Undo", self.doc.undo, QtGui.QKeySequence.StandardKey.Undo,
                          "fa5s.undo")
        self.act_redo = A("&Redo", self.doc.redo, ["Ctrl+Shift+Z", "Ctrl+Y"], "fa5s.redo")
        self.act_add = A("&Add point pair", self.pair_view.set_add_mode, "A", "fa5s.crosshairs",
                         checkable=True, tip="Click a point in one image, then its partner")
        self.act_accept = A("Accept predicted partner", self.pair_view.accept_prediction,
                            ["Return", "Enter"])
        self.act_cancel = A("Cancel pending point", self.pair_view.cancel_pending, "Esc")
        self.act_delete = A("&Delete selected pairs", self.delete_selected,
                            ["Del", "Backspace"], "fa5s.trash")
        self.act_toggle = A("&Include / exclude selected", self.toggle_selected, "I",
                            "fa5s.check-square")
        self.act_snap = A("S&nap selected partners onto the vessels", self.snap_selected, "S",
                          "fa5s.magnet",
                          tip="Move each selected pair's fixed point onto the vessel structure "
                              "that matches its moving point")
        self.act_transforms = [A(f"Transform: {t}", lambda _=False, t=t: self.set_transform(t),
                                 str(k + 1)) for k, t in enumerate(TRANSFORM_TYPES)]
        self.act_overlay = A("Next &overlay kind", self.overlay_view.cycle_kind, "O",
                             "fa5s.layer-group")
        self.act_lines = A("Next &line filter", self.cycle_lines, "L")
        self.act_keypoints = A("Detector &keypoints (SuperRetina)", self.show_keypoints, "K",
                               checkable=True, tip="The SuperRetina-style detector's keypoints "
                               "(green) beside the point pairs (red) on both images")
        self.act_fit = A("&Fit to window", self.pair_view.reset_zoom, "F", "fa5s.expand")
        self.act_dark = A("&Dark palette", self.set_dark, "Ctrl+D", "fa5s.moon", checkable=True)
        self.act_training = self.training_dock.toggleViewAction()
        self.act_training.setShortcut("Ctrl+T")
        self._icons[self.act_training] = "fa5s.brain"
        self.act_table = self.table_dock.toggleViewAction()
        self.act_table.setShortcut("Ctrl+P")
        self._icons[self.act_table] = "fa5s.table"
        self.act_cases = self.cases_dock.toggleViewAction()
        self.addActions([self.act_training, self.act_table, self.act_cases])
        self.act_shortcuts = A("&Keyboard shortcuts", self.show_shortcuts, "F1",
                               "fa5s.question-circle")
        self.act_about = A("&About RetReg", self.show_about, None, "fa5s.info-circle")

        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addActions([self.act_open, self.act_open_fixed, self.act_open_moving])
        self.recent_menu = m.addMenu("Open &recent")
        m.addActions([self.act_open_cases, self.act_next_case, self.act_prev_case])
        m.addSeparator()
        m.addActions([self.act_load, self.act_save, self.act_save_as])
        m.addSeparator()
        m.addActions([self.act_import_fire, self.act_import_csv, self.act_export_fire,
                      self.act_export_csv, self.act_export_real, self.act_save_png])
        m.addSeparator()
        m.addAction(self.act_quit)
        m = mb.addMenu("&Edit")
        m.addActions([self.act_undo, self.act_redo])
        m.addSeparator()
        m.addActions([self.act_add, self.act_accept, self.act_cancel, self.act_snap,
                      self.act_delete,
                      self.act_toggle])
        m = mb.addMenu("&Registration")
        m.addActions([self.act_register, self.act_weights])
        m.addSeparator()
        m.addActions(self.act_transforms)
        m = mb.addMenu("&View")
        m.addActions([self.act_fit, self.act_overlay, self.act_lines, self.act_keypoints,
                      self.act_dark])
        m.addSeparator()
        m.addActions([self.act_table, self.act_training, self.act_cases])
        m = mb.addMenu("&Help")
        m.addActions([self.act_shortcuts, self.act_about])

        tb = self.addToolBar("Main")
        tb.setObjectName("main_toolbar")
        tb.setIconSize(QtCore.QSize(18, 18))
        tb.addActions([self.act_open, self.act_save])
        tb.addSeparator()
        tb.addWidget(self.mode_combo)
        tb.addWidget(self.matcher_combo)
        tb.addWidget(self.field_combo)
        tb.addAction(self.act_register)
        tb.addWidget(self.transform_combo)
        tb.addSeparator()
        tb.addActions([self.act_add, self.act_delete, self.act_undo, self.act_redo])
        tb.addSeparator()
        tb.addWidget(self.lines_combo)
        tb.addAction(self.act_fit)
        tb.addSeparator()
        tb.addActions([self.act_training, self.act_shortcuts])
        self.refresh_icons()

    def refresh_icons(self) -> None:
        """Icons drawn in the palette's text colour, so they read in light and dark."""
        pal = QtWidgets.QApplication.palette()
        color = pal.color(QtGui.QPalette.ColorRole.WindowText)
        disabled = pal.color(QtGui.QPalette.ColorGroup.Disabled, QtGui.QPalette.ColorRole.WindowText)
        if disabled == color:
            disabled = QtGui.QColor(128, 128, 128)
        for act, name in self._icons.items():
            act.setIcon(qta.icon(name, color=color, color_disabled=disabled))

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.busy = QtWidgets.QProgressBar()
        self.busy.setRange(0, 0)  # indeterminate: a busy indicator
        self.busy.setMaximumWidth(120)
        self.busy.setMaximumHeight(14)
        self.busy.hide()
        self.counts = QtWidgets.QLabel()
        sb.addPermanentWidget(self.busy)
        sb.addPermanentWidget(self.counts)

    def _connect(self) -> None:
        s = self.session
        s.document_changed.connect(self._on_document)
        s.history_changed.connect(self._on_history)
        s.edit_refused.connect(self._on_edit_refused)
        s.images_changed.connect(self._on_new_images)
        self.autosave.timeout.connect(self.save_recovery)
        self.runner.worker.finished.connect(self._on_registered)
        self.runner.worker.failed.connect(self._on_register_failed)
        self.switches.ready.connect(self._on_switch_prepared)
        self.runner.busy_changed.connect(self._on_busy)
        self.pair_view.status_message.connect(self.statusBar().showMessage)
        self.table.pair_activated.connect(self.pair_view.center_on_pair)
        self.transform_combo.activated.connect(
            lambda i: self.set_transform(self.transform_combo.itemData(i)))
        self.lines_combo.currentIndexChanged.connect(
            lambda i: self.pair_view.set_line_filter(self.lines_combo.itemData(i)))
        self.mode_combo.activated.connect(self._on_mode_chosen)
        self.mode_combo.currentIndexChanged.connect(  # the scan size only matters for cfocta
            lambda _i: self.field_combo.setEnabled(
                self.mode_combo.currentData() in (AUTO_MODE, Mode.CFOCTA.value)))
        self.cases.case_chosen.connect(self.open_case)
        self.training.weights_ready.connect(self.offer_new_weights)

    def _restore_settings(self) -> None:
        st = self.settings
        geo, state = st.geometry(), st.window_state()
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1500, 950)
        if state is not None:
            self.restoreState(state)
        self.select_data(self.mode_combo, st.mode())
        self.select_data(self.matcher_combo, st.matcher())
        self.select_data(self.field_combo, st.octa_field())
        self.select_data(self.transform_combo, st.transform())
        self.select_data(self.lines_combo, st.line_filter())
        self.pair_view.cap.setValue(st.line_cap(LINE_CAP))
        self.doc.set_initial_transform(st.transform())
        self.overlay_view.set_kind(st.overlay())
        self.overlay_view.squares.setValue(st.squares())
        self.act_dark.setChecked(st.dark())
        if st.dark():
            self.set_dark(True)
        self._rebuild_recent_menu()

    @staticmethod
    def select_data(combo: QtWidgets.QComboBox, value) -> None:
        """Pick the entry whose data is ``value`` (left unchanged when there is none)."""
        i = combo.findData(value)
        if i >= 0:
            combo.setCurrentIndex(i)

    def save_settings(self) -> None:
        st = self.settings
        st.save_window(self.saveGeometry(), self.saveState())
        st.set_mode(self.mode_combo.currentData())
        st.set_matcher(self.matcher_combo.currentData())
        st.set_octa_field(self.field_combo.currentData())
        st.set_transform(self.doc.transform_type)
        st.set_line_filter(self.lines_combo.currentData())
        st.set_line_cap(self.pair_view.cap.value())
        st.set_overlay(self.overlay_view.current_kind())
        st.set_squares(self.overlay_view.squares.value())
        st.set_weights(self.controller.weights)
        st.set_dark(self.act_dark.isChecked())
        st.sync()

    # ================================================================== status and title
    def _update_title(self, *_) -> None:
        self.setWindowTitle(window_title(self.doc))

    def _update_status(self) -> None:
        self.counts.setText(counts_text(self.doc))

    def _on_document(self) -> None:
        self.select_data(self.transform_combo, self.doc.transform_type)
        self._update_status()
        self._update_title()
        self._show_verdict()

    def _show_verdict(self) -> None:
        """A banner with the level and reasons above the views, and the overlay framed in
        its colour, while the shown transform's verdict is not ok."""
        note = verdict_note(self.doc)
        self.verdict_banner.setVisible(note is not None)
        if note is None:
            self.overlay_view.box.setBorder(None)
            return
        bg, fg = VERDICT_COLORS[note.level]
        self.verdict_banner.setText(note.text)
        self.verdict_banner.setStyleSheet(f"background: {bg}; color: {fg}; font-weight: bold; "
                                          "padding: 4px 8px;")
        self.overlay_view.box.setBorder(pg.mkPen(bg, width=4))

    def _on_edit_refused(self) -> None:
        # After the event that caused it, so a view's own status line does not hide it.
        QtCore.QTimer.singleShot(0, lambda: self.statusBar().showMessage(self.doc.refusal,
                                                                         10000))

    def _update_undo_actions(self) -> None:
        d = self.doc
        for act, word, can, text in ((self.act_undo, "&Undo", d.can_undo, d.undo_text),
                                     (self.act_redo, "&Redo", d.can_redo, d.redo_text)):
            act.setEnabled(can)
            act.setText(f"{word} {text}" if text else word)

    def _on_history(self) -> None:
        self._update_undo_actions()
        self._update_title()
        if self.recovery.on_history():
            self.autosave.start()
        else:
            self.autosave.stop()

    def save_recovery(self) -> None:
        """Write the unsaved work to the recovery file now (the autosave timer's slot)."""
        error = self.recovery.save_now()
        if error:
            self.statusBar().showMessage(error)

    def _on_busy(self, busy: bool) -> None:
        self.busy.setVisible(busy)
        self.act_register.setEnabled(not busy)
        if busy:
            self.statusBar().showMessage("Registering…")

    # ================================================================== opening images
    def open_pair(self, fixed: str | Path, moving: str | Path, mode: Mode | str | None = None,
                  register: bool = True, images: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> bool:
        """Open two images (``images``: already read from them) as a new document (asks
        first if there are unsaved changes). ``mode`` overrides the toolbar; without a mode
        the pair opens unregistered."""
        fixed, moving = Path(fixed), Path(moving)
        if not self.confirm_discard():
            return False
        try:
            fixed_img, moving_img = images or (read_image(fixed), read_image(moving))
        except RetRegError as exc:
            show_error(self, "Cannot open image", str(exc))
            return False
        opened = self.controller.open_images(fixed, moving, fixed_img, moving_img, mode,
                                             self.mode_combo.currentData(), register)
        if mode is not None and opened.mode is not None:
            self.select_data(self.mode_combo, opened.mode.value)
        self.settings.add_recent_pair(fixed, moving)
        self.settings.set_last_dir("images", fixed)
        self._rebuild_recent_menu()
        self._update_title()
        self._update_status()
        self.statusBar().showMessage(opened.message, 8000)
        if opened.register:
            self.register()
        elif register:
            self.registration_done.emit(False)
        return True

    def open_pair_dialog(self) -> None:
        files, _ = QtWidgets.QFileDialog.getOpenFileNames(
            self, "Open fixed and moving image (select both, or the fixed first)",
            self.settings.last_dir("images"), IMAGE_FILTER)
        if len(files) == 1:
            moving, _ = QtWidgets.QFileDialog.getOpenFileName(
                self, "Open the moving image", str(Path(files[0]).parent), IMAGE_FILTER)
            if not moving:
                return
            files.append(moving)
        if len(files) == 2:
            self.open_pair(*order_pair(*files))
        elif files:
            show_error(self, "Open pair", f"Select two images (a fixed and a moving one), "
                                          f"not {len(files)}.")

    def open_one_dialog(self, side: str) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, f"Open the {side} image", self.settings.last_dir("images"), IMAGE_FILTER)
        if path:
            self.replace_image(side, path)

    def replace_image(self, side: str, path: str | Path) -> None:
        """Swap one image of the open pair; with no pair yet, wait for the other image."""
        pair, message = self.controller.pick_image(side, path)
        if pair is None:
            self.statusBar().showMessage(message, 8000)
        else:
            self.open_pair(*pair)

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for fixed, moving in self.settings.recent_pairs():
            act = self.recent_menu.addAction(f"{Path(fixed).name}  ←  {Path(moving).name}")
            act.setToolTip(f"{fixed}\n{moving}")
            act.triggered.connect(lambda _=False, f=fixed, m=moving: self.open_pair(f, m))
        self.recent_menu.addSeparator()
        self.recent_menu.addAction("Clear list", self._clear_recent)

    def _clear_recent(self) -> None:
        self.settings.clear_recent()
        self._rebuild_recent_menu()

    def _on_mode_chosen(self, _index: int) -> None:
        change = self.controller.mode_chosen(self.mode_combo.currentData())
        if change is None:
            return
        register, message = change
        self.pair_view.update_titles()
        self._update_status()
        self.statusBar().showMessage(message, 8000)
        if register:
            self.register()

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        self.open_dropped(paths, event.position().toPoint())
        event.acceptProposedAction()

    def open_dropped(self, paths: list[str], pos: QtCore.QPoint | None = None) -> None:
        """Two images: a pair; one annotation: load it; one image: replace the image under
        the drop point (fixed on the left half of the pair view, moving on the right)."""
        if len(paths) == 2:
            self.open_pair(*order_pair(*paths))
        elif len(paths) == 1 and paths[0].lower().endswith(".json"):
            self.load_annotation(paths[0])
        elif len(paths) == 1:
            local = self.pair_view.mapFrom(self, pos) if pos is not None else None
            side = "moving" if local is not None and local.x() > self.pair_view.width() / 2 \
                else "fixed"
            self.replace_image(side, paths[0])
        else:
            show_error(self, "Drop files", "Drop two images (fixed and moving), one image, "
                                           "or one annotation (.json).")

    # ------------------------------------------------------------------ case folders
    def open_case_folder_dialog(self) -> None:
        root = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Open case folder", self.settings.last_dir("cases"))
        if root:
            self.open_case_folder(root)

    def open_case_folder(self, root: str | Path) -> bool:
        mode = self.controller.case_folder_mode(self.mode_combo.currentData())
        if mode is None:
            show_error(self, "Open case folder", "Choose the mode in the toolbar first: a case "
                                                 "folder is listed for one mode.")
            return False
        try:
            n, skipped = self.cases.load(root, mode.value)
        except RetRegError as exc:
            show_error(self, "Cannot open case folder", str(exc))
            return False
        self.settings.set_last_dir("cases", root)
        self.cases_dock.show()
        self.statusBar().showMessage(f"{n} cases for {mode.value}" + (
            f", {skipped} skipped (hover them for the reason)" if skipped else ""), 8000)
        self.cases.step(1)
        return True

    def open_case(self, case) -> None:
        self.open_pair(case.fixed_path, case.moving_path, mode=case.mode)

    def step_case(self, delta: int) -> None:
        if not self.cases.step(delta):
            self.statusBar().showMessage("No more cases in that direction", 4000)

    # ================================================================== registration
    def register(self) -> None:
        mm = self.field_combo.currentData()
        job, why_not = self.controller.register_job(self.matcher_combo.currentData(),
                                                    float(mm) if mm else None)
        if job is None:
            self.statusBar().showMessage(why_not, 8000)
            return
        self.pair_view.cancel_pending()
        self.runner.start(job)

    @QtCore.Slot(object, object)
    def _on_registered(self, job: RegisterJob, result: RegistrationResult) -> None:
        done = self.controller.registered(job, result)
        if done is None:
            return  # the user opened other images meanwhile
        self.statusBar().showMessage(done.message, 15000)
        self.statusBar().setToolTip(done.message)  # the whole line, where fields cut it
        self.switches.prepare(self.doc.result, self.doc.slow_switches())
        if done.comparison:
            QtWidgets.QMessageBox.information(self, "Before and after", done.comparison)
        self.registration_done.emit(result.ok)

    @QtCore.Slot(object, str, str)
    def _on_register_failed(self, job: RegisterJob, message: str, details: str) -> None:
        self.controller.registration_failed()
        self.statusBar().showMessage("Registration stopped with an error", 8000)
        self.registration_done.emit(False)
        show_error(self, "Registration failed", message, details)

    def set_transform(self, transform_type: str) -> None:
        try:
            self.doc.set_transform_type(transform_type)
        except RetRegError as exc:
            show_error(self, "Cannot change transform", str(exc))
        self.select_data(self.transform_combo, self.doc.transform_type)
        self.switches.prepare(self.doc.result, self.doc.slow_switches())

    @QtCore.Slot(object, str, object)
    def _on_switch_prepared(self, base: RegistrationResult, transform_type: str,
                            result: RegistrationResult) -> None:
        self.doc.offer_prepared(base, transform_type, result)

    def choose_weights(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Model weights", self.settings.last_dir("weights"),
            "safetensors (*.safetensors)")
        if path:
            self.use_weights(path)

    def use_weights(self, path: str | Path) -> None:
        self._show_weights(path, self.controller.use_weights(path))

    def _show_weights(self, path: str | Path, message: str) -> None:
        self.settings.set_last_dir("weights", path)
        self.select_data(self.matcher_combo, "loftr")
        self.statusBar().showMessage(message, 8000)

    def offer_new_weights(self, path: str) -> None:
        """After training: load the new weights and re-register, then compare residuals."""
        question = self.controller.weights_question(path)
        if question is None:
            self.use_weights(path)
            return
        answer = QtWidgets.QMessageBox.question(self, "Training finished", question)
        if answer != QtWidgets.QMessageBox.StandardButton.Yes:
            return
        self._show_weights(path, self.controller.compare_with(path))
        self.register()

    # ================================================================== editing
    def delete_selected(self) -> None:
        self.doc.delete_pairs(self.doc.selected_ids)

    def toggle_selected(self) -> None:
        self.doc.toggle_included(self.doc.selected_ids)

    def snap_selected(self) -> None:
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            message = self.controller.snap_selected()
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
        self.statusBar().showMessage(message, 10000)

    def cycle_lines(self) -> None:
        self.lines_combo.setCurrentIndex((self.lines_combo.currentIndex() + 1)
                                         % self.lines_combo.count())

    # ================================================================== recovery, closing
    def offer_recovery(self) -> bool:
        """At start-up: offer to restore work a crashed or killed session left unsaved."""
        question = self.recovery.question()
        if question is None:
            return False
        answer = QtWidgets.QMessageBox.question(
            self, "Recover unsaved work?", question,
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No)
        if answer == QtWidgets.QMessageBox.StandardButton.Yes:
            return self.recover()
        self.recovery.discard()
        return False

    def recover(self) -> bool:
        path = self.recovery.pending()
        if path is None:
            return False
        self.recovery.suspended = True  # keep the file until the recovered work is saved
        try:
            ok = self.load_annotation(path, recovered=True)
        finally:
            self.recovery.suspended = False
        if ok:
            self.save_recovery()
            self.statusBar().showMessage("Recovered unsaved work — save it with Ctrl+S", 10000)
        return ok

    def confirm_discard(self) -> bool:
        """True when it is fine to drop the current document (saved, or the user agrees)."""
        if not self.doc.is_dirty:
            return True
        answer = QtWidgets.QMessageBox.question(
            self, "Unsaved changes", "The point pairs have unsaved changes. Save them?",
            QtWidgets.QMessageBox.StandardButton.Save | QtWidgets.QMessageBox.StandardButton.Discard
            | QtWidgets.QMessageBox.StandardButton.Cancel)
        if answer == QtWidgets.QMessageBox.StandardButton.Save:
            return self.save()
        if answer == QtWidgets.QMessageBox.StandardButton.Discard:
            self.autosave.stop()
            self.recovery.discard()
            return True
        return False

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if not self.confirm_discard() or not self.training.confirm_stop():
            event.ignore()
            return
        event.accept()
        if self._closed:
            return
        self._closed = True
        self.save_settings()
        self.runner.shutdown()
        self.switches.shutdown()
        self.autosave.stop()

    # ================================================================== look and help
    def _on_new_images(self) -> None:
        self.act_keypoints.setChecked(False)  # the pair view has hidden the old keypoints

    def show_keypoints(self, on: bool) -> None:
        """Toggle the detector-keypoint overlay of the open pair (hidden again on new images)."""
        d = self.doc
        if not on or not d.has_images:
            self.act_keypoints.setChecked(False)
            self.pair_view.show_keypoints(None)
            return
        try:
            shown = detector_keypoints(d.fixed_img, d.moving_img, d.mode or Mode.CFCF)
        except RetRegError as exc:
            self.act_keypoints.setChecked(False)
            show_error(self, "Cannot show the detector keypoints", str(exc))
            return
        self.pair_view.show_keypoints(shown)
        self.statusBar().showMessage(
            f"Detector keypoints: {len(shown['fixed'])} fixed, {len(shown['moving'])} moving "
            "(green); point pairs in red", 8000)

    def set_dark(self, on: bool) -> None:
        palette.apply(QtWidgets.QApplication.instance(), dark=bool(on))
        self.refresh_icons()

    def show_shortcuts(self) -> None:
        ShortcutsDialog(self.actions(), self).exec()

    def show_about(self) -> None:
        weights = self.controller.weights
        matcher = self.doc.result.matcher if self.doc.result else self.matcher_combo.currentData()
        AboutDialog(matcher, str(weights) if weights else None, self).exec()
