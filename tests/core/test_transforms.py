"""Non-rigid transforms: fitting under the evidence guard, inverse, warp, composition, JSON."""
import numpy as np
import pytest

from retreg.core.estimation import fit_least_squares
from retreg.core.transforms import (Quadratic, Smooth, after, fingerprint, fit_polish, from_json,
                                    inverse_map, inverse_points, map_points, residuals)
from retreg.core.warp import warp_moving

SIDE = 1000
H = np.array([[1.02, 0.03, 12.0], [-0.02, 0.99, -8.0], [1e-6, -2e-6, 1.0]])


def _curved(pts: np.ndarray) -> np.ndarray:
    """A known curved moving -> fixed map: H plus a bowl of up to ~20 px."""
    base = map_points(H, pts)
    u = (pts - SIDE / 2) / (SIDE / 2)
    return base + 10.0 * np.stack([u[:, 0] ** 2 + 0.5 * u[:, 0] * u[:, 1], u[:, 1] ** 2], axis=1)


def _smooth_bump(pts: np.ndarray) -> np.ndarray:
    """``_curved`` plus a local Gaussian bump no polynomial follows."""
    d = np.exp(-np.sum((pts - [650, 350]) ** 2, axis=1) / (2 * 120.0 ** 2))
    return _curved(pts) + 8.0 * d[:, None] * np.array([1.0, -0.6])


def _samples(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(50, SIDE - 50, (n, 2))


def test_quadratic_fit_recovers_a_curved_map_that_no_homography_fits():
    moving = _samples(200)
    fixed = _curved(moving) + np.random.default_rng(1).normal(0, 0.3, (200, 2))
    fit = fit_polish("quadratic", moving, fixed, H, (SIDE, SIDE))
    assert fit.ok, fit.reason
    probe = _samples(500, seed=9)
    err = np.linalg.norm(map_points(fit.transform, probe) - _curved(probe), axis=1)
    assert err.mean() < 0.2
    best_h = fit_least_squares(moving, fixed, "homography")
    assert np.linalg.norm(map_points(best_h, probe) - _curved(probe), axis=1).mean() > 1.0


def test_smooth_polish_cuts_a_local_deformation_error_to_a_third():
    moving = _samples(400)
    fixed = _smooth_bump(moving) + np.random.default_rng(2).normal(0, 0.3, (400, 2))
    quad = fit_polish("quadratic", moving, fixed, H, (SIDE, SIDE))
    smooth = fit_polish("smooth", moving, fixed, H, (SIDE, SIDE))
    assert smooth.ok, smooth.reason
    probe = _samples(500, seed=9)
    truth = _smooth_bump(probe)
    err = {name: np.linalg.norm(map_points(t, probe) - truth, axis=1).mean()
           for name, t in (("global", H), ("quadratic", quad.transform),
                           ("smooth", smooth.transform))}
    assert err["smooth"] < err["global"] / 3
    assert err["smooth"] < err["quadratic"]


def test_polish_is_refused_without_enough_well_spread_evidence():
    moving = _samples(200)
    fixed = _curved(moving)
    few = fit_polish("quadratic", moving[:8], fixed[:8], H, (SIDE, SIDE))
    assert not few.ok and "too few" in few.reason
    line = np.stack([np.linspace(50, 950, 60), np.linspace(100, 130, 60)], axis=1)
    collinear = fit_polish("quadratic", line, _curved(line), H, (SIDE, SIDE))
    assert not collinear.ok and "line" in collinear.reason


def test_polish_is_refused_when_a_homography_explains_the_points_as_well():
    moving = _samples(150)
    fixed = map_points(H, moving) + np.random.default_rng(3).normal(0, 1.0, (150, 2))
    fit = fit_polish("quadratic", moving, fixed, H, (SIDE, SIDE))
    assert not fit.ok and "no better than a homography" in fit.reason


def test_trimmed_fit_ignores_gross_outliers():
    moving = _samples(200)
    fixed = _curved(moving)
    fixed[:20] += 40.0
    fit = fit_polish("quadratic", moving, fixed, H, (SIDE, SIDE))
    assert fit.ok and not fit.inliers[:20].any() and fit.inliers[20:].all()
    assert residuals(fit.transform, moving[20:], fixed[20:]).max() < 0.1


def test_unknown_polish_kind_is_refused():
    with pytest.raises(ValueError, match="non-rigid"):
        fit_polish("tps", _samples(50), _samples(50), H, (SIDE, SIDE))


@pytest.mark.parametrize("kind", ["quadratic", "smooth"])
def test_inverse_round_trips_and_composition_applies_after(kind):
    moving = _samples(400)
    t = fit_polish(kind, moving, _smooth_bump(moving), H, (SIDE, SIDE)).transform
    probe = _samples(300, seed=4)
    np.testing.assert_allclose(inverse_points(t, map_points(t, probe)), probe, atol=0.05)
    clip_to_photo = np.array([[2.0, 0, 100.0], [0, 2.0, 40.0], [0, 0, 1.0]])
    np.testing.assert_allclose(map_points(after(clip_to_photo, t), probe),
                               map_points(clip_to_photo, map_points(t, probe)), atol=1e-9)
    assert fingerprint(t) != fingerprint(after(clip_to_photo, t))


def test_json_round_trip_and_malformed_encodings():
    moving = _samples(400)
    t = fit_polish("smooth", moving, _smooth_bump(moving), H, (SIDE, SIDE)).transform
    back = from_json(t.to_json(), H)
    assert isinstance(back, Smooth) and isinstance(back.base, Quadratic)
    probe = _samples(50, seed=5)
    np.testing.assert_allclose(map_points(back, probe), map_points(t, probe), atol=1e-9)
    with pytest.raises(ValueError, match="unknown"):
        from_json({"encoding": "retreg.tps/9"}, H)
    with pytest.raises(ValueError, match="malformed|coef"):
        from_json({"encoding": "retreg.quadratic/1", "coef": [[1, 2]]}, H)
    with pytest.raises(ValueError, match="malformed"):
        from_json({"encoding": "retreg.quadratic/1"}, H)


def test_warp_moves_a_dot_where_the_quadratic_sends_it():
    moving = _samples(200)
    t = fit_polish("quadratic", moving, _curved(moving), H, (SIDE, SIDE)).transform
    img = np.zeros((SIDE, SIDE), np.uint8)
    dot = np.array([[700.0, 300.0]])
    img[298:303, 698:703] = 255
    warped = warp_moving(img, t, (SIDE, SIDE))
    ys, xs = np.nonzero(warped > 100)
    np.testing.assert_allclose([xs.mean(), ys.mean()], map_points(t, dot)[0], atol=0.5)
    mx, my = inverse_map(t, (SIDE, SIDE))
    assert mx.shape == (SIDE, SIDE) and mx.dtype == np.float32
