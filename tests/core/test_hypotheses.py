"""The hypothesis search: input variants of the moving image and their point maps, the coarse
fit that scores them, the vote, and the search order and stopping rule, for any matcher."""
from dataclasses import replace

import numpy as np
import pytest

from retreg.core.geometry import map_points
from retreg.core.hypotheses import (NO_SEARCH, CoarseFit, Effort, SearchPolicy, as_given,
                                    at_fixed_pitch, coarse_fit, efforts, moved, search, turned,
                                    vote, zoom_may_help, zoomed)
from retreg.core.matchers import get_matcher
from retreg.core.modality import prepare
from retreg.core.pipeline import RegistrationConfig, register
from retreg.core.representation import model_input
from retreg.core.types import Hypothesis, Matches
from tests.helpers import fundus_like

POLICY = SearchPolicy()
SIDE = 400


def _shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]])


@pytest.fixture(scope="module")
def pair():
    img = fundus_like(SIDE)
    fixed, moving = prepare(img, "cf", SIDE), prepare(img, "fa", SIDE)
    assert moving.scale == pytest.approx(fixed.scale)  # no pitch variant: 4 turns + 16 shifts
    return fixed, moving


def _marked(image, x: int, y: int):
    """``image`` whose working arrays are zero but for one pixel at (x, y)."""
    mark = np.zeros_like(image.work)
    mark[y, x] = 1
    return replace(image, work=mark, vessels=mark.copy(), fov=mark > 0)


@pytest.mark.parametrize("deg", [0, 90, 180, 270])
@pytest.mark.parametrize("shift", [(0, 0), (10, -7), (-20, 5)])
def test_a_pixel_of_a_turned_or_moved_variant_maps_back_to_where_it_was(deg, shift):
    moving = _marked(prepare(fundus_like(200)[40:160, 30:190], "fa", 96), x=37, y=21)
    v = turned(moved(as_given(moving), *shift), deg)
    for plane in (v.image.work, v.image.vessels, v.image.fov):
        (y, x), = np.argwhere(plane > 0)
        assert v.to_moving(np.array([[x, y]], float)).tolist() == [[37.0, 21.0]]
    assert (v.rotation_deg, v.shift_px) == (deg, shift)
    h, w = v.image.work.shape  # still a valid PreparedImage: full = work * scale
    assert v.image.original.shape[:2] == (round(h * v.image.scale[1]),
                                          round(w * v.image.scale[0]))


@pytest.mark.parametrize("deg", [0, 90, 180, 270])
def test_points_of_the_variant_at_the_fixed_pitch_map_back_to_the_moving_image(deg):
    fixed = prepare(fundus_like(200), "cf", 96)
    moving = prepare(fundus_like(200)[50:150, 40:160], "oct", 96)  # smaller field, same pitch
    v = turned(at_fixed_pitch(moving, fixed), deg)
    assert v.pitch_variant == 1 and v.image.scale == pytest.approx(
        fixed.scale if deg % 180 == 0 else fixed.scale[::-1], rel=0.03)
    pts = np.array([[3.0, 4.0], [50.5, 20.25], [70.0, 60.0]])
    full = moving.to_full(pts)
    unturned = at_fixed_pitch(moving, fixed)
    h, w = unturned.image.work.shape
    k = deg // 90
    in_variant = unturned.image.to_work(full)
    for _ in range(k):  # where rot90 puts (x, y) of an h x w array
        in_variant = np.stack([in_variant[:, 1], w - 1 - in_variant[:, 0]], 1)
        h, w = w, h
    np.testing.assert_allclose(v.to_moving(in_variant), pts, atol=1e-9)


@pytest.mark.parametrize("deg", [90, 180, 270])
def test_a_turned_variant_gives_the_network_the_turned_vessel_input(deg):
    moving = prepare(fundus_like(200)[40:160, 30:190], "fa", 96)
    np.testing.assert_array_equal(
        model_input(turned(as_given(moving), deg).image, channels=("vessels",)),
        np.rot90(model_input(moving, channels=("vessels",)), deg // 90, axes=(1, 2)))


class Scripted:
    """A matcher answering its i-th call with ``script(i, fixed, image)``; records the images."""

    name, working_side = "scripted", SIDE

    def __init__(self, script):
        self.script, self.seen = script, []

    def match(self, fixed, moving):
        self.seen.append(moving)
        return self.script(len(self.seen) - 1, fixed, moving)


def _noise(fixed, image, n: int, seed: int) -> Matches:
    rng = np.random.default_rng(seed)
    return Matches(fixed.to_full(rng.uniform(0, SIDE, (n, 2))),
                   image.to_full(rng.uniform(0, SIDE, (n, 2))), np.full(n, 0.5))


def _agreeing(fixed, v, model: np.ndarray, n: int, n_noise: int, seed: int) -> Matches:
    """``n`` matches on variant ``v`` that follow ``model`` (moving -> fixed working px) once
    mapped back to the moving image, then ``n_noise`` random ones."""
    rng = np.random.default_rng(seed)
    in_variant = rng.uniform(20, SIDE - 20, (n, 2))
    good = Matches(fixed.to_full(map_points(model, v.to_moving(in_variant))),
                   v.image.to_full(in_variant), np.full(n, 0.9))
    noise = _noise(fixed, v.image, n_noise, seed + 1000)
    return Matches(np.r_[good.kpts_fixed, noise.kpts_fixed],
                   np.r_[good.kpts_moving, noise.kpts_moving],
                   np.r_[good.confidence, noise.confidence])


def _plan(moving) -> list:
    """The variants the default policy tries on an unconvincing CF-FA pair, in order."""
    base = as_given(moving)
    h, w = moving.work.shape
    return [turned(base, d) for d in POLICY.rotations] + [
        moved(base, round(ux * f * w), round(uy * f * h))
        for f in POLICY.shift_fractions for ux, uy in POLICY.shift_directions]


def test_the_search_stops_at_the_first_convincing_variant(pair):
    fixed, moving = pair
    matcher = Scripted(lambda i, f, img: _agreeing(f, as_given(moving), _shift(5, 3), 100, 0, i))
    matches, hyp = search(matcher, fixed, moving, POLICY)
    assert len(matcher.seen) == 1 and matcher.seen[0] is moving
    assert hyp == Hypothesis(rotation_deg=0, pitch_variant=0, shift_px=(0, 0), inliers=100,
                             support=100, tried=1)
    np.testing.assert_allclose(fixed.to_work(matches.kpts_fixed),
                               map_points(_shift(5, 3), moving.to_work(matches.kpts_moving)), atol=1e-6)


def test_unconvincing_pairs_try_every_rotation_then_shifts_by_a_third_then_two_thirds(pair):
    fixed, moving = pair
    matcher = Scripted(lambda i, f, img: _noise(f, img, 40, i))
    _, hyp = search(matcher, fixed, moving, POLICY)
    plan = _plan(moving)
    assert hyp.tried == len(matcher.seen) == len(plan) == 20
    for seen, v in zip(matcher.seen, plan):
        np.testing.assert_array_equal(seen.work, v.image.work)
        np.testing.assert_array_equal(seen.fov, v.image.fov)


def test_a_memo_spares_the_matcher_every_variant_it_has_already_matched(pair):
    fixed, moving = pair
    matcher = Scripted(lambda i, f, img: _noise(f, img, 40, i))
    memo = {}
    first = search(matcher, fixed, moving, POLICY.first_look_policy(), memo)
    n_first = len(matcher.seen)
    full = search(matcher, fixed, moving, POLICY, memo)
    assert len(matcher.seen) == 20  # the first look's variant was not matched again
    fresh = Scripted(lambda i, f, img: _noise(f, img, 40, i))
    assert search(fresh, fixed, moving, POLICY)[1] == full[1]  # same as without the memo
    assert n_first == 1 and first[1].tried == 1  # 40 noise matches: no shift worth aiming


def test_the_first_look_tries_the_first_rotation_then_one_shift_aimed_at_the_overlap(pair):
    fixed, moving = pair
    offset = _shift(60, -40)  # the overlap: moving content sits 60 px left, 40 px down of it
    matcher = Scripted(lambda i, f, img: _agreeing(f, as_given(moving), offset, 30, 300, i)
                       if i == 0 else _noise(f, img, 40, i))  # 30 of 330: not convincing
    _, hyp = search(matcher, fixed, moving, POLICY.first_look_policy())
    assert len(matcher.seen) == 2 and hyp.tried == 2
    np.testing.assert_array_equal(matcher.seen[1].work, moved(as_given(moving), 60, -40).image.work)


def test_the_pipeline_looks_first_then_runs_the_whole_policy_then_each_scale_zoom():
    first, whole, *scales = efforts(POLICY)
    assert first.policy.rotations == POLICY.rotations[:1] and not first.policy.shift_fractions
    assert first.policy.aimed_shift and first.policy.zooms == POLICY.zooms
    assert whole.policy == replace(POLICY, first_look=False, scale_zooms=())
    assert [s.policy.zooms for s in scales] == [(z,) for z in POLICY.scale_zooms]
    for s in scales:
        assert s.policy.rotations == POLICY.rotations and not s.policy.shift_fractions
        assert s.policy.zoom_modalities >= {"cf", "fa", "oct", "octa"}
    # at equal verdict the whole policy's result wins, then the first look's, then a zoom's
    assert whole.preference < first.preference < min(s.preference for s in scales)
    assert efforts(NO_SEARCH) == (Effort(NO_SEARCH, 0),)
    # OCTA has its own zooms (the physical field sizes): no scale efforts
    assert [e.policy for e in efforts(POLICY, "octa")] == [first.policy, whole.policy]


@pytest.mark.parametrize("scale, zooms", [(None, {0.5, 0.7, 1.0, 1.4, 2.0}), (1.0, {1.0}),
                                          (1.3, {1.0, 1.4, 2.0}), (0.8, {1.0, 0.5, 0.7})])
def test_a_zoom_is_tried_only_where_the_fit_so_far_says_it_could_correct_the_scale(scale, zooms):
    # zoom 1 (the image as given, for a scale-trained sibling matcher) is always worth a look
    assert {z for z in POLICY.scale_zooms if zoom_may_help(scale, z, (0.9, 1.1))} == zooms


def test_a_scale_effort_zooms_a_moving_modality_the_whole_policy_never_zooms(pair):
    fixed, moving = pair  # cf / fa: not zoomed by the whole policy
    matcher = Scripted(lambda i, f, img: _noise(f, img, 40, i))
    _, hyp = search(matcher, fixed, moving, POLICY.zoom_policy(1.4))
    assert hyp.tried == len(POLICY.rotations) and hyp.zoom == 1.4
    assert all(seen.work.shape[0] == round(moving.work.shape[0] * 1.4) for seen in matcher.seen)


def test_unconvincing_pairs_of_different_pitch_also_try_each_rotation_at_the_fixed_pitch():
    fixed = prepare(fundus_like(200), "cf", 96)
    moving = prepare(fundus_like(200)[50:150, 50:150], "oct", 96)  # smaller field, same pitch
    matcher = Scripted(lambda i, f, img: _noise(f, img, 40, i))
    search(matcher, fixed, moving, POLICY)
    pitched = at_fixed_pitch(moving, fixed)
    expected = [turned(b, d).image for d in POLICY.rotations for b in (as_given(moving), pitched)]
    assert len(matcher.seen) == len(expected) == 8  # and no shifts: the OCT field lies inside
    for seen, image in zip(matcher.seen, expected):
        np.testing.assert_array_equal(seen.work, image.work)


@pytest.mark.parametrize("moving_modality", ["oct", "octa"])
def test_no_shifts_are_tried_when_one_field_lies_inside_the_other(moving_modality):
    img = fundus_like(200)
    fixed, moving = prepare(img, "cf", 96), prepare(img, moving_modality, 96)
    matcher = Scripted(lambda i, f, m: _noise(f, m, 40, i))
    _, hyp = search(matcher, fixed, moving, POLICY)
    assert hyp.tried == len(matcher.seen) <= 4 * len(POLICY.zooms) and hyp.shift_px == (0, 0)


@pytest.mark.parametrize("factor", [0.5, 0.64, 1.25])
def test_points_of_a_zoomed_variant_map_back_to_the_moving_image(factor):
    moving = prepare(fundus_like(200)[40:160, 30:190], "octa", 96)
    v = turned(zoomed(as_given(moving), factor), 90)
    h, w = moving.work.shape
    assert v.zoom == factor and v.image.work.shape[::-1] == (round(h * factor), round(w * factor))
    unturned = zoomed(as_given(moving), factor)
    pts = np.array([[3.0, 4.0], [50.5, 20.25], [70.0, 60.0]])
    in_zoomed = unturned.image.to_work(moving.to_full(pts))
    hz = unturned.image.work.shape[1]
    turned_pts = np.stack([in_zoomed[:, 1], hz - 1 - in_zoomed[:, 0]], 1)
    np.testing.assert_allclose(v.to_moving(turned_pts), pts, atol=1e-9)


def test_an_octa_field_is_tried_at_every_zoom_and_the_agreeing_zoom_wins():
    img = fundus_like(SIDE)
    fixed, moving = prepare(img, "cf", SIDE), prepare(img, "octa", SIDE)
    target = zoomed(as_given(moving), 0.64)

    def respond(i, f, image):
        if image.work.shape == target.image.work.shape:
            return _agreeing(f, target, _shift(20, 15), 80, 0, i)
        return _noise(f, image, 40, i)

    matcher = Scripted(respond)
    _, hyp = search(matcher, fixed, moving, POLICY)
    assert [s.work.shape for s in matcher.seen[:4]] == [
        zoomed(as_given(moving), z).image.work.shape for z in POLICY.zooms]
    assert hyp.zoom == 0.64 and hyp.rotation_deg == 0 and hyp.tried == len(POLICY.zooms)


def test_the_zoom_with_the_cleanest_consensus_wins_over_one_with_more_inliers():
    img = fundus_like(SIDE)
    fixed, moving = prepare(img, "cf", SIDE), prepare(img, "octa", SIDE)
    clean, crowded = zoomed(as_given(moving), 0.5), zoomed(as_given(moving), 0.64)

    def respond(i, f, image):
        if image.work.shape == clean.image.work.shape:
            return _agreeing(f, clean, _shift(20, 15), 40, 20, i)  # 40 of 60 agree
        if image.work.shape == crowded.image.work.shape:
            return _agreeing(f, crowded, _shift(26, 19), 60, 140, i)  # 60 of 200
        return _noise(f, image, 40, i)

    _, hyp = search(Scripted(respond), fixed, moving, POLICY)
    assert hyp.zoom == 0.5


def test_other_moving_modalities_are_not_zoomed(pair):
    fixed, moving = pair
    matcher = Scripted(lambda i, f, img: _noise(f, img, 40, i))
    search(matcher, fixed, moving, POLICY)
    assert all(s.work.shape in (moving.work.shape, moving.work.shape[::-1]) for s in matcher.seen)


def test_the_search_reports_the_variant_whose_transform_others_confirm(pair):
    fixed, moving = pair
    plan = _plan(moving)
    right, lone = _shift(12, 3), _shift(-80, 0)
    confirming = (4, 12)  # moved east by a third and by two thirds of the side

    def script(i, f, img):
        if i == 0:
            return _agreeing(f, plan[i], lone, 20, 30, i)  # the larger lone consensus
        if i in confirming:
            return _agreeing(f, plan[i], right, 15, 30, i)
        return _noise(f, img, 40, i)

    matches, hyp = search(Scripted(script), fixed, moving, POLICY)
    assert hyp.shift_px == plan[4].shift_px == (round(moving.work.shape[1] / 3), 0)
    assert hyp.tried == 20 and hyp.inliers == 15 and hyp.support >= 30
    work = moving.to_work(matches.kpts_moving), fixed.to_work(matches.kpts_fixed)
    agree = np.linalg.norm(map_points(right, work[0]) - work[1], axis=1) <= 1e-6
    assert agree.sum() >= 30  # the confirming variant's matches joined the winner's


def test_the_classical_matcher_goes_through_the_same_search():
    img = fundus_like(300)
    policy = SearchPolicy(rotations=(0, 90), pitch_tolerance=float("inf"), shift_fractions=())
    blank = register(img, np.zeros_like(img), "cffa", matcher=get_matcher("classical"),
                     config=RegistrationConfig(search=policy))
    # zoom 1 is left out: the classical matcher has no scale-trained sibling to look again
    assert blank.hypothesis.tried == 2 * len(policy.scale_zooms) and not blank.ok


def test_coarse_fit_finds_the_consensus_among_binned_matches():
    rng = np.random.default_rng(0)
    moving = rng.uniform(0, 500, (60, 2))
    fixed = map_points(_shift(7, -4), moving)
    fixed[40:] = rng.uniform(0, 500, (20, 2))
    fit = coarse_fit(Matches(fixed, moving, np.full(60, 0.5)), (500, 500), 3.0)
    assert len(fit.kept) == 60 and fit.inliers == 40 and fit.ratio == pytest.approx(40 / 60)
    np.testing.assert_allclose(fit.model, _shift(7, -4), atol=1e-3)  # float32 inside OpenCV


def _scored(model: np.ndarray, n_agree: int, n_noise: int, seed: int) -> CoarseFit:
    """Matches of which ``n_agree`` follow ``model`` exactly and ``n_noise`` are random."""
    rng = np.random.default_rng(seed)
    moving = rng.uniform(0, 500, (n_agree + n_noise, 2))
    fixed = map_points(model, moving)
    fixed[n_agree:] = rng.uniform(0, 500, (n_noise, 2))
    m = Matches(fixed, moving, np.full(len(moving), 0.5))
    return CoarseFit(m, np.arange(len(m)), model, n_agree, n_agree / len(m))


def test_a_transform_found_by_several_variants_outvotes_a_larger_lone_consensus():
    right, wrong = _shift(40, -25), _shift(-200, 130)
    tried = [_scored(wrong, 30, 200, 0), _scored(right, 20, 200, 1),
             _scored(right, 18, 200, 2), _scored(_shift(300, 300), 5, 200, 3)]
    win, matches, support = vote(tried, [0] * 4, threshold_px=3.0)
    assert win == 1 and support >= 38
    # the winner's matches come first, then those of the others that agree with its transform
    n = len(tried[1].matches)
    np.testing.assert_array_equal(matches.kpts_fixed[:n], tried[1].matches.kpts_fixed)
    extra = matches.subset(np.arange(n, len(matches)))
    err = np.linalg.norm(map_points(right, extra.kpts_moving) - extra.kpts_fixed, axis=1)
    assert len(extra) >= 18 and np.all(err <= 3.0)


def test_the_vote_keeps_a_lone_variant_that_nothing_contradicts():
    tried = [_scored(_shift(5, 5), 25, 100, 0), _scored(_shift(-90, 40), 10, 100, 1)]
    win, matches, _ = vote(tried, [0, 0], threshold_px=3.0)
    assert win == 0 and len(matches) >= len(tried[0].matches)


def test_variants_of_other_rotations_do_not_vote():
    right, wrong = _shift(40, -25), _shift(-200, 130)
    tried = [_scored(right, 30, 200, 0), _scored(wrong, 20, 200, 1),
             _scored(wrong, 18, 200, 2), _scored(wrong, 18, 200, 3)]
    assert vote(tried, [0, 90, 180, 270], threshold_px=3.0)[0] == 0
    assert vote(tried, [0, 90, 90, 90], threshold_px=3.0)[0] == 1


def test_agreeing_matches_of_every_rotation_join_the_winner():
    right = _shift(40, -25)
    tried = [_scored(right, 30, 200, 0), _scored(right, 12, 200, 1)]
    win, matches, support = vote(tried, [0, 90], threshold_px=3.0)
    assert win == 0 and support < 42  # the turned one did not vote ...
    assert len(matches) >= len(tried[0].matches) + 12  # ... but its agreeing matches joined


def test_a_policy_rejects_rotations_that_are_not_quarter_turns():
    with pytest.raises(ValueError, match="multiples of 90"):
        SearchPolicy(rotations=(0, 45))
