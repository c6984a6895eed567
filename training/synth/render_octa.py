"""OCT angiography en-face: bright flow in vessels over a dense capillary bed.

Drawn in the clip view around the disc (like a 3×3 or 6×6 mm OCTA). Capillaries are the zero
level set of band-limited noise (a closed meshwork), replaced near the disc by radial
peripapillary capillaries; the foveal avascular zone is empty when the field reaches the
fovea. Large vessels saturate, with a faint blurred projection tail. Speckle, row-wise
motion lines, signal dropout patches and capillary non-perfusion vary per case.
"""
from __future__ import annotations

import cv2
import numpy as np

from retreg.training.synth.fields import band_noise, finish, network, radial_streaks, smooth_field, speckle
from retreg.training.synth.raster import opacity
from retreg.training.synth.scene import Scene, blobs
from retreg.training.synth.view import View


def render_octa(scene: Scene, view: View) -> np.ndarray:
    """Gray uint8 (size, size)."""
    rng = np.random.default_rng(scene.seeds["octa"])
    an = scene.anatomy
    px = view.size / 512
    mesh_px = rng.uniform(0.5, 1.0) / view.side * px  # capillary spacing is physical: scales with magnification
    cap = network(band_noise(rng, view.size, mesh_px), rng.uniform(0.25, 0.5))
    rpc = network(radial_streaks(np.random.default_rng(rng.integers(1 << 31)), view, an.disc,
                                 along_px=25.0 * px, across_px=1.0), 0.35)
    d_disc = view.dist(an.disc) / np.float32(an.disc_r)
    ring = np.exp(-((d_disc - 1.8) / rng.uniform(0.5, 1.5)) ** 2)  # peripapillary capillary zone
    bed = cap * (1 - ring) * np.float32(rng.uniform(0.6, 1.0)) + rpc * ring * np.float32(rng.uniform(0.4, 1.0))
    bed *= 1 - np.float32(rng.uniform(0.3, 0.9)) * np.clip(1.2 - d_disc, 0, 1)  # disc cup: little flow
    bed *= np.clip(view.dist(an.fovea) / np.float32(an.faz_r) - 0.5, 0, 1)  # avascular zone
    if len(scene.lesions["haemorrhage"]) or len(scene.lesions["microaneurysm"]):
        drop = blobs(view, np.asarray(scene.lesions["leak"]) * [1, 1, 3], 8 * px)  # non-perfusion
        bed *= 1 - np.float32(rng.uniform(0.5, 0.9)) * np.clip(drop, 0, 1)
    img = np.float32(rng.uniform(0.25, 0.55)) * bed
    img *= 1 + np.float32(0.25) * smooth_field(rng, view, 5, 128)

    gain = rng.uniform(0.75, 1.1)  # OCTA shows the flow column, about the CF calibre
    op = opacity(scene.tree, view, (0, 1), width_gain=gain, w0_px=1.5 * px)
    flow = 1 - np.exp(-np.float32(rng.uniform(1.5, 3.0)) * op)
    tail = cv2.GaussianBlur(flow, (0, 0), 4 * px) * np.float32(rng.uniform(0.0, 0.3))
    img = np.maximum(img, flow * np.float32(rng.uniform(0.7, 1.0))) + tail

    img *= speckle(rng, view.size, rng.uniform(1.5, 5.0), corr_px=rng.uniform(0.0, 0.8))
    rows = 1 + np.float32(rng.uniform(0.0, 0.15)) * rng.standard_normal(view.size).astype(np.float32)
    img *= rows[:, None]
    if rng.random() < 0.3:  # vitreous floater / dropout shadow
        c = np.asarray([view.x0, view.y0]) + rng.uniform(0, view.side, 2)
        img *= 1 - np.float32(rng.uniform(0.3, 0.8)) * view.gauss(c, rng.uniform(0.1, 0.3) * view.side)
    noise_rng = np.random.default_rng(rng.integers(1 << 31))
    return finish(img * np.float32(rng.uniform(0.9, 1.3)), noise_rng, rng.uniform(0.0, 1.0),
                  rng.uniform(0.005, 0.03), rng.random() < 0.5, gamma=rng.uniform(0.7, 1.2))
