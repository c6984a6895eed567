"""One pixel convention: centres at integer coordinates, cells of ``stride`` pixels."""
import numpy as np
import pytest

from retreg.core.geometry import (cell_centres, cell_index, corners, map_points, pad_to_multiple,
                                  linear_shape, rescale_matrix, rescale_points, residuals,
                                  round_up)


def test_map_points_divides_by_w_and_broadcasts_over_a_batch_of_matrices():
    shift = np.array([[1.0, 0, 2], [0, 1, -1], [0, 0, 1]])
    persp = np.array([[2.0, 0, 0], [0, 2, 0], [0, 0, 2]])  # w = 2: the identity after division
    pts = np.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(map_points(shift, pts), [[2, -1], [5, 3]])
    batch = map_points(np.stack([shift, persp]), pts)
    assert batch.shape == (2, 2, 2)
    np.testing.assert_allclose(batch[1], pts)


def test_a_point_sent_to_infinity_is_not_finite():
    to_infinity = np.array([[1.0, 0, 0], [0, 1, 0], [1, 0, 0]])  # w = x
    assert not np.isfinite(map_points(to_infinity, np.array([[0.0, 5.0]]))).all()


def test_residuals_are_fixed_image_distances():
    shift = np.array([[1.0, 0, 3], [0, 1, 4], [0, 0, 1]])
    np.testing.assert_allclose(residuals(shift, np.zeros((2, 2)), [[0, 0], [3, 4]]), [5, 0])


def test_corners_are_the_corner_pixel_centres():
    np.testing.assert_array_equal(corners(4, 3), [[0, 0], [3, 0], [3, 2], [0, 2]])


def test_cell_centres_count_cells_and_sit_mid_cell():
    c = cell_centres(2, 3, stride=8)  # 2 rows x 3 columns of cells = a 16 x 24 px image
    assert c.shape == (2 * 3, 2) and c.dtype == np.float64
    np.testing.assert_allclose(c[0], [3.5, 3.5])
    np.testing.assert_allclose(c[1], [11.5, 3.5])  # row-major: next column first
    np.testing.assert_allclose(c[3], [3.5, 11.5])


def test_cell_index_inverts_cell_centres_and_flags_points_outside():
    c = cell_centres(3, 4, 8)
    idx, inside = cell_index(c, 3, 4, 8)
    np.testing.assert_array_equal(idx, np.arange(12))
    assert inside.all()
    # pixels span [-0.5, W - 0.5): the first cell starts half a pixel left of x = 0
    idx, inside = cell_index(np.array([[-0.5, 0.0], [-0.51, 0.0], [31.49, 23.49], [31.5, 0]]),
                             3, 4, 8)
    np.testing.assert_array_equal(idx, [0, -1, 11, -1])
    np.testing.assert_array_equal(inside, [True, False, True, False])


@pytest.mark.parametrize("scale", [(2.0, 3.0), (0.25, 0.5)])
def test_rescaling_keeps_pixel_centres_aligned(scale):
    pts = np.array([[0.0, 0.0], [10.0, 7.0]])
    np.testing.assert_allclose(rescale_points(pts, scale), map_points(rescale_matrix(scale), pts))
    # the centre of the first pixel's footprint: pixel 0 of the coarse image covers
    # [-0.5, s - 0.5) of the fine one
    np.testing.assert_allclose(rescale_points([[-0.5, -0.5]], scale), [[-0.5, -0.5]])
    back = rescale_points(rescale_points(pts, scale), 1 / np.asarray(scale))
    np.testing.assert_allclose(back, pts)


def test_pad_to_multiple_pads_bottom_right_with_zeros():
    a = np.ones((2, 9, 17), np.float32)
    p = pad_to_multiple(a, 8)
    assert p.shape == (2, 16, 24) and p.dtype == np.float32
    assert p[:, :9, :17].all() and not p[:, 9:].any() and not p[:, :, 17:].any()
    assert pad_to_multiple(np.ones((8, 16)), 8).shape == (8, 16)
    assert [round_up(n, 8) for n in (1, 8, 9)] == [8, 8, 16]


def test_linear_shape_measures_scale_anisotropy_and_shear():
    scale, aniso, shear = linear_shape(np.array([[2.0, 0, 5], [0, 2.0, 7], [0, 0, 1]]))
    assert scale == pytest.approx(2.0) and aniso == pytest.approx(1.0) and shear < 1e-6
    scale, aniso, shear = linear_shape(np.array([[1.0, 0.5, 0], [0, 1.0, 0], [0, 0, 1]]))
    assert aniso > 1.5 and shear == pytest.approx(np.degrees(np.arctan(0.5)), abs=0.1)
