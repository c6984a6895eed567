"""Annotation files: round trips between formats, atomic writes, clear errors, real-pair export."""
import json
import os

import numpy as np
import pytest

from retreg.core import annotations as an
from retreg.core.annotations import Annotation, ImageRef, PointPair
from retreg.core.errors import AnnotationError, DatasetError


def _annotation() -> Annotation:
    pts = [PointPair(1, (10.5, 20.25), (12.0, 18.75), "model", True),
           PointPair(2, (300.125, 40.0), (295.5, 44.0), "manual", True),
           PointPair(7, (5.0, 6.0), (7.0, 8.0), "model", False)]
    return Annotation(ImageRef("f.png", "a" * 64, (64, 80, 3)), ImageRef("m.png", None, (64, 80)),
                      "cffa", pts, {"type": "affine", "matrix": np.eye(3).tolist()}, "checked")


def _write_json(path, d):
    path.write_text(json.dumps(d))
    return path


def test_json_round_trip_keeps_everything(tmp_path):
    ann = _annotation()
    an.save_annotation(tmp_path / "a.json", ann)
    assert an.load_annotation(tmp_path / "a.json") == ann
    d = json.loads((tmp_path / "a.json").read_text())
    assert (d["format"], d["version"]) == ("retreg-annotation", 1)


def test_fire_text_round_trip_keeps_coordinates(tmp_path):
    ann = _annotation()
    an.write_fire_points(tmp_path / "cp.txt", ann.points)
    back = an.read_fire_points(tmp_path / "cp.txt")
    assert [(p.fixed, p.moving) for p in back] == [(p.fixed, p.moving) for p in ann.points]
    assert [p.id for p in back] == [1, 2, 3]
    assert all(p.source == "manual" and p.include for p in back)


def test_numpy_coordinates_are_written_as_plain_numbers(tmp_path):
    pts = [PointPair(np.int64(3), np.array([1.5, 2.0]), (np.float64(3.25), np.float32(4.5)))]
    an.write_fire_points(tmp_path / "cp.txt", pts)
    an.write_csv_points(tmp_path / "p.csv", pts)
    assert (tmp_path / "cp.txt").read_text() == "1.5 2.0 3.25 4.5\n"
    assert an.read_csv_points(tmp_path / "p.csv") == pts


def test_reads_the_fire_ground_truth_layout(tmp_path):
    (tmp_path / "cp.txt").write_text("332.000 872.000 388.000 822.000\n\n"
                                     "370.000 1897.000 357.000 1849.000\n")
    pts = an.read_fire_points(tmp_path / "cp.txt")
    assert [p.fixed for p in pts] == [(332.0, 872.0), (370.0, 1897.0)]
    assert [p.moving for p in pts] == [(388.0, 822.0), (357.0, 1849.0)]


def test_csv_round_trip_keeps_ids_sources_and_include(tmp_path):
    ann = _annotation()
    an.write_csv_points(tmp_path / "p.csv", ann.points)
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == \
        "id,x_fixed,y_fixed,x_moving,y_moving,source,include"
    assert an.read_csv_points(tmp_path / "p.csv") == ann.points


def test_json_to_fire_to_csv_to_json_keeps_included_coordinates(tmp_path):
    ann = _annotation()
    kept = [p for p in ann.points if p.include]
    an.write_fire_points(tmp_path / "cp.txt", kept)
    an.write_csv_points(tmp_path / "p.csv", an.read_fire_points(tmp_path / "cp.txt"))
    again = Annotation(ann.fixed, ann.moving, ann.mode, an.read_csv_points(tmp_path / "p.csv"))
    an.save_annotation(tmp_path / "b.json", again)
    fixed, moving = an.load_annotation(tmp_path / "b.json").included()
    np.testing.assert_array_equal(fixed, [p.fixed for p in kept])
    np.testing.assert_array_equal(moving, [p.moving for p in kept])


def test_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    an.save_annotation(path, _annotation())
    before = path.read_bytes()
    changed = _annotation()
    changed.notes = "new"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(an.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        an.save_annotation(path, changed)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.json"]  # the temp file is cleaned up


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="other"), "format is 'other'"),
    (lambda d: d.update(version=2), "version 2 is not supported"),
    (lambda d: d.pop("fixed"), "missing key 'fixed'"),
    (lambda d: d["points"][1].update(fixed=["a", 1]), "point id 2: coordinate 'a' is not a number"),
    (lambda d: d["points"][0].update(moving=[float("nan"), 1]), "point id 1: coordinate nan"),
    (lambda d: d["points"][2].update(id=1), "duplicate point id 1"),
    (lambda d: d["points"][0].update(source="robot"), "source 'robot'"),
    (lambda d: d["points"][0].pop("include"), "point id 1: missing key 'include'"),
    (lambda d: d.update(mode="cfxx"), "mode 'cfxx'"),
    (lambda d: d.update(transform={"type": "affine", "matrix": [[1, 0], [0, 1]]}), "3x3"),
    (lambda d: d["fixed"].update(sha256="xyz"), "fixed: 'sha256'"),
])
def test_malformed_json_names_what_and_where(tmp_path, mutate, message):
    d = an.to_dict(_annotation())
    mutate(d)
    path = _write_json(tmp_path / "bad.json", d)
    with pytest.raises(AnnotationError, match=message) as err:
        an.load_annotation(path)
    assert "bad.json" in str(err.value)


def test_invalid_json_reports_the_line(tmp_path):
    (tmp_path / "bad.json").write_text('{\n  "format": "retreg-annotation",\n  oops\n}')
    with pytest.raises(AnnotationError, match=r"bad.json: line 3: not valid JSON"):
        an.load_annotation(tmp_path / "bad.json")


@pytest.mark.parametrize("text, message", [
    ("1 2 3 4\n1 2 3\n", "line 2: expected 4 columns"),
    ("1 2 3 4\n1 2 x 4\n", "line 2: coordinate 'x' is not a number"),
    ("1 2 nan 4\n", "line 1: coordinate 'nan' is not finite"),
    ("\n\n", "no control points"),
])
def test_malformed_fire_text_names_the_line(tmp_path, text, message):
    (tmp_path / "cp.txt").write_text(text)
    with pytest.raises(AnnotationError, match=message):
        an.read_fire_points(tmp_path / "cp.txt")


@pytest.mark.parametrize("text, message", [
    ("id,x,y\n", "line 1: header must be"),
    ("id,x_fixed,y_fixed,x_moving,y_moving,source,include\n1,1,2,3,4,model\n",
     "line 2: expected 7 columns"),
    ("id,x_fixed,y_fixed,x_moving,y_moving,source,include\n1,1,2,3,4,model,maybe\n",
     "line 2: include must be true or false"),
    ("id,x_fixed,y_fixed,x_moving,y_moving,source,include\n1,1,2,3,4,model,true\n"
     "1,5,6,7,8,manual,true\n", "duplicate point id 1"),
])
def test_malformed_csv_names_the_problem(tmp_path, text, message):
    (tmp_path / "p.csv").write_text(text)
    with pytest.raises(AnnotationError, match=message):
        an.read_csv_points(tmp_path / "p.csv")


def test_sha256_of_a_known_content(tmp_path):
    (tmp_path / "x").write_bytes(b"abc")
    assert an.sha256_file(tmp_path / "x") == \
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def _images():
    rng = np.random.default_rng(0)
    return (rng.integers(0, 255, (40, 48, 3), dtype=np.uint8),
            rng.integers(0, 255, (40, 48), dtype=np.uint8))


def test_realpair_export_and_read_back(tmp_path):
    fixed, moving = _images()
    H = np.array([[1.0, 0, 2], [0, 1, -3], [0, 0, 1]])
    an.export_realpair(tmp_path, "eye1_cffa", _annotation(), fixed, moving, H_computed=H)
    an.export_realpair(tmp_path, "eye2", _annotation(), fixed, moving)
    an.export_realpair(tmp_path, "eye1_cffa", _annotation(), fixed, moving, H_computed=H)

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest == {"format": "retreg-realpairs", "version": 1, "pairs": ["eye1_cffa", "eye2"]}
    pairs, skipped = an.read_realpairs(tmp_path)
    assert skipped == []
    pid, fpath, mpath, ann = pairs[0]
    assert (pid, fpath, mpath) == ("eye1_cffa", tmp_path / "eye1_cffa" / "fixed.png",
                                   tmp_path / "eye1_cffa" / "moving.png")
    assert ann.transform == {"type": "homography", "matrix": H.tolist()}
    assert ann.fixed.shape == (40, 48, 3) and ann.moving.shape == (40, 48)
    assert ann.fixed.sha256 == an.sha256_file(fpath)
    assert ann.points == _annotation().points
    assert pairs[1][3].transform == _annotation().transform  # no H given: kept as annotated


def test_read_realpairs_skips_broken_pairs_with_a_reason(tmp_path):
    fixed, moving = _images()
    for pid in ("ok", "no_image", "changed", "bad_json"):
        an.export_realpair(tmp_path, pid, _annotation(), fixed, moving)
    (tmp_path / "no_image" / "moving.png").unlink()
    (tmp_path / "changed" / "fixed.png").write_bytes(b"not the exported file")
    (tmp_path / "bad_json" / "annotation.json").write_text("{")
    pairs, skipped = an.read_realpairs(tmp_path)
    assert [p[0] for p in pairs] == ["ok"]
    reasons = dict(skipped)
    assert "moving.png is missing" in reasons["no_image"]
    assert "SHA-256" in reasons["changed"]
    assert "not valid JSON" in reasons["bad_json"]


def test_realpair_rejects_unsafe_ids_and_missing_manifest(tmp_path):
    fixed, moving = _images()
    with pytest.raises(AnnotationError, match="pair id '../x'"):
        an.export_realpair(tmp_path, "../x", _annotation(), fixed, moving)
    with pytest.raises(DatasetError, match="no manifest.json"):
        an.read_realpairs(tmp_path)


# ---------------------------------------------------------------- image bounds

def test_points_within_the_images_and_just_past_their_edges_pass():
    pts = [PointPair(1, (0.0, 0.0), (79.0, 63.0)), PointPair(2, (-3.0, 66.0), (82.0, -2.0))]
    an.check_points_in_bounds(pts, (64, 80, 3), (64, 80))


@pytest.mark.parametrize("side, xy, shown", [
    ("fixed", (1e12, 5.0), "(1e+12, 5)"),
    ("moving", (10.0, -20.0), "(10, -20)"),
    ("moving", (float("nan"), 5.0), "(nan, 5)"),
    ("fixed", (float("inf"), 5.0), "(inf, 5)"),
])
def test_a_point_off_its_image_is_refused_naming_file_point_side_and_bounds(side, xy, shown):
    good = PointPair(1, (10.0, 10.0), (10.0, 10.0))
    bad = PointPair(7, xy if side == "fixed" else (10.0, 10.0),
                    xy if side == "moving" else (10.0, 10.0))
    with pytest.raises(AnnotationError) as err:
        an.check_points_in_bounds([good, bad], (64, 80), (64, 80), source="cp.txt")
    msg = str(err.value)
    assert msg.startswith("cp.txt: point id 7:") and f"{side} point {shown}" in msg
    assert "\n" not in msg
    if all(np.isfinite(xy)):
        assert f"outside the {side} image (80x64 px: x from -4.5 to 83.5" in msg
    else:
        assert "not finite" in msg


def test_the_bounds_margin_is_a_share_of_each_image_side():
    assert an.image_bounds((100, 200)) == (-10.5, 209.5, -5.5, 104.5)
    assert an.image_bounds((100, 200), margin=0.0) == (-0.5, 199.5, -0.5, 99.5)
    with pytest.raises(AnnotationError):
        an.check_points_in_bounds([PointPair(1, (205.0, 0.0), (0.0, 0.0))], (100, 200),
                                  (100, 200), margin=0.0)


def test_a_nonrigid_transform_is_checked_on_load_and_exported_as_its_homography(tmp_path):
    from retreg.core.transforms import fit_polish

    rng = np.random.default_rng(0)
    moving = rng.uniform(0, 60, (40, 2))
    bent = moving + 3.0 * ((moving - 30) / 30) ** 2
    polish = fit_polish("quadratic", moving, bent, np.eye(3), (64, 64)).transform
    img = np.zeros((64, 64), np.uint8)
    for name in ("f.png", "m.png"):
        (tmp_path / name).write_bytes(b"image bytes " + name.encode())
    ann = an.new_annotation(tmp_path / "f.png", img.shape, tmp_path / "m.png", img.shape, "cffa",
                         [PointPair(1, (1.0, 2.0), (3.0, 4.0))])
    ann.transform = {"type": "quadratic", "matrix": np.eye(3).tolist(),
                     "nonrigid": polish.to_json()}
    path = tmp_path / "a.json"
    an.save_annotation(path, ann)
    assert an.load_annotation(path).transform["nonrigid"]["encoding"] == "retreg.quadratic/1"
    bad = json.loads(path.read_text())
    bad["transform"]["nonrigid"] = {"encoding": "retreg.quadratic/1", "coef": "x"}
    path.write_text(json.dumps(bad))
    with pytest.raises(AnnotationError, match="nonrigid"):
        an.load_annotation(path)
    folder = an.export_realpair(tmp_path / "set", "p1", ann, img, img, H_computed=np.eye(3))
    exported = json.loads((folder / "annotation.json").read_text())["transform"]
    assert exported["type"] == "homography" and "nonrigid" not in exported
    assert "polish is not exported" in exported["note"]
    with pytest.raises(ValueError, match="global"):
        an.export_realpair(tmp_path / "set", "p2", ann, img, img, H_computed=np.eye(3),
                        transform_type="quadratic")
