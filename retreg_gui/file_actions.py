"""Annotation files for the main window: save/load the core JSON, import/export FIRE txt and
CSV, export a real-pair set for fine-tuning, and save the overlay image. A mixin of
``MainWindow`` (it uses the window's document, controller, settings, recovery store and status
bar). Every points file is checked against the images before anything changes: points off
them are refused with the reason, images other than the annotation's ask first."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtWidgets

from retreg.core import annotations as ann_io
from retreg.core.errors import RetRegError
from retreg.core.io import read_image, write_image
from retreg.core.pipeline import global_type
from retreg.gui.controller import PointsFile, annotation_images, check_points_file
from retreg.gui.dialogs import ask_load_anyway, show_error


class AnnotationFilesMixin:
    """File actions on the open document; every format is read and written by core."""

    def save(self) -> bool:
        if self.doc.annotation_path is None:
            return self.save_as()
        return self.save_to(self.doc.annotation_path)

    def save_as(self) -> bool:
        s = self.doc
        if not s.has_images:
            return False
        default = Path(self.settings.last_dir("annotations")) / (
            f"{s.fixed_path.stem}__{s.moving_path.stem}.json")
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Save annotation", str(default), "RetReg annotation (*.json)")
        return bool(path) and self.save_to(Path(path))

    def save_to(self, path: Path) -> bool:
        try:
            ann_io.save_annotation(path, self.doc.to_annotation())
        except (OSError, RetRegError) as exc:
            show_error(self, "Cannot save", f"{path}: {exc}")
            return False
        self.doc.mark_saved(path)  # the recovery file goes with the unsaved state
        self.settings.set_last_dir("annotations", path)
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def load_annotation_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Load annotation", self.settings.last_dir("annotations"),
            "RetReg annotation (*.json)")
        if path:
            self.load_annotation(path)

    def load_annotation(self, path: str | Path, recovered: bool = False) -> bool:
        """Open an annotation: its images (when not open already) and its points. Nothing
        changes when it is refused or the user cancels."""
        path = Path(path)
        s = self.doc
        try:
            ann = ann_io.load_annotation(path)
            fixed, moving = annotation_images(ann, path)
            reopen = (s.fixed_path, s.moving_path) != (fixed, moving) or recovered
            images = ((read_image(fixed), read_image(moving)) if reopen
                      else (s.fixed_img, s.moving_img))
            points = check_points_file(path, ann.points, fixed, moving, *images, ann)
        except RetRegError as exc:
            show_error(self, "Cannot load annotation", str(exc))
            return False
        if not self.confirm_points(points):
            return False
        if reopen and not self.open_pair(fixed, moving, mode=ann.mode, register=False,
                                         images=images):
            return False
        message = self.controller.adopt_points(points)
        if not recovered:
            s.mark_saved(path)
            self.settings.set_last_dir("annotations", path)
        self._update_title()
        self.statusBar().showMessage(message, 8000)
        return True

    def confirm_points(self, points: PointsFile) -> bool:
        """True unless the points were made on other images and the user cancels."""
        return not points.mismatches or ask_load_anyway(self, "Other images", points.question())

    def import_points(self, kind: str) -> None:
        if not self.doc.has_images:
            self.statusBar().showMessage("Open the images first", 5000)
            return
        filt = "FIRE control points (*.txt)" if kind == "fire" else "CSV (*.csv)"
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Import points", self.settings.last_dir("annotations"), filt)
        if path:
            self.import_points_from(kind, path)

    def import_points_from(self, kind: str | None, path: str | Path) -> bool:
        """Points of a FIRE txt, CSV or annotation JSON (``kind`` None: by the suffix) onto
        the open pair, as one undo step."""
        try:
            points = self.controller.read_points(path, kind)
        except RetRegError as exc:
            show_error(self, "Cannot import points", str(exc))
            return False
        if not self.confirm_points(points):
            return False
        self.statusBar().showMessage(self.controller.adopt_points(points), 5000)
        return True

    def export_points(self, kind: str) -> None:
        filt = "FIRE control points (*.txt)" if kind == "fire" else "CSV (*.csv)"
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export points", self.settings.last_dir("annotations"), filt)
        if path:
            self.export_points_to(kind, path)

    def export_points_to(self, kind: str, path: str | Path) -> bool:
        """FIRE txt has no include flag: only the included pairs are written to it."""
        try:
            if kind == "fire":
                ann_io.write_fire_points(path, [p for p in self.doc.pairs if p.include])
            else:
                ann_io.write_csv_points(path, list(self.doc.pairs))
        except (OSError, RetRegError) as exc:
            show_error(self, "Cannot export points", f"{path}: {exc}")
            return False
        self.statusBar().showMessage(f"Exported points to {path}", 5000)
        return True

    def export_realpair_dialog(self) -> None:
        s = self.doc
        if s.matrix is None:
            show_error(self, "Export for fine-tuning", "There is no transform to export: "
                       "register the pair or add enough point pairs first.")
            return
        root = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Real-pair set folder (created or extended)", self.settings.last_dir("export"))
        if not root:
            return
        pair_id, ok = QtWidgets.QInputDialog.getText(
            self, "Pair id", "Name of this pair in the set:", text=s.fixed_path.stem)
        if ok and pair_id:
            self.export_realpair(root, pair_id)

    def export_realpair(self, root: str | Path, pair_id: str) -> Path | None:
        s = self.doc
        try:
            # Fine-tuning learns 3x3 transforms: a non-rigid fit exports its homography.
            folder = ann_io.export_realpair(root, pair_id, s.to_annotation(), s.fixed_img,
                                            s.moving_img, H_computed=s.matrix,
                                            transform_type=global_type(s.transform_type))
        except (OSError, RetRegError, ValueError) as exc:
            show_error(self, "Export failed", str(exc))
            return None
        self.settings.set_last_dir("export", root)
        self.statusBar().showMessage(f"Exported pair {pair_id} to {folder}", 8000)
        return folder

    def save_overlay_png(self) -> None:
        img = self.overlay_view.composed()
        if img is None:
            why = self.overlay_view.not_drawn if self.doc.matrix is not None else ""
            self.statusBar().showMessage(f"Transform not drawn: {why}" if why
                                         else "No overlay to save yet", 5000)
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Save overlay", self.settings.last_dir("export"), "PNG (*.png)")
        if path:
            try:
                write_image(path, img)
            except (OSError, RetRegError) as exc:
                show_error(self, "Cannot save image", str(exc))
