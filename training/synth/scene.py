"""One synthetic eye: anatomy, vessel tree, lesions and the seeds of every renderer.

Everything here is in normalised full-frame coordinates and independent of output size, so
the same scene can be rendered as a full field, as a clip around the disc, and in every
modality, and all of them agree geometrically.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retreg.training.synth.anatomy import Anatomy, sample_anatomy
from retreg.training.synth.view import View
from retreg.training.synth.vessel_tree import VesselTree, grow_tree

LESION_KINDS = ("haemorrhage", "microaneurysm", "exudate", "drusen", "cotton_wool", "leak")


@dataclass(frozen=True)
class Scene:
    seed: int
    anatomy: Anatomy
    tree: VesselTree
    lesions: dict[str, np.ndarray]  # kind → (n, 3) normalised x, y, radius
    seeds: dict[str, int]  # renderer name → seed of its own random stream


def make_scene(seed: int) -> Scene:
    ss = np.random.SeedSequence(seed)
    names = ("tree", "lesions", "cf", "fa", "oct", "octa", "layout")
    streams = dict(zip(names, ss.spawn(len(names))))
    rng = np.random.default_rng(streams["tree"])
    anatomy = sample_anatomy(rng)
    tree = grow_tree(anatomy, rng)
    lesions = _sample_lesions(anatomy, np.random.default_rng(streams["lesions"]))
    seeds = {k: int(v.generate_state(1)[0]) for k, v in streams.items()}
    return Scene(seed, anatomy, tree, lesions, seeds)


def _sample_lesions(an: Anatomy, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Lesions for about a third of the eyes, placed where they occur (pole, macula)."""
    spec = {  # kind: (probability, max count, radius range in disc radii, spread around fovea)
        "haemorrhage": (0.25, 14, (0.08, 0.3), 3.5),
        "microaneurysm": (0.3, 30, (0.03, 0.06), 3.0),
        "exudate": (0.2, 25, (0.04, 0.14), 1.8),
        "drusen": (0.12, 30, (0.05, 0.13), 1.3),
        "cotton_wool": (0.1, 5, (0.2, 0.35), 3.0),
        "leak": (0.3, 6, (0.2, 0.7), 2.5),
    }
    out = {}
    for kind, (p, n_max, (r0, r1), spread) in spec.items():
        n = int(rng.integers(1, n_max + 1)) if rng.random() < p else 0
        xy = np.asarray(an.fovea) + rng.normal(0.0, spread * an.disc_r, (n, 2))
        r = rng.uniform(r0, r1, n) * an.disc_r
        out[kind] = np.column_stack([xy, r]) if n else np.zeros((0, 3))
    return out


def blobs(view: View, items: np.ndarray, soft_px: float = 1.0) -> np.ndarray:
    """Soft filled discs (x, y, r normalised) rasterised into a view, float32 [0, 1]."""
    canvas = np.zeros((view.size, view.size), np.uint8)
    if len(items):
        shift = 4
        xy = np.rint(view.to_px(items[:, :2]) * (1 << shift)).astype(np.int64)
        rr = np.maximum(1, np.rint(items[:, 2] * view.scale * (1 << shift))).astype(np.int64)
        for (x, y), r in zip(xy, rr):
            cv2.circle(canvas, (int(x), int(y)), int(r), 255, -1, cv2.LINE_AA, shift)
    out = canvas.astype(np.float32) / 255.0
    return cv2.GaussianBlur(out, (0, 0), soft_px) if soft_px > 0 and len(items) else out
