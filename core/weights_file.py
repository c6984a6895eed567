"""One home for how RetReg's networks sit on disk: a safetensors file (tensors, plus the
architecture config as JSON in its metadata under a per-network key) and a card JSON beside it.
Loading never unpickles anything; every failure is a ``ModelLoadError`` saying why."""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save
from torch import nn

from retreg.core.atomic import atomic_write_bytes, atomic_write_text
from retreg.core.errors import ModelLoadError


def card_path(weights: str | Path) -> Path:
    """``x.safetensors`` -> ``x.card.json``."""
    weights = Path(weights)
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".card.json")


def save_with_config(model: nn.Module, config: dict, key: str, path: str | Path,
                     card: dict | None = None) -> Path:
    """Write ``model``'s tensors to ``path`` with ``config`` under metadata ``key`` and, when
    given, ``card`` (plus the architecture) beside it; both written atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path = atomic_write_bytes(path, save(state, metadata={key: json.dumps(config)}))
    if card is not None:
        atomic_write_text(card_path(path), json.dumps({**card, "architecture": config},
                                                      indent=2, default=str))
    return path


def config_from_dict(cls, values: dict, what: str):
    """The architecture config dataclass ``cls`` from a JSON mapping: ValueError naming the
    unknown keys (``what``: the network's name); JSON lists become tuples where the field's
    default is one, so a loaded config equals the one saved."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} config keys: {unknown}")
    return cls(**{k: tuple(v) if isinstance(v, list) and isinstance(known[k].default, tuple)
                  else v for k, v in values.items()})


def _exists(path: Path) -> Path:
    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file does not exist")
    return path


def read_config(path: str | Path, key: str, what: str) -> dict:
    """The config dict stored under ``key``; ``what`` names the network in the error when the
    file holds another one's."""
    path = _exists(Path(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path}: not a safetensors file ({exc})") from None
    if key not in meta:
        raise ModelLoadError(f"{path}: no RetReg {what} config in the file (another "
                             "network's weights, or not RetReg's?)")
    try:
        return json.loads(meta[key])
    except ValueError as exc:
        raise ModelLoadError(f"{path}: unreadable {what} config ({exc})") from None


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``path``, on the CPU."""
    path = _exists(Path(path))
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path}: not a safetensors file ({exc})") from None


def load_state(model: nn.Module, path: str | Path) -> nn.Module:
    """``model`` with every tensor from ``path`` (strict: the file must fit it exactly)."""
    try:
        model.load_state_dict(read_state(path), strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: weights do not fit the stored architecture "
                             f"({str(exc).splitlines()[0]})") from None
    return model


@dataclass(frozen=True)
class NetworkFile:
    """How one kind of network sits on disk: ``config_cls`` (a dataclass with ``to_dict`` /
    ``from_dict``), ``net_cls`` (an ``nn.Module`` built from that config and keeping it as
    ``.config``), the metadata ``key`` of its config and ``what`` names it in errors."""

    config_cls: type
    net_cls: type
    key: str
    what: str

    def save(self, model: nn.Module, path: str | Path, card: dict | None = None) -> Path:
        """Write ``path`` (safetensors, config in metadata) and, when given, its card JSON."""
        return save_with_config(model, model.config.to_dict(), self.key, path, card)

    def read_config(self, path: str | Path):
        """The architecture stored in a weights file (``ModelLoadError`` saying why not)."""
        try:
            return self.config_cls.from_dict(read_config(path, self.key, self.what))
        except (ValueError, TypeError) as exc:
            raise ModelLoadError(f"{path}: unreadable {self.what} config ({exc})") from None

    def load(self, path: str | Path, device: str = "cpu") -> nn.Module:
        """The network stored in ``path``, in eval mode on ``device``."""
        return load_state(self.net_cls(self.read_config(path)), path).to(device).eval()
