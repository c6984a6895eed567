"""``render_case(seed, size)``: one synthetic eye in every modality, with its ground truth.

Full-field images (``cf``, ``fa``, ``oct``, ``vessels``, ``fov``) are pixel-aligned with each
other; ``cf_clip``, ``octa`` and ``vessels_clip`` are pixel-aligned with each other and show
the square full-field pixel box ``clip_box`` = (x0, y0, x1, y1) around the disc resampled to
size², i.e. clip pixel (cx, cy) is full pixel (x0 - 0.5 + (cx + 0.5)·s, y0 - 0.5 + (cy + 0.5)·s)
with s = (x1 - x0) / size, as ``cv2.resize`` of the crop maps them. The clip is rendered at its
own resolution (not upsampled from the full field), so it is as sharp as a clip from a
high-resolution fundus photograph.

Seeds: training uses seeds from 0, evaluation from 10_000_000, bundled samples 20_000_000+,
so the sets never share an eye.
"""
from __future__ import annotations

import numpy as np

from retreg.training.synth.raster import mask
from retreg.training.synth.render_cf import fov_mask, render_cf
from retreg.training.synth.render_fa import render_fa
from retreg.training.synth.render_oct import render_oct
from retreg.training.synth.render_octa import render_octa
from retreg.training.synth.scene import Scene, make_scene
from retreg.training.synth.view import View, box_view, full_view
from retreg.training.synth.vessel_tree import keypoints

TRAIN_SEED0, EVAL_SEED0, SAMPLE_SEED0 = 0, 10_000_000, 20_000_000
MASK_MIN_PX = 1.0  # vessels thinner than this (in the image's own pixels) are not in the mask
KEYPOINT_MIN_PX = 1.5  # keypoints only where both vessels are clearly visible


def clip_box(scene: Scene, size: int) -> tuple[int, int, int, int]:
    """Square integer box around the disc, 20–35 % of the frame, kept inside frame and field."""
    rng = np.random.default_rng(scene.seeds["layout"])
    an = scene.anatomy
    side = rng.uniform(0.2, 0.35)
    c = np.asarray(an.disc) + rng.uniform(-0.15, 0.15, 2) * side
    for _ in range(20):  # pull towards the field centre until the corners are (nearly) inside
        corners = c + 0.5 * side * np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]])
        if np.hypot(*(corners - an.fov_c).T).max() <= an.fov_r * 1.05:
            break
        c = c + 0.1 * (np.asarray(an.fov_c) - c)
    side_px = int(round(side * size))
    x0, y0 = np.clip(np.rint((c - side / 2) * size).astype(int), 0, size - side_px)
    return int(x0), int(y0), int(x0 + side_px), int(y0 + side_px)


def _keypoints_px(scene: Scene, view: View) -> np.ndarray:
    kp = keypoints(scene.tree, scene.anatomy, KEYPOINT_MIN_PX / view.scale)
    xy = view.to_px(kp[:, :2])
    inside = np.all((xy >= 0) & (xy <= view.size - 1), axis=1)
    return np.column_stack([xy, kp[:, 2]])[inside].astype(np.float32)


def render_case(seed: int, size: int = 512) -> dict[str, np.ndarray]:
    """All modalities and ground truth of synthetic eye ``seed``; deterministic per seed."""
    scene = make_scene(seed)
    full = full_view(size)
    box = clip_box(scene, size)
    clip = box_view(box, size, size)
    return {
        "cf": render_cf(scene, full),
        "fa": render_fa(scene, full),
        "oct": render_oct(scene, full),
        "vessels": mask(scene.tree, full, MASK_MIN_PX),
        "keypoints": _keypoints_px(scene, full),
        "fov": fov_mask(scene, full),
        "cf_clip": render_cf(scene, clip, clip=True),
        "octa": render_octa(scene, clip),
        "vessels_clip": mask(scene.tree, clip, MASK_MIN_PX),
        "keypoints_clip": _keypoints_px(scene, clip),
        "clip_box": np.asarray(box, np.int64),
    }
