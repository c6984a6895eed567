"""The training panel runs real (tiny) training in a QThread: progress, curves, cancel,
resume, and re-registering the open pair with the new weights."""
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("lightning")

from PySide6 import QtWidgets  # noqa: E402

from retreg.core.io import write_image  # noqa: E402
from retreg.gui.main_window import MainWindow  # noqa: E402
from retreg.gui.settings import Settings  # noqa: E402
from retreg.gui.training_panel import FINETUNE, PRETRAIN  # noqa: E402
from tests.gui.test_app import make_pair  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(Settings(tmp_path / "settings.ini"), recovery_dir=tmp_path / "recovery")
    w.select_data(w.matcher_combo, "classical")
    w.show()
    yield w
    w.training.cancel()
    if w.training.thread is not None:
        w.training.thread.wait()
    w.doc.mark_saved()
    w.close()
    w.deleteLater()


def tiny_form(panel, out_dir, epochs=1, steps=2):
    panel.kind.setCurrentIndex(panel.kind.findData(PRETRAIN))
    for name, cb in panel.modes.items():
        cb.setChecked(name == "cffa")
    panel.n_cases.setValue(2)
    panel.size.setValue(64)
    panel.batch.setValue(1)
    panel.val_pairs.setValue(1)
    panel.epochs.setValue(epochs)
    panel.steps.setValue(steps)
    panel.out_dir.edit.setText(str(out_dir))


def run_panel(qtbot, panel, timeout=90000) -> str:
    with qtbot.waitSignal(panel.run_finished, timeout=timeout) as blocker:
        panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=10000)
    return blocker.args[0]


def test_training_runs_resumes_and_offers_weights_for_reregistration(qtbot, window, tmp_path,
                                                                    monkeypatch):
    cf, fa, _ = make_pair()
    write_image(tmp_path / "eye_cf.png", cf)
    write_image(tmp_path / "eye_fa.png", fa)
    with qtbot.waitSignal(window.registration_done, timeout=30000):
        window.open_pair(tmp_path / "eye_cf.png", tmp_path / "eye_fa.png")
    asked, shown = [], []
    answers = [QtWidgets.QMessageBox.StandardButton.Yes, QtWidgets.QMessageBox.StandardButton.No]
    monkeypatch.setattr(QtWidgets.QMessageBox, "question",
                        lambda *a, **k: asked.append(a[1]) or answers.pop(0))
    monkeypatch.setattr(QtWidgets.QMessageBox, "information",
                        lambda *a, **k: shown.append(a[2]))
    panel = window.training
    tiny_form(panel, tmp_path / "run")

    with qtbot.waitSignal(window.registration_done, timeout=90000) as registered:
        assert run_panel(qtbot, panel) == "done"
    assert panel.progress.value() == panel.progress.maximum() == 2
    assert "train/loss" in panel.loss_plot.curves
    assert asked == ["Training finished"]
    assert window.controller.weights == tmp_path / "run" / "run.safetensors"
    assert window.doc.result.matcher != "classical"  # re-registered with the new model
    assert registered.args is not None
    assert len(shown) == 1 and "Before (classical)" in shown[0] and "After" in shown[0]

    # resume the finished run for one more epoch
    panel.epochs.setValue(2)
    panel.resume.setChecked(True)
    assert run_panel(qtbot, panel) == "done"
    assert "after 4 steps" in panel.status.text()
    assert asked == ["Training finished"] * 2  # declined the second time: no re-registration


def test_cancel_stops_a_long_run_early_and_keeps_a_checkpoint(qtbot, window, tmp_path):
    panel = window.training
    tiny_form(panel, tmp_path / "long", epochs=1, steps=500)
    with qtbot.waitSignal(panel.run_finished, timeout=90000) as blocker:
        panel.start()
        assert not panel.start_btn.isEnabled() and panel.cancel_btn.isEnabled()
        qtbot.waitUntil(lambda: panel.progress.value() >= 1, timeout=60000)
        panel.cancel()
    assert blocker.args == ["cancelled"]
    qtbot.waitUntil(lambda: not panel.running, timeout=10000)
    assert panel.progress.value() < 500
    assert panel.start_btn.isEnabled()
    assert panel.checkpoint().is_file()
    assert "Resume" in panel.status.text()


def test_bad_settings_are_reported_before_starting(qtbot, window, tmp_path, monkeypatch):
    errors = []
    monkeypatch.setattr("retreg.gui.training_panel.show_error",
                        lambda parent, title, msg, details="": errors.append(msg))
    panel = window.training
    tiny_form(panel, tmp_path / "x")
    for cb in panel.modes.values():
        cb.setChecked(False)
    panel.start()
    assert not panel.running and "at least one mode" in errors[-1]
    tiny_form(panel, tmp_path / "x")
    panel.resume.setChecked(True)
    panel.start()
    assert not panel.running and "No checkpoint" in errors[-1]


def test_finetune_on_pairs_exported_from_the_app(qtbot, window, tmp_path, monkeypatch):
    monkeypatch.setattr(QtWidgets.QMessageBox, "question",
                        lambda *a, **k: QtWidgets.QMessageBox.StandardButton.No)
    root = tmp_path / "real"
    for seed in range(3):  # fine-tuning holds out pairs by image: several distinct pairs
        cf, fa, _ = make_pair(seed)
        write_image(tmp_path / f"e{seed}_cf.png", cf)
        write_image(tmp_path / f"e{seed}_fa.png", fa)
        with qtbot.waitSignal(window.registration_done, timeout=30000):
            window.open_pair(tmp_path / f"e{seed}_cf.png", tmp_path / f"e{seed}_fa.png")
        assert window.export_realpair(root, f"eye{seed}") is not None
    panel = window.training
    tiny_form(panel, tmp_path / "pre")
    assert run_panel(qtbot, panel) == "done"
    pretrained = tmp_path / "pre" / "pre.safetensors"

    panel.kind.setCurrentIndex(panel.kind.findData(FINETUNE))
    assert not panel.resume.isEnabled()
    panel.real_dir.edit.setText(str(root))
    panel.base_weights.edit.setText(str(pretrained))
    panel.out_dir.edit.setText(str(tmp_path / "ft"))
    with qtbot.waitSignal(panel.weights_ready, timeout=90000) as ready:
        assert run_panel(qtbot, panel) == "done"
    assert ready.args == [str(tmp_path / "ft" / "ft.safetensors")]
    assert "Held-out error" in panel.status.text()


def test_the_panel_trains_the_superretina_matcher_through_its_phases(qtbot, window, tmp_path):
    from retreg.core.matchers.superretina import SuperRetinaMatcher
    from retreg.gui.training_panel import SUPERRETINA

    panel = window.training
    tiny_form(panel, tmp_path / "sr", epochs=3, steps=1)
    panel.kind.setCurrentIndex(panel.kind.findData(SUPERRETINA))
    assert panel.size.value() == 320 and not panel.data_dir.widget.isVisible()
    panel.size.setValue(96)
    offered = []
    panel.weights_ready.connect(offered.append)
    assert run_panel(qtbot, panel) == "done"
    assert panel.progress.value() == 3 and "train/det" in panel.loss_plot.curves
    assert offered == []  # not LoFTR weights: no re-registration offered
    assert "--matcher superretina" in panel.status.text()
    for phase in (1, 2, 3):
        assert (tmp_path / "sr" / f"sr_phase{phase}.safetensors").is_file()
    assert SuperRetinaMatcher.from_weights(tmp_path / "sr" / "sr.safetensors")
