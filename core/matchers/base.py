"""What every matcher provides, so the pipeline, CLI and GUI can swap them freely."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from retreg.core.types import Matches, PreparedImage


@runtime_checkable
class Matcher(Protocol):
    """Finds putative correspondences between two prepared images.

    ``working_side`` is the FOV size (px) the matcher wants its inputs prepared at
    (``core.modality.prepare``). ``match`` returns FULL-resolution coordinates (mapped back
    through ``PreparedImage.to_full``) with confidence in [0, 1]. The moving image may be a
    variant the hypothesis search made (turned, resampled or moved; ``core.hypotheses``): a valid
    PreparedImage like any other, which the matcher needs to know nothing about.

    Optionally a matcher has ``off_scale``: another matcher (same ``working_side``) for inputs off
    its trained scale, which the pipeline's scale efforts use instead of it
    (``pipeline.off_scale_matcher``); None or absent means itself.
    """

    name: str
    working_side: int

    def match(self, fixed: PreparedImage, moving: PreparedImage) -> Matches: ...
