"""The LoFTR model's weights on disk (``core.weights_file``: safetensors with the architecture
in its metadata, a card JSON beside it; never unpickled), and partial loads for training."""
from __future__ import annotations

from pathlib import Path

import torch

from retreg.core.errors import ModelLoadError
from retreg.core.weights_file import NetworkFile, card_path, load_state, read_state

from .model import LoftrConfig, RetRegLoFTR

FILE = NetworkFile(LoftrConfig, RetRegLoFTR, "retreg_loftr_config", "LoFTR")
CONFIG_KEY = FILE.key
save_weights, read_config, load_model = FILE.save, FILE.read_config, FILE.load


def load_backbone(model: RetRegLoFTR, path: str | Path) -> int:
    """Hybrid initialisation: copy only ``backbone.*`` tensors of ``path`` into ``model``
    (transformer and heads stay random). Returns how many tensors were loaded."""
    state = read_state(path)
    own = model.state_dict()
    picked = {k: v for k, v in state.items()
              if k.startswith("backbone.") and k in own and own[k].shape == v.shape}
    if not picked:
        raise ModelLoadError(f"{path}: no backbone tensor fits this architecture")
    with torch.no_grad():
        for k, v in picked.items():
            own[k].copy_(v)
    return len(picked)


def load_all(model: RetRegLoFTR, path: str | Path) -> None:
    """Continue training from exported weights: every tensor of ``model`` from ``path``.

    Unlike a Lightning resume this starts a fresh optimiser, schedule and epoch count, so a
    new stage can change the data scale or augmentation of a finished model."""
    load_state(model, path)


__all__ = ["CONFIG_KEY", "card_path", "load_all", "load_backbone", "load_model", "read_config",
           "save_weights"]
