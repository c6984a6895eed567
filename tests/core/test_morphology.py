"""The fast elliptic erosion the fine stage uses gives exactly OpenCV's mask."""
import cv2
import numpy as np
import pytest

from retreg.core.morphology import erode_ellipse


def _masks(seed: int):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(30, 260, 2))
    disc = np.zeros((h, w), np.uint8)
    cv2.circle(disc, (int(rng.integers(0, w)), int(rng.integers(0, h))),
               int(rng.integers(10, 200)), 1, -1)  # may run off the frame
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(rng.integers(0, max(h, w), (7, 2)).astype(np.int32)), 1)
    speckled = (rng.random((h, w)) > 0.01).astype(np.uint8)  # isolated holes everywhere
    return disc, hull, speckled


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("radius", [3, 8, 21, 32, 56])
def test_erode_ellipse_equals_opencvs_erosion_by_the_elliptic_kernel(seed, radius):
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    for mask in _masks(seed):
        np.testing.assert_array_equal(erode_ellipse(mask, radius), cv2.erode(mask, kernel) > 0)


def test_a_full_mask_stays_full_and_an_empty_one_empty():
    assert erode_ellipse(np.ones((50, 70), bool), 20).all()
    assert not erode_ellipse(np.zeros((50, 70), bool), 20).any()
