"""OCT en-face (projection) image: a gray rectangle around the macula or the disc.

Vessels cast dark shadows, the nerve fibre layer is bright and striated near the disc, the
disc itself is dark (no retina above it), and the image carries speckle and B-scan line
artefacts (row-wise gain jumps, an occasional band of lost signal). Outside the scanned rectangle
the image is zero, but it stays pixel-aligned with the full field.
"""
from __future__ import annotations

import numpy as np

from retreg.training.synth.fields import finish, radial_streaks, smooth_field, speckle
from retreg.training.synth.raster import opacity
from retreg.training.synth.scene import Scene
from retreg.training.synth.view import View
from retreg.training.synth.vessel_tree import ARTERY, VEIN


def oct_box(scene: Scene, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Normalised (x0, y0, x1, y1) of the scanned field around macula, disc or both, in frame."""
    an = scene.anatomy
    t = rng.choice([0.0, 1.0, 0.5], p=[0.5, 0.25, 0.25])  # 0 macula, 1 disc, 0.5 between
    c = np.asarray(an.fovea) * (1 - t) + np.asarray(an.disc) * t + rng.normal(0, 0.02, 2)
    w = rng.uniform(0.35, 0.75) * (1.3 if t == 0.5 else 1.0)
    h = w * rng.uniform(0.75, 1.0)
    x0 = float(np.clip(c[0] - w / 2, 0.0, max(0.0, 1.0 - w)))  # shift, not cut, at the frame edge
    y0 = float(np.clip(c[1] - h / 2, 0.0, max(0.0, 1.0 - h)))
    return x0, y0, min(1.0, x0 + w), min(1.0, y0 + h)


def render_oct(scene: Scene, view: View) -> np.ndarray:
    """Gray uint8 (size, size); zero outside the scanned rectangle."""
    rng = np.random.default_rng(scene.seeds["oct"])
    an = scene.anatomy
    px = view.scale / 512
    box = oct_box(scene, rng)
    level = np.float32(rng.uniform(0.3, 0.55))
    img = level * (1 + np.float32(0.15) * smooth_field(rng, view, 5, 128))
    streak = radial_streaks(np.random.default_rng(rng.integers(1 << 31)), view, an.disc,
                            along_px=12.0 * px, across_px=1.5 * px)
    nfl = view.gauss(an.disc, 3.0 * an.disc_r)
    img += np.float32(rng.uniform(0.1, 0.35)) * nfl * (1 + np.float32(rng.uniform(0.1, 0.4)) * streak)
    img *= 1 - np.float32(rng.uniform(0.1, 0.3)) * view.gauss(an.fovea, 0.8 * an.disc_r)
    img *= 1 - np.float32(rng.uniform(0.5, 0.85)) * view.gauss(an.disc, 0.7 * an.disc_r)

    shadow = (opacity(scene.tree, view, (VEIN,), w0_px=2.0 * px)
              + np.float32(0.8) * opacity(scene.tree, view, (ARTERY,), w0_px=2.0 * px))
    img *= np.exp(-np.float32(rng.uniform(0.5, 1.5)) * shadow)

    img *= speckle(rng, view.size, rng.uniform(2.0, 8.0), corr_px=rng.uniform(0.4, 1.0))
    rows = 1 + np.float32(rng.uniform(0.0, 0.08)) * rng.standard_normal(view.size).astype(np.float32)
    if rng.random() < 0.3:  # blink / motion: a band of rows with lost signal
        y = int(rng.integers(0, view.size))
        rows[y:y + int(rng.integers(2, 12) * px) + 1] *= np.float32(rng.uniform(0.1, 0.6))
    img *= rows[:, None]
    noise_rng = np.random.default_rng(rng.integers(1 << 31))
    out = finish(img, noise_rng, rng.uniform(0.0, 0.8), rng.uniform(0.005, 0.02), False,
                 gamma=rng.uniform(0.8, 1.3))
    u, v = view.coords()
    inside = (u >= box[0]) & (u < box[2]) & (v >= box[1]) & (v < box[3])
    out[~inside] = 0
    return out
