"""Write synthetic cases to disk in the clinic's layout (see docs/contracts.md).

``ROOT/case_000123/case_000123_cf_gen_512.png`` (+ ``_fa_gen``, ``_oct_gen``,
``_cf_gen_clip_512``, ``_octa_gen``), side files ``_vessels.png``, ``_vessels_clip.png`` and
``_keypoints.json``. The case name carries the seed, so a case can be re-rendered exactly.
Every file is written to a temporary name and renamed, so an interrupted run never leaves a
half-written image that a dataset scan would trust.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retreg.core.atomic import atomic_write_bytes
from retreg.core.io import write_image
from retreg.training.synth.case import render_case

IMAGE_FILES = {  # render_case key → file suffix
    "cf": "cf_gen_512.png",
    "fa": "fa_gen.png",
    "oct": "oct_gen.png",
    "cf_clip": "cf_gen_clip_512.png",
    "octa": "octa_gen.png",
    "vessels": "vessels.png",
    "vessels_clip": "vessels_clip.png",
}


def case_name(seed: int) -> str:
    return f"case_{seed:06d}"


def write_case(root: str | Path, seed: int, case: dict[str, np.ndarray]) -> Path:
    """Write one rendered case under ``root``; returns the case folder."""
    name = case_name(seed)
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    for key, suffix in IMAGE_FILES.items():
        write_image(folder / f"{name}_{suffix}", case[key])
    truth = {
        "full": np.round(case["keypoints"].astype(float), 3).tolist(),
        "clip": np.round(case["keypoints_clip"].astype(float), 3).tolist(),
        "clip_box": [int(v) for v in case["clip_box"]],
        "seed": int(seed),
    }
    atomic_write_bytes(folder / f"{name}_keypoints.json", json.dumps(truth).encode())
    return folder


def render_and_write(root: str | Path, seed: int, size: int = 512) -> Path:
    """Render case ``seed`` and write it (the unit of work of ``retreg synth``)."""
    return write_case(root, seed, render_case(seed, size))
