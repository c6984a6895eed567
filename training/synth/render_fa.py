"""Fluorescein angiogram: bright vessels on a mottled choroidal flush, dark macula.

The phase is drawn per case: early (arteries filled, veins dim, crisp), mid (all vessels
bright) and late (low vessel contrast, brighter background, leakage blooms and disc
staining). Haemorrhages block fluorescence (dark), microaneurysms are bright dots. The FA
camera has its own circular field, a little different from the colour camera's.
"""
from __future__ import annotations

import numpy as np

from retreg.training.synth.fields import band_noise, finish, network, smooth_field
from retreg.training.synth.raster import opacity
from retreg.training.synth.scene import Scene, blobs
from retreg.training.synth.view import View
from retreg.training.synth.vessel_tree import ARTERY, VEIN


def render_fa(scene: Scene, view: View) -> np.ndarray:
    """Gray uint8 (size, size)."""
    rng = np.random.default_rng(scene.seeds["fa"])
    an = scene.anatomy
    px = view.scale / 512
    phase = rng.uniform(0.0, 1.0)  # 0 early arterial … 1 late
    late = np.float32(max(0.0, phase - 0.55) / 0.45)

    # Choroidal flush: lobular mottling, brighter and smoother late.
    bg_level = np.float32(rng.uniform(0.12, 0.35) + 0.15 * late)
    lobules = view.sample(network(band_noise(rng, 256, rng.uniform(1.5, 3.0)), 0.7))
    img = bg_level * (1 + np.float32(rng.uniform(0.1, 0.4) * (1 - late)) * (lobules - 0.5))
    img *= 1 + np.float32(0.15) * smooth_field(rng, view, 5, 128)
    # Capillary haze: fine texture, strongest around the macular arcades.
    haze = np.float32(rng.uniform(0.0, 0.08)) * (band_noise(rng, view.size, 1.2 * px) + 1.0)
    img += haze * view.gauss(an.fovea, 3.0 * an.disc_r)
    # Macula dark (pigment), avascular zone darkest.
    img *= 1 - np.float32(rng.uniform(0.3, 0.7)) * view.gauss(an.fovea, rng.uniform(0.8, 1.4) * an.disc_r)
    img *= 1 - np.float32(0.5) * view.gauss(an.fovea, an.faz_r)

    # Vessels: arteries fill first; in the late phase the contrast washes out.
    art = np.float32(rng.uniform(0.6, 0.9) * (1 - 0.5 * late))
    vein = art * np.float32(min(1.0, 0.15 + 1.6 * phase))
    img += art * opacity(scene.tree, view, (ARTERY,), width_gain=1.1, w0_px=1.8 * px)
    img += vein * opacity(scene.tree, view, (VEIN,), width_gain=1.1, w0_px=1.8 * px)
    disc = view.gauss(an.disc, 0.7 * an.disc_r)
    img += np.float32(rng.uniform(0.05, 0.2) + 0.5 * late) * disc

    le = scene.lesions
    img *= 1 - 0.8 * blobs(view, le["haemorrhage"], 1.2 * px)
    img += np.float32(rng.uniform(0.3, 0.7)) * blobs(view, le["microaneurysm"], 0.8 * px)
    if late > 0 and len(le["leak"]):
        img += late * np.float32(rng.uniform(0.3, 0.8)) * blobs(view, le["leak"], 6 * px)
    img += np.float32(rng.uniform(0.1, 0.3)) * blobs(view, le["drusen"], 1.5 * px)  # staining

    # The FA camera's own circular field and vignetting.
    c = np.asarray(an.fov_c) + rng.normal(0, 0.03, 2)
    r = an.fov_r * rng.uniform(0.85, 1.05)
    d = view.dist(c) / np.float32(r)
    img *= 1 - np.float32(rng.uniform(0.1, 0.5)) * d ** 2
    img *= np.clip((1 - d) * np.float32(r * view.scale / 1.5), 0, 1) * np.float32(rng.uniform(0.8, 1.4))
    noise_rng = np.random.default_rng(rng.integers(1 << 31))
    return finish(img, noise_rng, rng.uniform(0.0, 1.3), rng.uniform(0.005, 0.03), rng.random() < 0.4,
                  gamma=rng.uniform(0.75, 1.3))
