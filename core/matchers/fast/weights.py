"""The fast matcher's weights: safetensors (tensors + architecture config in the metadata) and a
card JSON beside it, as for the LoFTR model (``core.matchers.loftr.weights``). Never unpickled."""
from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from retreg.core.atomic import atomic_write_bytes, atomic_write_text
from retreg.core.errors import ModelLoadError
from retreg.core.matchers.loftr.weights import card_path

from .model import FastConfig, FastNet

CONFIG_KEY = "retreg_fast_config"


def save_weights(model: FastNet, path: str | Path, card: dict | None = None) -> Path:
    """Write ``path`` (safetensors, config in metadata) and, when given, its card JSON."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path = atomic_write_bytes(path, save(state, metadata={CONFIG_KEY: json.dumps(
        model.config.to_dict())}))
    if card is not None:
        card = {**card, "architecture": model.config.to_dict()}
        atomic_write_text(card_path(path), json.dumps(card, indent=2, default=str))
    return path


def read_config(path: str | Path) -> FastConfig:
    """The architecture stored in a weights file (``ModelLoadError`` saying why not)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path}: not a safetensors file ({exc})") from None
    if CONFIG_KEY not in meta:
        raise ModelLoadError(f"{path}: no RetReg fast matcher config in the file "
                             "(LoFTR weights, or not RetReg's?)")
    try:
        return FastConfig.from_dict(json.loads(meta[CONFIG_KEY]))
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"{path}: unreadable fast matcher config ({exc})") from None


def load_model(path: str | Path, device: str = "cpu") -> FastNet:
    """The network stored in ``path``, in eval mode on ``device``."""
    model = FastNet(read_config(path))
    try:
        model.load_state_dict(load_file(str(path), device="cpu"), strict=True)
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path}: not a safetensors file ({exc})") from None
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: weights do not fit the stored architecture "
                             f"({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()


__all__ = ["CONFIG_KEY", "card_path", "load_model", "read_config", "save_weights"]
