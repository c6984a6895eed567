"""The hypothesis search: which input variant of the moving image lets the matcher register a pair.

A matcher sees the moving image as prepared; some pairs only register when it is given turned
(90-degree steps), resampled at the fixed image's pixel pitch or zoomed (OCTA), or moved by part
of its side (``SearchPolicy``). Each ``Variant`` is a valid ``PreparedImage`` plus the exact map of its
working pixels back to the prepared moving image's working pixels. ``search`` tries variants in
the policy's order until one is convincing, scores each with ``coarse_fit`` (binned on the
fixed image's working grid, fitted in full resolution like the pipeline's estimate) and lets
those of one rotation (and, for OCTA, of the cleanest zoom) ``vote``.

Most real pairs need far less than the whole policy, but only the verdict on the refined result
can tell which: ``efforts`` gives the pipeline a cheap first look (the first rotation, and for
partial-overlap modalities one shift aimed at the overlap the first fit found) before the whole
policy, and a ``SearchMemo`` keeps every variant's fit so the second effort never matches a
variant twice.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from retreg.core.estimation import estimate
from retreg.core.geometry import residuals
from retreg.core.matchers.base import Matcher
from retreg.core.modality import MODALITIES
from retreg.core.selection import spatial_binning
from retreg.core.types import Hypothesis, Matches, PreparedImage
from retreg.core.vessels import vessel_map

COMPASS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))


@dataclass(frozen=True)
class SearchPolicy:
    """Which variants ``search`` tries, in order, and when it stops.

    ``rotations`` (degrees counter-clockwise, multiples of 90) are tried first, each as prepared
    and, when the moving pitch differs from the fixed one by more than ``pitch_tolerance``
    (relative), at the fixed pitch. When the moving modality is in ``zoom_modalities`` it is
    tried at each of ``zooms`` instead (its working image shrunk or enlarged by that factor: an
    OCTA field covers 0.5-1x of a CF clip, beyond the matcher's trained scale range, and its
    pixels have nothing to do with the photo's); only the variants of the zoom with the
    cleanest consensus go on to the vote (``at_cleanest_zoom``). If none is convincing and both
    modalities are in ``shift_modalities``, the best one's pitch is tried unturned, moved by each of
    ``shift_fractions`` of its side in each of ``shift_directions``. Convincing = an affine
    consensus of at least ``accept_inliers`` binned matches and ``accept_ratio`` of them, within
    ``score_threshold_px`` working pixels of the fixed image.

    ``aimed_shift`` replaces the blind shifts by one aimed at the overlap the best fit so far
    found (``aim``), when that fit has at least half of ``accept_inliers``. ``first_look``: the
    pipeline tries ``first_look_policy()`` before this policy (``efforts``). ``scale_zooms``:
    after this policy, the pipeline tries the moving image zoomed by each of them when its
    modality is not in ``zoom_modalities`` (``zoom_policy``, ``efforts``): real pairs differ in
    scale beyond the matcher's trained range. A zoom runs only when the best result so far has no
    fit or one whose scale (moving -> fixed, working pixels) lies outside ``known_scale`` on the
    side the zoom corrects (``zoom_may_help``): a fit well inside the trained 0.85-1.15 says the
    matcher already sees both images at a scale it knows; the wrong fits of off-scale pairs
    gather at that range's edges, on the side of the true scale. Zoom 1 (the moving image as
    given) is for a matcher with a scale-trained sibling (``core.matchers.base``), which sees it
    at scales the main network does not know: it runs whenever nothing is judged ok yet.
    """

    rotations: tuple[int, ...] = (0, 180, 90, 270)
    zooms: tuple[float, ...] = (1.0, 0.8, 0.64, 0.5)
    zoom_modalities: frozenset[str] = frozenset({"octa"})
    pitch_tolerance: float = 0.08
    shift_fractions: tuple[float, ...] = (1 / 3, 2 / 3)
    shift_directions: tuple[tuple[int, int], ...] = COMPASS
    shift_modalities: frozenset[str] = frozenset({"cf", "fa"})
    accept_inliers: int = 24
    accept_ratio: float = 0.3
    score_threshold_px: float = 3.0
    aimed_shift: bool = False
    first_look: bool = True
    scale_zooms: tuple[float, ...] = (1.0, 1.4, 0.7, 2.0, 0.5)
    known_scale: tuple[float, float] = (0.9, 1.1)

    def __post_init__(self) -> None:
        if not self.rotations or any(r % 90 for r in self.rotations):
            raise ValueError(f"rotations must be non-empty multiples of 90, got {self.rotations}")
        if not self.zooms or min(self.zooms + self.scale_zooms) <= 0:
            raise ValueError(f"zooms must be non-empty positive factors, got {self.zooms}")

    def first_look_policy(self) -> "SearchPolicy":
        """The cheap first effort: the first rotation only, every zoom and pitch, and an aimed
        shift instead of the blind ones."""
        return replace(self, rotations=self.rotations[:1], shift_fractions=(), aimed_shift=True,
                       first_look=False, scale_zooms=())

    def zoom_policy(self, zoom: float) -> "SearchPolicy":
        """A scale effort: every rotation of the moving image zoomed by ``zoom``, whatever its
        modality, at its own pitch, no shifts."""
        return replace(self, zooms=(zoom,), zoom_modalities=frozenset(MODALITIES),
                       pitch_tolerance=float("inf"), shift_fractions=(), aimed_shift=False,
                       first_look=False, scale_zooms=())


NO_SEARCH = SearchPolicy(rotations=(0,), zooms=(1.0,), pitch_tolerance=float("inf"),
                         shift_fractions=(), first_look=False, scale_zooms=())


@dataclass(frozen=True)
class Effort:
    """One search policy the pipeline runs; among results the verdict puts at the same level,
    the effort of lowest ``preference`` wins."""

    policy: SearchPolicy
    preference: int
    scale_search: bool = False  # a zoom: run only when ``zoom_may_help`` for the result so far


def efforts(policy: SearchPolicy, moving_modality: str | None = None) -> tuple[Effort, ...]:
    """The efforts the pipeline runs in turn until a result is judged ok: the first look, then
    ``policy`` itself (whose result is what ``policy`` alone gives, preferred at equal level),
    then one scale effort per ``scale_zooms`` (least preferred: only an ok wins with them).

    A moving modality the policy already zooms (OCTA: its range follows the physical field
    sizes) gets no scale efforts: on real CF-OCTA eyes they changed no result and cost the hard
    pairs 4x the time (docs/decisions.md)."""
    whole = replace(policy, first_look=False, scale_zooms=())
    first = (Effort(policy.first_look_policy(), 1),) if policy.first_look else ()
    zooms = () if moving_modality in policy.zoom_modalities else policy.scale_zooms
    return first + (Effort(whole, 0),) + tuple(Effort(policy.zoom_policy(z), 2, True)
                                               for z in zooms)


def zoom_may_help(scale: float | None, zoom: float, known: tuple[float, float]) -> bool:
    """Whether zooming the moving image by ``zoom`` could bring a pair whose best fit has
    ``scale`` (moving -> fixed, working pixels; None: no fit) into the ``known`` range: always
    without a fit and at zoom 1 (for a scale-trained sibling matcher: ``SearchPolicy``); else
    only when ``scale`` lies outside ``known`` on the side this zoom corrects (above it the
    moving content looks too small, so only zooms > 1 help)."""
    if scale is None or zoom == 1.0:
        return True
    return (scale > known[1] and zoom > 1) or (scale < known[0] and zoom < 1)


@dataclass(frozen=True)
class Variant:
    """``image``, a valid PreparedImage made from the moving one; ``to_moving`` maps (N, 2)
    points in its working pixels to the prepared moving image's working pixels."""

    image: PreparedImage
    to_moving: Callable[[np.ndarray], np.ndarray]
    rotation_deg: int = 0
    pitch_variant: int = 0
    shift_px: tuple[int, int] = (0, 0)
    zoom: float = 1.0


def as_given(moving: PreparedImage) -> Variant:
    """The moving image as prepared (the first variant every search tries)."""
    return Variant(moving, lambda pts: np.asarray(pts, np.float64))


def at_pitch(moving: PreparedImage, scale: tuple[float, float]) -> PreparedImage:
    """``moving`` re-sampled so one working pixel spans ``scale`` full-resolution pixels."""
    h_full, w_full = moving.original.shape[:2]
    wn, hn = max(8, round(w_full / scale[0])), max(8, round(h_full / scale[1]))
    work = cv2.resize(moving.work, (wn, hn), interpolation=cv2.INTER_AREA
                      if wn < moving.work.shape[1] else cv2.INTER_LINEAR)
    fov = cv2.resize(moving.fov.astype(np.uint8), (wn, hn), interpolation=cv2.INTER_NEAREST) > 0
    return replace(moving, work=work, fov=fov, vessels=vessel_map(work, moving.modality, fov),
                   scale=(w_full / wn, h_full / hn))


def at_fixed_pitch(moving: PreparedImage, fixed: PreparedImage) -> Variant:
    """The moving image at the fixed image's pitch (same full-resolution frame, other grid)."""
    image = at_pitch(moving, fixed.scale)
    return Variant(image, lambda pts: moving.to_work(image.to_full(pts)), pitch_variant=1)


def zoomed(v: Variant, factor: float) -> Variant:
    """``v`` with its working image resampled ``factor`` times as large (content and frame)."""
    if factor == 1.0:
        return v
    img = v.image
    image = at_pitch(img, (img.scale[0] / factor, img.scale[1] / factor))
    return replace(v, image=image, zoom=v.zoom * factor,
                   to_moving=lambda pts: v.to_moving(img.to_work(image.to_full(pts))))


def _rot90_back(pts: np.ndarray, k: int, w: int, h: int) -> np.ndarray:
    """Points in ``np.rot90(a, k)`` (``a`` is h x w) -> points in ``a``."""
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    x, y = pts[:, 0], pts[:, 1]
    k %= 4
    if k == 0:
        return pts
    if k == 1:  # rot90 ccw: (x, y) -> (y, w-1-x)
        return np.stack([w - 1 - y, x], 1)
    if k == 2:
        return np.stack([w - 1 - x, h - 1 - y], 1)
    return np.stack([y, h - 1 - x], 1)


def turned(v: Variant, deg: int) -> Variant:
    """``v`` turned ``deg`` degrees counter-clockwise (a multiple of 90): every array and the
    original are rotated, the scale's axes swap with them."""
    k = (deg // 90) % 4
    if k == 0:
        return replace(v, rotation_deg=deg)
    img = v.image
    h, w = img.work.shape

    def rot(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(a, k))

    image = replace(img, original=np.rot90(img.original, k), work=rot(img.work),
                    vessels=rot(img.vessels), fov=rot(img.fov),
                    scale=img.scale if k == 2 else img.scale[::-1])
    return replace(v, image=image, to_moving=lambda pts: v.to_moving(_rot90_back(pts, k, w, h)),
                   rotation_deg=deg)


def shifted(image: PreparedImage, dx: int, dy: int) -> PreparedImage:
    """``image`` with its working arrays moved by (dx, dy) working pixels; what leaves the frame
    is lost and zeros (outside the field of view) come in. ``scale`` is unchanged."""
    def move(a: np.ndarray) -> np.ndarray:
        out = np.zeros_like(a)
        h, w = a.shape
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[yd, xd] = a[ys, xs]
        return out

    return replace(image, work=move(image.work), vessels=move(image.vessels), fov=move(image.fov))


def moved(v: Variant, dx: int, dy: int) -> Variant:
    """``v`` moved by (dx, dy) of its working pixels (see ``shifted``)."""
    offset = np.array([dx, dy], np.float64)
    return replace(v, image=shifted(v.image, dx, dy),
                   to_moving=lambda pts: v.to_moving(np.asarray(pts, np.float64) - offset),
                   shift_px=(dx, dy))


def aim(fit: "CoarseFit", v: Variant, fixed: PreparedImage, threshold_px: float
        ) -> tuple[int, int] | None:
    """The shift (working px) that moves unturned variant ``v`` onto the overlap ``fit`` found:
    the median displacement of its inliers (full-res ``threshold_px``); None without a model
    or for a turned variant, whose working frame is not its original's."""
    if fit.model is None or v.rotation_deg % 360:
        return None
    b = fit.binned
    ok = residuals(fit.model, b.kpts_moving, b.kpts_fixed) <= threshold_px
    if not ok.any():
        return None
    d = np.median(fixed.to_work(b.kpts_fixed[ok]) - v.image.to_work(b.kpts_moving[ok]), axis=0)
    return int(round(d[0])), int(round(d[1]))


@dataclass(frozen=True)
class CoarseFit:
    """``matches`` in the frame of the fit, the indices ``kept`` by spatial binning, their affine
    consensus ``model`` (3x3 moving -> fixed, None when none was found), its ``inliers`` and
    their share ``ratio`` of the kept."""

    matches: Matches
    kept: np.ndarray
    model: np.ndarray | None
    inliers: int
    ratio: float

    @property
    def binned(self) -> Matches:
        return self.matches.subset(self.kept)


def coarse_fit(matches: Matches, size: tuple[int, int], threshold_px: float,
               images: tuple[PreparedImage, PreparedImage] | None = None) -> CoarseFit:
    """How well ``matches`` (working px; the fixed frame is ``size`` = (w, h)) agree on one
    transform: spatial binning, then affine USAC within ``threshold_px`` working px.

    Given the (fixed, moving) ``images``, the fit runs on their full-resolution points (the
    threshold scaled by the fixed image's mean pitch), the frame the pipeline estimates in.
    """
    keep = spatial_binning(matches, size)
    if images is not None:
        fixed, moving = images
        matches = Matches(fixed.to_full(matches.kpts_fixed), moving.to_full(matches.kpts_moving),
                          matches.confidence)
        threshold_px *= float(np.mean(fixed.scale))
    est = estimate(matches.kpts_moving[keep], matches.kpts_fixed[keep], "affine",
                   threshold_px=threshold_px)
    n_in = int(est.inliers.sum()) if est.matrix is not None else 0
    return CoarseFit(matches, keep, est.matrix, n_in, n_in / max(1, len(keep)))


def vote(tried: Sequence[CoarseFit], groups: Sequence[int], threshold_px: float
         ) -> tuple[int, Matches, int]:
    """(index of the winner, its matches plus the agreeing ones of the others, its support).

    Support = inliers (within ``threshold_px``, in the fits' frame) of a variant's model among
    the binned matches of every tried variant of its group; ties go to the earlier one. Only one
    group (one rotation) votes: structures that look alike under any turn would confirm a wrong
    rotation. The winner's matches are then joined by every other variant's binned matches that
    agree with it.
    """
    def support(i: int) -> int:
        model = tried[i].model
        if model is None:
            return 0
        return sum(int((residuals(model, k.kpts_moving, k.kpts_fixed) <= threshold_px).sum())
                   for k in (t.binned for t, g in zip(tried, groups) if g == groups[i])
                   if len(k))

    scores = [support(i) for i in range(len(tried))]
    win = int(np.argmax(scores))
    model = tried[win].model
    if model is None:
        return win, tried[win].matches, 0
    joined = [tried[win].matches] + [
        k.subset(residuals(model, k.kpts_moving, k.kpts_fixed) <= threshold_px)
        for k in (t.binned for i, t in enumerate(tried) if i != win) if len(k)]
    return win, Matches(np.concatenate([m.kpts_fixed for m in joined]),
                        np.concatenate([m.kpts_moving for m in joined]),
                        np.concatenate([m.confidence for m in joined])), scores[win]


def at_cleanest_zoom(tried: list[tuple[Variant, CoarseFit]], min_inliers: int
                     ) -> list[tuple[Variant, CoarseFit]]:
    """The tried variants of the zoom whose own consensus is the cleanest (highest inlier share
    among those with ``min_inliers``). Zooms do not vote together: a wrong zoom's matches agree
    roughly with a wrong scale, and joined they pull the fit towards it."""
    able = [f for _, f in tried if f.inliers >= min_inliers] or [f for _, f in tried]
    best = max(able, key=lambda f: f.ratio)
    zoom = next(v.zoom for v, f in tried if f is best)
    return [(v, f) for v, f in tried if v.zoom == zoom]


def _score(matcher: Matcher, fixed: PreparedImage, moving: PreparedImage, v: Variant,
           threshold_px: float) -> CoarseFit:
    """The matcher's matches on variant ``v`` of ``moving``, fitted in full resolution."""
    m = matcher.match(fixed, v.image)
    work = Matches(fixed.to_work(m.kpts_fixed), v.to_moving(v.image.to_work(m.kpts_moving)),
                   m.confidence)
    return coarse_fit(work, fixed.work_size, threshold_px, (fixed, moving))


SearchMemo = dict  # variant key -> CoarseFit, for one (fixed, moving) pair and scoring: ``search``


def _key(v: Variant) -> tuple:
    return v.rotation_deg % 360, v.pitch_variant, v.shift_px, v.zoom


def search(matcher: Matcher, fixed: PreparedImage, moving: PreparedImage,
           policy: SearchPolicy = SearchPolicy(), memo: SearchMemo | None = None
           ) -> tuple[Matches, Hypothesis]:
    """Matches (full resolution) between ``fixed`` and ``moving`` from the variant ``policy``
    finds best, and which variant that was. An easy pair costs one ``matcher.match``.

    ``memo`` (empty at first, then passed again for the same pair and matcher) keeps each
    variant's fit, so a later search reuses what an earlier one matched."""
    memo = {} if memo is None else memo
    bases = [as_given(moving)]
    ratio = np.asarray(moving.scale) / np.asarray(fixed.scale)
    zooms = policy.zooms if moving.modality in policy.zoom_modalities else (1.0,)
    if len(zooms) == 1 and np.any(np.abs(ratio - 1.0) > policy.pitch_tolerance):
        bases.append(at_fixed_pitch(moving, fixed))
    tried: list[tuple[Variant, CoarseFit]] = []
    best: CoarseFit | None = None

    def attempt(v: Variant) -> None:
        nonlocal best
        key = _key(v)
        if key not in memo:
            memo[key] = _score(matcher, fixed, moving, v, policy.score_threshold_px)
        fit = memo[key]
        tried.append((v, fit))
        if best is None or fit.inliers > best.inliers:
            best = fit

    def convincing() -> bool:
        return best.inliers >= policy.accept_inliers and best.ratio >= policy.accept_ratio

    for deg in policy.rotations:
        for base in bases:
            for z in zooms:
                attempt(turned(zoomed(base, z), deg))
        if convincing():
            break
    full_px = policy.score_threshold_px * float(np.mean(fixed.scale))
    shifting = {fixed.modality, moving.modality} <= policy.shift_modalities
    if policy.aimed_shift and shifting and not convincing() and \
            best.inliers >= policy.accept_inliers // 2:
        v = next(v for v, s in tried if s is best)
        shift = aim(best, v, fixed, full_px)
        if shift is not None and shift != (0, 0):
            attempt(moved(v, *shift))
    if shifting and policy.shift_fractions and not convincing():
        base = bases[next(v.pitch_variant for v, s in tried if s is best)]
        h, w = base.image.work.shape
        for frac, (ux, uy) in ((f, u) for f in policy.shift_fractions
                               for u in policy.shift_directions):
            attempt(moved(base, round(ux * frac * w), round(uy * frac * h)))
            if convincing():
                break
    n_tried = len(tried)
    if len(zooms) > 1:
        tried = at_cleanest_zoom(tried, policy.accept_inliers // 2)
    if len(tried) == 1:
        win, matches, support = 0, tried[0][1].matches, tried[0][1].inliers
    else:
        win, matches, support = vote([f for _, f in tried], [v.rotation_deg for v, _ in tried],
                                     full_px)
    v, fit = tried[win]
    return matches, Hypothesis(v.rotation_deg, v.pitch_variant, v.shift_px, fit.inliers,
                               support, n_tried, v.zoom)
