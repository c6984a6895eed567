"""Aligned pairs for the fusion-mask net: synthetic eyes (CF + FA, CF + OCT, CF clip + OCTA,
pixel-aligned by construction) and, when the data is at hand, FIRE-P pairs registered by the
homography fitted to their ground-truth control points. Each pair is normalised once as the
fusion normalises it (``core.fusion.normalised_pair``); training samples random crops with
random flips, quarter turns and swapped roles.

FIRE-P pairs P10-P19 are the fusion benchmark's (``benchmarks/bench_fusion.py --fire 10``) and
are never used here; P37's ground truth is wrong (README) and is left out too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from retreg.core.fusion import normalised_pair
from retreg.core.io import read_image
from retreg.core.warp import warp_moving

SYNTH_PAIRS = (("cf", "fa"), ("cf", "oct"), ("cf_clip", "octa"))
BENCH_FIRE = frozenset(range(10, 20))
BAD_FIRE = frozenset({37})
MIN_OVERLAP = 0.6  # least share of a crop inside the overlap


@dataclass
class FusionDataConfig:
    synth_seed_start: int = 20_000_000  # far from the benchmarks' 10,100,000+ and 10,600,000+
    synth_cases: int = 150
    synth_size: int = 384
    fire_root: str | None = "/work/shared/data/FIRE_P"  # None or missing: synthetic only
    fire_side: int = 768  # FIRE pairs at the side the net sees them in use (core NET_SIDE)
    real_fraction: float = 0.3
    crop: int = 192
    batch_size: int = 8
    val_seed_start: int = 20_900_000
    val_cases: int = 4

    def __post_init__(self) -> None:
        if self.crop % 16:
            raise ValueError(f"crop must be a multiple of 16, got {self.crop}")
        if not 0.0 <= self.real_fraction <= 1.0:
            raise ValueError(f"real_fraction must be in [0, 1], got {self.real_fraction}")


Pair = tuple[np.ndarray, np.ndarray, np.ndarray]  # (a, b float16 HxW, overlap bool HxW)


def _pair(fixed: np.ndarray, moving: np.ndarray) -> Pair:
    a, b, overlap = normalised_pair(fixed, moving)
    return a.astype(np.float16), b.astype(np.float16), overlap


def synthetic_pairs(seed_start: int, cases: int, size: int) -> list[Pair]:
    from retreg.training.synth import render_case

    out = []
    for seed in range(seed_start, seed_start + cases):
        case = render_case(seed, size)
        out.extend(_pair(case[f], case[m]) for f, m in SYNTH_PAIRS)
    return out


def fire_training_ids(root: Path) -> list[int]:
    """FIRE-P pair numbers with images and ground truth, less the benchmark's and P37."""
    ids = sorted(int(p.stem[1:].split("_")[0]) for p in (root / "data").glob("P*_1.jpg"))
    return [k for k in ids if k not in BENCH_FIRE | BAD_FIRE
            and (root / "Ground_Truth" / f"control_points_P{k}_1_2.txt").is_file()]


def fire_pairs(root: Path, side: int) -> list[Pair]:
    """FIRE-P training pairs, resized to ``side``, the moving image warped by the homography
    fitted to the ground-truth control points."""
    out = []
    for k in fire_training_ids(root):
        pts = np.loadtxt(root / "Ground_Truth" / f"control_points_P{k}_1_2.txt")
        hom, _ = cv2.findHomography(pts[:, 2:], pts[:, :2])
        fixed, moving = (read_image(root / "data" / f"P{k}_{i}.jpg") for i in (1, 2))
        f = side / max(fixed.shape[:2])
        scale = np.diag([f, f, 1.0])
        fixed, moving = (cv2.resize(im, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
                         for im in (fixed, moving))
        out.append(_pair(fixed, warp_moving(moving, scale @ hom @ np.linalg.inv(scale),
                                            fixed.shape)))
    return out


def _crop(pair: Pair, crop: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    a, b, overlap = pair
    h, w = a.shape
    for _ in range(20):  # a crop mostly inside the overlap (the last try is kept regardless)
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        if overlap[y:y + crop, x:x + crop].mean() >= MIN_OVERLAP:
            break
    stack = np.stack([a[y:y + crop, x:x + crop], b[y:y + crop, x:x + crop],
                      overlap[y:y + crop, x:x + crop]]).astype(np.float32)
    if rng.random() < 0.5:
        stack[:2] = stack[1::-1]  # roles swapped: the choice must not depend on which is fixed
    stack = np.rot90(stack, int(rng.integers(4)), axes=(1, 2))
    if rng.random() < 0.5:
        stack = stack[:, :, ::-1]
    stack = torch.from_numpy(np.ascontiguousarray(stack))
    return {"ab": stack[:2], "valid": stack[2:]}


class FusionCrops(Dataset):
    """``length`` random crops; item ``i`` is the same crop for the same seed, so a run is
    reproducible. A share ``real_fraction`` of the crops comes from ``real`` (when any)."""

    def __init__(self, synthetic: list[Pair], real: list[Pair], crop: int,
                 real_fraction: float, length: int, seed: int) -> None:
        self.synthetic, self.real, self.crop = synthetic, real, crop
        self.real_fraction = real_fraction if real else 0.0
        self.length, self.seed = length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, i))
        pool = self.real if rng.random() < self.real_fraction else self.synthetic
        return _crop(pool[int(rng.integers(len(pool)))], self.crop, rng)


def whole_pairs(pairs: list[Pair]) -> list[dict[str, torch.Tensor]]:
    """Whole pairs as single-item batches (validation), cropped to multiples of 16."""
    out = []
    for a, b, overlap in pairs:
        h, w = (s - s % 16 for s in a.shape)
        stack = np.stack([a[:h, :w], b[:h, :w], overlap[:h, :w]]).astype(np.float32)
        t = torch.from_numpy(stack)[None]
        out.append({"ab": t[:, :2], "valid": t[:, 2:]})
    return out
