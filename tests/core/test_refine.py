"""The fine stage: NCC on vessel maps pulls a nearly right transform onto the truth."""
import cv2
import numpy as np
import pytest

from retreg.core.metrics import mean_corner_error
from retreg.core.modality import prepare
from retreg.core.refine import RefineConfig, refine
from tests.helpers import vessel_lines

SIZE = 512


def _vessel_image(seed: int) -> np.ndarray:
    """float32 0/1 image of random curving lines of several widths (vessel-like)."""
    return vessel_lines(SIZE, seed, n_lines=40, steps=30, step_px=8, spread=(0.05, 0.95),
                        turn_sd=0.3).astype(np.float32)


@pytest.fixture(scope="module")
def cf_fa_pair():
    """CF-like fixed (dark vessels) and FA-like moving (bright vessels), moving -> fixed truth."""
    vessels = _vessel_image(seed=7)
    fov = np.zeros((SIZE, SIZE), np.float32)
    cv2.circle(fov, (SIZE // 2, SIZE // 2), SIZE // 2 - 6, 1.0, -1)
    cf = (0.7 - 0.45 * vessels) * fov
    fa = (0.25 + 0.6 * vessels) * fov
    truth = np.array([[1.04, 0.06, -18.0], [-0.05, 1.02, 11.0], [2e-5, -1e-5, 1.0]])
    moving = cv2.warpPerspective(fa, np.linalg.inv(truth), (SIZE, SIZE))
    to_u8 = lambda a: np.clip(a * 255, 0, 255).astype(np.uint8)  # noqa: E731
    cf_rgb = np.stack([cf, cf, 0.5 * cf], axis=2)
    fixed_p = prepare(to_u8(cf_rgb), "cf", SIZE)
    moving_p = prepare(to_u8(moving), "fa", SIZE)
    return fixed_p, moving_p, truth


def _perturbed(truth: np.ndarray, corner_shift: float, seed: int) -> np.ndarray:
    """``truth`` with each image corner moved by ``corner_shift`` px in a random direction."""
    rng = np.random.default_rng(seed)
    corners = np.array([[0, 0], [SIZE, 0], [SIZE, SIZE], [0, SIZE]], np.float32)
    angles = rng.uniform(0, 2 * np.pi, 4)
    offsets = corner_shift * np.c_[np.cos(angles), np.sin(angles)]
    fixed_corners = cv2.perspectiveTransform(corners[None], truth)[0]
    return cv2.getPerspectiveTransform(corners, (fixed_corners + offsets).astype(np.float32))


def test_refines_a_few_pixel_error_across_modalities(cf_fa_pair):
    fixed, moving, truth = cf_fa_pair
    start = _perturbed(truth, 6.0, seed=1)
    before = mean_corner_error(start, truth, SIZE, SIZE)
    out = refine(fixed, moving, start, "homography", RefineConfig(working_side=SIZE))
    assert out.accepted, out.reason
    after = mean_corner_error(out.matrix, truth, SIZE, SIZE)
    assert before > 5.0 and after < 1.0
    assert len(out.matches) >= 20 and out.inliers.sum() >= 20
    assert out.matches.kpts_fixed.shape == out.matches.kpts_moving.shape


def test_affine_refinement_also_improves(cf_fa_pair):
    fixed, moving, truth = cf_fa_pair
    start = _perturbed(truth, 5.0, seed=2)
    out = refine(fixed, moving, start, "affine", RefineConfig(working_side=SIZE))
    assert out.accepted, out.reason
    assert (mean_corner_error(out.matrix, truth, SIZE, SIZE)
            < 0.5 * mean_corner_error(start, truth, SIZE, SIZE))


def test_hopeless_start_is_rejected_and_keeps_the_input(cf_fa_pair):
    fixed, moving, truth = cf_fa_pair
    start = np.array([[1.0, 0, 90.0], [0, 1.0, -70.0], [0, 0, 1.0]]) @ truth
    out = refine(fixed, moving, start, "homography", RefineConfig(working_side=SIZE))
    assert not out.accepted and out.reason
    np.testing.assert_array_equal(out.matrix, start)


def test_register_reports_the_refined_fit_and_reestimate_reuses_it(cf_fa_pair):
    from retreg.core.matchers import get_matcher
    from retreg.core.pipeline import RegistrationConfig, reestimate, register

    fixed, moving, truth = cf_fa_pair
    args = (fixed.original, moving.original, "cffa", get_matcher("classical"), "homography")
    coarse = register(*args, config=RegistrationConfig(refine=None))
    fine = register(*args)
    assert "refine" not in coarse.timings and "refine" in fine.timings
    assert fine.ok and len(fine.matches) != len(coarse.matches)  # the refined correspondences
    assert len(fine.selected) == len(fine.matches) == len(fine.residuals)
    assert np.nanmedian(fine.residuals[fine.inliers]) < 1.0
    assert mean_corner_error(fine.matrix, truth, SIZE, SIZE) < 1.0
    again = reestimate(fine, "homography")
    assert again.matches is fine.matches
    assert mean_corner_error(again.matrix, truth, SIZE, SIZE) < 1.0


@pytest.mark.parametrize("seed", [10_050_001, 10_050_003])
def test_refines_a_cf_octa_fit_whose_capillaries_leave_few_distinct_peaks(seed):
    from retreg.training.synth import render_case

    case = render_case(seed, 512)
    start = np.array([[1.01, 0.0, -1.5], [0.0, 0.995, 2.5], [0, 0, 1.0]])  # ~3 px off identity
    fixed = prepare(case["cf_clip"], "cf", RefineConfig().working_side)
    moving = prepare(case["octa"], "octa", RefineConfig().working_side)
    assert mean_corner_error(start, np.eye(3), 512, 512) > 2.5
    out = refine(fixed, moving, start, "affine")
    assert out.accepted, out.reason
    assert mean_corner_error(out.matrix, np.eye(3), 512, 512) < 1.0
