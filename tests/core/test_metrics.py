"""FIRE protocol metrics against a worked example computed by hand."""
import math

import numpy as np
import pytest

from retreg.core.metrics import (MULTIMODAL, PairErrors, Thresholds, auc, classify,
                                 control_point_errors, mean_corner_error, summarise)

SHIFT_X10 = np.array([[1.0, 0, 10], [0, 1, 0], [0, 0, 1]])


def _pair_a() -> PairErrors:
    # moving (0,0),(10,0),(20,0),(30,0) shifted by +10 in x -> (10,0),(20,0),(30,0),(40,0).
    # fixed points are off by 0, 3, 5 (a 3-4-5 triangle) and 60 px:
    # mean = 68 / 4 = 17, median = (3 + 5) / 2 = 4, max = 60.
    moving = [[0, 0], [10, 0], [20, 0], [30, 0]]
    fixed = [[10, 0], [20, 3], [34, 3], [40, 60]]
    return control_point_errors(SHIFT_X10, moving, fixed)


def _pair_b() -> PairErrors:
    # identity, every fixed point 3 right and 4 down -> every error 5: mean = median = max = 5.
    moving = np.array([[5.0, 5], [50, 80], [100, 7]])
    return control_point_errors(np.eye(3), moving, moving + [3, 4])


def _pair_c() -> PairErrors:
    return control_point_errors(None, [[0, 0], [1, 1]], [[0, 0], [1, 1]])


def _pair_d() -> PairErrors:
    # identity, errors 20, 25, 30 along x: mean = median = 25, max = 30.
    moving = np.array([[0.0, 0], [0, 10], [0, 20]])
    return control_point_errors(np.eye(3), moving, moving + [[20, 0], [25, 0], [30, 0]])


def test_errors_are_distances_after_warping_the_moving_points():
    a = _pair_a()
    np.testing.assert_allclose(a.per_point, [0, 3, 5, 60])
    assert (a.mean, a.median, a.max) == (17.0, 4.0, 60.0)
    assert not a.failed


def test_no_matrix_is_a_failed_pair_with_infinite_errors():
    c = _pair_c()
    assert c.failed and c.mean == math.inf
    assert classify(c) == "failed"


def test_classification_uses_max_and_median_thresholds():
    assert classify(_pair_a()) == "inaccurate"  # max 60 > 50
    assert classify(_pair_b()) == "acceptable"  # 5 / 5
    assert classify(_pair_d()) == "inaccurate"  # median 25 > 20 while max 30 <= 50
    # the multimodal limits (100 / 60) accept both
    assert classify(_pair_a(), MULTIMODAL) == "acceptable"
    assert classify(_pair_d(), Thresholds(max_px=30, median_px=25)) == "acceptable"


def test_auc_counts_pairs_strictly_below_each_threshold():
    # mean errors 17, 5, inf, 25 over t = 1..25:
    #   5 < t for t = 6..25 (20 thresholds), 17 < t for t = 18..25 (8), 25 < t never, inf never
    #   AUC = (20 + 8) / (25 thresholds * 4 pairs) = 0.28
    means = [_pair_a().mean, _pair_b().mean, _pair_c().mean, _pair_d().mean]
    assert auc(means) == pytest.approx(0.28)
    assert auc([0.0, 0.5]) == 1.0
    assert math.isnan(auc([]))


def test_summary_gives_shares_and_auc_per_category_and_their_mean():
    errs = [_pair_a(), _pair_b(), _pair_c(), _pair_d()]
    s = summarise(["S", "S", "P", "P"], errs)
    # S: pairs a (inaccurate) and b (acceptable); AUC = (20 + 8) / (25 * 2) = 0.56
    assert s.categories["S"].n == 2
    assert (s.categories["S"].failed, s.categories["S"].inaccurate,
            s.categories["S"].acceptable) == (0.0, 0.5, 0.5)
    assert s.categories["S"].auc == pytest.approx(0.56)
    # P: pair c (failed) and d (inaccurate); no mean error below any t -> AUC 0
    assert (s.categories["P"].failed, s.categories["P"].inaccurate,
            s.categories["P"].acceptable) == (0.5, 0.5, 0.0)
    assert s.categories["P"].auc == 0.0
    assert s.mauc == pytest.approx((0.56 + 0.0) / 2)


def test_a_matrix_sending_points_to_infinity_counts_as_infinite_error():
    singular = np.array([[1.0, 0, 0], [0, 1, 0], [1, 0, 0]])  # w = x: x = 0 goes to infinity
    e = control_point_errors(singular, [[0, 5], [2, 5]], [[0, 5], [2, 5]])
    assert e.per_point[0] == math.inf and not e.failed


def test_mismatched_control_points_are_rejected():
    with pytest.raises(ValueError, match="same non-zero number"):
        control_point_errors(np.eye(3), [[0, 0]], [[0, 0], [1, 1]])


def test_mean_corner_error_of_known_transforms():
    shift = np.array([[1.0, 0, 3], [0, 1, 4], [0, 0, 1]])
    assert mean_corner_error(shift, np.eye(3), 100, 50) == pytest.approx(5.0)
    # scaling by 2 about the origin, corners (0,0) (10,0) (10,20) (0,20):
    # offsets 0, 10, sqrt(10^2 + 20^2), 20
    expected = (0 + 10 + math.sqrt(500) + 20) / 4
    assert mean_corner_error(np.diag([2.0, 2, 1]), np.eye(3), 11, 21) == pytest.approx(expected)
    assert mean_corner_error(None, np.eye(3), 11, 21) == math.inf
