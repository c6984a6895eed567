"""Modality-normalised vessel map: vessels bright in every modality.

Cross-modal matching needs a representation in which CF's dark vessels and FA's bright vessels
look alike. A multi-scale Hessian ridge response with per-modality polarity gives that cheaply
(a few Gaussian blurs and second derivatives; it runs per training sample).
"""
from __future__ import annotations

import cv2
import numpy as np

# Which way vessels go in each modality: +1 bright vessels on darker background, -1 dark vessels.
POLARITY = {"cf": -1.0, "oct": -1.0, "fa": 1.0, "octa": 1.0}
# Gaussian scales (px) for a working image of REFERENCE_SIDE px (``prepare`` has normalised the
# pixel scale, so vessel widths in pixels are known up to this factor).
BASE_SIGMAS = (1.5, 2.5, 4.0)
REFERENCE_SIDE = 512
NORM_PERCENTILE = 99.0


def ridge_strength(img: np.ndarray, sigma: float, polarity: float) -> np.ndarray:
    """Scale-normalised ridge strength: the Hessian eigenvalue across the vessel."""
    blur = cv2.GaussianBlur(img, (0, 0), sigma)
    dxx = cv2.Sobel(blur, cv2.CV_32F, 2, 0, ksize=3)
    dyy = cv2.Sobel(blur, cv2.CV_32F, 0, 2, ksize=3)
    dxy = cv2.Sobel(blur, cv2.CV_32F, 1, 1, ksize=3)
    half_trace = 0.5 * (dxx + dyy)
    root = np.sqrt((0.5 * (dxx - dyy)) ** 2 + dxy ** 2)
    if polarity > 0:  # bright ridge: strongly negative curvature across it
        lam = -(half_trace - root)
    else:  # dark valley: strongly positive curvature across it
        lam = half_trace + root
    return np.maximum(lam, 0.0) * (sigma * sigma)


def vessel_map(gray01: np.ndarray, modality: str, fov: np.ndarray | None = None,
               working_side: int | None = None) -> np.ndarray:
    """float32 HxW in [0, 1]; 1 = strong vessel. ``fov`` (bool) suppresses the FOV border.

    ``working_side`` is the side the image's pixel scale was normalised to (``prepare``'s
    argument; defaults to the image's longest side, which is right for square training frames).
    It sets the filter scales; deriving them from the FOV instead would make them wrong for
    small rectangular fields such as an OCT en-face window inside a fundus-sized frame.
    """
    if modality not in POLARITY:
        raise ValueError(f"unknown modality {modality!r}; expected one of {sorted(POLARITY)}")
    img = np.asarray(gray01, dtype=np.float32)
    if fov is not None and fov.any() and not fov.all():
        img = img.copy()
        img[~fov] = float(img[fov].mean())  # flatten outside so the FOV rim is no "vessel"
    k = (working_side or max(img.shape)) / REFERENCE_SIDE
    resp = np.zeros_like(img)
    for s in BASE_SIGMAS:
        np.maximum(resp, ridge_strength(img, s * k, POLARITY[modality]), out=resp)
    if fov is not None and not fov.all():
        margin = max(3, int(round(2 * BASE_SIGMAS[-1] * k)))
        kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
        inner = cv2.erode(fov.astype(np.uint8), kernel)
        resp[inner == 0] = 0.0
    inside = resp[fov] if fov is not None and fov.any() else resp
    top = float(np.percentile(inside, NORM_PERCENTILE)) if inside.size else 0.0
    if top <= 1e-12:
        return np.zeros_like(resp)
    return np.clip(resp / top, 0.0, 1.0).astype(np.float32)
