"""LoftrMatcher: the Matcher protocol over the learned model and coordinate mapping back to full
resolution (the hypothesis search it runs under is tested in test_hypotheses)."""
import cv2
import numpy as np
import pytest

from retreg.core.errors import ModelLoadError
from retreg.core.matchers import DEFAULT_WEIGHTS, get_matcher
from retreg.core.matchers.loftr import LoftrConfig, LoftrMatcher, RetRegLoFTR
from retreg.core.matchers.loftr.weights import save_weights
from retreg.core.metrics import mean_corner_error
from retreg.core.modality import prepare
from retreg.core.types import Matches
from tests.helpers import fundus_like

TINY = LoftrConfig(channels=("vessels",), working_side=96, initial_dim=8, block_dims=(8, 16, 32),
                   nhead=2, n_layers=1, match_threshold=0.0)  # random weights: keep every mutual NN


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_weights(RetRegLoFTR(TINY), tmp_path_factory.mktemp("w") / "tiny.safetensors")


def test_match_returns_full_resolution_matches_with_confidences(weights):
    matcher = LoftrMatcher.from_weights(weights)
    assert matcher.name == "loftr" and matcher.working_side == 96
    fixed = prepare(fundus_like(300, 1), "cf", matcher.working_side)
    moving = prepare(fundus_like(240, 2), "fa", matcher.working_side)
    m = matcher.match(fixed, moving)
    assert isinstance(m, Matches) and len(m) > 0
    assert np.all((m.confidence >= 0) & (m.confidence <= 1))
    assert m.kpts_fixed.max() < 300 and m.kpts_moving.max() < 240
    assert m.kpts_fixed.min() > -1 and m.kpts_moving.min() > -1


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


def test_the_fixed_images_features_are_reused_but_never_stale(weights):
    warm = LoftrMatcher.from_weights(weights)
    fixed_a = prepare(fundus_like(300, 1), "cf", warm.working_side)
    fixed_b = prepare(fundus_like(300, 3), "cf", warm.working_side)
    moving = prepare(fundus_like(240, 2), "fa", warm.working_side)
    first = warm.match(fixed_a, moving)
    again = warm.match(fixed_a, moving)  # served from the encoded fixed image
    other = warm.match(fixed_b, moving)  # another fixed image: encoded afresh
    fresh = LoftrMatcher.from_weights(weights).match(fixed_b, moving)
    for x, y in ((first, again), (other, fresh)):
        np.testing.assert_array_equal(x.kpts_fixed, y.kpts_fixed)
        np.testing.assert_array_equal(x.kpts_moving, y.kpts_moving)
    assert not np.array_equal(first.kpts_moving, other.kpts_moving)
