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
