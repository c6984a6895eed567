"""The GUI's document model: edits, undo/redo, refitting and annotation round trips."""
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from retreg.core.geometry import map_points  # noqa: E402
from retreg.core.types import Matches, Mode, RegistrationResult  # noqa: E402
from retreg.gui.session import FIXED, MOVING, Session  # noqa: E402

pytestmark = pytest.mark.gui

# moving -> fixed: scale 1.1, rotation ~5 degrees, shift
TRUE = np.array([[1.0958, -0.0959, 12.0], [0.0959, 1.0958, -7.0], [0.0, 0.0, 1.0]])


def grid_points(n=5, lo=40.0, hi=200.0):
    g = np.linspace(lo, hi, n)
    return np.array([(x, y) for x in g for y in g])


@pytest.fixture
def session(qtbot, tmp_path):
    s = Session()
    img = np.zeros((256, 256), np.uint8)
    paths = []
    for name in ("a_cf.png", "a_fa.png"):
        p = tmp_path / name
        p.write_bytes(b"stand-in image bytes for hashing " + name.encode())
        paths.append(p)
    s.set_images(paths[0], paths[1], img, img.copy(), Mode.CFFA, "affine")
    return s


def model_result(n_outliers=3) -> RegistrationResult:
    moving = grid_points()
    fixed = map_points(TRUE, moving)
    fixed[:n_outliers] += 60.0  # a few wrong matches
    conf = np.linspace(0.2, 1.0, len(moving))
    inliers = np.ones(len(moving), bool)
    inliers[:n_outliers] = False
    return RegistrationResult(mode="cffa", matcher="test", transform_type="affine", matrix=TRUE.copy(),
                          status="ok", reason="", matches=Matches(fixed, moving, conf),
                          selected=np.arange(len(moving)), inliers=inliers,
                          residuals=np.zeros(len(moving)), fixed_shape=(256, 256),
                          moving_shape=(256, 256), threshold_px=3.0)


def test_model_result_becomes_pairs_with_inliers_included_and_model_matrix(session):
    session.apply_result(model_result())
    assert len(session.pairs) == 25
    assert [p.include for p in session.pairs[:4]] == [False, False, False, True]
    assert all(p.source == "model" for p in session.pairs)
    np.testing.assert_allclose(session.matrix, TRUE)
    assert session.residuals[1] > 50 and session.residuals[10] < 1e-6
    assert session.confidence[1] == pytest.approx(0.2)
    assert not session.is_dirty  # a recomputable result is not unsaved work


def test_register_after_edits_keeps_the_document_unsaved(session):
    session.add_pair((10.0, 20.0), (30.0, 40.0))
    session.apply_result(model_result())
    assert session.is_dirty


def test_manual_edit_refits_from_included_points_and_undo_restores_model_fit(session):
    session.apply_result(model_result())
    first = session.pairs[5]
    session.move_point(first.id, FIXED, (first.fixed[0] + 40.0, first.fixed[1]))
    assert session.pair(first.id).fixed[0] == pytest.approx(first.fixed[0] + 40.0)
    assert session.matrix is not None  # robust refit ignores the moved point
    assert session.residuals[first.id] == pytest.approx(40.0, abs=0.5)
    session.undo_stack.undo()
    assert session.pair(first.id) == first
    np.testing.assert_allclose(session.matrix, TRUE)


def test_add_delete_include_are_each_one_undo_step(session):
    session.apply_result(model_result())
    pid = session.add_pair((10.0, 20.0), (30.0, 40.0))
    assert session.pair(pid).source == "manual" and pid == 26
    session.set_included([pid], False)
    assert not session.pair(pid).include
    session.delete_pairs([pid, 1])
    assert session.pair(pid) is None and session.pair(1) is None
    session.undo_stack.undo()
    assert session.pair(pid) is not None and not session.pair(pid).include
    session.undo_stack.undo()
    assert session.pair(pid).include
    session.undo_stack.undo()
    assert session.pair(pid) is None and len(session.pairs) == 25
    session.undo_stack.redo()
    assert session.pair(pid).include


def test_toggle_included_flips_a_mixed_selection_to_included(session):
    session.apply_result(model_result())
    session.toggle_included([1, 10])  # 1 excluded, 10 included -> both included
    assert session.pair(1).include and session.pair(10).include
    session.toggle_included([1, 10])
    assert not session.pair(1).include and not session.pair(10).include


def test_transform_switch_reestimates_model_points_and_is_undoable(session):
    session.apply_result(model_result())
    session.set_transform_type("homography")
    assert session.transform_type == "homography"
    assert session.result.transform_type == "homography"
    np.testing.assert_allclose(session.matrix / session.matrix[2, 2], TRUE, atol=1e-3)
    session.undo_stack.undo()
    assert session.transform_type == "affine"


def test_too_few_points_gives_no_matrix_with_a_reason(session):
    session.add_pair((10.0, 10.0), (12.0, 12.0))
    assert session.matrix is None
    assert "too few" in session.fit_reason


def test_prediction_maps_through_the_current_transform_both_ways(session):
    session.apply_result(model_result())
    fx, fy = map_points(TRUE, np.array([[100.0, 120.0]]))[0]
    assert session.predict_partner(MOVING, (100.0, 120.0)) == pytest.approx((fx, fy))
    assert session.predict_partner(FIXED, (fx, fy)) == pytest.approx((100.0, 120.0))


def test_annotation_round_trip_keeps_points_and_transform(session):
    session.apply_result(model_result())
    session.add_pair((10.0, 20.0), (30.0, 40.0))
    ann = session.to_annotation()
    assert ann.transform["type"] == "affine" and len(ann.points) == 26
    other = Session()
    other.set_images(session.fixed_path, session.moving_path, session.fixed_img,
                     session.moving_img, Mode.CFFA)
    other.load_points(ann)
    assert other.pairs == session.pairs
    np.testing.assert_allclose(other.matrix, session.matrix, atol=1e-6)


def test_saving_marks_clean_and_edits_mark_dirty(session, tmp_path):
    session.apply_result(model_result())
    session.mark_saved(tmp_path / "a.json")
    assert not session.is_dirty and session.annotation_path == tmp_path / "a.json"
    session.delete_pairs([3])
    assert session.is_dirty
