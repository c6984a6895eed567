"""``LoftrMatcher``: the learned cross-modal matcher behind the ``Matcher`` protocol.

It feeds the network exactly the representation it was trained on (``core.representation``)
at its trained pixel scale, and registers pairs the network alone would not:
- rotation hypotheses: the moving image is also tried turned by 180, 90 and 270 degrees
  (training covers +-90 degrees, real pairs can differ by more);
- a scale hypothesis: ``prepare`` normalises each image by its own field of view, which is wrong
  when the moving modality covers a smaller field at the same pixel pitch (OCT en-face, FA in
  the clinic's 512 px exports); the moving image is also tried at the fixed image's pitch;
- shift hypotheses: the network matches pairs whose fields are far apart (a third of the field
  and more, as in FIRE's small-overlap pairs) much less well than pairs whose common part sits
  at about the same place in both inputs, so the moving image is also tried moved by a third and
  by two thirds of its side in the eight compass directions (unturned; what leaves the frame is
  dropped, which also drops most of the part the fixed image lacks). Only for two wide-field
  photographs (CF, FA): an OCT or OCTA field lies inside the other image, and there a shift only
  adds chances for a wrong consensus (it turned a real CF-OCTA eye by 83 degrees).
Hypotheses are tried only until one is convincing (RANSAC inliers, ``core.estimation``), so an
ordinary pair costs one network pass. When several were tried, those of one rotation vote:
every hypothesis's transform is scored by its inliers among the matches of all hypotheses of its
rotation (the unturned one with its shifts and pitches). A shift or pitch only changes the
network's input, so a right transform is found again, from other parts of the overlap, by the
other right hypotheses, while a chance consensus is not; the matches of all others that agree
with the winner are added to its own, which spreads them over more of the overlap than one
input arrangement reaches.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from pathlib import Path

import cv2
import numpy as np
import torch

from retreg.core.estimation import estimate, residuals
from retreg.core.representation import model_input
from retreg.core.selection import spatial_binning
from retreg.core.types import Matches, PreparedImage
from retreg.core.vessels import vessel_map

from .model import COARSE_STRIDE, RetRegLoFTR
from .weights import load_model

ROTATIONS = (0, 180, 90, 270)  # degrees counter-clockwise, in the order they are tried
SCORE_THRESHOLD_PX = 3.0  # RANSAC inlier distance (working pixels) for scoring hypotheses
SCALE_TOLERANCE = 0.08  # a pitch hypothesis closer than this to the prepared scale is skipped
SHIFT_FRACTIONS = (1 / 3, 2 / 3)  # shift hypotheses move the moving image by these shares
SHIFT_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))
SHIFT_MODALITIES = frozenset({"cf", "fa"})  # wide-field photographs: shifts only between these


@dataclass
class _Scored:
    """One hypothesis: its matches (full-res), the binned share of them that votes, and its
    affine consensus over those (None when RANSAC found none)."""

    matches: Matches
    inliers: int
    ratio: float
    kept: Matches = dataclass_field(default_factory=Matches.empty)
    model: np.ndarray | None = None


def vote(tried: list[_Scored], groups: list[int], threshold_px: float
         ) -> tuple[int, Matches, int]:
    """(index of the winner, its matches plus the agreeing ones of the others, its support).

    Support = inliers (within ``threshold_px``, full-res fixed px) of a hypothesis's transform
    among the binned matches of every tried hypothesis of its group; ties go to the earlier one.
    Only hypotheses of one group (one rotation) vote for each other: structures that look alike
    under any turn (the optic disc, the rim of the field of view) are matched again by every
    rotation hypothesis and would make a wrong rotation's consensus look confirmed. Once the
    winner is chosen, the matches of every other hypothesis that agree with it (within
    ``threshold_px``) join its own: the network covers +-90 degrees, so a neighbouring rotation
    can see parts of the overlap that the winner's input arrangement does not. A looser radius
    (8 working px) let imprecise matches in and bent a synthetic CF-OCT pair by 21 px.
    """
    def voters(i: int) -> list[Matches]:
        return [t.kept for t, g in zip(tried, groups) if g == groups[i] and len(t.kept)]

    def support(i: int) -> int:
        model = tried[i].model
        if model is None:
            return 0
        return sum(int((residuals(model, m.kpts_moving, m.kpts_fixed) <= threshold_px).sum())
                   for m in voters(i))

    scores = [support(i) for i in range(len(tried))]
    win = int(np.argmax(scores))
    model = tried[win].model
    if model is None:
        return win, tried[win].matches, 0
    joined = [tried[win].matches] + [
        t.kept.subset(residuals(model, t.kept.kpts_moving, t.kept.kpts_fixed) <= threshold_px)
        for i, t in enumerate(tried) if i != win and len(t.kept)]
    return win, Matches(np.concatenate([m.kpts_fixed for m in joined]),
                        np.concatenate([m.kpts_moving for m in joined]),
                        np.concatenate([m.confidence for m in joined])), scores[win]


def _padded(chw: np.ndarray, fov: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, H8, W8) input and (1, H8, W8) valid mask, zero-padded to multiples of 8."""
    c, h, w = chw.shape
    h8, w8 = -(-h // COARSE_STRIDE) * COARSE_STRIDE, -(-w // COARSE_STRIDE) * COARSE_STRIDE
    img = np.zeros((c, h8, w8), np.float32)
    img[:, :h, :w] = chw
    valid = np.zeros((h8, w8), bool)
    valid[:h, :w] = fov
    return torch.from_numpy(img)[None], torch.from_numpy(valid)[None]


def _rotate_points_back(pts: np.ndarray, k: int, w: int, h: int) -> np.ndarray:
    """Points in ``np.rot90(img, k)`` (img is h x w) -> points in ``img``."""
    x, y = pts[:, 0], pts[:, 1]
    k %= 4
    if k == 0:
        return pts
    if k == 1:  # rot90 ccw: (x, y) -> (y, w-1-x)
        return np.stack([w - 1 - y, x], 1)
    if k == 2:
        return np.stack([w - 1 - x, h - 1 - y], 1)
    return np.stack([y, h - 1 - x], 1)


def at_pitch(moving: PreparedImage, scale: tuple[float, float]) -> PreparedImage:
    """``moving`` re-sampled so one working pixel spans ``scale`` full-resolution pixels."""
    h_full, w_full = moving.original.shape[:2]
    wn, hn = max(8, round(w_full / scale[0])), max(8, round(h_full / scale[1]))
    work = cv2.resize(moving.work, (wn, hn), interpolation=cv2.INTER_AREA
                      if wn < moving.work.shape[1] else cv2.INTER_LINEAR)
    fov = cv2.resize(moving.fov.astype(np.uint8), (wn, hn), interpolation=cv2.INTER_NEAREST) > 0
    return replace(moving, work=work, fov=fov, vessels=vessel_map(work, moving.modality, fov),
                   scale=(w_full / wn, h_full / hn))


def shifted(moving: PreparedImage, dx: int, dy: int) -> PreparedImage:
    """``moving`` with its working arrays moved by (dx, dy) working pixels; what leaves the
    frame is lost and zeros (outside the field of view) come in. ``scale`` is unchanged, so
    points found in it map back by subtracting (dx, dy)."""
    def move(a: np.ndarray) -> np.ndarray:
        out = np.zeros_like(a)
        h, w = a.shape
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[yd, xd] = a[ys, xs]
        return out

    return replace(moving, work=move(moving.work), vessels=move(moving.vessels),
                   fov=move(moving.fov))


class LoftrMatcher:
    """Matches in full-resolution coordinates with the coarse confidence in [0, 1]."""

    name = "loftr"

    def __init__(self, model: RetRegLoFTR, device: str = "cpu", accept_inliers: int = 24,
                 accept_ratio: float = 0.3) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.accept_inliers, self.accept_ratio = accept_inliers, accept_ratio
        self.last_hypothesis: dict = {}

    @classmethod
    def from_weights(cls, path: str | Path, device: str = "cpu") -> "LoftrMatcher":
        """Load safetensors weights (raises ``ModelLoadError`` with the reason)."""
        return cls(load_model(path, device), device)

    @property
    def working_side(self) -> int:
        return self.model.config.working_side

    def _input(self, img: PreparedImage, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        chw = model_input(img, channels=self.model.config.channels)
        chw = np.ascontiguousarray(np.rot90(chw, k, axes=(1, 2)))
        fov = np.ascontiguousarray(np.rot90(img.fov, k))
        x, v = _padded(chw, fov)
        return x.to(self.device), v.to(self.device)

    def _run(self, fixed: PreparedImage, x0: torch.Tensor, v0: torch.Tensor,
             moving: PreparedImage, k: int, shift: tuple[int, int] = (0, 0)) -> _Scored:
        x1, v1 = self._input(shifted(moving, *shift) if any(shift) else moving, k)
        out = self.model.match(x0, x1, v0, v1)
        k0 = out.kpts0.cpu().numpy().astype(np.float64)
        h1, w1 = moving.work.shape
        k1 = _rotate_points_back(out.kpts1.cpu().numpy().astype(np.float64), k, w1, h1)
        k1 = k1 - np.asarray(shift, np.float64)
        work_matches = Matches(k0, k1, out.conf.cpu().numpy())
        keep = spatial_binning(work_matches, fixed.work_size)
        full = Matches(fixed.to_full(k0), moving.to_full(k1), work_matches.confidence)
        kept = full.subset(keep)
        est = estimate(kept.kpts_moving, kept.kpts_fixed, "affine",
                       threshold_px=SCORE_THRESHOLD_PX * float(np.mean(fixed.scale)))
        n_in = int(est.inliers.sum()) if est.matrix is not None else 0
        return _Scored(full, n_in, n_in / max(1, len(keep)), kept, est.matrix)

    def match(self, fixed: PreparedImage, moving: PreparedImage) -> Matches:
        variants = [moving]
        ratio = np.asarray(moving.scale) / np.asarray(fixed.scale)
        if np.any(np.abs(ratio - 1.0) > SCALE_TOLERANCE):
            variants.append(at_pitch(moving, fixed.scale))
        x0, v0 = self._input(fixed, 0)
        tried: list[tuple[_Scored, dict]] = []
        best: _Scored | None = None

        def attempt(var: int, deg: int, shift: tuple[int, int] = (0, 0)) -> None:
            nonlocal best
            scored = self._run(fixed, x0, v0, variants[var], deg // 90, shift)
            tried.append((scored, {"rotation_deg": deg, "pitch_variant": var,
                                   "shift_px": shift, "inliers": scored.inliers}))
            if best is None or scored.inliers > best.inliers:
                best = scored

        def convincing() -> bool:
            return best.inliers >= self.accept_inliers and best.ratio >= self.accept_ratio

        for deg in ROTATIONS:
            for vi in range(len(variants)):
                attempt(vi, deg)
            if convincing():
                break
        wide = {fixed.modality, moving.modality} <= SHIFT_MODALITIES
        if wide and not convincing():
            vi = next(info["pitch_variant"] for s, info in tried if s is best)
            h, w = variants[vi].work.shape
            for frac, (ux, uy) in ((f, u) for f in SHIFT_FRACTIONS for u in SHIFT_DIRECTIONS):
                attempt(vi, 0, (round(ux * frac * w), round(uy * frac * h)))
                if convincing():
                    break
        if len(tried) == 1:
            self.last_hypothesis = {**tried[0][1], "support": tried[0][0].inliers, "tried": 1}
            return tried[0][0].matches
        scale = float(np.mean(fixed.scale))
        win, matches, support = vote([s for s, _ in tried],
                                     [info["rotation_deg"] for _, info in tried],
                                     SCORE_THRESHOLD_PX * scale)
        self.last_hypothesis = {**tried[win][1], "support": support, "tried": len(tried)}
        return matches
