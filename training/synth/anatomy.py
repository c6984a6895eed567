"""Where the eye's landmarks sit in the frame: optic disc, fovea and the camera's field of view.

Proportions follow a 45° fundus photograph: disc diameter ≈ 1/9 of the frame, fovea about
2.5 disc diameters temporal to the disc and a little below it. Left and right eyes, macula-,
disc- and pole-centred framings and FOV circles clipped by the frame are all drawn, because
real clinics produce all of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Anatomy:
    disc: tuple[float, float]  # normalised centre of the optic disc
    disc_r: float  # normalised disc radius
    fovea: tuple[float, float]
    fov_c: tuple[float, float]  # centre of the circular camera field
    fov_r: float
    right_eye: bool

    @property
    def faz_r(self) -> float:
        """Radius of the foveal avascular zone (≈ 0.25 mm)."""
        return 0.33 * self.disc_r

    def in_fov(self, x: float, y: float, margin: float = 0.0) -> bool:
        return math.hypot(x - self.fov_c[0], y - self.fov_c[1]) < self.fov_r + margin


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    right_eye = bool(rng.random() < 0.5)
    disc_r = rng.uniform(0.045, 0.065)
    dist = rng.uniform(4.6, 5.6) * disc_r
    tilt = math.radians(rng.uniform(-4.0, 12.0))  # fovea slightly below the disc
    roll = math.radians(rng.normal(0.0, 6.0))  # head/camera roll
    nasal = 1.0 if right_eye else -1.0  # the disc lies nasal (right in a right eye)
    ang = tilt + roll
    offset = np.array([nasal * math.cos(ang), math.sin(ang) * 1.0]) * dist
    # Framing: the point between fovea (0) and disc (1) that lands near the frame centre.
    lam = rng.choice([rng.uniform(-0.1, 0.35), rng.uniform(0.35, 0.7), rng.uniform(0.8, 1.05)],
                     p=[0.55, 0.25, 0.2])
    centre = np.array([0.5, 0.5]) + rng.normal(0.0, 0.025, 2)
    fovea = centre - lam * offset
    disc = fovea + offset
    fov_r = rng.choice([rng.uniform(0.42, 0.5), rng.uniform(0.5, 0.6)], p=[0.75, 0.25])
    fov_c = (0.5 + rng.normal(0, 0.01), 0.5 + rng.normal(0, 0.01))
    return Anatomy(
        disc=(float(disc[0]), float(disc[1])), disc_r=float(disc_r),
        fovea=(float(fovea[0]), float(fovea[1])), fov_c=fov_c, fov_r=float(fov_r),
        right_eye=right_eye,
    )
