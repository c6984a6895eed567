"""The classical fused view: detail from either input survives, fields are respected, every
input kind works."""
import cv2
import numpy as np
import pytest

from retreg.core.fusion import VIEWS, field, fused, fusion_mask, fusion_view
from retreg.core.warp import warp_moving

N = 160


def _luma(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[:, :, 0].astype(float)


def _fundus(seed=0):
    """A colour fundus-like image: reddish, a brightness gradient and some texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:N, 0:N] / N
    base = 0.35 + 0.3 * xx + 0.05 * cv2.GaussianBlur(rng.normal(0, 1, (N, N)), (0, 0), 3)
    rgb = np.stack([0.9 * base + 0.1, 0.55 * base, 0.3 * base], axis=2)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _gray(seed=1):
    rng = np.random.default_rng(seed)
    yy, _ = np.mgrid[0:N, 0:N] / N
    g = 0.3 + 0.3 * yy + 0.05 * cv2.GaussianBlur(rng.normal(0, 1, (N, N)), (0, 0), 3)
    return np.round(np.clip(g, 0, 1) * 255).astype(np.uint8)


def _line_contrast(y, col):
    """Mean of a vertical 2-px line minus the mean beside it (8 px to either side)."""
    rows = slice(20, N - 20)
    line = y[rows, col:col + 2].mean()
    side = np.concatenate([y[rows, col - 10:col - 8], y[rows, col + 10:col + 12]], axis=1).mean()
    return line - side


def _stretched_contrast(img, col):
    lo, hi = np.percentile(img, (1, 99))
    return _line_contrast(img.astype(float), col) / (hi - lo)


def test_a_thin_line_only_in_the_moving_image_keeps_most_of_its_contrast():
    fixed, moving = _fundus(), _gray()
    moving[:, 80:82] = 200  # bright, as an FA or OCTA vessel
    out = fused(fixed, moving)
    lo, hi = np.percentile(_luma(fixed), (1, 99))
    kept = _line_contrast(_luma(out), 80) / (hi - lo)  # in the fixed image's stretched units
    assert kept >= 0.8 * _stretched_contrast(moving, 80)
    plain_average = 0.5 * _stretched_contrast(moving, 80)
    assert kept > plain_average


def test_a_thin_line_only_in_the_fixed_image_keeps_most_of_its_contrast():
    fixed, moving = _fundus(), _gray()
    fixed[:, 60:62] = (90, 30, 20)  # dark, as a CF vessel
    out = fused(fixed, moving)
    assert _line_contrast(_luma(out), 60) <= 0.8 * _line_contrast(_luma(fixed), 60) < 0


@pytest.mark.parametrize("method", ["classical", "learned"])
def test_outside_the_moving_field_the_fixed_image_is_unchanged(method):
    fixed, moving = _fundus(), _gray()
    shift = np.array([[1, 0, 50], [0, 1, 0], [0, 0, 1.0]])
    warped = warp_moving(moving, shift, fixed.shape)  # no data in the left 50 columns
    out = fused(fixed, warped, method=method)
    assert not field(warped)[:, :50].any()
    np.testing.assert_array_equal(out[:, :50], fixed[:, :50])
    assert not np.array_equal(out[:, 60:], fixed[:, 60:])


@pytest.mark.parametrize("method", ["classical", "learned"])
def test_where_only_the_moving_image_has_data_it_is_shown_in_gray(method):
    fixed, moving = _fundus(), _gray()
    only_fixed = np.zeros((N, N), bool)
    only_fixed[:, :100] = True
    out = fused(fixed, moving, fixed_field=only_fixed, moving_field=np.ones((N, N), bool),
                method=method)
    right = out[:, 110:].astype(int)
    assert np.abs(right[..., 0] - right[..., 1]).max() <= 1  # gray moving: no chroma
    assert np.corrcoef(right[..., 1].ravel(), moving[:, 110:].ravel())[0, 1] > 0.99


def test_an_image_fused_with_itself_is_itself_without_seams():
    fixed = _fundus()
    shift = np.array([[1, 0, 0], [0, 1, 40], [0, 0, 1.0]])
    same = warp_moving(warp_moving(fixed, shift, fixed.shape), np.linalg.inv(shift), fixed.shape)
    out = fused(fixed, same)  # the moving field ends 40 px from the bottom, inside the fixed one
    assert np.abs(out.astype(int) - fixed.astype(int)).max() <= 3


@pytest.mark.parametrize("fixed_kind", ["rgb8", "rgb16", "gray8", "gray16", "float"])
@pytest.mark.parametrize("moving_kind", ["gray8", "gray16", "rgb8", "float"])
def test_colour_and_gray_8_and_16_bit_inputs_give_the_same_view(fixed_kind, moving_kind):
    def as_kind(img8, kind):
        img = img8 if kind.startswith("rgb") or img8.ndim == 2 else _luma(img8).astype(np.uint8)
        if kind.startswith("gray") and img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if kind.endswith("16"):
            return img.astype(np.uint16) * 257
        return img.astype(np.float32) / 255 if kind == "float" else img

    fixed8, moving8 = _fundus(), _gray()
    moving8 = cv2.cvtColor(moving8, cv2.COLOR_GRAY2RGB) if moving_kind == "rgb8" else moving8
    out = fused(as_kind(fixed8, fixed_kind), as_kind(moving8, moving_kind))
    assert out.shape == (N, N, 3) and out.dtype == np.uint8
    ref = fused(as_kind(fixed8, fixed_kind.replace("16", "8").replace("float", "gray8")),
                as_kind(moving8, moving_kind.replace("16", "8").replace("float", "gray8")))
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.mean() < 1 and diff.max() <= 6  # 8-bit vs float colour conversion rounding
    if not fixed_kind.startswith("rgb"):
        np.testing.assert_array_equal(out[..., 0], out[..., 2])  # gray in, gray out


def test_fusing_images_of_different_sizes_is_a_value_error():
    with pytest.raises(ValueError, match="same size"):
        fused(np.zeros((10, 10), np.uint8), np.zeros((10, 11), np.uint8))


@pytest.mark.parametrize("method", ["classical", "learned"])
def test_the_mask_shows_whose_detail_is_kept(method):
    fixed, moving = _fundus(), _gray()
    fixed[:, 60:62] = (90, 30, 20)  # a dark CF vessel only the fixed image has
    moving[:, 80:82] = 200  # a bright vessel only the moving image has
    shift = np.array([[1, 0, 40], [0, 1, 0], [0, 0, 1.0]])
    warped = warp_moving(moving, shift, fixed.shape)  # and no moving data left of column 40
    mask = fusion_mask(fixed, warped, method)
    assert mask.shape == (N, N) and mask.dtype == np.float32
    assert mask[:, :38].max() < 0.01
    assert mask[20:-20, 120:122].mean() > 0.9  # the moving image's line
    assert mask[20:-20, 60:62].mean() < 0.1  # the fixed image's line


def test_every_fusion_view_is_an_rgb_image_of_the_fixed_size():
    fixed, moving = _fundus(), _gray()
    for kind in VIEWS:
        img = fusion_view(kind, fixed, moving)
        assert img.shape == (N, N, 3) and img.dtype == np.uint8
    assert np.array_equal(fusion_view("fused", fixed, moving), fused(fixed, moving))


def test_an_unknown_method_or_view_is_refused():
    with pytest.raises(ValueError, match="method"):
        fused(_fundus(), _gray(), method="magic")
    with pytest.raises(ValueError, match="view"):
        fusion_view("fused-magic", _fundus(), _gray())
