"""``FastMatcher``: the fast structural matcher behind the ``Matcher`` protocol.

One pass of a small detector/descriptor per image, top-K reliable keypoints inside the field of
view, mutual nearest neighbours of their descriptors. The fixed image's keypoints are kept
between calls with the same ``PreparedImage`` object, so the hypothesis search's variants of the
moving image (``core.hypotheses``) cost one network pass each, not two. The network runs as a
folded, channels-last copy (``core.matchers.inference``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from retreg.core.geometry import pad_to_multiple
from retreg.core.representation import model_input
from retreg.core.types import Matches, PreparedImage

from ..inference import for_inference
from ..keypoints import Keypoints, mutual_nearest
from .model import STRIDE, FastNet, detect
from .weights import load_model


class FastMatcher:
    """Matches in full-resolution coordinates with dual-softmax confidence in [0, 1]."""

    name = "fast"

    def __init__(self, model: FastNet, device: str = "cpu") -> None:
        self.config = model.config
        self.net = for_inference(model).to(device)
        self.device = device
        self._fixed: tuple[PreparedImage, Keypoints] | None = None

    @classmethod
    def from_weights(cls, path: str | Path, device: str = "cpu") -> "FastMatcher":
        """Load safetensors weights (raises ``ModelLoadError`` with the reason)."""
        return cls(load_model(path, device), device)

    @property
    def working_side(self) -> int:
        return self.config.working_side

    @torch.no_grad()
    def detect(self, x: torch.Tensor, valid: torch.Tensor | None) -> Keypoints:
        """Top-K keypoints of one network input ``x`` (1, C, H, W), H and W multiples of 8,
        inside ``valid`` (1, H, W) bool (None: everywhere)."""
        out = self.net(x.to(self.device, memory_format=torch.channels_last))
        return detect(out, None if valid is None else valid.to(self.device), self.config)

    def keypoints(self, img: PreparedImage) -> Keypoints:
        """Top-K keypoints of one prepared image, in its working-resolution pixels."""
        x = pad_to_multiple(model_input(img, channels=self.config.channels), STRIDE)
        valid = pad_to_multiple(np.asarray(img.fov, bool), STRIDE)
        return self.detect(torch.from_numpy(np.ascontiguousarray(x))[None],
                           torch.from_numpy(valid)[None])

    def match(self, fixed: PreparedImage, moving: PreparedImage) -> Matches:
        if self._fixed is not None and self._fixed[0] is fixed:
            k0 = self._fixed[1]
        else:
            k0 = self.keypoints(fixed)
            self._fixed = (fixed, k0)
        k1 = self.keypoints(moving)
        c = self.config
        m = mutual_nearest(k0, k1, c.temperature, c.ratio, c.min_confidence)
        return Matches(fixed.to_full(k0.xy[m.i].cpu().numpy().astype(np.float64)),
                       moving.to_full(k1.xy[m.j].cpu().numpy().astype(np.float64)),
                       m.conf.cpu().numpy())
