"""The fast matcher's weights on disk (``core.weights_file``: safetensors with the architecture
in its metadata, a card JSON beside it; never unpickled)."""
from __future__ import annotations

from retreg.core.weights_file import NetworkFile, card_path

from .model import FastConfig, FastNet

FILE = NetworkFile(FastConfig, FastNet, "retreg_fast_config", "fast matcher")
CONFIG_KEY = FILE.key
save_weights, read_config, load_model = FILE.save, FILE.read_config, FILE.load

__all__ = ["CONFIG_KEY", "card_path", "load_model", "read_config", "save_weights"]
