"""``LoftrMatcher``: the learned cross-modal matcher behind the ``Matcher`` protocol.

One network pass on the two images as given, fed exactly the representation the network was
trained on (``core.representation``) at its trained pixel scale. Which variant of the moving
image it is given is the hypothesis search's business (``core.hypotheses``), not the matcher's.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from retreg.core.geometry import pad_to_multiple
from retreg.core.representation import model_input
from retreg.core.types import Matches, PreparedImage

from .backbone import Features
from .model import COARSE_STRIDE, RetRegLoFTR
from .weights import load_model


def _padded(chw: np.ndarray, fov: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, H8, W8) input and (1, H8, W8) valid mask, zero-padded to whole coarse cells."""
    img = pad_to_multiple(np.asarray(chw, np.float32), COARSE_STRIDE)
    valid = pad_to_multiple(np.asarray(fov, bool), COARSE_STRIDE)
    return torch.from_numpy(img)[None], torch.from_numpy(valid)[None]


class LoftrMatcher:
    """Matches in full-resolution coordinates with the coarse confidence in [0, 1]."""

    name = "loftr"

    def __init__(self, model: RetRegLoFTR, device: str = "cpu",
                 off_scale_weights: str | Path | None = None) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self._fixed: tuple[bytes, Features] | None = None  # (input digest, its features)
        self._off_scale_weights = off_scale_weights
        self._off_scale: LoftrMatcher | None = None

    @classmethod
    def from_weights(cls, path: str | Path, device: str = "cpu",
                     off_scale_weights: str | Path | None = None) -> "LoftrMatcher":
        """Load safetensors weights (raises ``ModelLoadError`` with the reason);
        ``off_scale_weights``: a scale-trained network for ``off_scale``, loaded on first use."""
        return cls(load_model(path, device), device, off_scale_weights)

    @property
    def off_scale(self) -> "LoftrMatcher | None":
        """The matcher of the pipeline's scale efforts (``core.matchers.base``): the network of
        ``off_scale_weights``, loaded once when first asked for; None without such weights."""
        if self._off_scale is None and self._off_scale_weights is not None:
            self._off_scale = LoftrMatcher.from_weights(self._off_scale_weights, self.device)
        return self._off_scale

    @property
    def working_side(self) -> int:
        return self.model.config.working_side

    def _input(self, img: PreparedImage) -> tuple[torch.Tensor, torch.Tensor]:
        x, v = _padded(model_input(img, channels=self.model.config.channels), img.fov)
        return x.to(self.device), v.to(self.device)

    @torch.no_grad()
    def _fixed_features(self, x0: torch.Tensor) -> Features:
        """``x0``'s backbone features, reused while the same fixed input comes again (the
        hypothesis search matches many moving variants against one fixed image). The key is
        a digest of the input itself, so a changed image can never get stale features."""
        key = hashlib.blake2b(x0.cpu().numpy().tobytes(), digest_size=16).digest()
        key += str(tuple(x0.shape)).encode()
        if self._fixed is None or self._fixed[0] != key:
            self._fixed = (key, self.model.encode_fixed(x0))
        return self._fixed[1]

    def match(self, fixed: PreparedImage, moving: PreparedImage) -> Matches:
        x0, v0 = self._input(fixed)
        x1, v1 = self._input(moving)
        out = self.model.match(self._fixed_features(x0), x1, v0, v1)
        return Matches(fixed.to_full(out.kpts0.cpu().numpy().astype(np.float64)),
                       moving.to_full(out.kpts1.cpu().numpy().astype(np.float64)),
                       out.conf.cpu().numpy())
