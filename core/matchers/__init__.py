"""Matcher registry: one place that turns a name into a ready matcher."""
from __future__ import annotations

from pathlib import Path

from retreg.core.errors import ModelLoadError
from retreg.core.matchers.base import Matcher
from retreg.core.matchers.classical import classical_matcher, sift_matcher
from retreg.resources import (bundled_fast_weights, bundled_scale_weights,
                              bundled_superretina_weights, bundled_weights)

DEFAULT_WEIGHTS = bundled_weights()
SCALE_WEIGHTS = bundled_scale_weights()  # the default LoFTR's network for off-scale inputs
FAST_WEIGHTS = bundled_fast_weights()
SUPERRETINA_WEIGHTS = bundled_superretina_weights()
DEFAULT_MATCHER = "loftr"  # in every mode, CF-CF included
_NAMES = ("default", "classical", "sift", "loftr", "fast", "superretina")


def available_matchers() -> list[str]:
    """Names ``get_matcher`` accepts (``loftr``, ``fast`` and ``superretina`` need weights:
    bundled or given)."""
    return list(_NAMES)


def get_matcher(name: str = "default", weights: str | Path | None = None,
                device: str = "cpu") -> Matcher:
    """A matcher by name; ``default`` is the learned one. Missing bundled weights are an error,
    never a quiet switch to the classical matcher. The bundled LoFTR comes with its
    scale-trained sibling as ``off_scale`` (the scale efforts' matcher); given ``weights`` come
    alone."""
    if name not in _NAMES:
        raise ValueError(f"unknown matcher {name!r}; valid names: {', '.join(_NAMES)}")
    if name == "default":
        name = DEFAULT_MATCHER
    if name == "classical":
        return classical_matcher()
    if name == "sift":
        return sift_matcher()
    if name == "fast":
        from retreg.core.matchers.fast import FastMatcher  # lazy, like the LoFTR model

        if weights is None and not FAST_WEIGHTS.is_file():
            raise ModelLoadError(f"the bundled fast matcher is missing ({FAST_WEIGHTS}); "
                                 "reinstall retreg, give --weights, or choose another --matcher")
        return FastMatcher.from_weights(Path(weights) if weights is not None else FAST_WEIGHTS,
                                        device=device)
    if name == "superretina":
        from retreg.core.matchers.superretina import SuperRetinaMatcher  # lazy, as above

        if weights is None and not SUPERRETINA_WEIGHTS.is_file():
            raise ModelLoadError(f"the bundled superretina matcher is missing "
                                 f"({SUPERRETINA_WEIGHTS}); reinstall retreg, give --weights, "
                                 "or choose another --matcher")
        return SuperRetinaMatcher.from_weights(
            Path(weights) if weights is not None else SUPERRETINA_WEIGHTS, device=device)
    from retreg.core.matchers.loftr import LoftrMatcher  # lazy: torch is only needed for this one

    if weights is not None:  # the user's network alone, in every effort
        return LoftrMatcher.from_weights(Path(weights), device=device)
    for path in (DEFAULT_WEIGHTS, SCALE_WEIGHTS):
        if not path.is_file():
            raise ModelLoadError(f"the bundled model is missing ({path}); reinstall retreg, "
                                 "give --weights, or choose --matcher classical")
    return LoftrMatcher.from_weights(DEFAULT_WEIGHTS, device=device,
                                     off_scale_weights=SCALE_WEIGHTS)


__all__ = ["Matcher", "DEFAULT_MATCHER", "available_matchers", "get_matcher"]
