"""Bundled files: the model's weights, card and report, and the sample pair.

Found through ``importlib.resources``, so an installed wheel finds them as a checkout does.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

MODEL_NAME = "retreg_loftr_v1"
SCALE_MODEL_NAME = "retreg_loftr_v1_scale"
FUSION_MODEL_NAME = "retreg_fusion_v1"
FAST_MODEL_NAME = "retreg_fast_v1"
SUPERRETINA_MODEL_NAME = "retreg_superretina_v1"


def resource_path(*parts: str) -> Path:
    """The path of a bundled file (it may not exist: callers say what is missing)."""
    return Path(str(files(__name__).joinpath(*parts)))


def bundled_weights() -> Path:
    """The bundled matcher's safetensors file."""
    return resource_path("models", f"{MODEL_NAME}.safetensors")


def bundled_scale_weights() -> Path:
    """The bundled matcher's scale-trained sibling, which the pipeline's scale efforts use."""
    return resource_path("models", f"{SCALE_MODEL_NAME}.safetensors")


def bundled_fusion_weights() -> Path:
    """The bundled fusion-mask net's safetensors file (``core.fusion_net``)."""
    return resource_path("models", f"{FUSION_MODEL_NAME}.safetensors")


def bundled_fast_weights() -> Path:
    """The fast structural matcher's safetensors file (``core.matchers.fast``)."""
    return resource_path("models", f"{FAST_MODEL_NAME}.safetensors")


def bundled_superretina_weights() -> Path:
    """The SuperRetina-style matcher's safetensors file (``core.matchers.superretina``)."""
    return resource_path("models", f"{SUPERRETINA_MODEL_NAME}.safetensors")


def sample_pair() -> tuple[Path, Path]:
    """The bundled synthetic sample: (fixed CF, moving FA)."""
    return resource_path("samples", "sample_cf_512.png"), resource_path("samples", "sample_fa.png")
