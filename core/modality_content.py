"""The modality of a retinal image from its pixels, for files whose names do not say.

Physical cues, measured on a copy whose longest side is 512 px:
- ``contrast``: the 1-99 % intensity range; a flat or blank image shows no modality at all;
- ``chroma``: colour fundus is the only colour modality (gray stored as RGB has ~0 chroma);
- ``polarity``: log ratio of bright to dark ridge strength inside the field: FA and OCTA show
  bright vessels, OCT en-face and CF dark ones;
- ``corners``: how much of the four corners of the lit area's bounding box is lit: none for a
  fundus camera's round field (even one clipped by the frame), all for a scan's square (the
  lit area, not ``fov_mask``, because OCTA's dark capillary-free zones cut into its field mask);
- ``frame``: the share of the frame the field covers: an OCT en-face window sits inside a larger
  frame, an OCTA fills its own.
Each modality is a box over these cues with soft (logistic) edges; the guess is the best box and
its confidence the softmax share of its score among all boxes and a constant "none of these".
Known blind spot: an FA with a square, frame-filling field (confocal SLO) has every OCTA cue and
is guessed as OCTA with high confidence; such files need their mode from the name or the user.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retreg.core.io import to_float01
from retreg.core.modality import fov_mask
from retreg.core.vessels import ridge_strength

PROBE_SIDE = 512
RIDGE_SIGMA = 2.5  # px at PROBE_SIDE: a mid-sized vessel
LIT_SHARE = 0.04  # a pixel is lit (inside some field) above this share of the bright end
CORNER_SHARE = 0.08  # corner squares' side, as a share of the field's bounding box
_INF = float("inf")
# modality -> cue -> (low, high, softness): soft box edges in the cue's own units
_SEEN = (0.05, _INF, 0.01)  # contrast: some structure to judge
BOXES: dict[str, dict[str, tuple[float, float, float]]] = {
    "cf": {"contrast": _SEEN, "chroma": (0.3, _INF, 0.05), "polarity": (-_INF, 0.1, 0.05)},
    "fa": {"contrast": _SEEN, "chroma": (-_INF, 0.2, 0.05), "polarity": (0.12, _INF, 0.04),
           "corners": (-_INF, 0.3, 0.05)},
    "oct": {"contrast": _SEEN, "chroma": (-_INF, 0.2, 0.05), "polarity": (-_INF, -0.04, 0.02),
            "corners": (0.6, _INF, 0.05), "frame": (-_INF, 0.6, 0.05)},
    "octa": {"contrast": _SEEN, "chroma": (-_INF, 0.2, 0.05), "polarity": (-0.05, _INF, 0.02),
             "corners": (0.6, _INF, 0.05), "frame": (0.6, _INF, 0.05)},
}
# The log score of "none of these": an image far outside every box (flat, blank) gets a low
# confidence instead of the least bad box's full share.
NONE_SCORE = -4.0


@dataclass(frozen=True)
class ModalityGuess:
    """The guessed modality, its confidence in [0, 1] and the cues it came from."""

    modality: str
    confidence: float
    cues: dict[str, float]

    def describe(self) -> str:
        return f"{self.modality} ({self.confidence:.0%})"


def image_cues(img: np.ndarray) -> dict[str, float]:
    """The four cues of an image as read (``read_image``: 8/16-bit, gray or RGB)."""
    img = np.asarray(img)
    h, w = img.shape[:2]
    s = PROBE_SIDE / max(h, w)
    small = cv2.resize(img, (max(8, round(w * s)), max(8, round(h * s))),
                       interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    f = to_float01(small).astype(np.float32)
    if f.ndim == 3:
        gray = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
        chroma = float(np.mean(np.abs(f[..., 0] - f[..., 1]) + np.abs(f[..., 1] - f[..., 2]))
                       / (gray.mean() + 1e-3))
    else:
        gray, chroma = f, 0.0
    fov = fov_mask(gray)
    lit = cv2.GaussianBlur(gray, (0, 0), 3) > LIT_SHARE * np.percentile(gray, 99)
    ys, xs = np.nonzero(lit if lit.any() else fov)
    box = lit[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    c = max(2, round(CORNER_SHARE * min(box.shape)))
    corners = np.mean([box[:c, :c].mean(), box[:c, -c:].mean(), box[-c:, :c].mean(),
                       box[-c:, -c:].mean()])
    inner = cv2.erode(fov.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    if not inner.any():
        inner = fov
    flat = gray.copy()
    flat[~fov] = float(gray[fov].mean())  # the field's rim is no vessel

    def strength(polarity: float) -> float:
        return float(np.percentile(ridge_strength(flat, RIDGE_SIGMA, polarity)[inner], 99)) + 1e-6

    return {"contrast": float(np.percentile(gray, 99) - np.percentile(gray, 1)), "chroma": chroma,
            "polarity": float(np.log(strength(1.0) / strength(-1.0))),
            "corners": float(corners), "frame": float(fov.mean())}


def _log_membership(x: float, low: float, high: float, soft: float) -> float:
    """log of a soft box: ~0 inside [low, high], falling linearly in units of ``soft`` outside."""
    def log_sigmoid(z: float) -> float:
        return -float(np.logaddexp(0.0, -z))

    return log_sigmoid((x - low) / soft) + log_sigmoid((high - x) / soft)


def guess_modality(img: np.ndarray) -> ModalityGuess:
    """The most likely of ``cf``, ``fa``, ``oct``, ``octa`` for one image, with its confidence."""
    cues = image_cues(img)
    names = list(BOXES)
    scores = np.array([sum(_log_membership(cues[c], *edges) for c, edges in BOXES[m].items())
                       for m in names] + [NONE_SCORE])
    p = np.exp(scores - scores.max())
    p /= p.sum()
    best = int(np.argmax(p[:-1]))
    return ModalityGuess(names[best], float(p[best]), cues)
