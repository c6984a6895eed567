"""Every file RetReg writes goes through one atomic writer with one permission rule."""
import os
import stat

import numpy as np
import pytest

from retreg.core import annotations as an
from retreg.core.atomic import atomic_write_bytes
from retreg.core.io import write_image
from retreg.core.matchers.loftr.model import LoftrConfig, RetRegLoFTR
from retreg.core.matchers.loftr.weights import save_weights
from retreg.training.synth.writer import IMAGE_FILES, case_name, write_case

UMASK = 0o027  # neither mkstemp's 0600 nor the usual 0644: the mode must come from the umask
TINY = LoftrConfig(channels=("vessels",), initial_dim=8, block_dims=(8, 16, 32), nhead=2,
                   n_layers=1)


def _annotation(notes: str) -> an.Annotation:
    pts = [an.PointPair(1, (10.5, 20.25), (12.0, 18.75), "model", True)]
    return an.Annotation(an.ImageRef("f.png", None, (64, 80)), an.ImageRef("m.png", None, (64, 80)),
                         "cffa", pts, None, notes)


def _case(value: int) -> dict:
    case = {key: np.full((16, 16), value, np.uint8) for key in IMAGE_FILES}
    return {**case, "keypoints": np.zeros((1, 3)), "keypoints_clip": np.zeros((1, 3)),
            "clip_box": [0, 0, 16, 16]}


def _weights(value: float):
    model = RetRegLoFTR(TINY)
    for p in model.parameters():
        p.data.fill_(value)
    return model


# name -> (file written, writer(folder, version))
WRITERS = {
    "bytes": ("a.bin", lambda d, v: atomic_write_bytes(d / "a.bin", bytes([v]))),
    "annotation json": ("a.json", lambda d, v: an.save_annotation(d / "a.json", _annotation(str(v)))),
    "png": ("a.png", lambda d, v: write_image(d / "a.png", np.full((8, 8), v, np.uint8))),
    "synthetic case": (f"{case_name(3)}/{case_name(3)}_fa_gen.png",
                       lambda d, v: write_case(d, 3, _case(v))),
    "weights": ("w.safetensors",
                lambda d, v: save_weights(_weights(float(v)), d / "w.safetensors", {"v": v})),
}


@pytest.fixture
def umask():
    old = os.umask(UMASK)
    yield 0o666 & ~UMASK
    os.umask(old)


def _written(folder, name, version):
    relative, write = WRITERS[name]
    write(folder, version)
    return folder / relative


@pytest.mark.parametrize("name", WRITERS)
def test_files_get_the_mode_of_a_plain_open(tmp_path, umask, name):
    path = _written(tmp_path, name, 1)
    for f in [p for p in tmp_path.rglob("*") if p.is_file()]:
        assert stat.S_IMODE(f.stat().st_mode) == umask, f
    assert path.is_file()


@pytest.mark.parametrize("name", WRITERS)
def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, umask,
                                                                       monkeypatch, name):
    path = _written(tmp_path, name, 1)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def disk_full(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="disk full"):
        _written(tmp_path, name, 2)
    assert path.read_bytes() == before[path]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
