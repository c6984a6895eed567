"""The clinic's case-folder layout (core/cases.py): which file is which, and what is skipped why."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retreg.core.cases import file_role, scan_cases
from retreg.core.errors import DatasetError
from tests.helpers import write_case

SIZE = 64


def _image(seed: int, size: int = SIZE, rgb: bool = False) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3) if rgb else (size, size))
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def good_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cases")
    for i in range(3):
        files = {f"{i}_cf_512.png": _image(i, rgb=True), f"{i}_fa_gen.png": _image(i + 10),
                 f"{i}_oct_gen.png": _image(i + 20), f"{i}_cf_gen_clip_512.png": _image(i, rgb=True),
                 f"{i}_octa_gen.png": _image(i + 30)}
        if i == 0:  # only case 0 has a generator side file
            files[f"{i}_vessels.png"] = _image(i + 40) > 128
        write_case(root, f"case{i}", files)
    return root


@pytest.mark.parametrize("name, role", [
    ("12_cf_512.png", "cf"), ("12_cf_gen_512.png", "cf"), ("12_cf_clip_512.png", "cf_clip"),
    ("12_cf_gen_clip_512.png", "cf_clip"), ("7_fa.png", "fa"), ("7_fa_gen_v2.png", "fa"),
    ("7_oct_gen.png", "oct"), ("7_octa_gen.png", "octa"), ("P1_3_OCTA.PNG", "octa"),
    ("7_vessels.png", "vessels"), ("7_vessels_clip.png", "vessels_clip"),
    ("7_keypoints.json", "keypoints"), ("7_notes.png", None), ("cf.png", None),
])
def test_file_role_reads_modality_gen_and_notes(name, role):
    assert file_role(name) == role


def test_scan_finds_every_good_case_for_every_mode(good_root):
    for mode in ("cffa", "cfoct", "octfa", "cfocta"):
        cases, skipped = scan_cases(good_root, mode)
        assert [c.name for c in cases] == ["case0", "case1", "case2"] and skipped == []
        assert all(c.mode.value == mode for c in cases)
    cases, _ = scan_cases(good_root, "cfocta")
    assert cases[0].fixed_path.name == "0_cf_gen_clip_512.png"
    assert cases[0].moving_path.name == "0_octa_gen.png"
    assert cases[0].vessels_path is None  # the clip mode needs _vessels_clip, not _vessels
    cases, _ = scan_cases(good_root, "octfa")
    assert cases[0].fixed_path.name == "0_oct_gen.png" and cases[0].vessels_path is not None
    assert cases[0].shape == (SIZE, SIZE)


def test_scan_reports_each_malformed_case_with_its_reason(tmp_path):
    cf, fa, oct_, octa = _image(0, rgb=True), _image(1), _image(2), _image(3)
    write_case(tmp_path, "good_with_notes", {"1_cf_512.png": cf, "1_fa_gen_v2.png": fa})
    write_case(tmp_path, "no_fa", {"2_cf_512.png": cf, "2_oct.png": oct_})
    write_case(tmp_path, "clip_only", {"3_cf_clip_512.png": cf, "3_fa.png": fa})
    write_case(tmp_path, "two_fa", {"4_cf_512.png": cf, "4_fa.png": fa, "4_fa_gen.png": fa})
    write_case(tmp_path, "mismatch", {"5_cf_512.png": cf, "5_fa.png": _image(1, size=48)})
    broken = write_case(tmp_path, "broken", {"6_cf_512.png": cf})
    (broken / "6_fa.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    write_case(tmp_path, "octa_not_oct", {"8_cf_512.png": cf, "8_octa_gen.png": octa})

    cases, skipped = scan_cases(tmp_path, "cffa")
    assert [x.name for x in cases] == ["good_with_notes"]
    assert cases[0].moving_path.name == "1_fa_gen_v2.png"
    reasons = dict(skipped)
    assert set(reasons) == {"no_fa", "clip_only", "two_fa", "mismatch", "broken", "octa_not_oct"}
    assert "missing fa" in reasons["no_fa"]
    assert "missing cf image" in reasons["clip_only"]
    assert "ambiguous" in reasons["two_fa"] and "4_fa_gen.png" in reasons["two_fa"]
    assert "size mismatch" in reasons["mismatch"] and "48x48" in reasons["mismatch"]
    assert "unreadable" in reasons["broken"] and "6_fa.png" in reasons["broken"]
    assert "missing fa" in reasons["octa_not_oct"]

    _, skipped_oct = scan_cases(tmp_path, "cfoct")
    assert "missing oct" in dict(skipped_oct)["octa_not_oct"]


def test_scan_raises_when_root_is_missing_nothing_is_usable_or_the_mode_is_unknown(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_cases(tmp_path / "nope", "cffa")
    write_case(tmp_path, "only_cf", {"1_cf_512.png": _image(0, rgb=True)})
    with pytest.raises(DatasetError, match="no usable case.*only_cf: missing fa"):
        scan_cases(tmp_path, "cffa")
    with pytest.raises(DatasetError, match="unknown mode"):
        scan_cases(tmp_path, "cfxx")


def test_scan_reads_the_mode_s_keypoints_and_reports_a_malformed_side_file(tmp_path):
    cf, fa = _image(0, rgb=True), _image(1)
    bad = write_case(tmp_path, "a", {"1_cf_512.png": cf, "1_fa.png": fa})
    (bad / "1_keypoints.json").write_text('{"clip": []}')
    good = write_case(tmp_path, "b", {"2_cf_512.png": cf, "2_fa.png": fa})
    (good / "2_keypoints.json").write_text('{"full": [[3, 4, 1], [5.5, 6, 0]], "clip": []}')
    cases, skipped = scan_cases(tmp_path, "cffa")
    assert [x.name for x in cases] == ["b"]
    np.testing.assert_array_equal(cases[0].keypoints, [[3.0, 4.0], [5.5, 6.0]])
    assert skipped[0][0] == "a" and "malformed keypoints" in skipped[0][1]


def test_the_case_layout_loads_without_torch_or_qt():
    code = ("import sys\n"
            "for name in ('torch', 'PySide6', 'lightning'):\n"
            "    sys.modules[name] = None\n"
            "import retreg.core.cases\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
