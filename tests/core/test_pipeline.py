"""End-to-end registration on a synthetic cross-modal pair, plus the matcher registry."""
from dataclasses import replace

import cv2
import numpy as np
import pytest

import retreg.core.matchers as matchers
from retreg.core.errors import ModelLoadError
from retreg.core.geometry import map_points
from retreg.core.matchers import Matcher, available_matchers, get_matcher
from retreg.core.hypotheses import NO_SEARCH, SearchPolicy
from retreg.core.modality import source
from retreg.core.field import FieldClip, field_width
from retreg.core.pipeline import (RegistrationConfig, estimate_from_points, in_photo, reestimate,
                                  register)
from retreg.core.types import Hypothesis
from retreg.core.verdict import Verdict
from tests.helpers import vessel_lines

SIZE = 480


def _vessel_tree(seed: int) -> np.ndarray:
    return vessel_lines(SIZE, seed, n_lines=14, steps=40, step_px=9, spread=(0.2, 0.8),
                        turn_sd=0.25)


def _fundus_pair(seed: int):
    vessels = _vessel_tree(seed) > 0
    fov = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(fov, (SIZE // 2, SIZE // 2), SIZE // 2 - 10, 1, -1)
    rng = np.random.default_rng(seed + 1)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (SIZE, SIZE)).astype(np.float32), (0, 0), 6)
    cf = np.where(vessels, 0.25, 0.65 + 0.5 * texture)  # dark vessels
    fa = np.where(vessels, 0.85, 0.3 - 0.5 * texture)  # bright vessels, inverted polarity
    cf_rgb = np.stack([cf * 1.2, cf, cf * 0.5], axis=2) * fov[:, :, None]
    to_u8 = lambda a: np.clip(a * 255, 0, 255).astype(np.uint8)  # noqa: E731
    return to_u8(cf_rgb), to_u8(fa * fov)


def _similarity(scale, angle_deg, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx],
                     [scale * np.sin(a), scale * np.cos(a), ty], [0, 0, 1.0]])


def _corner_error(m_est, m_true, w, h):
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    return float(np.linalg.norm(map_points(m_est, corners) - map_points(m_true, corners), axis=1).mean())


@pytest.fixture(scope="module")
def synthetic_result():
    cf, fa = _fundus_pair(seed=3)
    fixed_to_moving = _similarity(1.08, 9, -30, 12)
    moving = cv2.warpPerspective(fa, fixed_to_moving, (SIZE, SIZE))
    truth = np.linalg.inv(fixed_to_moving)  # moving -> fixed
    result = register(cf, moving, "cffa", matcher=get_matcher("classical"), transform="affine")
    return result, truth


def test_registers_a_synthetic_cf_fa_pair_with_the_classical_matcher(synthetic_result):
    result, truth = synthetic_result
    assert result.ok, result.reason
    assert result.n_inliers >= 20
    assert _corner_error(result.matrix, truth, SIZE, SIZE) < 3.0
    assert set(result.timings) == {"prepare", "match", "select", "estimate", "refine", "verdict",
                                   "total"}
    assert result.matcher == "classical" and result.mode == "cffa"
    assert result.to_json()["n_inliers"] == result.n_inliers


def test_reestimate_changes_the_model_without_rematching(synthetic_result):
    result, truth = synthetic_result
    homog = reestimate(result, "homography")
    assert homog.transform_type == "homography" and homog.ok
    assert homog.matches is result.matches
    np.testing.assert_array_equal(homog.selected, result.selected)
    assert _corner_error(homog.matrix, truth, SIZE, SIZE) < 4.0


def test_blank_moving_image_fails_with_a_reason_not_a_matrix():
    cf, _ = _fundus_pair(seed=5)
    blank = np.full((SIZE, SIZE), 90, np.uint8)
    result = register(cf, blank, "cffa", matcher=get_matcher("classical"))
    assert not result.ok and result.matrix is None and result.reason
    assert np.all(np.isnan(result.residuals))


def test_register_rejects_unknown_mode_and_transform():
    img = np.zeros((64, 64), np.uint8)
    with pytest.raises(ValueError):
        register(img, img, "cfxyz")
    with pytest.raises(ValueError, match="transform"):
        register(img, img, "cffa", matcher=get_matcher("sift"), transform="rigid")


def test_threshold_is_defined_at_working_resolution(synthetic_result):
    result, _ = synthetic_result
    cfg = RegistrationConfig()
    # the 480-px test image is prepared at a larger working size, so full-res px < working px
    assert 0 < result.threshold_px < cfg.ransac_threshold_px


def test_manual_points_exact_minimum_uses_every_point():
    truth = _similarity(1.1, 5, 20, -7)
    moving = np.array([[10, 10], [300, 40], [120, 280]], float)
    est = estimate_from_points(map_points(truth, moving), moving, "affine")
    assert est.ok and est.inliers.all()
    np.testing.assert_allclose(est.matrix, truth, atol=1e-8)


def test_manual_points_with_a_misplaced_point_reject_it():
    truth = _similarity(0.95, -4, 5, 3)
    rng = np.random.default_rng(0)
    moving = rng.uniform(0, 500, (10, 2))
    fixed = map_points(truth, moving)
    fixed[4] += [60, -40]
    est = estimate_from_points(fixed, moving, "similarity")
    assert est.ok and not est.inliers[4] and est.inliers.sum() == 9


def test_manual_points_too_few_fail():
    est = estimate_from_points(np.zeros((3, 2)), np.zeros((3, 2)), "homography")
    assert not est.ok and "too few points" in est.reason


def test_registry_names_and_unknown_names():
    assert {"default", "classical", "sift", "loftr"} <= set(available_matchers())
    assert isinstance(get_matcher("classical"), Matcher)
    assert get_matcher("sift").name == "sift"
    with pytest.raises(ValueError, match="classical"):
        get_matcher("superglue")


def test_default_is_the_learned_matcher_and_missing_bundled_weights_are_an_error(
        monkeypatch, tmp_path):
    assert get_matcher().name == "loftr"
    monkeypatch.setattr(matchers, "DEFAULT_WEIGHTS", tmp_path / "absent.safetensors")
    with pytest.raises(ModelLoadError, match="bundled model is missing"):
        get_matcher()


def test_the_result_carries_the_searchs_hypothesis_and_says_when_the_pair_was_hard(
        synthetic_result):
    plain = synthetic_result[0]
    assert isinstance(plain.hypothesis, Hypothesis) and plain.hypothesis.tried == 1
    assert plain.hypothesis.rotation_deg == 0 and plain.hypothesis_note() == ""
    hard = replace(plain, hypothesis=Hypothesis(rotation_deg=90, pitch_variant=1,
                                                shift_px=(110, -110), inliers=32, support=132,
                                                tried=20))
    assert hard.to_json()["hypothesis"] == {"rotation_deg": 90, "pitch_variant": 1,
                                            "shift_px": [110, -110], "inliers": 32,
                                            "support": 132, "tried": 20, "zoom": 1.0,
                                            "off_scale": False}
    note = hard.hypothesis_note()
    assert note.startswith("hard pair: 20 input variants tried")
    assert "turned 90 deg" in note and "pixel pitch" in note and "(110, -110)" in note
    assert "132 matches agree" in note


def test_a_result_without_a_search_reports_no_hypothesis(synthetic_result):
    manual = replace(synthetic_result[0], hypothesis=None)
    assert manual.hypothesis_note() == "" and manual.to_json()["hypothesis"] == {}


def test_no_search_gives_the_matcher_the_moving_image_as_prepared_only():
    cf, fa = _fundus_pair(seed=3)
    result = register(cf, np.zeros_like(fa), "cffa", matcher=get_matcher("classical"),
                      config=RegistrationConfig(search=NO_SEARCH))
    assert result.hypothesis.tried == 1


class _Counting:
    """The classical matcher, counting its passes."""

    def __init__(self) -> None:
        self.inner, self.passes = get_matcher("classical"), 0
        self.name, self.working_side = self.inner.name, self.inner.working_side

    def match(self, fixed, moving):
        self.passes += 1
        return self.inner.match(fixed, moving)


def test_register_takes_the_images_sources_made_beforehand():
    cf, fa = _fundus_pair(seed=3)
    moving = cv2.warpPerspective(fa, _similarity(1.05, 6, -20, 10), (SIZE, SIZE))
    direct = register(cf, moving, "cffa", matcher=get_matcher("classical"))
    ahead = register(source(cf, "cf"), source(moving, "fa"), "cffa",
                     matcher=get_matcher("classical"))
    np.testing.assert_array_equal(ahead.matrix, direct.matrix)
    with pytest.raises(ValueError, match="made for fa"):
        register(cf, source(moving, "fa"), "cfoct", matcher=get_matcher("classical"))


def test_a_pair_judged_ok_at_the_first_look_costs_one_network_pass():
    cf, fa = _fundus_pair(seed=3)
    matcher = _Counting()
    result = register(cf, cv2.warpPerspective(fa, _similarity(1.05, 6, -20, 10), (SIZE, SIZE)),
                      "cffa", matcher=matcher)
    assert result.verdict.ok and matcher.passes == 1


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_pair_at_half_the_trained_scale_registers_through_a_scale_effort():
    from retreg.core.metrics import mean_corner_error
    from retreg.training.synth import render_case

    case = render_case(10_200_042, size=512)  # unseen: training seeds 0-199
    T = np.vstack([cv2.getRotationMatrix2D((255.5, 255.5), 30.0, 0.5), [0, 0, 1]])
    T[:2, 2] += (20, -15)
    warped = cv2.warpAffine(case["fa"], T[:2], (512, 512))
    alone = get_matcher("loftr", weights=matchers.DEFAULT_WEIGHTS)  # no scale-trained sibling
    for matcher, zoom in ((alone, 1.4), (get_matcher("loftr"), 1.0)):
        result = register(case["cf"], warped, "cffa", matcher=matcher)
        assert result.verdict.ok, result.verdict.reasons
        # the main network alone needs the zoom; its sibling sees the pair as given
        assert result.hypothesis.zoom == zoom and result.hypothesis.tried > 2
        assert result.hypothesis.off_scale == (matcher is not alone)
        assert ("scale-trained network" in result.hypothesis_note()) == (matcher is not alone)
        assert mean_corner_error(result.matrix, np.linalg.inv(T), 512, 512) < 5.0


def test_a_fit_at_the_known_scale_gets_no_scale_efforts_even_when_not_judged_ok(monkeypatch):
    from retreg.core import pipeline

    monkeypatch.setattr(pipeline, "assess", lambda *a: Verdict("low confidence", ("judged so",)))
    cf, fa = _fundus_pair(seed=3)
    matcher = _Counting()
    result = register(cf, cv2.warpPerspective(fa, _similarity(1.05, 6, -20, 10), (SIZE, SIZE)),
                      "cffa", matcher=matcher)
    assert result.matrix is not None and result.verdict.level == "low confidence"
    assert matcher.passes == result.hypothesis.tried < 4 * len(SearchPolicy().rotations)


def test_a_pair_no_effort_judges_ok_gets_every_effort_without_rematching():
    cf, _ = _fundus_pair(seed=3)
    blank = np.zeros_like(cf)
    matcher = _Counting()
    result = register(cf, blank, "cffa", matcher=matcher)
    alone = register(cf, blank, "cffa", matcher=get_matcher("classical"),
                     config=RegistrationConfig(search=SearchPolicy(first_look=False)))
    # the first look's pass is reused; then every turn at each scale zoom but 1 (the image as
    # given again: only a scale-trained sibling would see it anew); all reported
    assert matcher.passes == alone.hypothesis.tried == 20 + 4 * (len(SearchPolicy().scale_zooms)
                                                                 - 1)
    assert (result.status, result.reason, result.hypothesis) == (alone.status, alone.reason,
                                                                alone.hypothesis)


def test_scale_efforts_match_with_the_matchers_off_scale_sibling_and_nothing_else_does():
    cf, _ = _fundus_pair(seed=3)
    blank = np.zeros_like(cf)
    matcher, sibling = _Counting(), _Counting()
    matcher.off_scale = sibling
    result = register(cf, blank, "cffa", matcher=matcher)
    assert matcher.passes == 20  # the first look and the whole policy
    assert sibling.passes == 4 * len(SearchPolicy().scale_zooms)  # every turn at each zoom, 1 too
    assert result.hypothesis.tried == matcher.passes + sibling.passes


def test_an_off_scale_sibling_must_want_the_same_working_side():
    from retreg.core.pipeline import off_scale_matcher

    matcher, sibling = _Counting(), _Counting()
    assert off_scale_matcher(matcher) is matcher
    matcher.off_scale = sibling
    assert off_scale_matcher(matcher) is sibling
    sibling.working_side += 1
    with pytest.raises(ValueError, match="off-scale matcher works at"):
        off_scale_matcher(matcher)


@pytest.mark.skipif(not matchers.SCALE_WEIGHTS.is_file(), reason="bundled weights absent")
def test_the_bundled_learned_matcher_brings_its_scale_trained_sibling_and_given_weights_do_not(
        monkeypatch, tmp_path):
    bundled = get_matcher("default")
    assert bundled.off_scale is not None and bundled.off_scale.off_scale is None
    assert bundled.off_scale.working_side == bundled.working_side
    assert get_matcher("loftr", weights=matchers.DEFAULT_WEIGHTS).off_scale is None
    monkeypatch.setattr(matchers, "SCALE_WEIGHTS", tmp_path / "absent.safetensors")
    with pytest.raises(ModelLoadError, match="bundled model is missing.*absent"):
        get_matcher("default")


def _clip_to_photo(s: float, x0: float, y0: float) -> np.ndarray:
    return np.array([[s, 0, x0], [0, s, y0], [0, 0, 1.0]])


def test_a_result_on_a_field_clip_is_expressed_in_photo_pixels(synthetic_result):
    result, truth = synthetic_result
    to_photo = _clip_to_photo(2.0, 300.0, 250.0)
    expected = field_width(to_photo @ result.matrix, result.moving_shape)
    photo = in_photo(result, FieldClip(np.zeros((8, 8)), to_photo, 3.0, expected),
                     (2000, 2400, 3))
    np.testing.assert_allclose(photo.matrix, to_photo @ result.matrix)
    np.testing.assert_allclose(photo.matches.kpts_fixed,
                               map_points(to_photo, result.matches.kpts_fixed))
    np.testing.assert_allclose(photo.residuals, 2.0 * result.residuals)
    assert photo.fixed_shape == (2000, 2400) and photo.verdict.level == result.verdict.level
    assert photo.located["field_mm"] == 3.0 and photo.to_json()["located"]["field_mm"] == 3.0
    assert "OCTA located inside the whole photo: a 3 mm scan" in photo.located_note()


def test_a_field_far_larger_than_the_physical_prior_fails_the_verdict(synthetic_result):
    result, _ = synthetic_result
    to_photo = _clip_to_photo(2.0, 0.0, 0.0)
    width = field_width(to_photo @ result.matrix, result.moving_shape)
    photo = in_photo(result, FieldClip(np.zeros((8, 8)), to_photo, 6.0, width / 1.6), (900, 900))
    assert photo.verdict.level == "failed"
    assert any("physical prior" in r for r in photo.verdict.reasons)


def test_a_located_result_is_judged_again_in_its_clip_when_its_transform_type_changes(
        synthetic_result):
    result, _ = synthetic_result
    to_photo = _clip_to_photo(2.0, 100.0, 50.0)
    width = field_width(to_photo @ result.matrix, result.moving_shape)
    located = in_photo(result, FieldClip(np.zeros((8, 8)), to_photo, 3.0, width), (900, 900))
    again = reestimate(located, "similarity")
    in_clip = reestimate(result, "similarity")
    assert again.verdict.level == in_clip.verdict.level != "failed"
    centre = np.array([[SIZE / 2, SIZE / 2]])
    np.testing.assert_allclose(map_points(again.matrix, centre),
                               map_points(to_photo @ in_clip.matrix, centre), atol=2.0)
    wrong = in_photo(result, FieldClip(np.zeros((8, 8)), to_photo, 6.0, width / 1.6), (900, 900))
    assert reestimate(wrong, "similarity").verdict.level == "failed"


def test_only_cfocta_onto_a_whole_photo_is_located():
    cf, fa = _fundus_pair(seed=4)
    clip = np.ascontiguousarray(cf[SIZE // 4:3 * SIZE // 4, SIZE // 4:3 * SIZE // 4])
    octa = np.ascontiguousarray(fa[SIZE // 3:2 * SIZE // 3, SIZE // 3:2 * SIZE // 3])
    classical = get_matcher("classical")
    assert register(clip, octa, "cfocta", matcher=classical).located is None
    assert register(cf, fa, "cffa", matcher=classical).located is None
    whole = register(cf, octa, "cfocta", matcher=classical)
    assert whole.located is not None and whole.fixed_shape == cf.shape[:2]
    assert "locate" in whole.timings
    off = register(cf, octa, "cfocta", matcher=classical, config=RegistrationConfig(field=None))
    assert off.located is None


def _bowl(pts: np.ndarray) -> np.ndarray:
    """A curved moving -> fixed map (shift plus a bowl of up to ~9 px) no 3x3 matrix fits."""
    u = (pts - SIZE / 2) / (SIZE / 2)
    return pts + [6.0, -4.0] + 9.0 * np.stack([u[:, 0] ** 2, u[:, 1] ** 2 - 0.3 * u[:, 0]], 1)


@pytest.fixture(scope="module")
def curved_result():
    cf, fa = _fundus_pair(seed=7)
    gy, gx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    src = _bowl(np.stack([gx.ravel(), gy.ravel()], 1)).astype(np.float32)
    moving = cv2.remap(fa, src[:, 0].reshape(SIZE, SIZE), src[:, 1].reshape(SIZE, SIZE),
                       cv2.INTER_LINEAR)
    return register(cf, moving, "cffa", matcher=get_matcher("classical"), transform="quadratic")


def test_quadratic_polish_follows_a_curved_pair_that_the_homography_cannot(curved_result):
    from retreg.core.transforms import Quadratic, map_points as map_any

    res = curved_result
    assert res.ok and isinstance(res.nonrigid, Quadratic), res.polish_note
    assert res.mapping is res.nonrigid and "polish" in res.timings
    probe = np.random.default_rng(0).uniform(120, SIZE - 120, (200, 2))
    err = lambda t: np.linalg.norm(map_any(t, probe) - _bowl(probe), axis=1).mean()  # noqa: E731
    assert err(res.nonrigid) < 0.5 * err(res.matrix)
    assert err(res.nonrigid) < 1.0
    doc = res.to_json()["transform"]
    assert doc["type"] == "quadratic" and doc["global"] == "homography"
    assert doc["nonrigid"]["encoding"] == "retreg.quadratic/1"


def test_switching_between_global_and_nonrigid_types_needs_no_rematching(curved_result):
    from retreg.core.transforms import Smooth, map_points as map_any

    homography = reestimate(curved_result, "homography")
    assert homography.matches is curved_result.matches and homography.nonrigid is None
    # the polish searches around itself on the kept fine-stage pair: new NCC peaks, same fit
    smooth = reestimate(homography, "smooth")
    assert smooth.transform_type == "smooth" and isinstance(smooth.nonrigid, Smooth)
    assert smooth.hypothesis == curved_result.hypothesis
    probe = np.random.default_rng(1).uniform(120, SIZE - 120, (200, 2))
    err = np.linalg.norm(map_any(smooth.mapping, probe) - _bowl(probe), axis=1).mean()
    assert err < 1.0
    affine = reestimate(smooth, "affine")
    assert affine.nonrigid is None and affine.polish_note == ""
    assert "nonrigid" not in affine.to_json()["transform"]


def test_manual_points_fit_a_quadratic_only_when_they_support_it():
    from retreg.core.pipeline import fit_points

    moving = np.random.default_rng(1).uniform(40, SIZE - 40, (30, 2))
    est, polish = fit_points(_bowl(moving), moving, "quadratic", (SIZE, SIZE))
    assert est.ok and est.transform_type == "homography" and polish.ok
    est, polish = fit_points(_bowl(moving[:8]), moving[:8], "quadratic", (SIZE, SIZE))
    assert est.ok and not polish.ok and "too few" in polish.reason
    _, none = fit_points(_bowl(moving), moving, "affine", (SIZE, SIZE))
    assert none is None


def test_a_result_whose_residuals_are_all_nan_reports_no_median_residual(synthetic_result):
    failed = replace(synthetic_result[0], residuals=np.full_like(synthetic_result[0].residuals,
                                                                 np.nan))
    assert failed.n_inliers > 0 and failed.to_json()["median_residual_px"] is None
    assert synthetic_result[0].to_json()["median_residual_px"] == pytest.approx(
        float(np.median(synthetic_result[0].residuals[synthetic_result[0].inliers])))
