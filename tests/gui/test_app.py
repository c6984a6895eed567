"""The main window driven like a user would: open, register (classical matcher), overlays,
manual point editing with undo, save/load, import/export, recovery, closing, screenshot."""
import dataclasses
import json
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from retreg.core import annotations as ann_io  # noqa: E402
from retreg.core.geometry import map_points  # noqa: E402
from retreg.core.io import read_image, write_image  # noqa: E402
from retreg.core.matchers import SUPERRETINA_WEIGHTS  # noqa: E402
from retreg.gui import app as gui_app  # noqa: E402
from retreg.gui import file_actions  # noqa: E402
from retreg.gui import main_window as mw  # noqa: E402
from retreg.gui.dialogs import ShortcutsDialog, about_html  # noqa: E402
from retreg.gui.main_window import MainWindow  # noqa: E402
from retreg.gui.settings import Settings  # noqa: E402
from retreg.gui.views.overlay_view import DISPLAY_SIDE as OVERLAY_DISPLAY_SIDE  # noqa: E402
from retreg.gui.views.overlay_view import OVERLAY_KINDS  # noqa: E402
from retreg.gui.views import residual_table as rt  # noqa: E402

pytestmark = pytest.mark.gui
SIZE = 256


def _vessel_tree(rng: np.random.Generator) -> np.ndarray:
    canvas = np.zeros((SIZE, SIZE), np.uint8)

    def grow(p, ang, width, depth):
        for _ in range(rng.integers(6, 12)):
            ang += rng.normal(0, 0.25)
            q = p + 10 * np.array([np.cos(ang), np.sin(ang)])
            cv2.line(canvas, tuple(int(v) for v in p), tuple(int(v) for v in q), 255,
                     max(1, int(width)), cv2.LINE_AA)
            p = q
            if depth < 4 and rng.random() < 0.25:
                grow(p.copy(), ang + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9), width * 0.7,
                     depth + 1)

    for k in range(6):
        grow(np.array([SIZE * 0.4, SIZE * 0.5]), k * np.pi / 3 + rng.normal(0, 0.2), 4, 0)
    return canvas


def make_pair(seed: int = 0):
    """A CF-like fixed image (dark vessels on orange) and an FA-like moving image (bright
    vessels) of the same vessel tree, the FA rotated/scaled/shifted by a known affine.
    Returns (cf, fa, T) with T mapping moving -> fixed."""
    rng = np.random.default_rng(seed)
    v = _vessel_tree(rng).astype(np.float32) / 255
    yy, xx = np.mgrid[:SIZE, :SIZE]
    fov = ((xx - SIZE / 2) ** 2 + (yy - SIZE / 2) ** 2 < (SIZE * 0.47) ** 2).astype(np.float32)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (SIZE, SIZE)).astype(np.float32), (0, 0), 3) * 0.05
    base = 0.7 + noise
    cf = np.stack([base * 0.95 - v * 0.35, base * 0.45 - v * 0.3, base * 0.2 - v * 0.1], 2)
    fa = (0.25 + noise + v * 0.6) * fov
    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), 6.0, 0.95)
    m[:, 2] += (9, -7)
    fa = cv2.warpAffine(fa, m, (SIZE, SIZE))
    to8 = lambda a: np.clip(a * 255, 0, 255).astype(np.uint8)  # noqa: E731
    return to8(cf * fov[..., None]), to8(fa), np.linalg.inv(np.vstack([m, [0, 0, 1]]))


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    cf, fa, T = make_pair()
    write_image(d / "eye_cf.png", cf)
    write_image(d / "eye_fa.png", fa)
    return d / "eye_cf.png", d / "eye_fa.png", T


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(Settings(tmp_path / "settings.ini"), recovery_dir=tmp_path / "recovery")
    w.select_data(w.matcher_combo, "classical")
    w.resize(1400, 900)
    w.show()
    yield w
    w.doc.mark_saved()  # closing must not ask about unsaved changes
    w.close()
    w.deleteLater()


@pytest.fixture
def errors(monkeypatch):
    """Error dialogs recorded instead of shown (they are modal)."""
    seen = []
    for module in (mw, file_actions):
        monkeypatch.setattr(module, "show_error", lambda parent, title, msg, details="":
                            seen.append((title, msg)))
    return seen


def open_and_register(qtbot, window, pair_files):
    with qtbot.waitSignal(window.registration_done, timeout=30000) as blocker:
        assert window.open_pair(pair_files[0], pair_files[1])
    assert blocker.args == [True]
    qtbot.wait(20)


def view_point(window, side, xy) -> QtCore.QPoint:
    pv = window.pair_view
    scene = pv.box[side].mapViewToScene(QtCore.QPointF(*xy))
    return pv.glw.mapFromScene(scene)


def click(qtbot, window, side, xy):
    QTest.mouseClick(window.pair_view.glw.viewport(), QtCore.Qt.MouseButton.LeftButton,
                     QtCore.Qt.KeyboardModifier.NoModifier, view_point(window, side, xy))


def drag(qtbot, window, side, start_xy, end_xy):
    """Press, move in steps (pyqtgraph drops mouse moves closer than its rate limit), release."""
    vp = window.pair_view.glw.viewport()
    a, b = view_point(window, side, start_xy), view_point(window, side, end_xy)
    left, none = QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.MouseButton.NoButton

    def send(kind, pos, button, buttons):
        ev = QtGui.QMouseEvent(kind, QtCore.QPointF(pos), QtCore.QPointF(vp.mapToGlobal(pos)),
                               button, buttons, QtCore.Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(vp, ev)

    send(QtCore.QEvent.Type.MouseButtonPress, a, left, left)
    for t in np.linspace(0, 1, 5)[1:]:
        qtbot.wait(40)
        p = QtCore.QPoint(round(a.x() + (b.x() - a.x()) * t), round(a.y() + (b.y() - a.y()) * t))
        send(QtCore.QEvent.Type.MouseMove, p, none, left)
    send(QtCore.QEvent.Type.MouseButtonRelease, b, left, none)


# ---------------------------------------------------------------------------- review

def test_opening_a_pair_registers_it_and_shows_matches(qtbot, window, pair_files):
    open_and_register(qtbot, window, pair_files)
    s = window.doc
    assert s.mode.value == "cffa"  # guessed from the file names
    assert s.result.ok and s.result.matcher == "classical"
    corners = np.array([[40.0, 40.0], [200.0, 60.0], [120.0, 210.0]])
    err = np.linalg.norm(map_points(s.matrix, corners) - map_points(pair_files[2], corners), axis=1)
    assert err.max() < 2.0
    assert window.table.proxy.rowCount() == len(s.pairs) > 10
    assert len(window.pair_view._lines) > 0
    assert "inliers" in window.counts.text() and "classical" in window.counts.text()
    assert not window.busy.isVisible()


def test_a_hard_pair_is_named_in_the_status_bar(qtbot, window, pair_files, monkeypatch):
    from retreg.core.types import Hypothesis
    from retreg.gui import workers

    hard = Hypothesis(rotation_deg=0, pitch_variant=0, shift_px=(40, 0), inliers=30, support=90,
                      tried=20)  # the search reporting a shift hypothesis after 20 variants
    real = workers.register
    monkeypatch.setattr(workers, "register", lambda *a, **k: dataclasses.replace(
        real(*a, **k), hypothesis=hard))
    open_and_register(qtbot, window, pair_files)
    tip = window.statusBar().toolTip()
    assert tip.startswith("Hard pair: 20 input variants tried") and "shifted by (40, 0)" in tip


def n_lines(window) -> int:
    return sum(item.path().elementCount() // 2 for item in window.pair_view._lines)


def test_line_filter_shows_only_the_chosen_pairs_inliers_by_default(qtbot, window, pair_files):
    open_and_register(qtbot, window, pair_files)
    s = window.doc
    s.set_included([p.id for p in s.pairs[:3]], False)
    n_used = sum(p.include for p in s.pairs)
    assert window.lines_combo.currentData() == "inliers"
    assert n_lines(window) == n_used  # outliers are behind the toggle

    def shown(name):
        window.select_data(window.lines_combo, name)
        return n_lines(window)

    assert shown("all") == len(s.pairs)
    assert shown("outliers") == len(s.pairs) - n_used >= 3
    assert shown("none") == 0
    window.act_lines.trigger()  # L cycles on: back to the inliers
    assert window.lines_combo.currentData() == "inliers" and n_lines(window) == n_used


def test_lines_are_capped_with_showing_n_of_m_and_a_residual_legend(qtbot, window, pair_files):
    open_and_register(qtbot, window, pair_files)
    pv, n_used = window.pair_view, sum(p.include for p in window.doc.pairs)
    assert pv.count.text() == f"{n_used} inlier lines"
    assert pv.legend.isVisible() and pv.legend.text().startswith("Residual:")
    assert pv.legend.text().count("px") == 5
    pv.cap.setValue(10)
    assert n_lines(window) == 10
    assert pv.count.text() == f"showing 10 of {n_used} inlier lines, spread evenly"
    left_out = next(p.id for p in window.doc.pairs if p.include and p.id not in pv.shown.ids)
    window.doc.select([left_out])  # a pair left out is drawn once selected
    assert n_lines(window) == 11 and left_out in pv.shown.ids


def test_a_failed_verdict_shows_the_reason_and_no_overlay(qtbot, window, pair_files,
                                                          monkeypatch):
    from retreg.core import pipeline
    from retreg.core.verdict import Verdict

    why = ("only 5 inliers", "the vessels do not line up after warping (structure z 0.4)")
    monkeypatch.setattr(pipeline, "assess", lambda *a, **k: Verdict("failed", why))
    with qtbot.waitSignal(window.registration_done, timeout=30000):
        window.open_pair(pair_files[0], pair_files[1])
    qtbot.wait(20)
    ov = window.overlay_view
    assert window.doc.matrix is not None and ov.composed() is None
    assert ov.image.image is None
    assert "• only 5 inliers" in ov.message.textItem.toPlainText()
    assert window.verdict_banner.isVisible()
    assert window.verdict_banner.text().startswith("Registration failed: only 5 inliers; the "
                                                   "vessels do not line up")
    assert window.statusBar().currentMessage().startswith("Registration failed: only 5 inliers")
    window.doc.add_pair((40.0, 40.0), (45.0, 44.0))  # the user takes over: a hand fit is shown
    ov.render()
    assert not window.verdict_banner.isVisible() and ov.composed() is not None


def test_a_low_confidence_verdict_marks_the_overlay(qtbot, window, pair_files, monkeypatch):
    from retreg.core import pipeline
    from retreg.core.verdict import Verdict

    monkeypatch.setattr(pipeline, "assess", lambda *a, **k: Verdict(
        "low confidence", ("the inliers cover only 4% of the overlap",)))
    open_and_register(qtbot, window, pair_files)
    assert window.overlay_view.composed() is not None
    assert window.verdict_banner.isVisible()
    assert window.verdict_banner.text().startswith("Low confidence: the inliers cover only 4%")
    assert window.overlay_view.box.border.color().name() == mw.VERDICT_COLORS["low confidence"][0]


def test_every_overlay_kind_renders_and_controls_change_it(qtbot, window, pair_files):
    open_and_register(qtbot, window, pair_files)
    ov = window.overlay_view
    images = {}
    for kind in OVERLAY_KINDS:
        ov.set_kind(kind)
        img = ov.composed()
        assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
        images[kind] = img
    ov.set_kind("checkerboard")
    red = lambda a: a[..., 0] if a.ndim == 3 else a  # noqa: E731  (the FA display is gray)
    fixed, moving = red(ov._fixed_display), red(ov.warped())
    assert not np.array_equal(fixed[:32, 32:64], moving[:32, 32:64])  # the square tells them apart
    assert np.array_equal(red(ov.composed())[:32, 32:64], moving[:32, 32:64])  # 8 squares, 32 px
    ov.squares.setValue(4)
    assert np.array_equal(red(ov.composed())[:32, 32:64], fixed[:32, 32:64])  # 4 squares, 64 px
    assert not np.array_equal(ov.composed(), images["checkerboard"])
    ov.set_kind("blend")
    ov.alpha.setValue(90)
    assert not np.array_equal(ov.composed(), images["blend"])
    ov.set_kind("flicker")
    first = ov.composed()
    qtbot.waitUntil(lambda: not np.array_equal(ov.composed(), first), timeout=3000)
    ov.set_kind("two-colour")
    assert not ov.flicker_timer.isActive()


def test_the_fused_view_is_offered_and_made_once_per_transform(qtbot, window, pair_files):
    from retreg.core.fusion import fused

    open_and_register(qtbot, window, pair_files)
    ov = window.overlay_view
    labels = [ov.kind.itemText(i) for i in range(ov.kind.count())]
    assert "Fused" in labels and "Two-colour" in labels and "Fusion" not in labels
    ov.set_kind("fused")
    first = ov.composed()
    np.testing.assert_array_equal(first, fused(ov._fixed_display, ov.warped()))
    ov.set_kind("blend")
    ov.set_kind("fused")
    assert ov.composed() is first  # switching back does not fuse again
    window.set_transform("homography")
    assert ov.composed() is not first
    ov.set_kind("fusion")  # the former name, as saved settings may hold it
    assert ov.current_kind() == "two-colour"


def test_the_learned_fused_view_and_the_masks_are_offered_cached_and_saved(
        qtbot, window, pair_files, tmp_path, monkeypatch):
    from retreg.core.fusion import fusion_view

    open_and_register(qtbot, window, pair_files)
    ov = window.overlay_view
    labels = [ov.kind.itemText(i) for i in range(ov.kind.count())]
    assert {"Fused-learned", "Fusion-mask", "Fusion-mask-learned"} <= set(labels)
    shown = {}
    for kind in ("fused-learned", "fusion-mask-learned"):
        ov.set_kind(kind)
        shown[kind] = ov.composed()
        np.testing.assert_array_equal(shown[kind],
                                      fusion_view(kind, ov._fixed_display, ov.warped()))
    ov.set_kind("fused-learned")
    assert ov.composed() is shown["fused-learned"]  # made once per warped image
    ov.set_kind("fusion-mask-learned")
    out = tmp_path / "mask.png"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(out), "PNG (*.png)"))
    window.save_overlay_png()
    np.testing.assert_array_equal(read_image(out), shown["fusion-mask-learned"])


def test_transform_switch_reestimates_instantly_and_undoes(qtbot, window, pair_files):
    open_and_register(qtbot, window, pair_files)
    affine = window.doc.matrix.copy()
    window.act_transforms[2].trigger()  # "3": homography
    assert window.doc.transform_type == "homography"
    assert window.transform_combo.currentData() == "homography"
    assert not np.allclose(window.doc.matrix, affine)
    window.act_undo.trigger()
    assert window.transform_combo.currentData() == "affine"
    np.testing.assert_allclose(window.doc.matrix, affine)


def test_slow_transform_switches_are_prepared_while_the_user_looks(qtbot, window, pair_files,
                                                                   monkeypatch):
    import retreg.gui.document as document

    open_and_register(qtbot, window, pair_files)
    qtbot.waitUntil(lambda: not window.doc.slow_switches(), timeout=60_000)
    monkeypatch.setattr(document, "reestimate", lambda *a: pytest.fail("refitted on the click"))
    window.set_transform("smooth")
    assert window.doc.transform_type == "smooth" and window.doc.result.transform_type == "smooth"


def test_selecting_a_table_row_centres_both_views_on_the_pair(qtbot, window, pair_files):
    open_and_register(qtbot, window, pair_files)
    box = window.pair_view.box
    box["fixed"].setRange(xRange=(0, 60), yRange=(0, 60), padding=0)
    window.table.view.selectRow(3)
    pid = window.table.selected_ids()[0]
    p = window.doc.pair(pid)
    assert window.doc.selected_ids == (pid,)
    for side in ("fixed", "moving"):
        c = box[side].viewRect().center()
        assert (c.x(), c.y()) == pytest.approx(getattr(p, side), abs=1.0)


# ---------------------------------------------------------------------------- manual editing

def test_click_click_adds_a_pair_at_the_predicted_partner_and_undo_removes_it(
        qtbot, window, pair_files):
    open_and_register(qtbot, window, pair_files)
    s = window.doc
    n = len(s.pairs)
    window.act_add.trigger()
    click(qtbot, window, "fixed", (100.0, 120.0))
    side, xy = window.pair_view.pending
    assert side == "fixed" and xy == pytest.approx((100.0, 120.0), abs=1.0)
    expected = map_points(np.linalg.inv(s.matrix), np.array([xy]))[0]
    assert window.pair_view.predicted == pytest.approx(tuple(expected))
    window.act_accept.trigger()  # Enter
    new = s.pairs[-1]
    assert len(s.pairs) == n + 1 and new.source == "manual" and new.include
    assert new.moving == pytest.approx(tuple(expected))
    # a second pair placed by clicking the partner explicitly
    click(qtbot, window, "moving", (60.0, 70.0))
    click(qtbot, window, "fixed", (65.0, 80.0))
    assert s.pairs[-1].moving == pytest.approx((60.0, 70.0), abs=1.0)
    assert s.pairs[-1].fixed == pytest.approx((65.0, 80.0), abs=1.0)
    window.act_undo.trigger()
    window.act_undo.trigger()
    assert len(s.pairs) == n
    window.act_redo.trigger()
    assert s.pairs[-1] == new


def test_dragging_a_point_moves_it_refits_and_undo_restores(qtbot, window, pair_files):
    open_and_register(qtbot, window, pair_files)
    s = window.doc
    window.act_add.trigger()
    click(qtbot, window, "fixed", (100.0, 120.0))
    window.act_accept.trigger()
    window.act_add.trigger()  # leave add mode: drags now move points
    pid = s.pairs[-1].id
    before = s.pair(pid)
    drag(qtbot, window, "fixed", before.fixed, (before.fixed[0] + 15, before.fixed[1] + 10))
    moved = s.pair(pid)
    assert moved.fixed == pytest.approx((before.fixed[0] + 15, before.fixed[1] + 10), abs=1.5)
    assert moved.moving == before.moving
    assert s.residuals[pid] == pytest.approx(np.hypot(15, 10), abs=2.0)
    window.act_undo.trigger()
    assert s.pair(pid) == before


def test_delete_and_exclude_selected_pairs_with_undo(qtbot, window, pair_files):
    open_and_register(qtbot, window, pair_files)
    s = window.doc
    ids = [p.id for p in s.pairs[:3]]
    s.select(ids)
    window.act_toggle.trigger()
    toggled = [s.pair(i).include for i in ids]
    assert len(set(toggled)) == 1
    window.act_delete.trigger()
    assert all(s.pair(i) is None for i in ids)
    window.act_undo.trigger()
    assert [s.pair(i).include for i in ids] == toggled


def test_snapping_selected_partners_is_one_undoable_step_with_a_status_line(qtbot, window,
                                                                             pair_files):
    open_and_register(qtbot, window, pair_files)
    s = window.doc
    ids = [p.id for p in s.pairs[:4]]
    s.select(ids)
    before = [s.pair(i).fixed for i in ids]
    window.act_snap.trigger()
    assert window.statusBar().currentMessage().startswith("Snapped ")
    if any(s.pair(i).fixed != b for i, b in zip(ids, before)):
        window.act_undo.trigger()
    assert [s.pair(i).fixed for i in ids] == before


def test_table_check_box_includes_and_excludes(qtbot, window, pair_files):
    open_and_register(qtbot, window, pair_files)
    model = window.table.model
    pid = window.doc.pairs[0].id
    was = window.doc.pairs[0].include
    idx = model.index(0, 1)
    new_state = QtCore.Qt.CheckState.Unchecked if was else QtCore.Qt.CheckState.Checked
    assert model.setData(idx, new_state.value, QtCore.Qt.ItemDataRole.CheckStateRole)
    assert window.doc.pair(pid).include is (not was)


def test_typing_a_coordinate_in_the_table_moves_the_point(qtbot, window, pair_files):
    open_and_register(qtbot, window, pair_files)
    model, d = window.table.model, window.doc
    before = d.pairs[0]
    idx = model.index(0, 7)  # moving x
    assert model.flags(idx) & QtCore.Qt.ItemFlag.ItemIsEditable
    assert model.data(idx, QtCore.Qt.ItemDataRole.EditRole) == before.moving[0]
    assert not model.setData(idx, "not a number", QtCore.Qt.ItemDataRole.EditRole)
    assert model.setData(idx, 42.5, QtCore.Qt.ItemDataRole.EditRole)
    assert d.pair(before.id).moving == (42.5, before.moving[1])
    window.act_undo.trigger()
    assert d.pair(before.id) == before


# ---------------------------------------------------------------------------- files

def test_save_then_load_restores_points_and_clears_dirty(qtbot, window, pair_files, tmp_path):
    open_and_register(qtbot, window, pair_files)
    s = window.doc
    s.add_pair((50.0, 60.0), (55.0, 58.0))
    assert window.windowTitle().startswith("*")
    path = tmp_path / "eye.json"
    assert window.save_to(path)
    assert not s.is_dirty and not window.windowTitle().startswith("*")
    saved = s.pairs
    s.delete_pairs([p.id for p in saved[:5]])
    s.mark_saved(None)  # pretend the deletion was saved elsewhere: load must not ask
    assert window.load_annotation(path)
    assert s.pairs == saved and not s.is_dirty
    data = json.loads(path.read_text())
    assert data["format"] == "retreg-annotation" and data["transform"]["type"] == "affine"


def test_fire_and_csv_export_import_round_trip(qtbot, window, pair_files, tmp_path):
    open_and_register(qtbot, window, pair_files)
    s = window.doc
    s.set_included([s.pairs[0].id], False)
    pairs = s.pairs
    assert window.export_points_to("csv", tmp_path / "p.csv")
    assert window.export_points_to("fire", tmp_path / "p.txt")
    assert window.import_points_from("csv", tmp_path / "p.csv")
    assert s.pairs == pairs
    assert window.import_points_from("fire", tmp_path / "p.txt")
    assert len(s.pairs) == sum(p.include for p in pairs)  # FIRE keeps the included pairs only


def test_export_for_finetuning_writes_a_readable_realpair_set(qtbot, window, pair_files,
                                                               tmp_path):
    open_and_register(qtbot, window, pair_files)
    root = tmp_path / "real"
    assert window.export_realpair(root, "eye1") is not None
    good, skipped = ann_io.read_realpairs(root)
    assert not skipped and [g[0] for g in good] == ["eye1"]
    _, fixed, moving, ann = good[0]
    np.testing.assert_allclose(ann.transform["matrix"], window.doc.matrix)
    assert np.array_equal(read_image(fixed), window.doc.fixed_img)


def test_unreadable_image_gives_an_error_dialog_not_a_traceback(qtbot, window, tmp_path,
                                                                errors):
    bad = tmp_path / "bad_cf.png"
    bad.write_bytes(b"not an image")
    assert not window.open_pair(bad, bad)
    assert errors and errors[0][0] == "Cannot open image" and "bad_cf.png" in errors[0][1]


def test_dropping_two_files_opens_them_with_fixed_and_moving_told_apart(qtbot, window,
                                                                      pair_files):
    with qtbot.waitSignal(window.registration_done, timeout=30000):
        window.open_dropped([str(pair_files[1]), str(pair_files[0])])
    assert window.doc.fixed_path == pair_files[0]
    assert window.doc.moving_path == pair_files[1]
    assert window.settings.recent_pairs()[0] == (str(pair_files[0]), str(pair_files[1]))
    assert pair_files[0].name in window.recent_menu.actions()[0].text()


def test_names_that_do_not_tell_the_mode_open_unregistered_until_it_is_chosen(
        qtbot, window, pair_files, tmp_path):
    left, right = tmp_path / "left.png", tmp_path / "right.png"
    left.write_bytes(pair_files[0].read_bytes())
    write_image(right, np.full((256, 256), 100, np.uint8))  # its content tells nothing either
    with qtbot.waitSignal(window.registration_done, timeout=5000) as blocker:
        assert window.open_pair(left, right)
    assert blocker.args == [False] and window.doc.mode is None and window.doc.result is None
    assert "choose it in the toolbar" in window.statusBar().currentMessage()
    window.act_register.trigger()
    assert not window.runner.busy and "Choose the mode" in window.statusBar().currentMessage()
    window.select_data(window.mode_combo, "cffa")
    with qtbot.waitSignal(window.registration_done, timeout=30000):
        window.mode_combo.activated.emit(window.mode_combo.currentIndex())
    assert window.doc.mode.value == "cffa"
    assert window.pair_view.title["fixed"].text.startswith("Fixed CF: left.png")


def test_names_that_do_not_tell_the_mode_leave_it_to_the_content(qtbot, window, pair_files,
                                                                 tmp_path):
    left, right = tmp_path / "left.png", tmp_path / "right.png"
    left.write_bytes(pair_files[0].read_bytes())
    right.write_bytes(pair_files[1].read_bytes())
    with qtbot.waitSignal(window.registration_done, timeout=30000) as blocker:
        assert window.open_pair(left, right)
    assert blocker.args == [True] and window.doc.mode.value == "cffa"


def test_case_folder_lists_cases_and_steps_through_them(qtbot, window, pair_files, tmp_path):
    cf, fa = read_image(pair_files[0]), read_image(pair_files[1])
    root = tmp_path / "cases"
    for case in ("c01", "c02"):
        (root / case).mkdir(parents=True)
        write_image(root / case / f"{case}_cf.png", cf)
        write_image(root / case / f"{case}_fa.png", fa)
    (root / "c03").mkdir()  # no images: listed as skipped, with the reason
    window.select_data(window.mode_combo, "cffa")
    with qtbot.waitSignal(window.registration_done, timeout=30000):
        assert window.open_case_folder(root)
    items = [window.cases.list.item(i) for i in range(window.cases.list.count())]
    assert [i.text() for i in items] == ["c01", "c02", "c03 (skipped)"]
    assert "missing" in items[2].toolTip()
    assert window.doc.fixed_path.name == "c01_cf.png"
    with qtbot.waitSignal(window.registration_done, timeout=30000):
        window.act_next_case.trigger()
    assert window.doc.fixed_path.name == "c02_cf.png"


# ---------------------------------------------------------------------------- safety nets

def test_autosave_is_offered_back_after_a_crash(qtbot, window, pair_files, tmp_path,
                                               monkeypatch):
    open_and_register(qtbot, window, pair_files)
    window.doc.add_pair((50.0, 60.0), (55.0, 58.0))
    qtbot.waitUntil(lambda: window.recovery.pending() is not None, timeout=3000)
    expected = window.doc.pairs
    # "crash": a second window starts with the same recovery folder
    monkeypatch.setattr(QtWidgets.QMessageBox, "question",
                        lambda *a, **k: QtWidgets.QMessageBox.StandardButton.Yes)
    other = MainWindow(Settings(tmp_path / "other.ini"), recovery_dir=tmp_path / "recovery")
    try:
        assert other.offer_recovery()
        assert other.doc.pairs == expected and other.doc.is_dirty
        assert other.doc.fixed_path == pair_files[0]
    finally:
        other.doc.mark_saved()
        other.close()


KILLED_APP = """
import sys, time
from retreg.gui.app import make_app
from retreg.gui.main_window import MainWindow
from retreg.gui.settings import Settings
app = make_app([])
w = MainWindow(Settings(sys.argv[1]), recovery_dir=sys.argv[2])
w.open_pair(sys.argv[3], sys.argv[4], register=False)
w.doc.add_pair((50.0, 60.0), (55.0, 58.0))
w.doc.add_pair((150.0, 90.0), (148.0, 95.0))
while w.recovery.pending() is None:
    app.processEvents()
    time.sleep(0.02)
print("autosaved", flush=True)
time.sleep(120)
"""


def test_work_of_a_killed_app_is_offered_back(qtbot, pair_files, tmp_path, monkeypatch):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    child = subprocess.Popen([sys.executable, "-c", KILLED_APP, str(tmp_path / "a.ini"),
                              str(tmp_path / "rec"), str(pair_files[0]), str(pair_files[1])],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "autosaved"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    monkeypatch.setattr(QtWidgets.QMessageBox, "question",
                        lambda *a, **k: QtWidgets.QMessageBox.StandardButton.Yes)
    again = MainWindow(Settings(tmp_path / "b.ini"), recovery_dir=tmp_path / "rec")
    try:
        assert again.offer_recovery()
        assert [p.fixed for p in again.doc.pairs] == [(50.0, 60.0), (150.0, 90.0)]
        assert again.doc.is_dirty and again.doc.fixed_path == pair_files[0]
        assert again.recovery.pending() is not None  # kept until the work is saved
    finally:
        again.doc.mark_saved()
        again.close()


def test_saving_removes_the_recovery_file(qtbot, window, pair_files, tmp_path):
    open_and_register(qtbot, window, pair_files)
    window.doc.delete_pairs([window.doc.pairs[0].id])
    window.recovery.save_now()
    assert window.recovery.pending() is not None
    window.save_to(tmp_path / "a.json")
    assert window.recovery.pending() is None


def test_closing_with_unsaved_changes_asks_and_can_cancel(qtbot, window, pair_files,
                                                         monkeypatch):
    open_and_register(qtbot, window, pair_files)
    window.doc.delete_pairs([window.doc.pairs[0].id])
    answers = [QtWidgets.QMessageBox.StandardButton.Cancel,
               QtWidgets.QMessageBox.StandardButton.Discard]
    asked = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "question",
                        lambda *a, **k: asked.append(a[1]) or answers.pop(0))
    assert not window.close()
    assert window.isVisible()
    window.recovery.save_now()
    assert window.close()
    assert asked == ["Unsaved changes", "Unsaved changes"]
    assert window.recovery.pending() is None


def test_settings_are_remembered_between_runs(qtbot, window, tmp_path):
    window.overlay_view.set_kind("fused")
    window.overlay_view.squares.setValue(5)
    window.select_data(window.field_combo, "6")
    window.select_data(window.mode_combo, "octfa")
    window.set_transform("homography")
    window.select_data(window.lines_combo, "all")
    window.pair_view.cap.setValue(400)
    window.save_settings()
    again = MainWindow(Settings(tmp_path / "settings.ini"), recovery_dir=tmp_path / "rec2")
    try:
        assert again.overlay_view.current_kind() == "fused"
        assert again.overlay_view.squares.value() == 5
        assert again.mode_combo.currentData() == "octfa"
        assert again.field_combo.currentData() == "6" and not again.field_combo.isEnabled()
        assert again.doc.transform_type == "homography"
        assert again.matcher_combo.currentData() == "classical"
        assert again.lines_combo.currentData() == "all" and again.pair_view.line_filter == "all"
        assert again.pair_view.cap.value() == 400
    finally:
        again.close()


def test_shortcut_help_lists_every_shortcut_action(qtbot, window):
    dlg = ShortcutsDialog(window.actions(), window)
    qtbot.addWidget(dlg)
    rows = {dlg.table.item(r, 0).text(): dlg.table.item(r, 1).text()
            for r in range(dlg.table.rowCount())}
    assert rows["Register"] == "Ctrl+R"
    assert rows["Add point pair"] == "A"
    assert rows["Undo"] == "Ctrl+Z"


def test_about_names_the_matcher_and_the_model_cards(tmp_path, monkeypatch):
    from retreg.gui import dialogs

    card = {"name": "retreg_loftr_v1", "training": {"steps": 1234}}
    (tmp_path / "retreg_loftr_v1.card.json").write_text(json.dumps(card))
    monkeypatch.setattr(dialogs, "MODELS_DIR", tmp_path)
    text = about_html("loftr", "w.safetensors")
    assert "loftr" in text and "retreg_loftr_v1" in text and "1234" in text


def test_dark_palette_applies_and_can_be_undone(qtbot, window):
    window.act_dark.trigger()
    dark = QtWidgets.QApplication.palette().color(QtGui.QPalette.ColorRole.Window)
    window.act_dark.trigger()
    light = QtWidgets.QApplication.palette().color(QtGui.QPalette.ColorRole.Window)
    assert dark.lightness() < 100 < light.lightness()


def test_screenshot_command_registers_and_writes_a_png(qtbot, pair_files, tmp_path):
    out = tmp_path / "shot.png"
    code = gui_app.main(["--screenshot", str(out), str(pair_files[0]), str(pair_files[1]),
                         "--matcher", "classical"])
    assert code == 0
    img = read_image(out)
    assert img.shape[:2] == (gui_app.SCREENSHOT_SIZE[1], gui_app.SCREENSHOT_SIZE[0])


def test_large_images_are_overlaid_at_display_resolution_in_full_coordinates(
        qtbot, window, pair_files, tmp_path):
    cf, fa = (cv2.resize(read_image(p), (3000, 3000)) for p in pair_files[:2])
    write_image(tmp_path / "big_cf.png", cf)
    write_image(tmp_path / "big_fa.png", fa)
    assert window.open_pair(tmp_path / "big_cf.png", tmp_path / "big_fa.png", register=False)
    for xy in ((300.0, 400.0), (2500.0, 600.0), (1500.0, 2600.0)):
        window.doc.add_pair(xy, xy)  # three pairs: an exact affine (identity)
    window.overlay_view.render()
    item = window.overlay_view.image
    assert max(item.image.shape[:2]) == OVERLAY_DISPLAY_SIDE
    rect = item.mapRectToParent(item.boundingRect())
    assert (rect.width(), rect.height()) == pytest.approx((3000, 3000))


def test_command_line_needs_both_images_or_none(capsys):
    assert gui_app.parse_args(["a_cf.png", "a_fa.png", "--mode", "cffa"]).mode == "cffa"
    with pytest.raises(SystemExit):
        gui_app.parse_args(["only_one.png"])
    assert "FIXED and a MOVING" in capsys.readouterr().err


# ---------------------------------------------------------------------------- points stay on
#                                                                              their images

def _fire_txt(path, rows):
    path.write_text("".join(" ".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("kind, name", [("fire", "cp.txt"), ("csv", "p.csv"), (None, "a.json")])
def test_a_points_file_off_the_images_is_refused_and_nothing_changes(
        qtbot, window, pair_files, tmp_path, errors, kind, name):
    assert window.open_pair(pair_files[0], pair_files[1], register=False)
    s = window.doc
    s.add_pair((50.0, 60.0), (55.0, 58.0))
    pairs = (ann_io.PointPair(1, (10.0, 20.0), (12.0, 18.0)),
             ann_io.PointPair(2, (1e12, 5.0), (12.0, 18.0)))
    path = tmp_path / name
    if name.endswith(".txt"):
        ann_io.write_fire_points(path, pairs)
    elif name.endswith(".csv"):
        ann_io.write_csv_points(path, pairs)
    else:
        ann_io.save_annotation(path, ann_io.new_annotation(
            pair_files[0], (SIZE, SIZE, 3), pair_files[1], (SIZE, SIZE), "cffa", list(pairs)))
    text = path.read_bytes()
    before = s.pairs
    assert not window.import_points_from(kind, path)
    assert errors == [("Cannot import points",
                       f"{path}: point id 2: fixed point (1e+12, 5) is outside the fixed image "
                       f"({SIZE}x{SIZE} px: x from -13.3 to 268.3, y from -13.3 to 268.3)")]
    assert s.pairs == before and s.undo_text == "Add point pair" and path.read_bytes() == text


def test_an_annotation_off_its_images_is_refused_before_they_open(qtbot, window, pair_files,
                                                                 tmp_path, errors):
    write_image(tmp_path / "other_cf.png", read_image(pair_files[0]))
    write_image(tmp_path / "other_fa.png", read_image(pair_files[1]))
    ann = ann_io.new_annotation(tmp_path / "other_cf.png", (SIZE, SIZE, 3),
                                tmp_path / "other_fa.png", (SIZE, SIZE), "cffa",
                                [ann_io.PointPair(3, (10.0, 20.0), (12.0, -900.0))])
    ann_io.save_annotation(tmp_path / "bad.json", ann)
    assert window.open_pair(pair_files[0], pair_files[1], register=False)
    assert not window.load_annotation(tmp_path / "bad.json")
    assert errors[0][0] == "Cannot load annotation" and "bad.json: point id 3: moving point " \
        "(12, -900) is outside the moving image" in errors[0][1]
    assert window.doc.fixed_path == pair_files[0] and not window.doc.pairs


@pytest.mark.parametrize("answer", [False, True])
def test_an_annotation_made_on_other_images_asks_before_loading(qtbot, window, pair_files,
                                                                tmp_path, monkeypatch, answer):
    asked = []
    monkeypatch.setattr(file_actions, "ask_load_anyway",
                        lambda parent, title, question: asked.append(question) or answer)
    changed = tmp_path / "eye_fa.png"
    write_image(changed, np.flipud(read_image(pair_files[1])).copy())
    ann = ann_io.new_annotation(pair_files[0], (SIZE, SIZE, 3), pair_files[1], (SIZE, SIZE),
                                "cffa", [ann_io.PointPair(1, (10.0, 20.0), (12.0, 18.0))])
    ann.moving = dataclasses.replace(ann.moving, path=str(changed))
    ann_io.save_annotation(tmp_path / "a.json", ann)
    assert window.load_annotation(tmp_path / "a.json") is answer
    assert len(asked) == 1 and "differs in content" in asked[0]
    assert len(window.doc.pairs) == (1 if answer else 0)
    assert window.doc.has_images is answer  # cancelled: not even the images opened


def test_a_typed_coordinate_off_the_image_is_refused_with_the_reason_in_the_status_bar(
        qtbot, window, pair_files):
    assert window.open_pair(pair_files[0], pair_files[1], register=False)
    window.doc.add_pair((50.0, 60.0), (55.0, 58.0))
    model = window.table.model
    col = next(c for c, (side, axis) in rt.COORD_COLUMNS.items() if (side, axis) == ("moving", 0))
    model.setData(model.index(0, col), "5000")
    assert window.doc.pairs[0].moving == (55.0, 58.0)
    qtbot.waitUntil(lambda: "refused" in window.statusBar().currentMessage())
    assert "moving point (5000, 58) is outside the moving image" in \
        window.statusBar().currentMessage()


def test_a_transform_that_throws_the_moving_image_off_the_frame_is_not_drawn(qtbot, window,
                                                                            pair_files):
    assert window.open_pair(pair_files[0], pair_files[1], register=False)
    for xy in ((200.0, 200.0), (250.0, 200.0), (200.0, 250.0)):
        window.doc.add_pair(xy, (xy[0] - 195.0, xy[1] - 195.0))  # a shift by 195 px
    view = window.overlay_view
    view.render()
    assert window.doc.matrix is not None and view.composed() is None
    assert view.message.textItem.toPlainText().startswith(
        "Transform not drawn:\nonly 8% of the moving image lands within the fixed frame")


def test_command_line_points_open_the_pair_with_them(qtbot, pair_files, tmp_path):
    path = _fire_txt(tmp_path / "cp.txt", [(10, 20, 12, 18), (200, 30, 202, 28),
                                           (40, 220, 42, 218)])
    out = tmp_path / "shot.png"
    code = gui_app.main(["--screenshot", str(out), str(pair_files[0]), str(pair_files[1]),
                         "--points", str(path)])
    assert code == 0 and read_image(out).shape[:2] == (gui_app.SCREENSHOT_SIZE[1],
                                                       gui_app.SCREENSHOT_SIZE[0])
    assert gui_app.parse_args(["--points", "a.json"]).points.name == "a.json"
    with pytest.raises(SystemExit):
        gui_app.parse_args(["--points", "cp.txt"])


def test_screenshot_of_an_invalid_points_file_exits_2_with_a_one_line_error(pair_files,
                                                                           tmp_path):
    ann = ann_io.new_annotation(pair_files[0], (SIZE, SIZE, 3), pair_files[1], (SIZE, SIZE),
                                "cffa", [ann_io.PointPair(1, (1e12, 20.0), (12.0, 18.0))])
    ann_io.save_annotation(tmp_path / "bad.json", ann)
    proc = subprocess.run([sys.executable, "-m", "retreg.gui.app", "--screenshot",
                           str(tmp_path / "out.png"), "--points", str(tmp_path / "bad.json")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 2 and not (tmp_path / "out.png").exists()
    assert proc.stderr.splitlines() == [
        f"retreg-gui: error: {tmp_path / 'bad.json'}: point id 1: fixed point (1e+12, 20) is "
        f"outside the fixed image ({SIZE}x{SIZE} px: x from -13.3 to 268.3, y from -13.3 to "
        "268.3)"]


def test_screenshot_with_fires_own_ground_truth_renders(shared_data, tmp_path):
    fire = shared_data / "FIRE_P"
    out = tmp_path / "p10.png"
    code = gui_app.main([str(fire / "data" / "P10_1.jpg"), str(fire / "data" / "P10_2.jpg"),
                         "--points", str(fire / "Ground_Truth" / "control_points_P10_1_2.txt"),
                         "--screenshot", str(out)])
    assert code == 0 and read_image(out).shape[:2] == (gui_app.SCREENSHOT_SIZE[1],
                                                       gui_app.SCREENSHOT_SIZE[0])


def test_dragging_a_point_off_its_image_is_refused_and_it_stays(qtbot, window, pair_files):
    assert window.open_pair(pair_files[0], pair_files[1], register=False)
    s = window.doc
    pid = s.add_pair((200.0, 120.0), (190.0, 118.0))
    window.pair_view.box["fixed"].setRange(xRange=(-300, 600), yRange=(-300, 600), padding=0)
    qtbot.wait(50)
    drag(qtbot, window, "fixed", (200.0, 120.0), (450.0, 120.0))
    assert s.pair(pid).fixed == (200.0, 120.0) and s.undo_text == "Add point pair"
    qtbot.waitUntil(lambda: "refused" in window.statusBar().currentMessage())
    assert window.statusBar().currentMessage().startswith(f"Move fixed point {pid} refused:")
    x, y = window.pair_view.scatter["fixed"].getData()
    assert (x[0], y[0]) == (200.0, 120.0)  # the dragged preview snapped back


@pytest.mark.skipif(not SUPERRETINA_WEIGHTS.is_file(), reason="superretina weights not exported")
def test_detector_keypoints_show_green_beside_the_red_point_pairs(qtbot, window, pair_files):
    open_and_register(qtbot, window, pair_files)
    view = window.pair_view
    window.act_keypoints.trigger()
    assert window.act_keypoints.isChecked()
    for side in ("fixed", "moving"):
        green = view.detected[side].getData()[0]
        h, w = (window.doc.fixed_img if side == "fixed" else window.doc.moving_img).shape[:2]
        assert len(green) > 10 and green.max() < max(h, w)
        assert len(view.reference[side].getData()[0]) == len(window.doc.pairs) > 0
    window.act_keypoints.trigger()  # off again
    assert len(view.detected["fixed"].getData()[0]) == 0
