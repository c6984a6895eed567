"""The affine training pairs from case folders and synthetic cases (training/datasets.py,
training/augment.py)."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from retreg.core.cases import scan_cases
from retreg.core.types import Mode
from retreg.training.augment import AugmentConfig, photometric, random_affine, random_shift
from retreg.core.geometry import cell_centres, map_points
from retreg.training.datasets import MAX_KEYPOINTS, AffinePairDataset, DiskSource, SynthSource
from retreg.training.supervision import coarse_fine_gt
from retreg.training.synth import render_case
from tests.helpers import write_case

SIZE = 128


def _fake_case(seed: int, size: int = SIZE) -> dict:
    """Pixel-aligned toy modalities: a round FOV with a few straight 'vessels' (dark in CF / OCT,
    bright in FA / OCTA)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    fov = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) < (0.47 * size) ** 2
    ves = np.zeros((size, size), np.uint8)
    for _ in range(8):
        p = rng.uniform(0.1, 0.9, 4) * size
        cv2.line(ves, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), 255, int(rng.integers(2, 4)))
    ves[~fov] = 0
    v = ves > 0
    bg = 0.55 + 0.1 * np.sin(xx / 17.0)
    cf = np.stack([bg * 0.9, bg * 0.6, bg * 0.3], -1)
    cf[v] *= 0.5
    cf[~fov] = 0
    bright = np.where(v, 0.9, 0.3) * fov
    dark = np.where(v, 0.2, 0.6) * fov
    u8 = lambda a: (a * 255).astype(np.uint8)  # noqa: E731
    return {"cf": u8(cf), "fa": u8(bright), "oct": u8(dark), "octa": u8(bright), "vessels": ves}


@pytest.fixture(scope="module")
def good_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cases")
    for i in range(3):
        c = _fake_case(i)
        files = {f"{i}_cf_512.png": c["cf"], f"{i}_fa_gen.png": c["fa"],
                 f"{i}_oct_gen.png": c["oct"], f"{i}_cf_gen_clip_512.png": c["cf"],
                 f"{i}_octa_gen.png": c["octa"]}
        if i == 0:  # only case 0 has generator side files
            files[f"{i}_vessels.png"] = c["vessels"]
        write_case(root, f"case{i}", files)
    return root


def test_item_has_the_contract_keys_dtypes_and_shapes(good_root):
    cases, _ = scan_cases(good_root, "cffa")
    item = AffinePairDataset(cases, "cffa", size=64)[0]
    l0 = (64 // 8) ** 2
    expect = {"image0": ((2, 64, 64), np.float32), "image1": ((2, 64, 64), np.float32),
              "mask0": ((64, 64), np.bool_), "mask1": ((64, 64), np.bool_),
              "vessel0": ((64, 64), np.float32), "vessel1": ((64, 64), np.float32),
              "T_0to1": ((3, 3), np.float32), "gt_j": ((l0,), np.int64),
              "gt_xy1": ((l0, 2), np.float32), "kpts0": ((MAX_KEYPOINTS, 2), np.float32),
              "kpts1": ((MAX_KEYPOINTS, 2), np.float32), "kpts_valid": ((MAX_KEYPOINTS,), np.bool_),
              "unmatched0": ((l0,), np.bool_), "unmatched1": ((l0,), np.bool_)}
    assert set(item) == set(expect) | {"mode"} and item["mode"] == "cffa"
    for key, (shape, dtype) in expect.items():
        assert item[key].shape == shape and item[key].dtype == dtype, key


def _on_vessel_ratio(vessel_channel: np.ndarray, mask: np.ndarray) -> float:
    """How much brighter the vessel channel is on ``mask`` pixels than elsewhere in image1."""
    return float(vessel_channel[mask].mean() / max(vessel_channel[~mask].mean(), 1e-6))


@pytest.mark.parametrize("mode, hflip, vflip", [
    ("cffa", 0, 0), ("cffa", 1, 0), ("octfa", 0, 1), ("cfocta", 1, 1)])
def test_warped_moving_image_and_labels_land_on_the_same_vessels(good_root, mode, hflip, vflip):
    cases, _ = scan_cases(good_root, mode)
    aug = AugmentConfig(hflip_p=hflip, vflip_p=vflip)
    ds = AffinePairDataset(cases, mode, size=SIZE, aug=aug, seed=3)
    for index in range(3):
        item = ds[index]
        v1 = item["vessel1"] > 0.5
        # the moving image's own vessel response (computed after the warp) sits on vessel1
        assert _on_vessel_ratio(item["image1"][1], v1 & item["mask1"]) > 3.0
        # each valid image0 vessel keypoint, warped with T_0to1, lands on vessel1
        k1 = np.rint(item["kpts1"][item["kpts_valid"]]).astype(int)
        assert len(k1) >= 3
        assert (item["vessel1"][k1[:, 1], k1[:, 0]] > 0).mean() > 0.95
        np.testing.assert_allclose(
            map_points(item["T_0to1"], item["kpts0"][item["kpts_valid"]]),
            item["kpts1"][item["kpts_valid"]], atol=1e-3)
        mirrored = np.linalg.det(item["T_0to1"][:2, :2]) < 0
        assert mirrored == (hflip != vflip)  # two flips make a 180 deg rotation


def test_shifting_the_fixed_image_too_leaves_each_image_a_part_the_other_lacks(good_root):
    cases, _ = scan_cases(good_root, "cffa")
    aug = AugmentConfig(translate_frac=0.3, fixed_translate_frac=0.3)
    ds = AffinePairDataset(cases, "cffa", size=SIZE, aug=aug, seed=11, length=6)
    both_sides = 0
    for index in range(6):
        item = ds[index]
        v0 = item["vessel0"] > 0.5
        # image0 was shifted: its vessel channel and its vessel labels still agree
        assert _on_vessel_ratio(item["image0"][1], v0 & item["mask0"]) > 3.0
        # and T_0to1 still carries image0's vessels onto image1's
        warped = cv2.warpPerspective(item["vessel0"], item["T_0to1"].astype(np.float64),
                                     (SIZE, SIZE))
        seen = item["mask1"] & (warped > 0.5)
        assert (item["vessel1"][seen] > 0.2).mean() > 0.9
        np.testing.assert_allclose(
            map_points(item["T_0to1"], item["kpts0"][item["kpts_valid"]]),
            item["kpts1"][item["kpts_valid"]], atol=1e-3)
        both_sides += bool(item["unmatched0"].any() and item["unmatched1"].any())
    assert both_sides >= 3


def test_an_unshifted_fixed_image_draws_no_randomness():
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    np.testing.assert_array_equal(random_shift(a, 64, 64, 0.0), np.eye(3))
    assert a.random() == b.random()
    shift = random_shift(a, 100, 50, 0.2)
    assert abs(shift[0, 2]) <= 20 and abs(shift[1, 2]) <= 10 and (shift[:2, :2] == np.eye(2)).all()


def test_ground_truth_agrees_with_the_transform(good_root):
    cases, _ = scan_cases(good_root, "cfoct")
    item = AffinePairDataset(cases, "cfoct", size=SIZE, seed=5)[1]
    gt_j, gt_xy1 = coarse_fine_gt(item["T_0to1"].astype(np.float64), item["mask0"], item["mask1"])
    np.testing.assert_array_equal(item["gt_j"], gt_j)
    np.testing.assert_allclose(item["gt_xy1"], map_points(item["T_0to1"],
                                                          cell_centres(SIZE // 8, SIZE // 8, 8)), atol=1e-3)
    ok = item["gt_j"] >= 0
    assert ok.sum() > 20
    xy = np.rint(item["gt_xy1"][ok]).astype(int)
    assert item["mask1"][xy[:, 1], xy[:, 0]].all()


def test_random_affine_keeps_most_of_image0_in_view():
    rng = np.random.default_rng(0)
    dets = []
    for _ in range(200):
        T = random_affine(rng, 256, 256, AugmentConfig())
        centre = map_points(T, np.array([[127.5, 127.5]]))[0]
        assert (np.abs(centre - 127.5) <= 0.15 * 256 + 1e-6).all()
        dets.append(np.linalg.det(T[:2, :2]))
    assert 0.85 ** 2 - 1e-9 <= min(np.abs(dets)) and max(np.abs(dets)) <= 1.15 ** 2


def test_photometric_changes_intensity_only_as_configured():
    img = _fake_case(1)["cf"]
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(photometric(img, rng, AugmentConfig.geometry_only()), img)
    np.testing.assert_array_equal(photometric(img, rng, AugmentConfig(), strength=0.0), img)
    changed = [photometric(img, rng, AugmentConfig()) for _ in range(5)]
    assert all(c.dtype == np.uint8 and c.shape == img.shape for c in changed)
    assert np.mean([np.abs(c.astype(int) - img).mean() for c in changed]) > 1.0
    deep = photometric(img.astype(np.uint16) * 257, rng, AugmentConfig())
    assert deep.dtype == np.uint16


def test_items_are_deterministic_per_seed_and_change_per_epoch(good_root):
    cases, _ = scan_cases(good_root, "cffa")
    a = AffinePairDataset(cases, "cffa", size=64, seed=11)
    b = AffinePairDataset(cases, "cffa", size=64, seed=11)
    for key in ("image0", "image1", "T_0to1", "gt_j", "kpts1"):
        np.testing.assert_array_equal(a[2][key], b[2][key])
    assert not np.allclose(a[2]["T_0to1"], AffinePairDataset(cases, "cffa", size=64, seed=12)[2]["T_0to1"])
    before = a[2]["T_0to1"]
    a.set_epoch(1)
    assert not np.allclose(before, a[2]["T_0to1"])


def test_length_cycles_over_cases(good_root):
    cases, _ = scan_cases(good_root, "cffa")
    ds = AffinePairDataset(cases, "cffa", size=64, length=7)
    assert len(ds) == 7
    np.testing.assert_array_equal(ds[4]["vessel0"], ds[1]["vessel0"])  # case 1 both times
    with pytest.raises(IndexError):
        ds[7]


def test_keypoint_side_file_is_rescaled_to_the_training_size(tmp_path):
    c = _fake_case(4)
    ys, xs = np.nonzero(c["vessels"])
    pts = [[float(x), float(y), 1] for x, y in zip(xs[::40], ys[::40])]
    folder = write_case(tmp_path, "k", {"1_cf_512.png": c["cf"], "1_fa.png": c["fa"]})
    (folder / "1_keypoints.json").write_text(json.dumps({"full": pts, "clip": []}))
    cases, _ = scan_cases(tmp_path, "cffa")
    aug = AugmentConfig(rotation_deg=0, scale_range=(1, 1), translate_frac=0, hflip_p=0, vflip_p=0)
    item = AffinePairDataset(cases, "cffa", size=SIZE // 2, aug=aug)[0]
    got = item["kpts0"][item["kpts_valid"]]
    expect = (np.asarray(pts)[:, :2] + 0.5) * 0.5 - 0.5
    assert len(got) > 0.8 * min(len(pts), MAX_KEYPOINTS)
    assert np.isin(np.round(got[:, 0], 3), np.round(expect[:, 0], 3)).all()


def test_non_square_cases_are_letterboxed_with_the_padding_marked_invalid(tmp_path):
    c = _fake_case(2)
    write_case(tmp_path, "wide", {"1_cf_512.png": c["cf"][16:112], "1_fa.png": c["fa"][16:112]})
    cases, _ = scan_cases(tmp_path, "cffa")
    assert cases[0].shape == (96, 128)
    item = AffinePairDataset(cases, "cffa", size=64)[0]
    assert item["image0"].shape == (2, 64, 64)
    assert not item["mask0"][48:].any() and item["mask0"][:48].mean() > 0.5
    assert (item["image0"][:, 48:] == 0).all()


def test_synthetic_source_renders_the_case_of_each_seed_and_cycles_over_them():
    source = SynthSource(100, 2, render_size=SIZE)
    rendered = render_case(101, size=SIZE)
    case = source.load(1, Mode.CFFA)
    np.testing.assert_array_equal(case.fixed, rendered["cf"])
    np.testing.assert_array_equal(case.moving, rendered["fa"])
    ds = AffinePairDataset(source, "cffa", size=64, length=4)
    items = [ds[i] for i in range(4)]
    assert items[0]["image1"].shape == (2, 64, 64)
    np.testing.assert_array_equal(items[0]["vessel0"], items[2]["vessel0"])  # seed 100 twice
    assert not np.array_equal(items[0]["vessel0"], items[1]["vessel0"])


@pytest.mark.parametrize("mode", ["cfoct", "cfocta"])
def test_synthetic_source_gives_aligned_pairs(mode):
    ds = AffinePairDataset(SynthSource(0, 1, render_size=256), mode, size=128, seed=2)
    item = ds[0]
    v1 = item["vessel1"] > 0.5
    assert _on_vessel_ratio(item["image1"][1], v1 & item["mask1"]) > 1.5
    k1 = np.rint(item["kpts1"][item["kpts_valid"]]).astype(int)
    assert len(k1) > 0 and (item["vessel1"][k1[:, 1], k1[:, 0]] > 0).mean() > 0.95


def test_dataset_works_in_a_dataloader_with_default_collate(good_root):
    cases, _ = scan_cases(good_root, "cffa")
    ds = AffinePairDataset(DiskSource(cases, cache_limit=2), "cffa", size=64)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image0"].shape == (2, 2, 64, 64) and batch["image0"].dtype == torch.float32
    assert batch["gt_j"].dtype == torch.int64 and batch["mask1"].dtype == torch.bool
    assert batch["mode"] == ["cffa", "cffa"]
