"""Ground-truth labels from a known transform (training/supervision.py)."""
import numpy as np

from training.supervision import apply_transform, cell_centres, coarse_fine_gt


def _rotation(deg: float, cx: float, cy: float, tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    C = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]])
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]]) @ C @ R @ np.linalg.inv(C)


def _full(h=64, w=64):
    return np.ones((h, w), bool)


def test_cell_centres_follow_the_pixel_centre_convention():
    c = cell_centres(16, 24, stride=8)
    assert c.shape == (2 * 3, 2)
    np.testing.assert_allclose(c[0], [3.5, 3.5])
    np.testing.assert_allclose(c[1], [11.5, 3.5])  # row-major: next column first
    np.testing.assert_allclose(c[3], [3.5, 11.5])


def test_identity_matches_every_cell_to_itself():
    gt_j, gt_xy1 = coarse_fine_gt(np.eye(3), _full(), _full())
    np.testing.assert_array_equal(gt_j, np.arange(64))
    np.testing.assert_allclose(gt_xy1, cell_centres(64, 64))
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
    np.testing.assert_allclose(gt_xy1, apply_transform(T, cell_centres(64, 80)), atol=1e-4)
    # the labelled image1 cell is the one containing the exact warped centre
    centres1 = cell_centres(72, 64)
    assert (np.abs(centres1[gt_j[ok]] - gt_xy1[ok]) <= 4.0).all()


def test_mutual_check_rejects_cells_whose_back_projection_leaves_the_cell():
    T = _rotation(45.0, 31.5, 31.5)
    gt_j, gt_xy1 = coarse_fine_gt(T, _full(), _full())
    landed = (gt_xy1 > -0.5).all(axis=1) & (gt_xy1 < 63.5).all(axis=1)
    kept = gt_j >= 0
    assert kept.sum() > 0 and (landed & ~kept).sum() > 0  # some landed cells fail the check
    back = apply_transform(np.linalg.inv(T), cell_centres(64, 64)[gt_j[kept]])
    own = cell_centres(64, 64)[kept]
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
