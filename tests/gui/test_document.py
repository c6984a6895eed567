"""The app's document without Qt: edits, undo/redo, refitting, notifications and annotation
round trips."""
import subprocess
import sys

import numpy as np
import pytest

from retreg.core.geometry import map_points
from retreg.core.types import Matches, Mode, RegistrationResult
from retreg.core.annotations import Annotation, ImageRef, PointPair
from retreg.core.errors import AnnotationError
from retreg.gui.document import (CONTENT, HISTORY, IMAGES, REFUSED, SELECTION, FIXED, MOVING,
                                 Document)

# moving -> fixed: scale 1.1, rotation ~5 degrees, shift
TRUE = np.array([[1.0958, -0.0959, 12.0], [0.0959, 1.0958, -7.0], [0.0, 0.0, 1.0]])


def grid_points(n=5, lo=40.0, hi=200.0):
    g = np.linspace(lo, hi, n)
    return np.array([(x, y) for x in g for y in g])


@pytest.fixture
def doc(tmp_path):
    s = Document()
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


def test_model_result_becomes_pairs_with_inliers_included_and_model_matrix(doc):
    doc.apply_result(model_result())
    assert len(doc.pairs) == 25
    assert [p.include for p in doc.pairs[:4]] == [False, False, False, True]
    assert all(p.source == "model" for p in doc.pairs)
    np.testing.assert_allclose(doc.matrix, TRUE)
    assert doc.residuals[1] > 50 and doc.residuals[10] < 1e-6
    assert doc.confidence[1] == pytest.approx(0.2)
    assert not doc.is_dirty  # a recomputable result is not unsaved work


def test_register_after_edits_keeps_the_document_unsaved(doc):
    doc.add_pair((10.0, 20.0), (30.0, 40.0))
    doc.apply_result(model_result())
    assert doc.is_dirty


def test_manual_edit_refits_from_included_points_and_undo_restores_model_fit(doc):
    doc.apply_result(model_result())
    first = doc.pairs[5]
    doc.move_point(first.id, FIXED, (first.fixed[0] + 40.0, first.fixed[1]))
    assert doc.pair(first.id).fixed[0] == pytest.approx(first.fixed[0] + 40.0)
    assert doc.matrix is not None  # robust refit ignores the moved point
    assert doc.residuals[first.id] == pytest.approx(40.0, abs=0.5)
    doc.undo()
    assert doc.pair(first.id) == first
    np.testing.assert_allclose(doc.matrix, TRUE)


def test_add_delete_include_are_each_one_undo_step(doc):
    doc.apply_result(model_result())
    pid = doc.add_pair((10.0, 20.0), (30.0, 40.0))
    assert doc.pair(pid).source == "manual" and pid == 26
    doc.set_included([pid], False)
    assert not doc.pair(pid).include
    doc.delete_pairs([pid, 1])
    assert doc.pair(pid) is None and doc.pair(1) is None
    doc.undo()
    assert doc.pair(pid) is not None and not doc.pair(pid).include
    doc.undo()
    assert doc.pair(pid).include
    doc.undo()
    assert doc.pair(pid) is None and len(doc.pairs) == 25
    doc.redo()
    assert doc.pair(pid).include


def test_toggle_included_flips_a_mixed_selection_to_included(doc):
    doc.apply_result(model_result())
    doc.toggle_included([1, 10])  # 1 excluded, 10 included -> both included
    assert doc.pair(1).include and doc.pair(10).include
    doc.toggle_included([1, 10])
    assert not doc.pair(1).include and not doc.pair(10).include


def test_transform_switch_reestimates_model_points_and_is_undoable(doc):
    doc.apply_result(model_result())
    doc.set_transform_type("homography")
    assert doc.transform_type == "homography"
    assert doc.result.transform_type == "homography"
    np.testing.assert_allclose(doc.matrix / doc.matrix[2, 2], TRUE, atol=1e-3)
    doc.undo()
    assert doc.transform_type == "affine"


def test_too_few_points_gives_no_matrix_with_a_reason(doc):
    doc.add_pair((10.0, 10.0), (12.0, 12.0))
    assert doc.matrix is None
    assert "too few" in doc.fit_reason


def test_prediction_maps_through_the_current_transform_both_ways(doc):
    doc.apply_result(model_result())
    fx, fy = map_points(TRUE, np.array([[100.0, 120.0]]))[0]
    assert doc.predict_partner(MOVING, (100.0, 120.0)) == pytest.approx((fx, fy))
    assert doc.predict_partner(FIXED, (fx, fy)) == pytest.approx((100.0, 120.0))


def test_annotation_round_trip_keeps_points_and_transform(doc):
    doc.apply_result(model_result())
    doc.add_pair((10.0, 20.0), (30.0, 40.0))
    ann = doc.to_annotation()
    assert ann.transform["type"] == "affine" and len(ann.points) == 26
    other = Document()
    other.set_images(doc.fixed_path, doc.moving_path, doc.fixed_img,
                     doc.moving_img, Mode.CFFA)
    other.load_points(ann)
    assert other.pairs == doc.pairs
    np.testing.assert_allclose(other.matrix, doc.matrix, atol=1e-6)


def test_saving_marks_clean_and_edits_mark_dirty(doc, tmp_path):
    doc.apply_result(model_result())
    doc.mark_saved(tmp_path / "a.json")
    assert not doc.is_dirty and doc.annotation_path == tmp_path / "a.json"
    doc.delete_pairs([3])
    assert doc.is_dirty


def test_document_controller_and_recovery_import_without_qt():
    code = ("import sys; import retreg.gui.document, retreg.gui.controller, retreg.gui.recovery; "
            "sys.exit('PySide6' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_observers_hear_each_kind_of_change(doc):
    heard = []
    for event in (IMAGES, CONTENT, SELECTION, HISTORY):
        doc.observe(event, lambda e=event: heard.append(e))
    doc.add_pair((10.0, 20.0), (30.0, 40.0))
    assert heard == [CONTENT, HISTORY]
    heard.clear()
    doc.select([1])
    doc.select([1])  # unchanged: no notification
    assert heard == [SELECTION]
    heard.clear()
    doc.set_images(None, None, doc.fixed_img, doc.moving_img, Mode.CFFA)
    assert IMAGES in heard and heard[-1] == HISTORY and not doc.can_undo


def test_an_edit_that_changes_nothing_is_not_a_step(doc):
    doc.apply_result(model_result())
    doc.set_included([10], True)  # already included
    doc.move_point(999, FIXED, (1.0, 1.0))  # no such pair
    assert not doc.is_dirty and doc.undo_text == "Register"


def test_typed_coordinate_moves_one_axis_and_is_undoable(doc):
    doc.apply_result(model_result())
    before = doc.pair(7)
    doc.set_coordinate(7, MOVING, 1, 123.5)
    assert doc.pair(7).moving == (before.moving[0], 123.5) and doc.pair(7).fixed == before.fixed
    assert doc.undo_text == "Set moving y of point 7"
    doc.undo()
    assert doc.pair(7) == before


def test_undo_back_to_the_saved_state_is_clean_and_a_new_branch_loses_it(doc, tmp_path):
    doc.add_pair((10.0, 20.0), (30.0, 40.0))
    doc.mark_saved(tmp_path / "a.json")
    doc.add_pair((50.0, 60.0), (70.0, 80.0))
    assert doc.is_dirty and doc.can_undo and not doc.can_redo
    doc.undo()
    assert not doc.is_dirty and doc.redo_text == "Add point pair"
    doc.undo()
    assert doc.is_dirty
    doc.add_pair((1.0, 2.0), (3.0, 4.0))  # a new branch: the saved state is gone
    assert not doc.can_redo
    doc.undo()
    assert doc.is_dirty and not doc.pairs


# ---------------------------------------------------------------- points stay on their images

def _refusals(doc):
    heard = []
    doc.observe(REFUSED, lambda: heard.append(doc.refusal))
    return heard


@pytest.mark.parametrize("edit, says", [
    (lambda d: d.add_pair((10.0, 20.0), (1e12, 40.0)),
     "Add point pair refused: point id 26: moving point (1e+12, 40) is outside the moving "
     "image (256x256 px: x from -13.3 to 268.3"),
    (lambda d: d.move_point(3, MOVING, (-400.0, 40.0)),
     "Move moving point 3 refused: point id 3: moving point (-400, 40) is outside"),
    (lambda d: d.set_coordinate(3, FIXED, 1, 9000.0), "Set fixed y of point 3 refused"),
    (lambda d: d.set_coordinate(3, FIXED, 0, float("nan")), "(nan, "),
])
def test_an_edit_that_puts_a_point_off_its_image_is_refused_and_changes_nothing(doc, edit,
                                                                                 says):
    doc.apply_result(model_result())
    pairs, matrix, undo = doc.pairs, doc.matrix, doc.undo_text
    heard = _refusals(doc)
    assert edit(doc) in (None, False)
    assert doc.pairs == pairs and doc.matrix is matrix and doc.undo_text == undo
    assert not doc.is_dirty
    assert len(heard) == 1 and says in heard[0]


def test_an_edit_just_past_the_edge_is_kept(doc):
    heard = _refusals(doc)
    assert doc.add_pair((-3.0, 257.0), (258.0, -2.0)) == 1
    assert doc.move_point(1, FIXED, (260.0, 0.0)) and doc.pair(1).fixed == (260.0, 0.0)
    assert not heard


def test_a_refused_edit_redraws_views_showing_its_preview(doc):
    doc.add_pair((10.0, 20.0), (30.0, 40.0))
    heard = []
    for event in (CONTENT, REFUSED):
        doc.observe(event, lambda e=event: heard.append(e))
    doc.move_point(1, FIXED, (5000.0, 0.0))
    assert heard == [REFUSED, CONTENT]


def test_importing_points_off_the_images_raises_naming_the_file_and_changes_nothing(doc):
    doc.add_pair((10.0, 20.0), (30.0, 40.0))
    pairs = doc.pairs
    bad = [PointPair(1, (10.0, 10.0), (20.0, 20.0)), PointPair(2, (1e12, 5.0), (20.0, 20.0))]
    with pytest.raises(AnnotationError, match=r"^cp\.txt: point id 2: fixed point"):
        doc.replace_pairs(bad, "Import cp.txt", source="cp.txt")
    ann = Annotation(ImageRef("f.png", None, (256, 256)), ImageRef("m.png", None, (256, 256)),
                     "cffa", bad)
    with pytest.raises(AnnotationError, match=r"^a\.json: point id 2"):
        doc.load_points(ann, source="a.json")
    assert doc.pairs == pairs and doc.undo_text == "Add point pair"


def test_selecting_an_id_that_is_not_a_pair_selects_nothing(doc):
    doc.add_pair((10.0, 20.0), (30.0, 40.0))
    doc.select([None, 1, 99])
    assert doc.selected_ids == (1,)


def _bent(pts: np.ndarray) -> np.ndarray:
    """TRUE plus a bowl of a few px: a pair only a quadratic fits."""
    u = (pts - 128.0) / 128.0
    return map_points(TRUE, pts) + 4.0 * np.stack([u[:, 0] ** 2, u[:, 1] ** 2], axis=1)


def test_hand_placed_points_fit_the_quadratic_and_map_both_ways_through_it(doc):
    doc.set_transform_type("quadratic")
    moving = np.random.default_rng(0).uniform(20, 230, (30, 2))
    for m, f in zip(moving, _bent(moving)):
        doc.add_pair(tuple(f), tuple(m))
    assert doc.nonrigid is not None, doc.polish_note
    assert max(doc.residuals.values()) < 0.05
    probe = (90.0, 140.0)
    fx, fy = _bent(np.array([probe]))[0]
    assert doc.predict_partner(MOVING, probe) == pytest.approx((fx, fy), abs=0.01)
    assert doc.predict_partner(FIXED, (fx, fy)) == pytest.approx(probe, abs=0.05)
    saved = doc.to_annotation().transform
    assert saved["type"] == "quadratic" and saved["nonrigid"]["encoding"] == "retreg.quadratic/1"
    doc.set_transform_type("affine")
    assert doc.nonrigid is None and doc.polish_note == ""


def test_a_quadratic_without_enough_points_shows_the_homography_and_says_why(doc):
    doc.set_transform_type("quadratic")
    moving = grid_points(3)
    for m, f in zip(moving, _bent(moving)):
        doc.add_pair(tuple(f), tuple(m))
    assert doc.matrix is not None and doc.nonrigid is None
    assert "too few" in doc.polish_note and doc.polish_note.endswith("the homography stands")


def test_a_switch_prepared_in_the_background_is_used_as_it_was_made(doc, monkeypatch):
    import retreg.gui.document as document

    doc.apply_result(model_result())
    base = doc.result
    assert doc.slow_switches() == ("quadratic", "smooth")
    prepared = document.reestimate(base, "quadratic")
    doc.offer_prepared(base, "quadratic", prepared)
    doc.offer_prepared(model_result(), "smooth", prepared)  # not this document's: ignored
    assert doc.slow_switches() == ("smooth",)
    monkeypatch.setattr(document, "reestimate", lambda *a: pytest.fail("refitted again"))
    doc.set_transform_type("quadratic")
    assert doc.result is prepared and doc.transform_type == "quadratic"
    doc.set_images(None, None, doc.fixed_img, doc.moving_img, Mode.CFFA)
    assert doc._prepared == {}  # new images: nothing prepared is kept
