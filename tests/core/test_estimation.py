"""Robust estimation recovers known transforms through outliers and fails loudly otherwise."""
import numpy as np
import pytest

from retreg.core.estimation import estimate, estimate_with_affine_fallback, fit_least_squares
from retreg.core.geometry import map_points, residuals
from retreg.core.selection import spatial_binning
from retreg.core.types import Matches


def _similarity(scale, angle_deg, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx],
                     [scale * np.sin(a), scale * np.cos(a), ty], [0, 0, 1.0]])


TRUTH = {
    "similarity": _similarity(1.15, 12, 40, -25),
    "affine": np.array([[1.1, 0.08, 30], [-0.05, 0.92, 15], [0, 0, 1.0]]),
    "homography": np.array([[1.05, 0.04, 20], [-0.03, 0.97, -10], [4e-5, -3e-5, 1.0]]),
}


def _correspondences(matrix, n=200, outlier_share=0.5, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    moving = rng.uniform(0, 1000, (n, 2))
    fixed = map_points(matrix, moving) + rng.normal(0, noise, (n, 2))
    n_out = int(n * outlier_share)
    fixed[:n_out] = rng.uniform(0, 1000, (n_out, 2))
    return moving, fixed, np.arange(n) >= n_out


def _corner_error(m_est, m_true, side=1000.0):
    corners = np.array([[0, 0], [side, 0], [side, side], [0, side]])
    return np.linalg.norm(map_points(m_est, corners) - map_points(m_true, corners), axis=1).max()


@pytest.mark.parametrize("transform_type", list(TRUTH))
def test_recovers_known_transform_with_half_outliers(transform_type):
    moving, fixed, true_inliers = _correspondences(TRUTH[transform_type])
    est = estimate(moving, fixed, transform_type, threshold_px=3.0)
    assert est.ok, est.reason
    assert _corner_error(est.matrix, TRUTH[transform_type]) < 2.0
    assert (est.inliers == true_inliers).mean() > 0.95


def test_too_few_matches_fails_with_reason():
    est = estimate(np.zeros((3, 2)), np.zeros((3, 2)), "homography")
    assert not est.ok and est.matrix is None and "too few matches" in est.reason
    assert estimate(np.zeros((2, 2)), np.zeros((2, 2)), "affine").reason.startswith("too few")


def test_random_matches_fail_instead_of_returning_garbage():
    rng = np.random.default_rng(1)
    est = estimate(rng.uniform(0, 1000, (60, 2)), rng.uniform(0, 1000, (60, 2)), "affine",
                   threshold_px=2.0)
    assert not est.ok and est.matrix is None
    assert est.reason


def test_implausible_scale_is_rejected():
    moving, fixed, _ = _correspondences(_similarity(8.0, 0, 0, 0), outlier_share=0.0)
    est = estimate(moving, fixed, "similarity", threshold_px=3.0)
    assert not est.ok and "scale" in est.reason


def test_mirrored_mapping_is_rejected():
    mirror = np.array([[-1.0, 0, 1000], [0, 1, 0], [0, 0, 1]])
    moving, fixed, _ = _correspondences(mirror, outlier_share=0.0)
    est = estimate(moving, fixed, "affine", threshold_px=3.0)
    assert not est.ok and "mirrored" in est.reason


def test_unknown_transform_type_is_a_value_error():
    with pytest.raises(ValueError, match="similarity, affine, homography"):
        estimate(np.zeros((5, 2)), np.zeros((5, 2)), "rigid")


def test_residuals_measure_distance_in_fixed_pixels():
    m = _similarity(1.0, 0, 10, 0)
    r = residuals(m, [[0, 0], [5, 5]], [[10, 0], [15, 9]])
    np.testing.assert_allclose(r, [0.0, 4.0])


@pytest.mark.parametrize("transform_type", list(TRUTH))
def test_least_squares_fit_is_exact_on_clean_minimal_points(transform_type):
    moving = np.array([[10, 20], [900, 40], [500, 800], [100, 700]], float)
    if transform_type != "homography":
        moving = moving[:3]
    m = fit_least_squares(moving, map_points(TRUTH[transform_type], moving), transform_type)
    assert _corner_error(m / m[2, 2], TRUTH[transform_type]) < 1e-3


def test_spatial_binning_keeps_top_k_per_cell_by_confidence():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 800, (500, 2))
    conf = rng.uniform(0, 1, 500)
    m = Matches(pts, pts, conf)
    idx = spatial_binning(m, (800, 800), grid=8, top_k=3)
    cells = (pts[:, 1] // 100).astype(int) * 8 + (pts[:, 0] // 100).astype(int)
    for c in np.unique(cells):
        members = np.flatnonzero(cells == c)
        best = members[np.argsort(-conf[members])[:3]]
        assert set(best) == set(idx[cells[idx] == c])
    assert np.all(np.diff(idx) > 0)
    assert len(spatial_binning(Matches.empty(), (10, 10))) == 0


@pytest.mark.parametrize("transform_type", list(TRUTH))
def test_polish_is_the_least_squares_fit_of_the_usac_inliers(transform_type):
    moving, fixed, _ = _correspondences(TRUTH[transform_type], noise=2.0, seed=3)
    est = estimate(moving, fixed, transform_type, threshold_px=8.0, polish=True)
    assert est.ok
    expected = fit_least_squares(moving[est.inliers], fixed[est.inliers], transform_type)
    np.testing.assert_allclose(est.matrix / est.matrix[2, 2], expected / expected[2, 2],
                               rtol=1e-6, atol=1e-6)
    assert _corner_error(est.matrix, TRUTH[transform_type]) < 3.0


def _folding_trap(seed=0):
    """A true affine supported by 40 matches, plus 60 matches that agree on a folding
    homography (w changes sign across the points), so USAC's best homography is implausible."""
    rng = np.random.default_rng(seed)
    truth = TRUTH["affine"]
    good = rng.uniform(0, 1000, (40, 2))
    fold = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.5e-3, 0.0, 1.0]])
    trap = rng.uniform(0, 1000, (60, 2))
    moving = np.vstack([good, trap])
    fixed = np.vstack([map_points(truth, good), map_points(fold, trap)])
    return moving, fixed, truth


def test_folding_homography_falls_back_to_the_affine_consensus():
    moving, fixed, truth = _folding_trap()
    direct = estimate(moving, fixed, "homography", threshold_px=3.0)
    assert not direct.ok and "perspective" in direct.reason
    est = estimate_with_affine_fallback(moving, fixed, "homography", threshold_px=3.0)
    assert est.ok and est.transform_type == "homography"
    assert _corner_error(est.matrix, truth) < 1.0
    assert est.inliers[:40].all() and not est.inliers[40:].any()


def test_fallback_leaves_successful_fits_and_other_types_alone():
    moving, fixed, _ = _correspondences(TRUTH["homography"])
    direct = estimate(moving, fixed, "homography", threshold_px=3.0)
    again = estimate_with_affine_fallback(moving, fixed, "homography", threshold_px=3.0)
    np.testing.assert_array_equal(again.inliers, direct.inliers)
    np.testing.assert_allclose(again.matrix, direct.matrix)
    moving, fixed, _ = _folding_trap()
    sim = estimate_with_affine_fallback(moving, fixed, "similarity", threshold_px=3.0)
    assert sim.status == estimate(moving, fixed, "similarity", threshold_px=3.0).status
    few = estimate_with_affine_fallback(moving[:3], fixed[:3], "homography")
    assert not few.ok and "too few" in few.reason
