"""The main window: views around one ``Session``, actions with shortcuts, file handling.

Every action calls tested core/training code; this module only wires widgets, files and the
background workers together.
"""
from __future__ import annotations

from pathlib import Path

import qtawesome as qta
from PySide6 import QtCore, QtGui, QtWidgets

from retreg.core.errors import RetRegError
from retreg.core.io import read_image
from retreg.core.matchers import available_matchers
from retreg.core.modality import guess_mode
from retreg.core.types import TRANSFORM_TYPES, Mode, RegistrationResult
from retreg.gui import palette
from retreg.gui.case_browser import CaseBrowser
from retreg.gui.dialogs import AboutDialog, ShortcutsDialog, show_error
from retreg.gui.file_actions import AnnotationFilesMixin
from retreg.gui.recovery import RecoveryStore
from retreg.gui.session import Session
from retreg.gui.settings import Settings
from retreg.gui.training_panel import TrainingPanel
from retreg.gui.views.overlay_view import OverlayView
from retreg.gui.views.pair_view import LINE_FILTERS, PairView
from retreg.gui.views.residual_table import ResidualTable
from retreg.gui.workers import RegisterJob, RegisterRunner

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)"
AUTO_MODE = "auto"


class MainWindow(AnnotationFilesMixin, QtWidgets.QMainWindow):
    """RetReg's review and annotation window."""

    registration_done = QtCore.Signal(bool)  # ok; for scripted use (screenshots, tests)

    def __init__(self, settings: Settings | None = None, recovery_dir: str | Path | None = None
                 ) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.session = Session(self)
        self.runner = RegisterRunner(self)
        self.recovery = RecoveryStore(self.session, recovery_dir or self.settings.recovery_dir()
                                      or None, self)
        self.weights: Path | None = Path(self.settings.weights()) if self.settings.weights() \
            else None
        # (pairs used, median residual) and matcher before re-registering with new weights
        self._compare_before: tuple[int, float | None] | None = None
        self._compare_name = ""
        self._half_pair: dict[str, Path] = {}  # one image chosen, waiting for the other
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
        self.setCentralWidget(split)

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
        self.mode_combo.addItem("Mode: auto (from names)", AUTO_MODE)
        for m in Mode:
            self.mode_combo.addItem(f"Mode: {m.value} ({m.fixed_modality.upper()} ← "
                                    f"{m.moving_modality.upper()})", m.value)
        self.mode_combo.setToolTip("Registration mode: fixed ← moving modality")
        self.matcher_combo = QtWidgets.QComboBox()
        for name in available_matchers():
            self.matcher_combo.addItem(f"Matcher: {name}", name)
        self.matcher_combo.setToolTip("Which matcher registers the pair (default: the bundled "
                                      "model when present, else classical)")
        self.transform_combo = QtWidgets.QComboBox()
        for t in TRANSFORM_TYPES:
            self.transform_combo.addItem(t.capitalize(), t)
        self.transform_combo.setToolTip("Transform type; switching re-estimates instantly")
        self.lines_combo = QtWidgets.QComboBox()
        for name in LINE_FILTERS:
            self.lines_combo.addItem(f"Lines: {name}", name)
        self.lines_combo.setToolTip("Match lines: included pairs coloured yellow (low "
                                    "confidence) to green (high), manual cyan, excluded red")

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
        self.act_undo = self.session.undo_stack.createUndoAction(self, "&Undo")
        self.act_undo.setShortcuts(QtGui.QKeySequence.StandardKey.Undo)
        self._icons[self.act_undo] = "fa5s.undo"
        self.act_redo = self.session.undo_stack.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts([QtGui.QKeySequence("Ctrl+Shift+Z"),
                                    QtGui.QKeySequence("Ctrl+Y")])
        self._icons[self.act_redo] = "fa5s.redo"
        self.addActions([self.act_undo, self.act_redo])
        self.act_add = A("&Add point pair", self.pair_view.set_add_mode, "A", "fa5s.crosshairs",
                         checkable=True, tip="Click a point in one image, then its partner")
        self.act_accept = A("Accept predicted partner", self.pair_view.accept_prediction,
                            ["Return", "Enter"])
        self.act_cancel = A("Cancel pending point", self.pair_view.cancel_pending, "Esc")
        self.act_delete = A("&Delete selected pairs", self.delete_selected,
                            ["Del", "Backspace"], "fa5s.trash")
        self.act_toggle = A("&Include / exclude selected", self.toggle_selected, "I",
                            "fa5s.check-square")
        self.act_transforms = [A(f"Transform: {t}", lambda _=False, t=t: self.set_transform(t),
                                 str(k + 1)) for k, t in enumerate(TRANSFORM_TYPES)]
        self.act_overlay = A("Next &overlay kind", self.overlay_view.cycle_kind, "O",
                             "fa5s.layer-group")
        self.act_lines = A("Next &line filter", self.cycle_lines, "L")
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
        m.addActions([self.act_add, self.act_accept, self.act_cancel, self.act_delete,
                      self.act_toggle])
        m = mb.addMenu("&Registration")
        m.addActions([self.act_register, self.act_weights])
        m.addSeparator()
        m.addActions(self.act_transforms)
        m = mb.addMenu("&View")
        m.addActions([self.act_fit, self.act_overlay, self.act_lines, self.act_dark])
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
        s.undo_stack.cleanChanged.connect(self._update_title)
        s.undo_stack.indexChanged.connect(self._update_title)
        self.runner.worker.finished.connect(self._on_registered)
        self.runner.worker.failed.connect(self._on_register_failed)
        self.runner.busy_changed.connect(self._on_busy)
        self.pair_view.status_message.connect(self.statusBar().showMessage)
        self.table.pair_activated.connect(self.pair_view.center_on_pair)
        self.transform_combo.activated.connect(
            lambda i: self.set_transform(self.transform_combo.itemData(i)))
        self.lines_combo.currentIndexChanged.connect(
            lambda i: self.pair_view.set_line_filter(self.lines_combo.itemData(i)))
        self.mode_combo.activated.connect(self._on_mode_chosen)
        self.cases.case_chosen.connect(self.open_case)
        self.training.weights_ready.connect(self.offer_new_weights)
        self.recovery.error.connect(self.statusBar().showMessage)

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
        self.select_data(self.transform_combo, st.transform())
        self.select_data(self.lines_combo, st.line_filter())
        self.session.set_initial_transform(st.transform())
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
        st.set_transform(self.session.transform_type)
        st.set_line_filter(self.lines_combo.currentData())
        st.set_overlay(self.overlay_view.current_kind())
        st.set_squares(self.overlay_view.squares.value())
        st.set_weights(self.weights)
        st.set_dark(self.act_dark.isChecked())
        st.sync()

    # ================================================================== status and title
    def _update_title(self, *_):
        s = self.session
        name = s.annotation_path.name if s.annotation_path else (
            f"{s.fixed_path.name} ← {s.moving_path.name}" if s.fixed_path and s.moving_path
            else "no images")
        self.setWindowTitle(f"{'*' if s.is_dirty else ''}{name} — RetReg")

    def _update_status(self) -> None:
        s = self.session
        parts = [f"mode {s.mode.value if s.mode else '?'}"]
        if s.pairs:
            n_inc, med = s.inlier_residual_summary()
            parts.append(f"{len(s.pairs)} pairs, {n_inc} used")
            parts.append(f"median residual {med:.2f} px" if med is not None
                         else f"no transform: {s.fit_reason}")
        r = s.result
        if r is not None:
            parts.append(f"{len(r.matches)} matches → {len(r.selected)} selected → "
                         f"{r.n_inliers} inliers")
            parts.append(f"{r.matcher} {r.timings.get('total', 0.0):.2f} s")
        self.counts.setText("  |  ".join(parts))

    def _on_document(self) -> None:
        self.select_data(self.transform_combo, self.session.transform_type)
        self._update_status()
        self._update_title()

    def _on_busy(self, busy: bool) -> None:
        self.busy.setVisible(busy)
        self.act_register.setEnabled(not busy)
        if busy:
            self.statusBar().showMessage("Registering…")

    # ================================================================== opening images
    def chosen_mode(self, fixed: Path, moving: Path) -> tuple[Mode, str]:
        """The mode picked in the combo, or guessed from names; with a note for the user."""
        data = self.mode_combo.currentData()
        if data != AUTO_MODE:
            return Mode(data), ""
        guessed = guess_mode(fixed, moving)
        if guessed is not None:
            return guessed, f"mode {guessed.value} guessed from the file names"
        return Mode.CFFA, ("mode not recognisable from the file names: assuming cffa "
                           "(choose the mode in the toolbar)")

    def open_pair(self, fixed: str | Path, moving: str | Path, mode: Mode | str | None = None,
                  register: bool = True) -> bool:
        """Open two images as a new document (asks first if there are unsaved changes)."""
        fixed, moving = Path(fixed), Path(moving)
        if not self.confirm_discard():
            return False
        try:
            fixed_img, moving_img = read_image(fixed), read_image(moving)
        except RetRegError as exc:
            show_error(self, "Cannot open image", str(exc))
            return False
        if mode is not None:
            mode, note = Mode(mode), ""
            self.select_data(self.mode_combo, mode.value)
        else:
            mode, note = self.chosen_mode(fixed, moving)
        self.session.set_images(fixed, moving, fixed_img, moving_img, mode)
        self.recovery.discard()
        self.settings.add_recent_pair(fixed, moving)
        self.settings.set_last_dir("images", fixed)
        self._rebuild_recent_menu()
        self._update_title()
        self._update_status()
        self.statusBar().showMessage(f"Opened {fixed.name} and {moving.name}"
                                     + (f"; {note}" if note else ""), 8000)
        if register:
            self.register()
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
            self.open_pair(*self.order_pair(files))
        elif files:
            show_error(self, "Open pair", f"Select two images (a fixed and a moving one), "
                                          f"not {len(files)}.")

    @staticmethod
    def order_pair(files: list[str]) -> tuple[str, str]:
        """(fixed, moving): the order whose names form a known mode, else as given."""
        a, b = files
        if guess_mode(a, b) is None and guess_mode(b, a) is not None:
            return b, a
        return a, b

    def open_one_dialog(self, side: str) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, f"Open the {side} image", self.settings.last_dir("images"), IMAGE_FILTER)
        if path:
            self.replace_image(side, path)

    def replace_image(self, side: str, path: str | Path) -> None:
        """Swap one image of the open pair; with no pair yet, wait for the other image."""
        s = self.session
        chosen = {"fixed": s.fixed_path, "moving": s.moving_path, **self._half_pair,
                  side: Path(path)}
        if chosen["fixed"] is None or chosen["moving"] is None:
            self._half_pair = {side: Path(path)}
            other = "moving" if side == "fixed" else "fixed"
            self.statusBar().showMessage(f"Now open the {other} image", 8000)
            return
        self._half_pair = {}
        self.open_pair(chosen["fixed"], chosen["moving"])

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
        s = self.session
        if not s.has_images:
            return
        mode, note = self.chosen_mode(s.fixed_path, s.moving_path)
        if mode != s.mode:
            s.set_mode(mode)
            self.pair_view.update_titles()
            self._update_status()
            self.statusBar().showMessage(f"Mode is now {mode.value}; register again (Ctrl+R) "
                                         "to match with it", 8000)

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
            self.open_pair(*self.order_pair(paths))
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
        mode = self.mode_combo.currentData()
        if mode == AUTO_MODE:
            mode = (self.session.mode or Mode.CFFA).value
        try:
            n, skipped = self.cases.load(root, mode)
        except RetRegError as exc:
            show_error(self, "Cannot open case folder", str(exc))
            return False
        self.settings.set_last_dir("cases", root)
        self.cases_dock.show()
        self.statusBar().showMessage(f"{n} cases for {mode}" + (f", {skipped} skipped (hover "
                                     "them for the reason)" if skipped else ""), 8000)
        self.cases.step(1)
        return True

    def open_case(self, case) -> None:
        self.open_pair(case.fixed_path, case.moving_path, mode=case.mode)

    def step_case(self, delta: int) -> None:
        if not self.cases.step(delta):
            self.statusBar().showMessage("No more cases in that direction", 4000)

    # ================================================================== registration
    def current_job(self) -> RegisterJob | None:
        s = self.session
        if not s.has_images:
            return None
        matcher = self.matcher_combo.currentData()
        weights = self.weights if matcher in ("default", "loftr") else None
        return RegisterJob(s.fixed_img, s.moving_img, s.mode.value, matcher, weights,
                           s.transform_type)

    def register(self) -> None:
        job = self.current_job()
        if job is None:
            self.statusBar().showMessage("Open a fixed and a moving image first", 5000)
            return
        self.pair_view.cancel_pending()
        self.runner.start(job)

    @QtCore.Slot(object, object)
    def _on_registered(self, job: RegisterJob, result: RegistrationResult) -> None:
        s = self.session
        if job.fixed_img is not s.fixed_img or job.moving_img is not s.moving_img:
            return  # the user opened other images meanwhile
        s.apply_result(result)
        secs = f"{result.timings.get('total', 0):.2f} s"
        note = result.hypothesis_note()
        msg = (f"Registered with {result.matcher}: {result.n_inliers} inliers in {secs} — {note}"
               if note else f"Registered with {result.matcher}: {result.n_inliers} inliers of "
               f"{len(result.selected)} selected matches in {secs}")
        if not result.ok:
            msg = f"Registration failed: {result.reason} — add point pairs by hand (A)"
        self.statusBar().showMessage(msg, 15000)
        self.statusBar().setToolTip(msg)  # the whole line, where the permanent fields cut it
        if self._compare_before is not None:
            self._show_comparison()
        self.registration_done.emit(result.ok)

    @QtCore.Slot(object, str, str)
    def _on_register_failed(self, job: RegisterJob, message: str, details: str) -> None:
        self._compare_before = None
        self.statusBar().showMessage("Registration stopped with an error", 8000)
        self.registration_done.emit(False)
        show_error(self, "Registration failed", message, details)

    def set_transform(self, transform_type: str) -> None:
        try:
            self.session.set_transform_type(transform_type)
        except RetRegError as exc:
            show_error(self, "Cannot change transform", str(exc))
        self.select_data(self.transform_combo, self.session.transform_type)

    def choose_weights(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Model weights", self.settings.last_dir("weights"),
            "safetensors (*.safetensors)")
        if path:
            self.use_weights(path)

    def use_weights(self, path: str | Path) -> None:
        self.weights = Path(path)
        self.settings.set_last_dir("weights", path)
        self.select_data(self.matcher_combo, "loftr")
        self.statusBar().showMessage(f"Using weights {self.weights.name}", 8000)

    def offer_new_weights(self, path: str) -> None:
        """After training: load the new weights and re-register, then compare residuals."""
        if not self.session.has_images:
            self.use_weights(path)
            return
        answer = QtWidgets.QMessageBox.question(
            self, "Training finished",
            f"Load the new weights ({Path(path).name}) and register the current pair again?")
        if answer != QtWidgets.QMessageBox.StandardButton.Yes:
            return
        self._compare_before = self.session.inlier_residual_summary()
        self._compare_name = self.session.result.matcher if self.session.result else "manual"
        self.use_weights(path)
        self.register()

    def _show_comparison(self) -> None:
        (n0, m0), (n1, m1) = self._compare_before, self.session.inlier_residual_summary()
        self._compare_before = None

        def fmt(n, m):
            return f"{n} pairs used, median residual " + (f"{m:.2f} px" if m is not None
                                                          else "– (no transform)")
        QtWidgets.QMessageBox.information(
            self, "Before and after",
            f"Before ({self._compare_name}): {fmt(n0, m0)}\n"
            f"After (new weights): {fmt(n1, m1)}\n\n"
            "Undo (Ctrl+Z) returns to the previous points.")

    # ================================================================== editing
    def delete_selected(self) -> None:
        self.session.delete_pairs(self.session.selected_ids)

    def toggle_selected(self) -> None:
        self.session.toggle_included(self.session.selected_ids)

    def cycle_lines(self) -> None:
        self.lines_combo.setCurrentIndex((self.lines_combo.currentIndex() + 1)
                                         % self.lines_combo.count())

    # ================================================================== recovery, closing
    def offer_recovery(self) -> bool:
        """At start-up: offer to restore work a crashed or killed session left unsaved."""
        path = self.recovery.pending()
        if path is None:
            return False
        when = QtCore.QFileInfo(str(path)).lastModified().toString("yyyy-MM-dd hh:mm")
        answer = QtWidgets.QMessageBox.question(
            self, "Recover unsaved work?",
            f"RetReg did not close normally; unsaved point pairs from {when} were kept.\n"
            "Recover them?",
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No)
        if answer == QtWidgets.QMessageBox.StandardButton.Yes:
            return self.recover()
        self.recovery.discard()
        return False

    def recover(self) -> bool:
        path = self.recovery.pending()
        if path is None:
            return False
        self.recovery.enabled = False  # keep the file until the recovered work is saved
        try:
            ok = self.load_annotation(path, recovered=True)
        finally:
            self.recovery.enabled = True
        if ok:
            self.recovery.save_now()
            self.statusBar().showMessage("Recovered unsaved work — save it with Ctrl+S", 10000)
        return ok

    def confirm_discard(self) -> bool:
        """True when it is fine to drop the current document (saved, or the user agrees)."""
        if not self.session.is_dirty:
            return True
        answer = QtWidgets.QMessageBox.question(
            self, "Unsaved changes", "The point pairs have unsaved changes. Save them?",
            QtWidgets.QMessageBox.StandardButton.Save | QtWidgets.QMessageBox.StandardButton.Discard
            | QtWidgets.QMessageBox.StandardButton.Cancel)
        if answer == QtWidgets.QMessageBox.StandardButton.Save:
            return self.save()
        if answer == QtWidgets.QMessageBox.StandardButton.Discard:
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
        self.recovery.detach()
        self.session.undo_stack.indexChanged.disconnect(self._update_title)
        self.session.undo_stack.cleanChanged.disconnect(self._update_title)

    # ================================================================== look and help
    def set_dark(self, on: bool) -> None:
        palette.apply(QtWidgets.QApplication.instance(), dark=bool(on))
        self.refresh_icons()

    def show_shortcuts(self) -> None:
        ShortcutsDialog(self.actions(), self).exec()

    def show_about(self) -> None:
        matcher = self.session.result.matcher if self.session.result else \
            self.matcher_combo.currentData()
        AboutDialog(matcher, str(self.weights) if self.weights else None, self).exec()
