"""The network's input tensor, shared by the training dataset and the learned matcher so that
training and inference see exactly the same representation."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retreg.core.modality import fov_mask
from retreg.core.types import PreparedImage

CHANNELS = ("intensity", "vessels")


def _standardise(work: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """Zero mean / unit std inside the FOV, 0 outside: removes exposure and modality gain."""
    out = np.zeros(work.shape, np.float32)
    if not fov.any():
        return out
    vals = work[fov]
    out[fov] = (vals - vals.mean()) / max(float(vals.std()), 1e-6)
    return out


def model_input(work: PreparedImage | np.ndarray, vessels: np.ndarray | None = None,
                channels: Sequence[str] = CHANNELS, fov: np.ndarray | None = None) -> np.ndarray:
    """float32 (C, H, W) from a PreparedImage or from ``work`` + ``vessels`` (HxW, [0, 1]).

    Without a PreparedImage the FOV is ``fov`` when given, else found with ``fov_mask``.
    """
    if isinstance(work, PreparedImage):
        work, vessels, fov = work.work, work.vessels, work.fov
    work = np.asarray(work, np.float32)
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown or not channels:
        raise ValueError(f"channels must be a non-empty subset of {CHANNELS}, got {tuple(channels)}")
    planes = []
    for name in channels:
        if name == "intensity":
            planes.append(_standardise(work, fov_mask(work) if fov is None else fov))
        else:
            if vessels is None:
                raise ValueError("the 'vessels' channel needs a vessel map")
            planes.append(np.asarray(vessels, np.float32))
    return np.stack(planes)
