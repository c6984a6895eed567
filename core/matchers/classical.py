"""SIFT matchers: the cross-modal classical baseline and plain intensity SIFT.

``classical`` runs SIFT on the modality-normalised vessel maps, where FA's bright and CF's dark
vessels look alike; ``sift`` runs it on the preprocessed intensity, the reference a learned
matcher must beat. Both use RootSIFT descriptors, Lowe's ratio test and a mutual check.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retreg.core.types import Matches, PreparedImage

_FOV_MARGIN_PX = 8  # keypoints on the FOV rim describe the rim, not the retina


def _rootsift(desc: np.ndarray) -> np.ndarray:
    """Hellinger-normalised SIFT: more reliable nearest neighbours than raw L2 SIFT."""
    desc = desc / (np.abs(desc).sum(axis=1, keepdims=True) + 1e-7)
    return np.sqrt(desc).astype(np.float32)


@dataclass
class SiftMatcher:
    """SIFT on ``source`` ("vessels" or "work") of each PreparedImage."""

    name: str = "classical"
    source: str = "vessels"
    working_side: int = 512
    n_features: int = 4000
    ratio: float = 0.85

    def _detect(self, img: PreparedImage) -> tuple[np.ndarray, np.ndarray]:
        plane = getattr(img, self.source)
        u8 = np.round(np.clip(plane, 0.0, 1.0) * 255.0).astype(np.uint8)
        mask = cv2.erode(img.fov.astype(np.uint8) * 255, np.ones((3, 3), np.uint8),
                         iterations=_FOV_MARGIN_PX)
        sift = cv2.SIFT_create(nfeatures=self.n_features)
        kps, desc = sift.detectAndCompute(u8, mask)
        if desc is None or len(kps) == 0:
            return np.zeros((0, 2)), np.zeros((0, 128), np.float32)
        return np.array([kp.pt for kp in kps], np.float64), _rootsift(desc)

    def match(self, fixed: PreparedImage, moving: PreparedImage) -> Matches:
        pf, df = self._detect(fixed)
        pm, dm = self._detect(moving)
        if len(pf) < 2 or len(pm) < 2:
            return Matches.empty()
        bf = cv2.BFMatcher(cv2.NORM_L2)
        fwd = bf.knnMatch(df, dm, k=2)  # fixed -> moving, two nearest for the ratio test
        back = bf.match(dm, df)  # moving -> fixed nearest, for the mutual check
        best_back = {m.queryIdx: m.trainIdx for m in back}
        rows = []
        for pair in fwd:
            if len(pair) < 2:
                continue
            a, b = pair
            ratio = a.distance / max(b.distance, 1e-7)
            if ratio < self.ratio and best_back.get(a.trainIdx) == a.queryIdx:
                rows.append((a.queryIdx, a.trainIdx, 1.0 - ratio))
        if not rows:
            return Matches.empty()
        qi, ti, conf = (np.array(c) for c in zip(*rows))
        return Matches(fixed.to_full(pf[qi.astype(int)]), moving.to_full(pm[ti.astype(int)]),
                       np.clip(conf, 0.0, 1.0))


def classical_matcher(working_side: int = 512) -> SiftMatcher:
    return SiftMatcher(name="classical", source="vessels", working_side=working_side)


def sift_matcher(working_side: int = 512) -> SiftMatcher:
    return SiftMatcher(name="sift", source="work", working_side=working_side)
