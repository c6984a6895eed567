"""Matcher registry: one place that turns a name into a ready matcher."""
from __future__ import annotations

from pathlib import Path

from core.matchers.base import Matcher
from core.matchers.classical import classical_matcher, sift_matcher

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WEIGHTS = REPO_ROOT / "resources" / "models" / "retreg_loftr_v1.safetensors"
_NAMES = ("default", "classical", "sift", "loftr")


def available_matchers() -> list[str]:
    """Names ``get_matcher`` accepts (``loftr`` needs weights: bundled or given)."""
    return list(_NAMES)


def get_matcher(name: str = "default", weights: str | Path | None = None,
                device: str = "cpu") -> Matcher:
    """A matcher by name; ``default`` is ``loftr`` when its weights are bundled, else ``classical``."""
    if name not in _NAMES:
        raise ValueError(f"unknown matcher {name!r}; valid names: {', '.join(_NAMES)}")
    if name == "default":
        name = "loftr" if weights is not None or DEFAULT_WEIGHTS.is_file() else "classical"
    if name == "classical":
        return classical_matcher()
    if name == "sift":
        return sift_matcher()
    from core.matchers.loftr import LoftrMatcher  # lazy: torch is only needed for this one

    return LoftrMatcher.from_weights(Path(weights) if weights is not None else DEFAULT_WEIGHTS,
                                     device=device)


__all__ = ["Matcher", "available_matchers", "get_matcher"]
