"""Detected keypoints and their matching, shared by the keypoint matchers (``fast``,
``superretina``): mutual nearest neighbours of L2-normalised descriptors, Lowe's ratio, and the
dual-softmax probability of each chosen pair as its confidence."""
from __future__ import annotations

from dataclasses import dataclass

import torch

MIN_TEMPERATURE = 0.03  # the one-exp dual softmax below stays far from float32's limits above it


@dataclass
class Keypoints:
    xy: torch.Tensor  # (N, 2) input pixels
    desc: torch.Tensor  # (N, D) L2-normalised
    score: torch.Tensor  # (N,) detection score in [0, 1]


@dataclass
class KeypointMatches:
    i: torch.Tensor  # (M,) index into keypoints of image0
    j: torch.Tensor  # (M,) index into keypoints of image1
    conf: torch.Tensor  # (M,) dual-softmax confidence in [0, 1]


def mutual_nearest(k0: Keypoints, k1: Keypoints, temperature: float, ratio: float = 1.0,
                   min_confidence: float = 0.0) -> KeypointMatches:
    """Mutual nearest neighbours of the descriptors (+ Lowe's ``ratio`` when < 1), kept when
    their dual-softmax probability at ``temperature`` (>= ``MIN_TEMPERATURE``) reaches
    ``min_confidence``; that probability is the match's confidence."""
    if temperature < MIN_TEMPERATURE:
        raise ValueError(f"temperature must be >= {MIN_TEMPERATURE}, got {temperature}")
    dev = k0.desc.device
    if len(k0.xy) == 0 or len(k1.xy) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return KeypointMatches(empty, empty, torch.zeros(0, device=dev))
    sim = k0.desc @ k1.desc.T
    j = sim.argmax(1)
    i = torch.arange(len(j), device=dev)
    mutual = sim.argmax(0)[j] == i
    # The dual softmax at the chosen pairs only, from one exp of the whole matrix: |sim| <= 1,
    # so exp((sim - 1) / T) lies in [exp(-2 / T), 1].
    e = ((sim - 1) / temperature).exp()
    e_ij = e[i, j]
    conf = (e_ij / e.sum(1)) * (e_ij / e.sum(0)[j])
    keep = mutual & (conf >= min_confidence)
    if ratio < 1 and sim.shape[1] > 1:
        dist = (2 - 2 * sim.topk(2, dim=1).values).clamp(min=0).sqrt()
        keep &= dist[:, 0] < ratio * dist[:, 1]
    return KeypointMatches(i[keep], j[keep], conf[keep].clamp(0, 1))
