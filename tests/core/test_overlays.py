"""Warping and overlays: shapes, dtypes, tile alternation and two-colour colours."""
import numpy as np
import pytest

from retreg.core.overlays import blend, checkerboard, default_tile, difference, two_colour
from retreg.core.warp import warp_moving

H, W = 60, 90


def _pair():
    a = np.zeros((H, W, 3), np.uint8)
    a[..., 0] = 200
    b = np.full((H, W), 40000, np.uint16)  # gray 16-bit moving image
    return a, b


@pytest.mark.parametrize("fn", [checkerboard, blend, difference, two_colour])
def test_overlays_return_rgb_uint8_of_the_fixed_size(fn):
    a, b = _pair()
    out = fn(a, b)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8


def test_checkerboard_tiles_alternate_starting_with_the_fixed_image():
    a = np.zeros((H, W), np.uint8)
    b = np.full((H, W), 255, np.uint8)
    out = checkerboard(a, b, tile=20)[..., 0]
    assert out[0, 0] == 0 and out[0, 20] == 255 and out[20, 0] == 255 and out[20, 20] == 0
    assert out[19, 19] == 0 and out[59, 89] == 0


def test_blend_weights_the_two_images():
    a = np.zeros((H, W), np.uint8)
    b = np.full((H, W), 200, np.uint8)
    assert blend(a, b, 0.25)[0, 0, 0] == 50
    with pytest.raises(ValueError):
        blend(a, b, 1.5)


def test_two_colour_puts_fixed_in_magenta_and_moving_in_green():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (H, W), dtype=np.uint8)
    b = np.zeros((H, W), np.uint8)
    b[:, W // 2:] = 255
    out = two_colour(a, b)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])  # magenta = red + blue, equal
    assert out[:, : W // 2, 1].max() == 0 and out[:, W // 2 + 1:, 1].min() == 255
    assert np.corrcoef(out[..., 0].ravel(), a.ravel())[0, 1] > 0.95


def test_difference_is_zero_for_identical_images():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    assert difference(a, a).max() == 0


def test_overlay_of_different_sizes_is_a_value_error():
    with pytest.raises(ValueError, match="same size"):
        two_colour(np.zeros((10, 10)), np.zeros((10, 11)))


def test_warp_moves_content_by_the_matrix_and_keeps_dtype():
    moving = np.zeros((50, 70), np.uint16)
    moving[10, 20] = 65535
    shift = np.array([[1, 0, 5], [0, 1, 7], [0, 0, 1.0]])
    out = warp_moving(moving, shift, (H, W, 3))
    assert out.shape == (H, W) and out.dtype == np.uint16
    assert np.unravel_index(np.argmax(out), out.shape) == (17, 25)
    rgb = warp_moving(np.zeros((50, 70, 3), np.uint8), shift, (H, W))
    assert rgb.shape == (H, W, 3)


def _reference_stretch(img):
    """The overlay contract written plainly: channel mean, full 1st-99th percentile stretch."""
    g = img.astype(np.float64) / np.iinfo(img.dtype).max
    g = g.mean(axis=2) if g.ndim == 3 else g
    lo, hi = np.percentile(g, (1, 99))
    return np.clip((g - lo) / (hi - lo), 0, 1)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_fast_two_colour_and_difference_match_the_plain_float_stretch(dtype):
    rng = np.random.default_rng(2)
    top = np.iinfo(dtype).max
    yy, xx = np.mgrid[0:1100, 0:1000] / 1000.0  # > 250k px: percentiles from a subsample
    a = np.clip((xx[..., None] + rng.normal(0, 0.1, (1100, 1000, 3))) * top * 0.8, 0, top)
    b = np.clip((yy + rng.normal(0, 0.1, yy.shape)) * top * 0.8, 0, top)
    a, b = a.astype(dtype), b.astype(dtype)
    ra, rb = _reference_stretch(a), _reference_stretch(b)
    two = two_colour(a, b).astype(int)
    assert np.abs(two[..., 0] - np.round(ra * 255)).max() <= 1
    assert np.abs(two[..., 1] - np.round(rb * 255)).max() <= 1
    diff = difference(a, b)[..., 0].astype(int)
    assert np.abs(diff - np.round(np.abs(ra - rb) * 255)).max() <= 2


def test_default_tile_gives_about_eight_squares_across_the_shorter_side():
    assert default_tile((2912, 2912, 3)) == 364
    assert default_tile((320, 400)) == 40
    assert default_tile((40, 40)) == 8  # never below 8 px ...
    assert default_tile((40, 40), squares=16, minimum=1) == 2  # ... unless told
