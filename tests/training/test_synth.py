"""The synthetic generator: geometry shared by all modalities, determinism, the clinic's layout
(read back by ``retreg.core.cases``), CLI."""
import json

import cv2
import numpy as np
import pytest

from retreg.cli import main
from retreg.core.cases import MODE_ROLES, scan_cases
from retreg.core.io import read_image
from retreg.core.types import Mode
from retreg.training.synth.case import render_case
from retreg.training.synth.writer import case_name, write_case

SIZE = 256


@pytest.fixture(scope="module")
def case():
    return render_case(7, SIZE)


def _inside(mask, img, erode=1):
    """Mean of ``img`` on the eroded vessel mask and on the background ring around vessels."""
    m = mask > 0
    core = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=erode) > 0
    ring = (cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=4) > 0) & ~(
        cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=1) > 0)
    return img[core].mean(), img[ring].mean()


def test_case_has_every_key_with_the_documented_shape(case):
    assert case["cf"].shape == (SIZE, SIZE, 3) and case["cf"].dtype == np.uint8
    assert case["cf_clip"].shape == (SIZE, SIZE, 3)
    for key in ("fa", "oct", "octa", "vessels", "vessels_clip"):
        assert case[key].shape == (SIZE, SIZE) and case[key].dtype == np.uint8, key
    assert set(np.unique(case["vessels"])) <= {0, 255}
    assert case["fov"].dtype == bool and case["fov"].shape == (SIZE, SIZE)
    for key in ("keypoints", "keypoints_clip"):
        assert case[key].dtype == np.float32 and case[key].shape[1] == 3 and len(case[key]) > 0
        assert set(np.unique(case[key][:, 2])) <= {0.0, 1.0}


def test_vessels_are_dark_in_cf_and_bright_in_fa_and_octa(case):
    fov = case["fov"]
    green = case["cf"][..., 1].astype(float)
    on, off = _inside(case["vessels"] * fov, green)
    assert on < off - 5
    on, off = _inside(case["vessels"] * fov, case["fa"].astype(float))
    assert on > off + 5
    on, off = _inside(case["vessels_clip"], case["octa"].astype(float))
    assert on > off + 20


def test_vessels_cast_dark_shadows_in_oct_where_it_was_scanned(case):
    scanned = case["oct"] > 0
    scanned = cv2.erode(scanned.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    on, off = _inside(case["vessels"] * scanned, case["oct"].astype(float))
    assert on < off - 3


def test_keypoints_lie_on_the_vessel_mask(case):
    for kp_key, mask_key in (("keypoints", "vessels"), ("keypoints_clip", "vessels_clip")):
        kp, mask = case[kp_key], case[mask_key]
        hits = mask[np.rint(kp[:, 1]).astype(int), np.rint(kp[:, 0]).astype(int)] > 0
        assert hits.mean() > 0.95, kp_key


def test_clip_shows_the_clip_box_of_the_full_field(case):
    x0, y0, x1, y1 = (int(v) for v in case["clip_box"])
    assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE and x1 - x0 == y1 - y0
    assert 0.18 * SIZE <= x1 - x0 <= 0.37 * SIZE
    small = cv2.resize(case["cf_clip"], (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    crop = case["cf"][y0:y1, x0:x1]
    a = cv2.GaussianBlur(small[..., 1].astype(np.float32), (0, 0), 1.5)
    b = cv2.GaussianBlur(crop[..., 1].astype(np.float32), (0, 0), 1.5)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8
    vs = cv2.resize(case["vessels_clip"], (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA) > 127
    vf = case["vessels"][y0:y1, x0:x1] > 0
    assert (vs & vf).sum() / max(1, vf.sum()) > 0.7  # the same vessels, seen at two scales


def test_clip_keypoints_map_to_full_keypoints(case):
    x0, y0, x1, _ = (float(v) for v in case["clip_box"])
    s = (x1 - x0) / SIZE
    full = case["keypoints"][:, :2]
    mapped = case["keypoints_clip"][:, :2] * s + np.float32([x0 - 0.5 + 0.5 * s, y0 - 0.5 + 0.5 * s])
    inside = (full[:, 0] > x0 + 2) & (full[:, 0] < x1 - 2) & (full[:, 1] > y0 + 2) & (full[:, 1] < y0 + (x1 - x0) - 2)
    d = np.linalg.norm(full[inside, None] - mapped[None], axis=2).min(1)
    assert inside.sum() > 0 and np.all(d < 1e-2)


def test_same_seed_same_case_and_other_seed_other_case(case):
    again = render_case(7, SIZE)
    other = render_case(8, SIZE)
    for key in ("cf", "fa", "oct", "cf_clip", "octa", "vessels", "keypoints", "clip_box"):
        assert np.array_equal(case[key], again[key]), key
    for key in ("cf", "fa", "octa", "vessels"):
        assert not np.array_equal(case[key], other[key]), key


def test_written_cases_scan_for_every_clinical_mode_with_their_side_files(tmp_path, case):
    folder = write_case(tmp_path, 7, case)
    assert folder.parent == tmp_path and folder.name == case_name(7)
    for mode in Mode.clinical():
        (found,), skipped = scan_cases(tmp_path, mode)
        assert skipped == [] and found.vessels_path is not None, mode
        fixed_key, moving_key = MODE_ROLES[mode].fixed, MODE_ROLES[mode].moving
        assert np.array_equal(read_image(found.fixed_path), case[fixed_key]), mode
        assert np.array_equal(read_image(found.moving_path), case[moving_key]), mode
        kp = case["keypoints_clip" if mode is Mode.CFOCTA else "keypoints"][:, :2]
        np.testing.assert_allclose(found.keypoints, kp, atol=1e-3)
    truth = json.loads(next(folder.glob("*_keypoints.json")).read_text())
    assert truth["seed"] == 7 and truth["clip_box"] == case["clip_box"].tolist()


def test_cli_writes_cases_with_consecutive_seeds(tmp_path):
    out = tmp_path / "set"
    rc = main(["synth", "--out", str(out), "--cases", "2", "--seed", "5", "--size", "128", "--workers", "2"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["case_000005", "case_000006"]
    fa = cv2.imread(str(out / "case_000006" / "case_000006_fa_gen.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(fa, render_case(6, 128)["fa"])


def test_cli_rejects_a_non_positive_case_count(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--cases", "0"]) == 2
    assert "--cases" in capsys.readouterr().err
