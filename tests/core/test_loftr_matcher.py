"""LoftrMatcher: the Matcher protocol over the learned model, coordinate mapping back to full
resolution, the rotation / pitch / shift hypotheses and their vote."""
import cv2
import numpy as np
import pytest

from retreg.core.errors import ModelLoadError
from retreg.core.matchers import DEFAULT_WEIGHTS, get_matcher
from retreg.core.matchers.loftr import LoftrConfig, LoftrMatcher, RetRegLoFTR
from retreg.core.matchers.loftr.matcher import (ROTATIONS, SHIFT_DIRECTIONS, SHIFT_FRACTIONS,
                                         _rotate_points_back, _Scored, at_pitch, shifted,
                                         vote)
from retreg.core.matchers.loftr.weights import save_weights
from retreg.core.metrics import mean_corner_error
from retreg.core.modality import prepare
from retreg.core.types import Matches

TINY = LoftrConfig(channels=("vessels",), working_side=96, initial_dim=8, block_dims=(8, 16, 32),
                   nhead=2, n_layers=1, match_threshold=0.0)  # random weights: keep every mutual NN


def _fundus_like(size: int, seed: int = 0) -> np.ndarray:
    """A gray disc with dark random vessels-like curves (uint8)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.uint8)
    cv2.circle(img, (size // 2, size // 2), int(size * 0.45), 170, -1)
    for _ in range(15):
        pts = rng.integers(size // 8, size * 7 // 8, size=(4, 2)).astype(np.int32)
        cv2.polylines(img, [pts], False, 60, 2)
    return img


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_weights(RetRegLoFTR(TINY), tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_points_in_a_rotated_image_map_back_to_the_original(k):
    img = np.zeros((5, 7))
    img[1, 4] = 1  # (x, y) = (4, 1)
    rotated = np.rot90(img, k)
    y, x = np.argwhere(rotated == 1)[0]
    back = _rotate_points_back(np.array([[x, y]], float), k, 7, 5)
    assert back.tolist() == [[4.0, 1.0]]


def test_match_returns_full_resolution_matches_with_confidences(weights):
    matcher = LoftrMatcher.from_weights(weights)
    assert matcher.name == "loftr" and matcher.working_side == 96
    fixed = prepare(_fundus_like(300, 1), "cf", matcher.working_side)
    moving = prepare(_fundus_like(240, 2), "fa", matcher.working_side)
    m = matcher.match(fixed, moving)
    assert isinstance(m, Matches) and len(m) > 0
    assert np.all((m.confidence >= 0) & (m.confidence <= 1))
    assert m.kpts_fixed.max() < 300 and m.kpts_moving.max() < 240
    assert m.kpts_fixed.min() > -1 and m.kpts_moving.min() > -1
    assert matcher.last_hypothesis["rotation_deg"] in ROTATIONS


def _record_runs(monkeypatch, matcher, inliers: int):
    calls = []

    def fake_run(fixed, x0, v0, moving, k, shift=(0, 0)):
        calls.append((k, moving.scale, shift))
        return _Scored(Matches.empty(), inliers, 1.0)

    monkeypatch.setattr(matcher, "_run", fake_run)
    return calls


def test_a_convincing_first_hypothesis_costs_one_pass(weights, monkeypatch):
    matcher = LoftrMatcher.from_weights(weights)
    calls = _record_runs(monkeypatch, matcher, inliers=100)
    img = _fundus_like(200)
    matcher.match(prepare(img, "cf", 96), prepare(img, "fa", 96))
    assert [c[0] for c in calls] == [0]


def test_unconvincing_pairs_try_every_rotation_and_the_fixed_pitch(weights, monkeypatch):
    matcher = LoftrMatcher.from_weights(weights)
    calls = _record_runs(monkeypatch, matcher, inliers=0)
    fixed = prepare(_fundus_like(200), "cf", 96)
    moving = prepare(_fundus_like(200)[50:150, 50:150], "oct", 96)  # smaller field, same pitch
    matcher.match(fixed, moving)
    assert sorted({c[0] for c in calls}) == [0, 1, 2, 3]
    scales = {c[1][0] for c in calls}
    assert len(scales) == 2 and moving.scale[0] in scales  # as prepared, and at the fixed pitch
    assert (scales - {moving.scale[0]}).pop() == pytest.approx(fixed.scale[0], rel=0.03)


def test_unconvincing_pairs_then_try_shifts_by_a_third_then_two_thirds_of_the_side(weights,
                                                                                   monkeypatch):
    matcher = LoftrMatcher.from_weights(weights)
    calls = _record_runs(monkeypatch, matcher, inliers=0)
    img = _fundus_like(200)
    moving = prepare(img, "fa", 96)
    matcher.match(prepare(img, "cf", 96), moving)
    shifts = [c[2] for c in calls if c[2] != (0, 0)]
    h, w = moving.work.shape
    assert SHIFT_FRACTIONS == (1 / 3, 2 / 3)
    assert shifts == [(round(ux * f * w), round(uy * f * h)) for f in SHIFT_FRACTIONS
                      for ux, uy in SHIFT_DIRECTIONS]
    assert all(c[0] == 0 for c in calls if c[2] != (0, 0))  # shifts are tried unturned
    assert [c[2] for c in calls[:4]] == [(0, 0)] * 4  # after the rotations


def _hypothesis(model: np.ndarray, n_agree: int, n_noise: int, seed: int) -> _Scored:
    """Matches of which ``n_agree`` follow ``model`` exactly and ``n_noise`` are random."""
    rng = np.random.default_rng(seed)
    moving = rng.uniform(0, 500, (n_agree + n_noise, 2))
    fixed = np.c_[moving, np.ones(len(moving))] @ model.T
    fixed = fixed[:, :2] / fixed[:, 2:]
    fixed[n_agree:] = rng.uniform(0, 500, (n_noise, 2))
    m = Matches(fixed, moving, np.full(len(moving), 0.5))
    return _Scored(m, n_agree, n_agree / len(m), m, model)


def _shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]])


def test_a_transform_found_by_several_hypotheses_outvotes_a_larger_lone_consensus():
    right, wrong = _shift(40, -25), _shift(-200, 130)
    tried = [_hypothesis(wrong, 30, 200, 0), _hypothesis(right, 20, 200, 1),
             _hypothesis(right, 18, 200, 2), _hypothesis(_shift(300, 300), 5, 200, 3)]
    win, matches, support = vote(tried, [0] * 4, threshold_px=3.0)
    assert win == 1 and support >= 38
    # the winner's matches come first, then those of the others that agree with its transform
    assert np.array_equal(matches.kpts_fixed[:len(tried[1].matches)], tried[1].matches.kpts_fixed)
    extra = matches.subset(np.arange(len(tried[1].matches), len(matches)))
    err = np.linalg.norm(np.c_[extra.kpts_moving, np.ones(len(extra))] @ right.T
                         - np.c_[extra.kpts_fixed, np.ones(len(extra))], axis=1)
    assert len(extra) >= 18 and np.all(err <= 3.0)


def test_the_vote_keeps_a_lone_hypothesis_that_nothing_contradicts():
    tried = [_hypothesis(_shift(5, 5), 25, 100, 0), _hypothesis(_shift(-90, 40), 10, 100, 1)]
    win, matches, _ = vote(tried, [0, 0], threshold_px=3.0)
    assert win == 0 and len(matches) >= len(tried[0].matches)


def test_hypotheses_of_other_rotations_do_not_vote():
    right, wrong = _shift(40, -25), _shift(-200, 130)
    tried = [_hypothesis(right, 30, 200, 0), _hypothesis(wrong, 20, 200, 1),
             _hypothesis(wrong, 18, 200, 2), _hypothesis(wrong, 18, 200, 3)]
    assert vote(tried, [0, 90, 180, 270], threshold_px=3.0)[0] == 0
    assert vote(tried, [0, 90, 90, 90], threshold_px=3.0)[0] == 1


def test_agreeing_matches_of_every_rotation_join_the_winner():
    right = _shift(40, -25)
    tried = [_hypothesis(right, 30, 200, 0), _hypothesis(right, 12, 200, 1)]
    win, matches, support = vote(tried, [0, 90], threshold_px=3.0)
    assert win == 0 and support < 42  # the turned one did not vote ...
    assert len(matches) >= len(tried[0].matches) + 12  # ... but its agreeing matches joined


def test_the_vote_reports_the_winning_hypothesis(weights, monkeypatch):
    matcher = LoftrMatcher.from_weights(weights)
    img = _fundus_like(200)
    fixed, moving = prepare(img, "cf", 96), prepare(img, "fa", 96)
    side = moving.work.shape[1]
    target, also_right = (round(side / 3), 0), (round(2 * side / 3), 0)
    right = _shift(12, 3)
    calls = []

    def fake_run(fixed, x0, v0, moving, k, shift=(0, 0)):
        calls.append(shift)
        if shift == (0, 0) and k == 0:
            return _hypothesis(_shift(-80, 0), 20, 200, 0)  # the larger lone consensus
        if shift in (target, also_right):
            return _hypothesis(right, 15, 200, len(calls))
        return _hypothesis(_shift(300, -37 * len(calls)), 3, 200, len(calls))  # each its own

    monkeypatch.setattr(matcher, "_run", fake_run)
    matcher.match(fixed, moving)
    assert matcher.last_hypothesis["shift_px"] == target
    assert matcher.last_hypothesis["tried"] == 20 and matcher.last_hypothesis["support"] >= 30


@pytest.mark.parametrize("moving_modality", ["oct", "octa"])
def test_no_shifts_are_tried_when_one_field_lies_inside_the_other(weights, monkeypatch,
                                                                 moving_modality):
    matcher = LoftrMatcher.from_weights(weights)
    calls = _record_runs(monkeypatch, matcher, inliers=0)
    img = _fundus_like(200)
    matcher.match(prepare(img, "cf", 96), prepare(img, moving_modality, 96))
    assert calls and all(c[2] == (0, 0) for c in calls)


def test_shifted_moves_every_working_array_and_keeps_the_scale():
    moving = prepare(_fundus_like(200), "fa", 96)
    for dx, dy in [(10, -7), (-20, 5)]:
        moved = shifted(moving, dx, dy)
        h, w = moving.work.shape
        for a, b in [(moving.work, moved.work), (moving.vessels, moved.vessels),
                     (moving.fov, moved.fov)]:
            assert b.shape == a.shape and b.dtype == a.dtype
            np.testing.assert_array_equal(b[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)],
                                          a[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)])
        assert moved.scale == moving.scale and not moved.fov[:, :max(dx, 0)].any()


def test_points_found_in_a_shifted_moving_image_map_back_to_the_original(weights, monkeypatch):
    import torch
    from types import SimpleNamespace

    matcher = LoftrMatcher.from_weights(weights)
    fixed = prepare(_fundus_like(300, 1), "cf", matcher.working_side)
    moving = prepare(_fundus_like(240, 2), "fa", matcher.working_side)
    found = SimpleNamespace(kpts0=torch.tensor([[20.0, 30.0]]), kpts1=torch.tensor([[50.0, 40.0]]),
                            conf=torch.tensor([0.9]))
    monkeypatch.setattr(matcher.model, "match", lambda *a, **k: found)
    x0, v0 = matcher._input(fixed, 0)
    scored = matcher._run(fixed, x0, v0, moving, 0, (12, -9))
    np.testing.assert_allclose(scored.matches.kpts_moving, moving.to_full([[50.0 - 12, 40.0 + 9]]))
    np.testing.assert_allclose(scored.matches.kpts_fixed, fixed.to_full([[20.0, 30.0]]))


def test_at_pitch_resamples_the_moving_image_to_the_requested_scale():
    moving = prepare(_fundus_like(200)[40:160, 40:160], "fa", 96)
    again = at_pitch(moving, (2.0, 2.0))
    assert again.work.shape == (60, 60) and again.vessels.shape == (60, 60)
    assert again.scale == pytest.approx((2.0, 2.0))


def test_registry_builds_the_matcher_from_given_weights(weights):
    assert isinstance(get_matcher("loftr", weights=weights), LoftrMatcher)


def test_missing_weights_raise_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        LoftrMatcher.from_weights(tmp_path / "absent.safetensors")


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="bundled weights not exported yet")
@pytest.mark.parametrize("mode,angle", [("cffa", 30.0), ("cffa", 150.0), ("cfocta", -60.0)])
def test_bundled_model_registers_an_unseen_rotated_synthetic_pair(mode, angle):
    from retreg.core.pipeline import register
    from retreg.training.synth import render_case

    case = render_case(10_200_000 + int(angle), size=512)
    fixed, moving = (case["cf"], case["fa"]) if mode == "cffa" else (case["cf_clip"], case["octa"])
    T = np.vstack([cv2.getRotationMatrix2D((255.5, 255.5), angle, 1.0), [0, 0, 1]])
    warped = cv2.warpAffine(moving, T[:2], (512, 512))
    result = register(fixed, warped, mode, matcher=get_matcher("loftr"))
    assert result.ok, result.reason
    assert mean_corner_error(result.matrix, np.linalg.inv(T), 512, 512) < 5.0
