"""Colour fundus photograph: orange-red fundus, dark vessels, bright disc, dark macula.

Appearance is drawn per case over wide ranges (pigmentation, choroidal tessellation,
illumination, vignetting, haze, blur, noise, JPEG) because the model must not learn one
synthetic look; the geometry comes from the scene. The look and the full-frame smooth fields
are drawn from the scene's own seed, so the full field and the clip around the disc (two
views of one scene) show the same eye.
"""
from __future__ import annotations

import numpy as np

from retreg.training.synth.fields import band_noise, finish, network, radial_streaks, smooth_field
from retreg.training.synth.raster import opacity
from retreg.training.synth.scene import Scene, blobs
from retreg.training.synth.view import View
from retreg.training.synth.vessel_tree import ARTERY, VEIN

_LIGHT = np.array([0.98, 0.62, 0.30], np.float32)
_DARK = np.array([0.62, 0.22, 0.07], np.float32)


def render_cf(scene: Scene, view: View, clip: bool = False) -> np.ndarray:
    """RGB uint8 (size, size, 3). ``clip`` renders a magnified view (sharper optics).

    Factors that do not depend on colour are combined as 2-D maps first: full-colour
    arithmetic on 512² float images is what costs time here.
    """
    rng = np.random.default_rng(scene.seeds["cf"])
    an = scene.anatomy
    px = view.scale / 512  # pixels of this view per pixel of a 512 full field
    pig = rng.beta(2.0, 2.0)
    base = (_LIGHT * (1 - pig) + _DARK * pig) * rng.uniform(0.85, 1.1, 3).astype(np.float32)
    base *= np.float32(rng.uniform(0.7, 1.05))

    # Colourless gain: choroidal tessellation (coarse vessel network seen through thin
    # pigment), mottling, vignetting and uneven illumination.
    tess = np.float32(0.35 * rng.beta(1.2, 3.0) * (1.2 - pig))
    choroid = view.sample(network(band_noise(rng, 256, rng.uniform(2.0, 4.0)), 0.5))
    gain = (1 - tess * (1 - choroid)) * (1 + 0.12 * smooth_field(rng, view, 6, 128)).clip(0.6, 1.4)
    d = view.dist(an.fov_c) / np.float32(an.fov_r)
    gain *= 1 - np.float32(rng.uniform(0.1, 0.6)) * d ** np.float32(rng.choice([2.0, 3.0, 4.0]))
    gain *= np.exp(np.float32(rng.uniform(0.05, 0.35)) * smooth_field(rng, view, 3))

    # Macula darker in green/blue; nerve fibre striation near the disc brightens green/blue.
    mac = np.float32(rng.uniform(0.15, 0.45)) * view.gauss(an.fovea, rng.uniform(1.0, 1.8) * an.disc_r)
    streak = radial_streaks(np.random.default_rng(rng.integers(1 << 31)), view, an.disc,
                            along_px=10.0 * px, across_px=1.2 * px)
    nfl = np.float32(rng.uniform(0.0, 0.035)) * streak * view.gauss(an.disc, 3.5 * an.disc_r)
    img = (base * gain[..., None]) * (1 - mac[..., None] * np.float32([0.7, 1.0, 1.0]))
    img += nfl[..., None] * np.float32([0.5, 1.0, 1.0])

    # Optic disc: pale yellow, whiter cup, soft slightly elliptic edge; sometimes atrophy.
    disc, cup = _disc(view, an, rng)
    disc_col = np.float32([1.0, 0.82, 0.55]) * np.float32(rng.uniform(0.8, 1.15))
    disc *= 1 + np.float32(0.15) * view.sample(band_noise(rng, 128, 1.5))  # rim texture
    img += disc[..., None] * (disc_col - img) + cup[..., None]

    # Vessels absorb: veins darker and wider than arteries; green and blue most.
    absorb = np.float32([rng.uniform(0.25, 0.5), 1.2, 1.0])
    k_vein = np.float32(rng.uniform(0.6, 1.4))
    k_art = k_vein * np.float32(rng.uniform(0.45, 0.75))
    op = (k_vein * opacity(scene.tree, view, (VEIN,), w0_px=2.5 * px)
          + k_art * opacity(scene.tree, view, (ARTERY,), w0_px=2.5 * px))
    img *= np.exp(-op[..., None] * absorb)

    img = _lesions(img, scene, view, rng)
    light = np.zeros((view.size, view.size), np.float32)
    if rng.random() < 0.3:  # lens haze / flash reflex
        c = np.asarray(an.fov_c) + rng.normal(0, 0.15, 2)
        light += np.float32(rng.uniform(0.05, 0.25)) * view.gauss(c, rng.uniform(0.1, 0.3))
    if rng.random() < 0.25:  # bright rim near the field stop
        light += np.float32(rng.uniform(0.05, 0.2)) * np.exp(-((1 - d) / 0.03) ** 2)
    if rng.random() < 0.4:  # foveal reflex
        light += np.float32(rng.uniform(0.05, 0.2)) * view.gauss(an.fovea, 0.08 * an.disc_r)
    edge = np.clip((1 - d) * an.fov_r * view.scale / 1.5, 0, 1)  # ~1.5 px soft field stop
    img = (img + light[..., None]) * (edge * np.float32(rng.uniform(0.8, 1.25)))[..., None]

    noise_rng = np.random.default_rng(rng.integers(1 << 31))
    blur = rng.uniform(0.0, 1.2) if not clip else rng.uniform(0.6, 2.2)
    return finish(img, noise_rng, blur, rng.uniform(0.003, 0.02), rng.random() < 0.5,
                  gamma=rng.uniform(0.8, 1.25, 3))


def _disc(view: View, an, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(disc opacity, additive cup brightness) maps; optional peripapillary atrophy ring."""
    u, v = view.coords()
    ecc = np.float32(rng.uniform(1.0, 1.15))  # discs are a little taller than wide
    r = np.hypot(u - np.float32(an.disc[0]), (v - np.float32(an.disc[1])) / ecc) / np.float32(an.disc_r)
    soft = np.float32(rng.uniform(0.08, 0.25))
    disc = np.clip((1 - r) / soft + 0.5, 0, 1) * np.float32(rng.uniform(0.6, 0.95))
    cup_r = np.float32(rng.uniform(0.25, 0.6))
    cup = np.float32(rng.uniform(0.1, 0.35)) * np.exp(-(r / cup_r) ** 2)
    if rng.random() < 0.3:
        cup += np.float32(rng.uniform(0.05, 0.2)) * np.exp(-((r - 1.25) / 0.2) ** 2)
    return disc, cup


def _lesions(img: np.ndarray, scene: Scene, view: View, rng: np.random.Generator) -> np.ndarray:
    le = scene.lesions
    soft = 0.6 * view.scale / 512
    red = blobs(view, le["haemorrhage"], 1.5 * soft) + blobs(view, le["microaneurysm"], soft)
    bright = (blobs(view, le["exudate"], soft) * np.float32(rng.uniform(0.4, 0.8))
              + blobs(view, le["drusen"], 2 * soft) * np.float32(rng.uniform(0.15, 0.35))
              + blobs(view, le["cotton_wool"], 4 * soft) * np.float32(rng.uniform(0.2, 0.4)))
    if red.any():
        img *= 1 - np.clip(red, 0, 1)[..., None] * np.float32([0.45, 0.85, 0.85])
    if bright.any():
        img += bright[..., None] * np.float32([0.9, 0.85, 0.4])
    return img


def fov_mask(scene: Scene, view: View) -> np.ndarray:
    """Bool mask of the CF camera's circular field in ``view``."""
    return view.dist(scene.anatomy.fov_c) < scene.anatomy.fov_r
