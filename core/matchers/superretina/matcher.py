"""``SuperRetinaMatcher``: the SuperRetina-style keypoint matcher behind the ``Matcher`` protocol.

One network pass per image: heatmap maxima inside the field of view (NMS, threshold, top-K),
descriptors sampled there, mutual nearest neighbours + Lowe's ratio. Binning, USAC, refinement
and the hypothesis search stay the pipeline's. The fixed image's keypoints are kept between
calls with the same ``PreparedImage`` object, so the search's variants of the moving image cost
one pass each.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from retreg.core.geometry import pad_to_multiple
from retreg.core.representation import model_input
from retreg.core.types import Matches, PreparedImage

from ..keypoints import Keypoints, mutual_nearest
from .model import STRIDE, SuperRetinaNet, detect
from .weights import load_model


class SuperRetinaMatcher:
    """Matches in full-resolution coordinates with dual-softmax confidence in [0, 1]."""

    name = "superretina"

    def __init__(self, model: SuperRetinaNet, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = device
        self._fixed: tuple[PreparedImage, Keypoints] | None = None

    @classmethod
    def from_weights(cls, path: str | Path, device: str = "cpu") -> "SuperRetinaMatcher":
        """Load safetensors weights (raises ``ModelLoadError`` with the reason)."""
        return cls(load_model(path, device), device)

    @property
    def working_side(self) -> int:
        return self.model.config.working_side

    @torch.no_grad()
    def keypoints(self, img: PreparedImage, side: int) -> Keypoints:
        """Detected keypoints of one prepared image (side 0 fixed, 1 moving), in its
        working-resolution pixels."""
        x = pad_to_multiple(model_input(img, channels=self.model.config.channels), STRIDE)
        valid = pad_to_multiple(np.asarray(img.fov, bool), STRIDE)
        out = self.model(torch.from_numpy(np.ascontiguousarray(x))[None].to(self.device), side)
        return detect(out, torch.from_numpy(valid)[None].to(self.device), self.model.config)

    def detections(self, img: PreparedImage, side: int) -> np.ndarray:
        """(N, 2) full-resolution keypoints of one image (the app's keypoint overlay)."""
        return img.to_full(self.keypoints(img, side).xy.cpu().numpy().astype(np.float64))

    def match(self, fixed: PreparedImage, moving: PreparedImage) -> Matches:
        if self._fixed is not None and self._fixed[0] is fixed:
            k0 = self._fixed[1]
        else:
            k0 = self.keypoints(fixed, 0)
            self._fixed = (fixed, k0)
        k1 = self.keypoints(moving, 1)
        c = self.model.config
        m = mutual_nearest(k0, k1, c.temperature, c.ratio)
        return Matches(fixed.to_full(k0.xy[m.i].cpu().numpy().astype(np.float64)),
                       moving.to_full(k1.xy[m.j].cpu().numpy().astype(np.float64)),
                       m.conf.cpu().numpy())
