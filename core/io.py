"""Reading and writing images with clear, user-facing errors.

Images are returned exactly as stored (original resolution, 8- or 16-bit), only normalised in
layout: gray ``HxW`` or ``HxWx3`` RGB (alpha dropped). The header is checked *before* decoding
so a file that claims absurd dimensions fails fast instead of exhausting memory.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from retreg.core.atomic import atomic_write_bytes
from retreg.core.errors import ImageReadError

MIN_SIDE = 32
MAX_SIDE = 20000
MAX_PIXELS = 400_000_000


def _check_size(path: Path, width: int, height: int) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageReadError(f"{path.name}: image is {width}x{height} px, smaller than "
                             f"{MIN_SIDE} px on a side")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageReadError(f"{path.name}: image is {width}x{height} px, larger than the "
                             f"limit ({MAX_SIDE} px a side, {MAX_PIXELS // 1_000_000} MP)")


def _probe_header(path: Path) -> None:
    """Validate the declared size without decoding pixels (PIL reads headers lazily)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path.name}: image is too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return  # PIL cannot parse this header; OpenCV may still decode it, sizes checked after
    _check_size(path, width, height)


def _to_rgb_layout(img: np.ndarray, path: Path) -> np.ndarray:
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{path.name}: pixel type {img.dtype} is not supported "
                             "(only 8- or 16-bit images)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return np.ascontiguousarray(img)
    if img.ndim == 3 and img.shape[2] == 2:  # gray + alpha
        return np.ascontiguousarray(img[:, :, 0])
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise ImageReadError(f"{path.name}: unsupported image layout {img.shape}")


def check_image_file(path: str | os.PathLike) -> Path:
    """``ImageReadError`` unless ``path`` is a non-empty file whose header ``read_image`` can
    take (a cheap look, no decoding: bad inputs fail before any slow work)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path.name}: file is empty")
    _probe_header(path)
    return path


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read PNG / JPEG / TIFF as uint8 or uint16, ``HxW`` gray or ``HxWx3`` RGB."""
    path = check_image_file(path)
    data = np.fromfile(path, dtype=np.uint8)  # fromfile + imdecode: works with non-ASCII paths
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageReadError(f"{path.name}: cannot decode image ({exc.err})") from None
    if img is None or img.size == 0:
        raise ImageReadError(f"{path.name}: not a readable image (corrupted or unknown format)")
    _check_size(path, img.shape[1], img.shape[0])
    return _to_rgb_layout(img, path)


def to_float01(img: np.ndarray) -> np.ndarray:
    """8/16-bit image -> float32 in [0, 1]; float input is clipped to [0, 1]."""
    if img.dtype in (np.uint8, np.uint16):
        out = img.astype(np.float32)
        out /= 255.0 if img.dtype == np.uint8 else 65535.0  # in place: one pass fewer
        return out
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)
    raise ImageReadError(f"pixel type {img.dtype} is not supported (only 8- or 16-bit images)")


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write gray or RGB (uint8/uint16) atomically (``core.atomic``)."""
    path = Path(path)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(path.suffix or ".png", img)
    if not ok:
        raise ImageReadError(f"{path.name}: cannot encode image as {path.suffix}")
    atomic_write_bytes(path, buf.tobytes())
