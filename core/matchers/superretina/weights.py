"""The SuperRetina-style matcher's weights on disk (``core.weights_file``: safetensors with the
architecture in its metadata, a card JSON beside it; never unpickled)."""
from __future__ import annotations

from pathlib import Path

from retreg.core import weights_file
from retreg.core.errors import ModelLoadError
from retreg.core.weights_file import card_path, load_state, save_with_config

from .model import SuperRetinaConfig, SuperRetinaNet

CONFIG_KEY = "retreg_superretina_config"


def save_weights(model: SuperRetinaNet, path: str | Path, card: dict | None = None) -> Path:
    """Write ``path`` (safetensors, config in metadata) and, when given, its card JSON."""
    return save_with_config(model, model.config.to_dict(), CONFIG_KEY, path, card)


def read_config(path: str | Path) -> SuperRetinaConfig:
    """The architecture stored in a weights file (``ModelLoadError`` saying why not)."""
    try:
        return SuperRetinaConfig.from_dict(
            weights_file.read_config(path, CONFIG_KEY, "superretina matcher"))
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"{path}: unreadable superretina matcher config ({exc})") from None


def load_model(path: str | Path, device: str = "cpu") -> SuperRetinaNet:
    """The network stored in ``path``, in eval mode on ``device``."""
    return load_state(SuperRetinaNet(read_config(path)), path).to(device).eval()


__all__ = ["CONFIG_KEY", "card_path", "load_model", "read_config", "save_weights"]
