"""Real annotated pairs: H_computed from noisy clicks, rejection reasons, the split by shared
image, and the pre-aligned training items with their anchor labels."""
import cv2
import numpy as np
import pytest

from retreg.core.annotations import Annotation, ImageRef, PointPair, export_realpair
from retreg.core.errors import DatasetError
from retreg.core.geometry import cell_centres, map_points
from retreg.core.metrics import mean_corner_error
from retreg.training.augment import AugmentConfig
from retreg.training.datasets import AffinePairDataset
from retreg.training.realpairs import (AnchoredItems, HComputed, RealPair, RealPairSource, compute_h,
                                       load_realpairs, split_by_image)

H_TRUE = np.array([[0.95, -0.20, 40.0], [0.18, 0.97, -25.0], [2e-5, -1e-5, 1.0]])  # moving->fixed


def _points(rng, n, side=500.0):
    moving = rng.uniform(50, side - 50, (n, 2))
    return map_points(H_TRUE, moving), moving


def test_h_computed_recovers_the_transform_from_noisy_clicks_and_flags_a_misclick():
    rng = np.random.default_rng(0)
    fixed, moving = _points(rng, 15)
    fixed = fixed + rng.normal(0, 1.0, fixed.shape)
    fixed[3] += (60, -45)  # one misplaced click
    h = compute_h(fixed, moving, "homography", threshold_px=5.0, max_residual_px=3.0)
    assert h.ok, h.reason
    assert mean_corner_error(h.matrix, H_TRUE, 500, 500) < 3.0
    assert not h.inliers[3] and h.inliers.sum() >= 12


def test_h_computed_rejects_with_the_reason():
    rng = np.random.default_rng(1)
    fixed, moving = _points(rng, 3)
    assert "too few points" in compute_h(fixed, moving, "homography", 5.0, 3.0).reason
    line = np.c_[np.linspace(0, 400, 8), np.linspace(0, 200, 8)]
    degenerate = compute_h(map_points(H_TRUE, line), line, "homography", 5.0, 3.0)
    assert not degenerate.ok and degenerate.reason.startswith(("degenerate", "too few good"))
    fixed, moving = _points(rng, 12)
    noisy = compute_h(fixed + rng.normal(0, 4.0, fixed.shape), moving, "homography", 20.0, 1.0)
    assert noisy.reason.startswith("residual too high")


def _pair(pid, fixed_id, moving_id):
    return RealPair(pid, None, None, None, (fixed_id, moving_id), np.zeros((0, 2)),
                    np.zeros((0, 2)), HComputed(np.eye(3), np.zeros(0, bool), 0.0))


def test_split_keeps_pairs_that_share_an_image_on_one_side():
    # a-b-c share images through a chain; d and e share one; f, g, h are alone
    pairs = [_pair("a", "i1", "i2"), _pair("b", "i2", "i3"), _pair("c", "i1", "i4"),
             _pair("d", "i5", "i6"), _pair("e", "i5", "i7"), _pair("f", "i8", "i9"),
             _pair("g", "i10", "i11"), _pair("h", "i12", "i13")]
    for seed in range(10):
        train, held = split_by_image(pairs, 0.3, seed)
        assert train and held and len(train) + len(held) == len(pairs)
        train_images = {i for p in train for i in p.image_ids}
        assert not train_images & {i for p in held for i in p.image_ids}


def test_split_refuses_when_every_pair_shares_an_image():
    pairs = [_pair("a", "i1", "i2"), _pair("b", "i1", "i3")]
    with pytest.raises(DatasetError, match="share images"):
        split_by_image(pairs, 0.5)


def _export_synthetic_pair(root, pid, rng, n_points=10, size=160):
    """A textured fixed image and the moving image = fixed seen through ``G`` (fixed->moving)."""
    base = cv2.GaussianBlur(rng.uniform(0, 255, (size, size)).astype(np.float32), (0, 0), 3)
    yy, xx = np.mgrid[:size, :size]
    disc = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (0.45 * size) ** 2
    fixed = np.where(disc, 40 + 3 * (base - base.mean()) + 100, 0).clip(0, 255).astype(np.uint8)
    c = (size - 1) / 2
    a = np.deg2rad(20)
    G = (np.array([[1, 0, c + 6], [0, 1, c - 4], [0, 0, 1]])
         @ np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
         @ np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1.0]]))
    moving = cv2.warpAffine(fixed, G[:2], (size, size))
    f_pts = rng.uniform(0.3 * size, 0.7 * size, (n_points, 2))
    m_pts = map_points(G, f_pts) + rng.normal(0, 0.5, f_pts.shape)
    ann = Annotation(ImageRef("f.png", None, fixed.shape), ImageRef("m.png", None, moving.shape),
                     "cfcf", [PointPair(k, f, m) for k, (f, m) in enumerate(zip(f_pts, m_pts))])
    export_realpair(root, pid, ann, fixed, moving)
    return G


def test_load_reports_rejected_pairs_and_items_carry_anchors_that_follow_the_annotation(tmp_path):
    rng = np.random.default_rng(2)
    _export_synthetic_pair(tmp_path, "good", rng)
    _export_synthetic_pair(tmp_path, "sparse", rng, n_points=3)
    pairs, rejected = load_realpairs(tmp_path, working_side=128)
    assert [p.pair_id for p in pairs] == ["good"]
    assert rejected == [("sparse", "too few points (3 included; need at least 4)")]

    src = RealPairSource(pairs, size=128, working_side=128)
    aug = AugmentConfig.geometry_only()
    items = AnchoredItems(AffinePairDataset(src, "cfcf", size=128, channels=("vessels",),
                                            aug=aug, length=4), src)
    item = items[1]
    labelled = np.flatnonzero(item["anchor_j"] >= 0)
    assert len(labelled) >= 5
    # the anchor target of a cell = the augmentation's map of its centre, up to click noise
    mapped = map_points(item["T_0to1"], cell_centres(16, 16, 8)[labelled])
    assert np.abs(mapped - item["anchor_xy1"][labelled]).max() < 1.5
    # and the pre-aligned moving image shows the fixed content where H_computed says
    canvas = src.canvas(0)
    inside = canvas.moving > 0
    diff = np.abs(canvas.fixed.astype(float) - canvas.moving.astype(float))[inside]
    assert np.median(diff) < 12
