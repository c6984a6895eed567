"""Weights on disk: a safetensors file (tensors + architecture config in its metadata) and a
card JSON beside it. Loading never unpickles anything."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from retreg.core.atomic import atomic_write_bytes, atomic_write_text
from retreg.core.errors import ModelLoadError

from .model import LoftrConfig, RetRegLoFTR

CONFIG_KEY = "retreg_loftr_config"


def card_path(weights: str | Path) -> Path:
    """``x.safetensors`` -> ``x.card.json``."""
    weights = Path(weights)
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".card.json")


def save_weights(model: RetRegLoFTR, path: str | Path, card: dict | None = None) -> Path:
    """Write ``path`` (safetensors, config in metadata) and, when given, its card JSON."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path = atomic_write_bytes(path, save(state, metadata={CONFIG_KEY: json.dumps(
        model.config.to_dict())}))
    if card is not None:
        card = {**card, "architecture": model.config.to_dict()}
        atomic_write_text(card_path(path), json.dumps(card, indent=2, default=str))
    return path


def read_config(path: str | Path) -> LoftrConfig:
    """The architecture stored in a weights file."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path}: not a safetensors file ({exc})") from None
    if CONFIG_KEY not in meta:
        raise ModelLoadError(f"{path}: no RetReg LoFTR config in the file (not our weights?)")
    try:
        return LoftrConfig.from_dict(json.loads(meta[CONFIG_KEY]))
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"{path}: unreadable architecture config ({exc})") from None


def load_model(path: str | Path, device: str = "cpu") -> RetRegLoFTR:
    """The model stored in ``path``, in eval mode on ``device``."""
    model = RetRegLoFTR(read_config(path))
    state = load_file(str(path), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: weights do not fit the stored architecture "
                             f"({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()


def _read_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file does not exist")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path}: not a safetensors file ({exc})") from None


def load_backbone(model: RetRegLoFTR, path: str | Path) -> int:
    """Hybrid initialisation: copy only ``backbone.*`` tensors of ``path`` into ``model``
    (transformer and heads stay random). Returns how many tensors were loaded."""
    state = _read_state(path)
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
    try:
        model.load_state_dict(_read_state(path), strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: weights do not fit this architecture "
                             f"({str(exc).splitlines()[0]})") from None
