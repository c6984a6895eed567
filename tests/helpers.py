"""Drawing helpers shared by tests: vessel-like synthetic patterns with known geometry."""
import cv2
import numpy as np


def vessel_lines(size: int, seed: int, n_lines: int, steps: int, step_px: float,
                 spread: tuple[float, float], turn_sd: float) -> np.ndarray:
    """uint8 0/1 mask of random curving lines of widths 2-5 px (a vessel-like pattern)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(n_lines):
        p = rng.uniform(*spread, 2) * size
        heading = rng.uniform(0, 2 * np.pi)
        width = int(rng.integers(2, 6))
        for _ in range(steps):
            heading += rng.normal(0, turn_sd)
            q = p + step_px * np.array([np.cos(heading), np.sin(heading)])
            cv2.line(mask, tuple(int(v) for v in p), tuple(int(v) for v in q), 1, width)
            p = q
    return mask


def fundus_like(size: int, seed: int = 0) -> np.ndarray:
    """A gray disc with dark random vessel-like curves (uint8)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.uint8)
    cv2.circle(img, (size // 2, size // 2), int(size * 0.45), 170, -1)
    for _ in range(15):
        pts = rng.integers(size // 8, size * 7 // 8, size=(4, 2)).astype(np.int32)
        cv2.polylines(img, [pts], False, 60, 2)
    return img


def write_case(root, name: str, files: dict):
    """A case folder ``root/name`` holding ``files`` (file name -> image); returns the folder."""
    from retreg.core.io import write_image

    folder = root / name
    folder.mkdir(parents=True)
    for fname, img in files.items():
        write_image(folder / fname, img)
    return folder
