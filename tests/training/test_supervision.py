"""Ground-truth labels from a known transform (training/supervision.py)."""
import numpy as np

from retreg.core.geometry import cell_centres, map_points
from retreg.training.supervision import coarse_fine_gt, unmatched_cells


def _rotation(deg: float, cx: float, cy: float, tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    C = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]])
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]]) @ C @ R @ np.linalg.inv(C)


def _full(h=64, w=64):
    return np.ones((h, w), bool)


def test_identity_matches_every_cell_to_itself():
    gt_j, gt_xy1 = coarse_fine_gt(np.eye(3), _full(), _full())
    np.testing.assert_array_equal(gt_j, np.arange(64))
    np.testing.assert_allclose(gt_xy1, cell_centres(8, 8, 8))
    assert gt_j.dtype == np.int64 and gt_xy1.dtype == np.float32


def test_whole_cell_shift_moves_labels_and_drops_cells_that_leave_image1():
    T = np.array([[1, 0, 16], [0, 1, 8], [0, 0, 1.0]])  # 2 cells right, 1 cell down
    gt_j, gt_xy1 = coarse_fine_gt(T, _full(), _full())
    grid = gt_j.reshape(8, 8)
    assert grid[0, 0] == 1 * 8 + 2
    assert (grid[:, 6:] == -1).all() and (grid[7, :] == -1).all()
    assert (grid[:7, :6] >= 0).all()
    np.testing.assert_allclose(gt_xy1[0], [3.5 + 16, 3.5 + 8])


def test_labels_agree_with_the_transform():
    T = _rotation(33.0, 40.0, 30.0, tx=3.0, ty=-5.0)
    T[:2, :2] *= 1.1
    gt_j, gt_xy1 = coarse_fine_gt(T, _full(64, 80), _full(72, 64))
    ok = gt_j >= 0
    assert ok.sum() > 10
    np.testing.assert_allclose(gt_xy1, map_points(T, cell_centres(8, 10, 8)), atol=1e-4)
    # the labelled image1 cell is the one containing the exact warped centre
    centres1 = cell_centres(9, 8, 8)
    assert (np.abs(centres1[gt_j[ok]] - gt_xy1[ok]) <= 4.0).all()


def test_mutual_check_rejects_cells_whose_back_projection_leaves_the_cell():
    T = _rotation(45.0, 31.5, 31.5)
    gt_j, gt_xy1 = coarse_fine_gt(T, _full(), _full())
    landed = (gt_xy1 > -0.5).all(axis=1) & (gt_xy1 < 63.5).all(axis=1)
    kept = gt_j >= 0
    assert kept.sum() > 0 and (landed & ~kept).sum() > 0  # some landed cells fail the check
    back = map_points(np.linalg.inv(T), cell_centres(8, 8, 8)[gt_j[kept]])
    own = cell_centres(8, 8, 8)[kept]
    assert (np.abs(back - own) <= 4.0).all()


def test_invalid_pixels_in_either_mask_give_no_label():
    mask0 = _full()
    mask0[:, :32] = False
    mask1 = _full()
    mask1[:16, :] = False
    gt_j, _ = coarse_fine_gt(np.eye(3), mask0, mask1)
    grid = gt_j.reshape(8, 8)
    assert (grid[:, :4] == -1).all() and (grid[:2, :] == -1).all()
    assert (grid[2:, 4:] >= 0).all()


def test_batched_call_equals_per_item_calls():
    Ts = np.stack([_rotation(a, 31.5, 31.5) for a in (-80.0, 10.0, 45.0)])
    m0 = np.stack([_full()] * 3)
    m1 = np.stack([_full()] * 3)
    m1[1, 40:, :] = False
    gt_j, gt_xy1 = coarse_fine_gt(Ts, m0, m1)
    for b in range(3):
        j, xy = coarse_fine_gt(Ts[b], m0[b], m1[b])
        np.testing.assert_array_equal(gt_j[b], j)
        np.testing.assert_allclose(gt_xy1[b], xy)


def test_no_cell_is_unmatched_when_both_images_show_the_same_field():
    un0, un1 = unmatched_cells(np.eye(3), _full(), _full())
    assert un0.shape == (64,) and un1.shape == (64,)
    assert not un0.any() and not un1.any()


def test_cells_shifted_out_of_the_other_image_are_unmatched_beyond_a_one_cell_margin():
    T = np.array([[1, 0, 32], [0, 1, 0], [0, 0, 1.0]])  # 4 cells right
    un0, un1 = unmatched_cells(T, _full(), _full())
    g0, g1 = un0.reshape(8, 8), un1.reshape(8, 8)
    # image0 columns 4..7 land at x >= 64: column 4 is within the margin, 5..7 are beyond it
    assert not g0[:, :5].any() and g0[:, 5:].all()
    # image1 columns 0..3 come from x < 0 in image0: column 3 is within the margin
    assert g1[:, :3].all() and not g1[:, 3:].any()


def test_cells_outside_their_own_field_of_view_are_never_labelled():
    T = np.array([[1, 0, 32], [0, 1, 0], [0, 0, 1.0]])
    mask0 = _full()
    mask0[:, 48:] = False  # image0's own background: columns 6, 7
    un0, _ = unmatched_cells(T, mask0, _full())
    g0 = un0.reshape(8, 8)
    assert g0[:, 5].all() and not g0[:, 6:].any()


def test_cells_landing_on_the_other_images_background_are_unmatched():
    mask1 = _full()
    mask1[:, :24] = False  # image1 shows nothing left of x = 24
    un0, un1 = unmatched_cells(np.eye(3), _full(), mask1)
    g0 = un0.reshape(8, 8)
    # centres 3.5 and 11.5 are more than a cell (8 px) from image1's field; 19.5 is not
    assert g0[:, :2].all() and not g0[:, 2:].any()
    assert not un1.any()  # image1's background cells are its own background
