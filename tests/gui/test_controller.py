"""The app's decisions without Qt: mode choice, the half-chosen pair, the registration job,
the before/after comparison, status text, the verdict's note, which match lines are drawn and
their residual classes, annotation images and crash recovery."""
import dataclasses

import numpy as np
import pytest

from retreg.core import annotations as ann_io
from retreg.core.errors import AnnotationError
from retreg.core.types import Matches, Mode
from retreg.core.verdict import Verdict
from retreg.gui.controller import (AUTO_MODE, HAND_THRESHOLD_PX, NO_MODE_NOTE, Controller,
                                   annotation_images, choose_lines, counts_text,
                                   image_mismatches, legend_labels, order_pair, overlay_refusal,
                                   points_format, registration_message, residual_class,
                                   residual_edges, verdict_note, window_title)
from retreg.gui.document import Document
from retreg.gui.recovery import RecoveryStore
from tests.gui.test_document import model_result

IMG = np.zeros((256, 256), np.uint8)


class HardPairResult(type(model_result())):
    """A result whose matcher reports a hard pair (the note's wording is core's)."""

    def hypothesis_note(self) -> str:
        return "hard pair: 20 input variants tried; chosen: moving image turned 90 deg"


def files(tmp_path, *names):
    out = []
    for name in names:
        p = tmp_path / name
        p.write_bytes(b"stand-in image " + name.encode())
        out.append(p)
    return out


@pytest.fixture
def ctl():
    return Controller(Document(), weights=None)


def open_(ctl, fixed, moving, **kw):
    return ctl.open_images(fixed, moving, IMG, IMG.copy(), **kw)


# ---------------------------------------------------------------------------- mode

def test_mode_explicit_beats_toolbar_beats_names(tmp_path):
    cf, fa = files(tmp_path, "eye_cf.png", "eye_fa.png")
    assert Controller.choose_mode(cf, fa, "octfa", "cfoct") == (Mode.OCTFA, "")
    assert Controller.choose_mode(cf, fa, None, "cfoct") == (Mode.CFOCT, "")
    assert Controller.choose_mode(cf, fa) == (Mode.CFFA,
                                              "mode cffa guessed from the file names")
    mode, note = Controller.choose_mode(cf, fa, "cfxx")
    assert mode is None and "unknown mode 'cfxx'" in note


def test_unknown_names_open_unregistered_until_the_mode_is_chosen(ctl, tmp_path):
    a, b = files(tmp_path, "left.png", "right.png")
    opened = open_(ctl, a, b)
    assert opened.mode is None and not opened.register
    assert NO_MODE_NOTE in opened.message and ctl.doc.mode is None  # no silent cffa
    job, why = ctl.register_job("classical")
    assert job is None and "Choose the mode" in why
    assert ctl.mode_chosen(AUTO_MODE) is None  # "auto" still cannot tell
    assert ctl.mode_chosen("cffa") == (True, "Mode cffa: registering")
    assert ctl.doc.mode == Mode.CFFA
    register, message = ctl.mode_chosen("octfa")
    assert not register and "register again" in message
    assert ctl.mode_chosen("octfa") is None


def test_unnamed_images_take_their_mode_from_the_content_and_say_so(ctl, tmp_path):
    from retreg.training.synth import render_case

    case = render_case(10_500_003, size=256)
    a, b = files(tmp_path, "left.png", "right.png")
    opened = ctl.open_images(a, b, case["cf"], case["fa"])
    assert opened.mode == Mode.CFFA and opened.register
    assert "mode cffa from the image content: fixed cf" in opened.message


def test_known_names_register_on_open(ctl, tmp_path):
    cf, fa = files(tmp_path, "eye_cf.png", "eye_fa.png")
    opened = open_(ctl, cf, fa)
    assert opened.register and opened.mode == Mode.CFFA
    assert opened.message == "Opened eye_cf.png and eye_fa.png; mode cffa guessed from the " \
                             "file names"
    assert not open_(ctl, cf, fa, register=False).register


def test_case_folder_mode_is_the_toolbars_else_the_open_pairs(ctl, tmp_path):
    assert ctl.case_folder_mode(AUTO_MODE) is None
    assert ctl.case_folder_mode("octfa") == Mode.OCTFA
    open_(ctl, *files(tmp_path, "eye_cf.png", "eye_fa.png"))
    assert ctl.case_folder_mode(AUTO_MODE) == Mode.CFFA


def test_order_pair_puts_the_fixed_image_first():
    assert order_pair("x_fa.png", "x_cf.png") == ("x_cf.png", "x_fa.png")
    assert order_pair("x_cf.png", "x_fa.png") == ("x_cf.png", "x_fa.png")
    assert order_pair("a.png", "b.png") == ("a.png", "b.png")


# ---------------------------------------------------------------------------- one image at a time

def test_one_image_waits_for_the_other_then_the_pair_opens(ctl, tmp_path):
    cf, fa, fa2 = files(tmp_path, "eye_cf.png", "eye_fa.png", "eye2_fa.png")
    assert ctl.pick_image("fixed", cf) == (None, "Now open the moving image")
    assert ctl.pick_image("moving", fa) == ((cf, fa), "")
    assert ctl.half_pair == {}
    open_(ctl, cf, fa)
    assert ctl.pick_image("moving", fa2) == ((cf, fa2), "")  # replaces one image of the pair


# ---------------------------------------------------------------------------- registration

def test_job_uses_the_weights_only_for_matchers_that_take_them(tmp_path):
    ctl = Controller(Document(), weights=tmp_path / "w.safetensors")
    assert ctl.register_job("default") == (None, "Open a fixed and a moving image first")
    open_(ctl, *files(tmp_path, "eye_cf.png", "eye_fa.png"))
    job, _ = ctl.register_job("loftr")
    assert job.weights == tmp_path / "w.safetensors" and job.mode == "cffa"
    assert job.fixed_img is ctl.doc.fixed_img and job.transform_type == ctl.doc.transform_type
    assert ctl.register_job("classical")[0].weights is None


def test_the_chosen_octa_scan_size_reaches_the_registration_as_its_physical_prior(ctl, tmp_path):
    open_(ctl, *files(tmp_path, "eye_cf.png", "eye_octa.png"))
    job, _ = ctl.register_job("classical", 6.0)
    assert job.mode == "cfocta" and job.config().field.sizes_mm == (6.0,)
    assert ctl.register_job("classical")[0].config().field.sizes_mm == (3.0, 6.0)  # auto


def test_the_status_line_says_where_an_octa_was_found_in_a_whole_photo():
    from dataclasses import replace
    res = replace(model_result(), located={"field_mm": 6.0, "field_px": 760.0,
                                           "clip_to_photo": np.eye(3).tolist()})
    assert "OCTA located inside the whole photo: a 6 mm scan" in registration_message(res)


def test_a_result_for_images_no_longer_open_is_dropped(ctl, tmp_path):
    cf, fa = files(tmp_path, "eye_cf.png", "eye_fa.png")
    open_(ctl, cf, fa)
    job, _ = ctl.register_job("classical")
    open_(ctl, cf, fa)  # opened again: new image arrays
    assert ctl.registered(job, model_result()) is None and not ctl.doc.pairs
    job, _ = ctl.register_job("classical")
    done = ctl.registered(job, model_result())
    assert len(ctl.doc.pairs) == 25 and done.comparison is None
    assert done.message.startswith("Registered with test: 22 inliers of 25 selected")


def test_a_hard_pairs_note_comes_first_and_a_failure_says_what_to_do():
    hard = HardPairResult(**{f.name: getattr(model_result(), f.name)
                             for f in dataclasses.fields(model_result())})
    assert registration_message(hard).startswith("Hard pair: 20 input variants tried")
    assert "registered with test: 22 inliers" in registration_message(hard)
    failed = dataclasses.replace(model_result(), status="failed", reason="too few matches")
    assert registration_message(failed) == ("Registration failed: too few matches — add point "
                                            "pairs by hand (A)")


def test_new_weights_compare_before_and_after(ctl, tmp_path):
    assert ctl.weights_question(tmp_path / "new.safetensors") is None  # nothing open
    open_(ctl, *files(tmp_path, "eye_cf.png", "eye_fa.png"))
    job, _ = ctl.register_job("classical")
    ctl.registered(job, model_result())
    assert "new.safetensors" in ctl.weights_question(tmp_path / "new.safetensors")
    assert ctl.compare_with(tmp_path / "new.safetensors") == "Using weights new.safetensors"
    assert ctl.weights == tmp_path / "new.safetensors"
    job, _ = ctl.register_job("loftr")
    assert job.weights == tmp_path / "new.safetensors"
    text = ctl.registered(job, model_result(n_outliers=5)).comparison
    assert text.startswith("Before (test): 22 pairs used, median residual 0.00 px\n"
                           "After (new weights): 20 pairs used")
    assert ctl.compare_before is None


def test_a_failed_registration_cancels_the_comparison(ctl, tmp_path):
    open_(ctl, *files(tmp_path, "eye_cf.png", "eye_fa.png"))
    ctl.compare_with(tmp_path / "new.safetensors")
    ctl.registration_failed()
    job, _ = ctl.register_job("loftr")
    assert ctl.registered(job, model_result()).comparison is None


# ---------------------------------------------------------------------------- status text

def test_counts_and_title_follow_the_document(ctl, tmp_path):
    assert window_title(ctl.doc) == "no images — RetReg"
    a, b = files(tmp_path, "left.png", "right.png")
    open_(ctl, a, b)
    assert counts_text(ctl.doc).startswith("mode ? (choose it in the toolbar)")
    ctl.mode_chosen("cffa")
    job, _ = ctl.register_job("classical")
    ctl.registered(job, model_result())
    text = counts_text(ctl.doc)
    assert "25 pairs, 22 used" in text and "25 matches → 25 selected → 22 inliers" in text
    assert window_title(ctl.doc) == "left.png ← right.png — RetReg"
    ctl.doc.delete_pairs([1])
    assert window_title(ctl.doc).startswith("*left.png")
    ctl.doc.mark_saved(tmp_path / "eye.json")
    assert window_title(ctl.doc) == "eye.json — RetReg"


# ---------------------------------------------------------------------------- annotations

def test_annotation_images_resolve_beside_the_file_and_changes_are_found(tmp_path):
    cf, fa = files(tmp_path, "eye_cf.png", "eye_fa.png")
    ann = ann_io.new_annotation(cf, (4, 4), fa, (4, 4), "cffa")
    ann.fixed = dataclasses.replace(ann.fixed, path="eye_cf.png")  # relative to the annotation
    assert annotation_images(ann, tmp_path / "eye.json") == (cf, fa)
    assert image_mismatches(ann, cf, fa, (4, 4, 3), (4, 4)) == []
    fa.write_bytes(b"edited")
    assert image_mismatches(ann, cf, fa, (4, 4), (4, 4)) == [
        "moving image eye_fa.png differs in content from the annotation's eye_fa.png (SHA-256)"]


def test_an_image_of_another_size_than_the_annotations_is_named_with_both_sizes(tmp_path):
    cf, fa = files(tmp_path, "eye_cf.png", "eye_fa.png")
    ann = ann_io.new_annotation(cf, (4, 6), fa, (4, 4), "cffa")
    assert image_mismatches(ann, cf, fa, (8, 12, 3), (4, 4)) == [
        "fixed image eye_cf.png is 12x8 px, the annotation's eye_cf.png was 6x4 px"]


def test_points_files_are_told_apart_by_suffix():
    assert [points_format(n) for n in ("a.json", "cp.TXT", "p.csv")] == ["json", "fire", "csv"]
    with pytest.raises(AnnotationError, match="not a points file"):
        points_format("a.xml")


def _open(ctl, tmp_path):
    cf, fa = files(tmp_path, "eye_cf.png", "eye_fa.png")
    ctl.open_images(cf, fa, IMG, IMG.copy(), register=False)
    return cf, fa


@pytest.mark.parametrize("name, text", [
    ("cp.txt", "10 20 30 40\n1e12 5 30 40\n"),
    ("p.csv", "id,x_fixed,y_fixed,x_moving,y_moving,source,include\n"
              "1,10,20,30,40,manual,true\n2,1e12,5,30,40,manual,true\n"),
])
def test_a_points_file_off_the_images_is_refused_naming_it_and_nothing_changes(
        ctl, tmp_path, name, text):
    _open(ctl, tmp_path)
    ctl.doc.add_pair((1.0, 2.0), (3.0, 4.0))
    (tmp_path / name).write_text(text)
    with pytest.raises(AnnotationError) as err:
        ctl.read_points(tmp_path / name)
    assert str(err.value).startswith(f"{tmp_path / name}: point id 2: fixed point (1e+12, 5) "
                                     "is outside the fixed image (256x256 px")
    assert (tmp_path / name).read_text() == text and len(ctl.doc.pairs) == 1


def test_an_annotation_off_the_images_is_refused_like_any_points_file(ctl, tmp_path):
    cf, fa = _open(ctl, tmp_path)
    ann = ann_io.new_annotation(cf, (256, 256), fa, (256, 256), "cffa",
                                [ann_io.PointPair(4, (10.0, 20.0), (30.0, 1e12))])
    ann_io.save_annotation(tmp_path / "a.json", ann)
    with pytest.raises(AnnotationError, match=r"a\.json: point id 4: moving point"):
        ctl.read_points(tmp_path / "a.json")


def test_points_in_bounds_are_adopted_as_one_undo_step_and_define_the_transform(ctl, tmp_path):
    _open(ctl, tmp_path)
    (tmp_path / "cp.txt").write_text("10 20 12 18\n200 30 202 28\n40 220 42 218\n")
    pf = ctl.read_points(tmp_path / "cp.txt")
    assert pf.mismatches == () and pf.annotation is None
    assert ctl.adopt_points(pf) == "Loaded 3 point pairs from cp.txt"
    assert len(ctl.doc.pairs) == 3 and ctl.doc.undo_text == "Import cp.txt"
    np.testing.assert_allclose(ctl.doc.matrix[:2, 2], (-2.0, 2.0), atol=1e-6)


def test_an_annotation_made_on_other_images_lists_the_differences_for_the_user(ctl, tmp_path):
    cf, fa = _open(ctl, tmp_path)
    ann = ann_io.new_annotation(cf, (128, 256), fa, (256, 256), "cffa",
                                [ann_io.PointPair(1, (10.0, 20.0), (30.0, 40.0))])
    ann_io.save_annotation(tmp_path / "a.json", ann)
    fa.write_bytes(b"another moving image")
    pf = ctl.read_points(tmp_path / "a.json")
    assert len(pf.mismatches) == 2 and "256x256 px" in pf.mismatches[0]
    assert "SHA-256" in pf.mismatches[1]
    assert pf.question().startswith("a.json was made on other images than the open ones")
    assert pf.question().endswith("Load it anyway?")
    assert not ctl.doc.pairs  # reading decides nothing: the window asks first


# ---------------------------------------------------------------------------- recovery

def test_recovery_keeps_unsaved_work_until_saved_and_offers_it_back(tmp_path):
    doc = Document()
    store = RecoveryStore(doc, tmp_path / "rec")
    assert store.question() is None
    cf, fa = files(tmp_path, "eye_cf.png", "eye_fa.png")
    doc.set_images(cf, fa, IMG, IMG.copy(), Mode.CFFA)
    assert not store.on_history()  # nothing unsaved yet
    doc.add_pair((10.0, 20.0), (30.0, 40.0))
    assert store.on_history()  # unsaved: schedule an autosave
    assert store.save_now() is None and store.pending() == tmp_path / "rec" / "recovery.json"
    assert "did not close normally" in store.question()
    assert store.load().points == list(doc.pairs)
    store.suspended = True  # loading recovered work: the file stays whatever happens
    doc.mark_saved()
    assert not store.on_history() and store.pending() is not None
    store.suspended = False
    assert not store.on_history() and store.pending() is None  # saved: the file goes


def test_a_failed_autosave_is_reported_not_raised(tmp_path):
    doc = Document()
    cf, fa = files(tmp_path, "eye_cf.png", "eye_fa.png")
    doc.set_images(cf, fa, IMG, IMG.copy(), Mode.CFFA)
    doc.add_pair((10.0, 20.0), (30.0, 40.0))
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    message = RecoveryStore(doc, blocker).save_now()
    assert message.startswith(f"Autosave to {blocker / 'recovery.json'} failed")



# ---------------------------------------------------------------------------- verdict

def judged(verdict, **changes):
    return dataclasses.replace(model_result(), verdict=verdict, **changes)


def test_the_verdict_is_said_beside_the_result_and_a_failed_one_refuses_the_overlay(ctl, tmp_path):
    open_(ctl, *files(tmp_path, "eye_cf.png", "eye_fa.png"))
    ctl.doc.apply_result(judged(Verdict("ok")))
    assert verdict_note(ctl.doc) is None and overlay_refusal(ctl.doc) is None
    assert counts_text(ctl.doc).endswith("verdict ok")
    ctl.doc.apply_result(judged(Verdict("low confidence", ("few inliers (12, 10% of the "
                                                            "selected matches)",))))
    note = verdict_note(ctl.doc)
    assert note.level == "low confidence" and note.text.startswith("Low confidence: few inliers")
    assert overlay_refusal(ctl.doc) is None  # shown, but marked
    ctl.doc.apply_result(judged(Verdict("failed", ("only 5 inliers", "the vessels do not line "
                                                                     "up after warping"))))
    note = verdict_note(ctl.doc)
    assert note.level == "failed"
    assert "only 5 inliers; the vessels do not line up" in note.text and "No overlay" in note.text
    assert overlay_refusal(ctl.doc).splitlines()[:3] == [
        "Registration failed:", "• only 5 inliers",
        "• the vessels do not line up after warping"]
    ctl.doc.add_pair((10.0, 10.0), (12.0, 11.0))  # a hand-edited fit is not judged
    assert verdict_note(ctl.doc) is None and overlay_refusal(ctl.doc) is None
    ctl.doc.undo()
    assert verdict_note(ctl.doc).level == "failed"


def test_the_status_line_names_a_weak_or_failed_verdict():
    weak = judged(Verdict("low confidence", ("the inliers cover only 4% of the overlap",)))
    assert registration_message(weak).startswith(
        "Low confidence: the inliers cover only 4% of the overlap — registered with test: 22")
    failed = judged(Verdict("failed", ("only 5 inliers", "implausible scale 0.10")))
    assert registration_message(failed) == ("Registration failed: only 5 inliers; implausible "
                                            "scale 0.10 — add point pairs by hand (A)")
    assert registration_message(judged(Verdict("ok"))).startswith("Registered with test")


# ---------------------------------------------------------------------------- match lines

def many_pairs(ctl, tmp_path, n=600, seed=0):
    """A registered document of ``n`` model pairs, a third of them outliers."""
    rng = np.random.default_rng(seed)
    fixed = rng.uniform(0, 256, (n, 2))
    moving = fixed + 5.0
    moving[: n // 3] += rng.uniform(20, 60, (n // 3, 2))
    inliers = np.ones(n, bool)
    inliers[: n // 3] = False
    result = dataclasses.replace(
        model_result(), matrix=np.array([[1, 0, -5.0], [0, 1, -5.0], [0, 0, 1]]),
        matches=Matches(fixed, moving, rng.uniform(0, 1, n)), selected=np.arange(n),
        inliers=inliers, residuals=np.zeros(n))
    open_(ctl, *files(tmp_path, "eye_cf.png", "eye_fa.png"))
    ctl.doc.apply_result(result)
    return ctl.doc


def test_lines_are_capped_spread_evenly_and_say_how_many_are_shown(ctl, tmp_path):
    doc = many_pairs(ctl, tmp_path)
    shown = choose_lines(doc, "inliers", 150)
    assert len(shown.ids) == 150 and shown.total == 400
    assert shown.text() == "showing 150 of 400 inlier lines, spread evenly"
    assert all(doc.pair(pid).include for pid in shown.ids)
    xy = np.array([doc.pair(pid).fixed for pid in shown.ids])
    quadrants = np.bincount((xy[:, 0] > 128) + 2 * (xy[:, 1] > 128), minlength=4)
    assert quadrants.min() >= 30  # no region left bare
    outliers = choose_lines(doc, "outliers", 150)
    assert outliers.total == 200 and not any(doc.pair(p).include for p in outliers.ids)
    assert choose_lines(doc, "all", 1000).text() == "600 match lines"
    assert choose_lines(doc, "none", 150).ids == ()
    doc.select([1])  # an excluded pair, selected: drawn beyond the cap under "all"
    assert 1 in choose_lines(doc, "all", 10).ids and 1 not in choose_lines(doc, "inliers", 10).ids


def test_residual_classes_scale_with_the_inlier_threshold(ctl, tmp_path):
    doc = many_pairs(ctl, tmp_path)
    edges = residual_edges(doc)
    assert edges == pytest.approx((0.75, 1.5, 3.0, 6.0))  # the result's 3-px threshold
    assert [residual_class(r, edges) for r in (0.1, 1.5, 2.0, 100.0, float("nan"))] == [
        0, 1, 2, 4, None]
    assert legend_labels(edges) == ["≤ 0.8 px", "0.8–1.5 px", "1.5–3.0 px", "3.0–6.0 px",
                                    "> 6.0 px"]
    assert residual_edges(Document())[2] == HAND_THRESHOLD_PX


# ---------------------------------------------------------------------------- snapping

def _vessel_pair(shift=(14.0, -9.0)):
    """A CF-like image (dark vessels) and an FA-like one (bright), the FA moved by ``shift``."""
    from tests.helpers import vessel_lines
    mask = vessel_lines(360, seed=5, n_lines=14, steps=12, step_px=16, spread=(0.1, 0.9),
                        turn_sd=0.35).astype(np.float32)
    cf = (200 - 140 * mask).astype(np.uint8)
    fa = np.roll((40 + 180 * mask).astype(np.uint8), (int(shift[1]), int(shift[0])), (0, 1))
    return cf, fa, np.array(shift)


def test_snapping_moves_misplaced_partners_onto_the_vessels_in_one_undo_step(tmp_path):
    cf_img, fa_img, shift = _vessel_pair()
    ctl = Controller(Document())
    cf, fa = files(tmp_path, "eye_cf.png", "eye_fa.png")
    ctl.open_images(cf, fa, cf_img, fa_img)
    moving = [(120.0, 110.0), (200.0, 170.0), (150.0, 240.0), (230.0, 120.0), (100.0, 200.0)]
    ids = [ctl.doc.add_pair(tuple(np.array(m) - shift + (4.0, -3.0)), m) for m in moving]
    ctl.doc.select(ids)
    message = ctl.snap_selected()
    assert message.startswith("Snapped ")
    moved = [p for p in ctl.doc.pairs if np.hypot(*(np.array(p.fixed) - (np.array(p.moving) - shift))) < 1.5]
    assert len(moved) >= 3
    ctl.doc.undo()
    assert all(np.allclose(p.fixed, np.array(p.moving) - shift + (4.0, -3.0)) for p in ctl.doc.pairs)


def test_snapping_says_what_it_needs(ctl, tmp_path):
    open_(ctl, *files(tmp_path, "eye_cf.png", "eye_fa.png"))
    assert ctl.snap_selected() == "Select the point pairs to snap first"
    pid = ctl.doc.add_pair((10.0, 10.0), (12.0, 11.0))
    ctl.doc.select([pid])
    assert "needs a transform" in ctl.snap_selected()
