"""Image reading: formats, bit depths, layouts, and clear errors for unusable files."""
import struct
import zlib

import cv2
import numpy as np
import pytest

from retreg.core.errors import ImageReadError
from retreg.core.io import read_image, to_float01, write_image


def _png_with_header_only(path, width, height):
    """A PNG whose IHDR claims (width, height) but carries almost no data."""
    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_reads_16bit_gray_png_without_losing_depth(tmp_path):
    img = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 20).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint16 and out.shape == (48, 64)
    np.testing.assert_array_equal(out, img)


def test_rgba_png_becomes_rgb_in_rgb_order(tmp_path):
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 0] = 200  # red
    rgba[..., 3] = 128
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    out = read_image(tmp_path / "a.png")
    assert out.shape == (40, 50, 3)
    assert out[..., 0].min() == 200 and out[..., 1:].max() == 0


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_gray_and_rgb_round_trip_through_write_image(tmp_path, suffix):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (60, 70, 3), dtype=np.uint8)
    gray = rgb[..., 1].copy()
    for name, img in (("rgb", rgb), ("gray", gray)):
        path = tmp_path / f"{name}{suffix}"
        write_image(path, img)
        out = read_image(path)
        assert out.shape == img.shape and out.dtype == np.uint8
        if suffix != ".jpg":
            np.testing.assert_array_equal(out, img)
    assert not list(tmp_path.glob("*.tmp"))


def test_16bit_tiff_rgb(tmp_path):
    img = np.full((40, 40, 3), 1000, np.uint16)
    img[..., 2] = 60000
    write_image(tmp_path / "a.tif", img)
    out = read_image(tmp_path / "a.tif")
    assert out.dtype == np.uint16 and out[0, 0, 2] == 60000 and out[0, 0, 0] == 1000


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "nope.png")


def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(tmp_path / "e.png")


def test_corrupted_file(tmp_path):
    (tmp_path / "c.jpg").write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageReadError, match="not a readable image"):
        read_image(tmp_path / "c.jpg")


def test_tiny_image(tmp_path):
    cv2.imwrite(str(tmp_path / "t.png"), np.zeros((31, 100), np.uint8))
    with pytest.raises(ImageReadError, match="smaller than 32"):
        read_image(tmp_path / "t.png")


def test_huge_header_is_rejected_before_decoding(tmp_path):
    _png_with_header_only(tmp_path / "h.png", 25000, 40)
    with pytest.raises(ImageReadError, match="larger than the limit"):
        read_image(tmp_path / "h.png")


def test_decompression_bomb_header_is_rejected(tmp_path):
    _png_with_header_only(tmp_path / "b.png", 19000, 19000)
    with pytest.raises(ImageReadError, match="too large|larger than"):
        read_image(tmp_path / "b.png")


def test_float_tiff_is_an_odd_dtype(tmp_path):
    cv2.imwrite(str(tmp_path / "f.tif"), np.zeros((40, 40), np.float32))
    with pytest.raises(ImageReadError, match="float32"):
        read_image(tmp_path / "f.tif")


def test_to_float01_scales_by_bit_depth():
    assert to_float01(np.array([[255]], np.uint8))[0, 0] == pytest.approx(1.0)
    assert to_float01(np.array([[65535 // 2]], np.uint16))[0, 0] == pytest.approx(0.5, abs=1e-4)
    assert to_float01(np.array([[255]], np.uint8)).dtype == np.float32
