"""Modality-aware preprocessing, field-of-view masks and scale normalisation.

``prepare`` turns an image as read into a ``PreparedImage``: the FOV decides the working scale
(so vessel widths are comparable across cameras and resolutions) and the exact working <-> full
coordinate mapping is kept in ``PreparedImage.scale``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from retreg.core.errors import ModeError
from retreg.core.io import to_float01
from retreg.core.types import Mode, PreparedImage
from retreg.core.vessels import POLARITY, vessel_map

MODALITIES = tuple(sorted(POLARITY))
# The whole image may exceed working_side (FOV smaller than the frame) but never by more than this.
MAX_FRAME_FACTOR = 1.5
_FOV_PROBE_SIDE = 256  # the FOV is found on a small copy: it is a coarse, convex shape
_CLAHE_CLIP = 2.0
_CLAHE_GRID = (8, 8)


def _check_modality(modality: str) -> None:
    if modality not in POLARITY:
        raise ValueError(f"unknown modality {modality!r}; expected one of {list(MODALITIES)}")


def modality_from_name(path: str | os.PathLike) -> str | None:
    """The first modality token in a file name (``12_cf_512.png`` -> ``"cf"``), or None."""
    for token in re.split(r"[^a-z0-9]+", Path(path).stem.lower()):
        if token in POLARITY:
            return token
    return None


def guess_mode(fixed_path: str | os.PathLike, moving_path: str | os.PathLike) -> Mode | None:
    """Registration mode from the two file names, or None when they do not say."""
    pair = (modality_from_name(fixed_path), modality_from_name(moving_path))
    for mode in Mode:
        if (mode.fixed_modality, mode.moving_modality) == pair:
            return mode
    return None


MIN_CONTENT_CONFIDENCE = 0.8  # below this a content guess asks for the mode instead
_MODE_OF_PAIR = {(m.fixed_modality, m.moving_modality): m for m in Mode}


@dataclass(frozen=True)
class ModeChoice:
    """A resolved registration mode and where it came from: ``user`` (given explicitly),
    ``name`` (the file names) or ``content`` (the pixels; ``guesses`` holds both images')."""

    mode: Mode
    source: str
    guesses: tuple = ()

    def describe(self) -> str:
        if self.source == "content":
            f, m = self.guesses
            return (f"mode {self.mode.value} from the image content: fixed {f.describe()}, "
                    f"moving {m.describe()}")
        how = "chosen" if self.source == "user" else "from the file names"
        return f"mode {self.mode.value} ({how})"


def resolve_mode(fixed: str | os.PathLike, moving: str | os.PathLike,
                 explicit: Mode | str | None = None, fixed_img: np.ndarray | None = None,
                 moving_img: np.ndarray | None = None) -> ModeChoice:
    """The one rule for every front end (CLI, app, case folders): an explicit mode always wins;
    then the file names; then, when both images are given, their content
    (``core.modality_content``) if both guesses are sure enough; otherwise ``ModeError`` says
    what was guessed and lists the modes, so no caller silently assumes one."""
    modes = ", ".join(m.value for m in Mode)
    if explicit:
        try:
            return ModeChoice(Mode(explicit), "user")
        except ValueError:
            raise ModeError(f"unknown mode {explicit!r}; expected one of {modes}") from None
    guessed = guess_mode(fixed, moving)
    if guessed is not None:
        return ModeChoice(guessed, "name")
    names = f"{Path(fixed).name} and {Path(moving).name}"
    if fixed_img is None or moving_img is None:
        raise ModeError(f"cannot tell the mode from the names {names}; choose one of {modes} "
                        "(--mode)")
    from retreg.core.modality_content import guess_modality  # it builds on this module

    guesses = (guess_modality(fixed_img), guess_modality(moving_img))
    said = f"fixed looks like {guesses[0].describe()}, moving like {guesses[1].describe()}"
    mode = _MODE_OF_PAIR.get((guesses[0].modality, guesses[1].modality))
    if mode is None:
        raise ModeError(f"cannot tell the mode of {names}: {said}, and no mode registers "
                        f"{guesses[1].modality} onto {guesses[0].modality} (swapped images?); "
                        f"choose one of {modes} (--mode)")
    if min(g.confidence for g in guesses) < MIN_CONTENT_CONFIDENCE:
        raise ModeError(f"cannot tell the mode of {names} for sure: {said}; choose one of "
                        f"{modes} (--mode)")
    return ModeChoice(mode, "content", guesses)


def _channel(img: np.ndarray, modality: str) -> np.ndarray:
    """The informative single channel as float32 [0, 1]: green for CF (best vessel contrast)."""
    img = np.asarray(img)
    if img.ndim == 3:
        if modality == "cf":
            img = img[:, :, 1]
        else:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(to_float01(img))


def _enhance(gray01: np.ndarray, modality: str) -> np.ndarray:
    if modality != "cf":
        return gray01.astype(np.float32)
    # 8-bit CLAHE: 16-bit was ~50x slower (65536-bin tile histograms) and this runs per
    # training sample; fundus cameras deliver 8-bit green channels anyway.
    clahe = cv2.createCLAHE(clipLimit=_CLAHE_CLIP, tileGridSize=_CLAHE_GRID)
    as8 = np.round(np.clip(gray01, 0.0, 1.0) * 255.0).astype(np.uint8)
    return clahe.apply(as8).astype(np.float32) / 255.0


def preprocess(img: np.ndarray, modality: str) -> np.ndarray:
    """float32 HxW in [0, 1]: CF -> green channel + CLAHE; FA / OCT / OCTA -> gray."""
    _check_modality(modality)
    return _enhance(_channel(img, modality), modality)


def fov_mask(gray: np.ndarray) -> np.ndarray:
    """Field-of-view mask (bool HxW): a low threshold, then the convex hull of the big blobs.

    A threshold alone breaks on FA and OCTA, whose FOV holds near-black areas; the retina's
    FOV is convex, so the hull of everything clearly brighter than the background recovers it.
    """
    g = to_float01(np.asarray(gray))
    if g.ndim == 3:
        g = cv2.cvtColor(g, cv2.COLOR_RGB2GRAY)
    h, w = g.shape
    f = min(1.0, _FOV_PROBE_SIDE / max(h, w))
    small = cv2.resize(g, (max(1, round(w * f)), max(1, round(h * f))),
                       interpolation=cv2.INTER_AREA) if f < 1 else g
    small = cv2.medianBlur(small, 5)
    thr = max(0.02, 0.1 * float(np.percentile(small, 99)))
    fg = (small > thr).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= 0.005 * fg.size]
    if not keep:
        return np.ones((h, w), bool)
    pts = cv2.findNonZero(np.isin(labels, keep).astype(np.uint8))
    hull = cv2.convexHull(pts)
    mask_small = np.zeros_like(fg)
    cv2.fillConvexPoly(mask_small, hull, 1)
    if mask_small.mean() < 0.02:  # nothing sensible found: treat the whole frame as the FOV
        return np.ones((h, w), bool)
    if f < 1:
        return cv2.resize(mask_small, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return mask_small.astype(bool)


def _bbox_side(mask: np.ndarray) -> int:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return int(max(xs[-1] - xs[0] + 1, ys[-1] - ys[0] + 1))


# Fundus cameras image a round aperture whose size in the frame varies by device: the FOV sets
# the scale. OCT / OCTA scans fill their frame (or a window of it), so the frame sets it.
_FOV_SCALED = ("cf", "fa")


@dataclass(frozen=True)
class Source:
    """What ``prepare`` derives from the full-resolution image whatever the working side: the
    informative channel (float32 [0, 1]), the FOV mask and the side that sets the scale. Kept
    so an image prepared at two working sides (matcher and fine stage) is read through once."""

    image: np.ndarray
    modality: str
    channel: np.ndarray
    fov: np.ndarray
    side: int


def source(img: np.ndarray, modality: str) -> Source:
    """The working-side-independent part of ``prepare``."""
    _check_modality(modality)
    channel = _channel(img, modality)
    h, w = channel.shape
    fov_full = fov_mask(channel)
    side = _bbox_side(fov_full) if modality in _FOV_SCALED else max(h, w)
    return Source(img, modality, channel, fov_full, side)


def prepare(img: np.ndarray | Source, modality: str, working_side: int = 512) -> PreparedImage:
    """Resize so the FOV (CF, FA) or the frame (OCT, OCTA) spans ``working_side`` px.

    The frame itself is capped at ``MAX_FRAME_FACTOR * working_side`` so a small FOV in a huge
    frame cannot blow up the working image. ``img`` may be the image's ``source`` (of the same
    ``modality``), which spares the full-resolution work.
    """
    _check_modality(modality)
    if working_side < 32:
        raise ValueError(f"working_side must be >= 32 px, got {working_side}")
    src = img if isinstance(img, Source) else source(img, modality)
    if src.modality != modality:
        raise ValueError(f"the source was made for {src.modality}, not {modality}")
    h, w = src.channel.shape
    f = min(working_side / src.side, MAX_FRAME_FACTOR * working_side / max(h, w))
    wn, hn = max(1, round(w * f)), max(1, round(h * f))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    work = _enhance(cv2.resize(src.channel, (wn, hn), interpolation=interp), modality)
    fov = cv2.resize(src.fov.astype(np.uint8), (wn, hn), interpolation=cv2.INTER_NEAREST) > 0
    return PreparedImage(
        original=src.image,
        modality=modality,
        work=work,
        vessels=vessel_map(work, modality, fov, working_side),
        fov=fov,
        scale=(w / wn, h / hn),
    )
