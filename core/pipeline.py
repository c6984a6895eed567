"""The registration pipeline: prepare -> search (match) -> select -> estimate -> refine, timed
per stage.

The RANSAC threshold is set in *working-resolution* pixels (the FOV normalised to the matcher's
working side), so one value suits every camera resolution; it is converted to full-resolution
fixed-image pixels here.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace

import numpy as np

from retreg.core.estimation import (MIN_POINTS, estimate, estimate_with_affine_fallback,
                                    fit_least_squares, implausibility)
from retreg.core.field import (FieldClip, FieldPrior, field_clips, field_width,
                               implausible_field, is_whole_photo)
from retreg.core.geometry import linear_shape, map_points
from retreg.core.hypotheses import (Effort, SearchMemo, SearchPolicy, efforts, search,
                                    zoom_may_help)
from retreg.core.io import read_image
from retreg.core.matchers import Matcher, get_matcher
from retreg.core.modality import Source, prepare, source
from retreg.core.refine import RefineConfig, correspondences, refine
from retreg.core.selection import spatial_binning
from retreg.core.transforms import PolishFit, after, fit_polish, residuals
from retreg.core.types import (NONRIGID_TYPES, TRANSFORM_TYPES, Estimate, Matches, Mode,
                               PreparedImage, RegistrationResult)
from retreg.core.verdict import Verdict, VerdictConfig, assess, working_matrix


# NCC passes around a non-rigid polish (``_polish_passes``): (search radius as a share of the
# refinement's, template grid cells a side). The wide pass reaches peaks the homography missed;
# the narrow one is dense, since local motion needs evidence everywhere.
POLISH_PASSES = ((1.0, 16), (1 / 3, 24))


@dataclass(frozen=True)
class RegistrationConfig:
    """Tunable knobs of ``register``.

    ``ransac_threshold_px`` is in working-resolution pixels. Curved real fundus pairs fit better
    with a loose threshold (a plane-like model cannot follow the eyeball): on 10 FIRE-P pairs
    (classical, homography, ~546-px working size) the mean control-point error was 17.3 / 15.5 /
    13.5 / 13.4 full-res px at 2 / 4 / 8 / 15 working px.

    ``search`` decides which input variants of the moving image the matcher is given
    (``core.hypotheses``; ``NO_SEARCH`` gives it the image as prepared only).

    ``refine`` configures the fine stage (``core.refine``: NCC on vessel maps around the coarse
    solution, then a tighter refit); None turns it off.

    ``field`` is the physical scale prior of cfocta pairs whose CF is a whole photo
    (``core.field``): the OCTA is registered onto disc-centred clips of the expected field and
    the result returned in photo pixels. None registers onto the whole photo as given.
    """

    ransac_threshold_px: float = 8.0
    grid: int = 8
    top_k: int = 16
    min_inliers: int = 6
    confidence: float = 0.999
    max_iters: int = 10000
    polish: bool = True  # least-squares refit on the USAC inliers (see core.estimation.estimate)
    search: SearchPolicy = SearchPolicy()
    refine: RefineConfig | None = RefineConfig()
    verdict: VerdictConfig = VerdictConfig()
    field: FieldPrior | None = FieldPrior()


def _as_image(img: np.ndarray | Source | str | os.PathLike) -> np.ndarray | Source:
    return img if isinstance(img, (np.ndarray, Source)) else read_image(img)


def _check_transform(transform_type: str) -> None:
    if transform_type not in TRANSFORM_TYPES:
        raise ValueError(f"unknown transform type {transform_type!r}; "
                         f"expected one of {', '.join(TRANSFORM_TYPES)}")


def global_type(transform_type: str) -> str:
    """The 3x3 type estimated first: a non-rigid polish sits on a homography."""
    return "homography" if transform_type in NONRIGID_TYPES else transform_type


def _residuals_or_nan(est: Estimate, matches: Matches, selected: np.ndarray,
                      polish: PolishFit | None = None) -> np.ndarray:
    if est.matrix is None:
        return np.full(len(selected), np.nan)
    mapping = polish.transform if polish is not None and polish.ok else est.matrix
    return residuals(mapping, matches.kpts_moving[selected], matches.kpts_fixed[selected])


def _polish_stage(transform_type: str, est: Estimate, matches: Matches, selected: np.ndarray,
                  moving_shape: tuple[int, ...],
                  fine_pair: tuple[PreparedImage, PreparedImage] | None,
                  refine_config: RefineConfig | None
                  ) -> tuple[Estimate, PolishFit | None, Matches, np.ndarray]:
    """A non-rigid type's polish over ``est``, fitted on its inliers, then on correspondences
    found around itself when the fine-stage pair is at hand (``_polish_passes``): the
    (estimate, polish, matches, selected) the result reports; the polish is None for a 3x3
    type or a failed global fit."""
    if transform_type not in NONRIGID_TYPES or not est.ok:
        return est, None, matches, selected
    idx = selected[est.inliers]
    polish = fit_polish(transform_type, matches.kpts_moving[idx], matches.kpts_fixed[idx],
                        est.matrix, moving_shape)
    if polish.ok and fine_pair is not None and refine_config is not None:
        passed = _polish_passes(polish, fine_pair, est.matrix, refine_config)
        if passed is not None:
            polish, matches = passed
            selected = np.arange(len(matches))
            est = Estimate(est.transform_type, est.matrix, polish.inliers, "ok")
    return est, polish, matches, selected


def _polish_fields(polish: PolishFit | None) -> dict:
    """``RegistrationResult`` fields of a polish outcome."""
    if polish is None:
        return {"nonrigid": None, "polish_note": ""}
    return {"nonrigid": polish.transform, "polish_note": polish.note}


def _estimate_selected(matches: Matches, selected: np.ndarray, transform_type: str,
                       threshold_px: float, config: RegistrationConfig) -> Estimate:
    return estimate_with_affine_fallback(
        matches.kpts_moving[selected], matches.kpts_fixed[selected], global_type(transform_type),
        threshold_px=threshold_px, confidence=config.confidence, max_iters=config.max_iters,
        min_inliers=config.min_inliers, polish=config.polish)


def register(fixed_img: np.ndarray | Source | str | os.PathLike,
             moving_img: np.ndarray | Source | str | os.PathLike,
             mode: Mode | str, matcher: Matcher | None = None, transform: str = "affine",
             config: RegistrationConfig = RegistrationConfig()) -> RegistrationResult:
    """Register ``moving_img`` onto ``fixed_img`` (arrays as from ``read_image``, paths, or
    their ``modality.source`` for the mode's modalities, made while something else waits).

    When the fine stage runs (``config.refine``, after a successful coarse estimate) and its
    refit is accepted, the result describes the refined fit: ``matches`` are the refined
    correspondences (confidence = NCC peak), ``selected`` is all of them, ``inliers`` /
    ``residuals`` / ``threshold_px`` belong to the refit, so ``reestimate`` refits those same
    correspondences. When it is rejected the coarse result stands unchanged.
    ``timings["refine"]`` is recorded whenever the fine stage runs.

    A non-rigid ``transform`` ("quadratic" | "smooth") is a homography (``matrix``) plus a
    polish fitted on its inliers (``nonrigid``), timed as ``polish``; when the evidence does
    not support the polish, ``nonrigid`` is None and ``polish_note`` says why.

    The search runs in ``efforts`` (a cheap first look, the whole policy, then one effort per
    scale zoom that corrects the fit so far when that is off ``SearchPolicy.known_scale`` and the
    moving modality has no zooms of its own, matched by ``off_scale_matcher(matcher)``), each
    over every candidate fixed frame (the image as given, or a whole photo's field clips), until
    a result is judged ok; else the best judged one (verdict, then the effort's preference, then
    inliers) is returned. Stage timings add up over everything tried.
    """
    mode = Mode(mode)
    _check_transform(transform)
    matcher = matcher if matcher is not None else get_matcher("default")
    t0 = time.perf_counter()
    fixed = _Frame.of(_as_image(fixed_img), mode.fixed_modality, matcher.working_side)
    moving = _Frame.of(_as_image(moving_img), mode.moving_modality, matcher.working_side)
    fixed_arr = fixed.image
    timings = {"prepare": time.perf_counter() - t0}
    if mode is Mode.CFOCTA and config.field is not None and is_whole_photo(fixed.prepared):
        t = time.perf_counter()
        frames = [_Frame.of(fc.clip, mode.fixed_modality, matcher.working_side, fc)
                  for fc in field_clips(fixed.source, fixed.prepared, config.field)]
        timings["locate"] = time.perf_counter() - t
    else:
        frames = [fixed]
    best = None
    for effort in efforts(config.search, mode.moving_modality):
        effort_matcher = _effort_matcher(effort, matcher, best, config.search.known_scale)
        if effort_matcher is None:
            continue
        for frame in frames:
            res = _register_prepared(frame, moving, mode, effort_matcher, transform,
                                     replace(config, search=effort.policy))
            if effort_matcher is not matcher and res.hypothesis is not None:
                res.hypothesis = replace(res.hypothesis, off_scale=True)
            if frame.clip is not None:
                res = in_photo(res, frame.clip, fixed_arr.shape)
            for stage, secs in res.timings.items():
                timings[stage] = timings.get(stage, 0.0) + secs
            rank = (_LEVEL_RANK[res.verdict.level], effort.preference, -res.n_inliers)
            if best is None or rank < best[0]:
                best = (rank, res)
            if res.verdict.ok:
                break
        if best[1].verdict.ok:
            break
    result = best[1]
    if result.hypothesis is not None:  # every variant matched for the pair, not only the winner's
        result.hypothesis = replace(result.hypothesis, tried=sum(
            len(memo) for f in frames for memo in f.memos.values()))
    result.timings = {**timings, "total": time.perf_counter() - t0}
    return result


def _effort_matcher(effort: Effort, matcher: Matcher, best: tuple | None,
                    known: tuple[float, float]) -> Matcher | None:
    """Who matches ``effort``: ``matcher``, or for a scale effort its off-scale sibling; None
    when the effort is skipped: a zoom that cannot correct the best fit so far
    (``zoom_may_help``), or the image as given (zoom 1) with no sibling to see it anew."""
    if not effort.scale_search:
        return matcher
    zoom = effort.policy.zooms[0]
    if not zoom_may_help(_working_scale(best[1]), zoom, known):
        return None
    sibling = off_scale_matcher(matcher)
    return None if sibling is matcher and zoom == 1.0 else sibling


def off_scale_matcher(matcher: Matcher) -> Matcher:
    """The matcher the scale efforts use: ``matcher.off_scale`` when it offers one (a network
    trained over a wider scale range, worse at the common scale: ``core.matchers.base``), else
    ``matcher`` itself. It must want its inputs at the same working side."""
    other = getattr(matcher, "off_scale", None)
    if other is None:
        return matcher
    if other.working_side != matcher.working_side:
        raise ValueError(f"off-scale matcher works at {other.working_side} px, the matcher at "
                         f"{matcher.working_side} px: the prepared frames cannot be shared")
    return other


def _working_scale(result: RegistrationResult) -> float | None:
    """The scale of ``result``'s fit in the matcher's working pixels (None: no fit)."""
    if result.matrix is None or result.judged_on is None:
        return None
    return linear_shape(working_matrix(result.matrix, *result.judged_on))[0]


@dataclass
class _Frame:
    """An image of the pair (for the fixed side: the image as given, or a field ``clip`` of a
    whole photo) and what every effort on it reuses: its full-resolution ``source``, its
    preparation for the matcher and, on first use, for the fine stage, and a search memo per
    matcher (``memo``)."""

    image: np.ndarray
    source: Source
    prepared: PreparedImage
    clip: FieldClip | None = None
    memos: dict[int, SearchMemo] = field(default_factory=dict)
    sides: dict[int, PreparedImage] = field(default_factory=dict)

    def memo(self, matcher: Matcher) -> SearchMemo:
        """What ``matcher`` has matched on this frame so far."""
        return self.memos.setdefault(id(matcher), {})

    @staticmethod
    def of(image: np.ndarray | Source, modality: str, side: int,
           clip: FieldClip | None = None) -> "_Frame":
        src = image if isinstance(image, Source) else source(image, modality)
        return _Frame(src.image, src, prepare(src, modality, side), clip)

    def at(self, side: int) -> PreparedImage:
        """The image prepared at working ``side`` (the fine stage's), made once."""
        if side not in self.sides:
            self.sides[side] = prepare(self.source, self.source.modality, side)
        return self.sides[side]


def _register_prepared(frame: _Frame, moving_frame: _Frame, mode: Mode, matcher: Matcher,
                       transform: str, config: RegistrationConfig) -> RegistrationResult:
    """One effort of ``register`` on one fixed frame, with the stage timings it spent."""
    timings: dict[str, float] = {}
    fixed_arr, fixed = frame.image, frame.prepared
    moving_arr, moving = moving_frame.image, moving_frame.prepared

    t = time.perf_counter()
    matches, hypothesis = search(matcher, fixed, moving, config.search, frame.memo(matcher))
    timings["match"] = time.perf_counter() - t

    t = time.perf_counter()
    h, w = fixed_arr.shape[:2]
    selected = spatial_binning(matches, (w, h), grid=config.grid, top_k=config.top_k)
    timings["select"] = time.perf_counter() - t

    t = time.perf_counter()
    threshold = config.ransac_threshold_px * float(np.mean(fixed.scale))
    est = _estimate_selected(matches, selected, transform, threshold, config)
    timings["estimate"] = time.perf_counter() - t

    fine_pair = None
    if config.refine is not None and est.ok:
        t = time.perf_counter()
        side = config.refine.working_side
        fine_pair = ((fixed, moving) if matcher.working_side == side else
                     (frame.at(side), moving_frame.at(side)))
        fine = refine(*fine_pair, est.matrix, global_type(transform), config.refine)
        if fine.accepted:
            matches, selected = fine.matches, np.arange(len(fine.matches))
            est = Estimate(global_type(transform), fine.matrix, fine.inliers, "ok")
            threshold = fine.threshold_px
        timings["refine"] = time.perf_counter() - t
    t = time.perf_counter()
    est, polish, matches, selected = _polish_stage(transform, est, matches, selected,
                                                   moving_arr.shape, fine_pair, config.refine)
    if polish is not None:
        timings["polish"] = time.perf_counter() - t
    res = _residuals_or_nan(est, matches, selected, polish)
    result = RegistrationResult(
        mode=mode.value, matcher=matcher.name, transform_type=transform, matrix=est.matrix,
        status=est.status, reason=est.reason, matches=matches, selected=selected,
        inliers=est.inliers, residuals=res, timings=timings, fixed_shape=(h, w),
        moving_shape=tuple(moving_arr.shape[:2]), threshold_px=threshold,
        hypothesis=hypothesis, judged_on=(fixed, moving), refined_on=fine_pair,
        **_polish_fields(polish))
    t = time.perf_counter()
    result.verdict = assess(result, fixed, moving, config.verdict)
    timings["verdict"] = time.perf_counter() - t
    return result


_LEVEL_RANK = {"ok": 0, "low confidence": 1, "failed": 2}


def _in_frame(result: RegistrationResult, to_frame: np.ndarray, shape: tuple[int, ...]
              ) -> RegistrationResult:
    """``result`` with its fixed side moved into another frame by the similarity ``to_frame``
    (old fixed px -> new), whose image has ``shape``."""
    s = float(np.sqrt(abs(np.linalg.det(to_frame[:2, :2]))))
    m = result.matches
    return replace(result, matrix=None if result.matrix is None else to_frame @ result.matrix,
                   nonrigid=None if result.nonrigid is None else after(to_frame, result.nonrigid),
                   matches=Matches(map_points(to_frame, m.kpts_fixed), m.kpts_moving, m.confidence),
                   residuals=result.residuals * s, threshold_px=result.threshold_px * s,
                   fixed_shape=tuple(shape[:2]), refined_on=None)


def _judge(result: RegistrationResult, config: VerdictConfig) -> Verdict | None:
    """The verdict on ``result`` from the prepared pair it was registered on (a located
    result is judged in its clip, then against its field's prior); None when never judged."""
    if result.judged_on is None:
        return None
    if not result.located:
        return assess(result, *result.judged_on, config)
    clip, _ = result.judged_on
    to_photo = np.asarray(result.located["clip_to_photo"], np.float64)
    verdict = assess(_in_frame(result, np.linalg.inv(to_photo), clip.original.shape),
                     *result.judged_on, config)
    return _against_prior(verdict, result)


def _against_prior(verdict: Verdict, result: RegistrationResult) -> Verdict:
    """``verdict`` failed when the located field's width contradicts the prior."""
    if result.matrix is None:
        return verdict
    why = implausible_field(field_width(result.matrix, result.moving_shape),
                            result.located["field_px"])
    return replace(verdict, level="failed", reasons=verdict.reasons + (why,)) if why else verdict


def in_photo(result: RegistrationResult, fc: FieldClip, photo_shape: tuple[int, ...]
             ) -> RegistrationResult:
    """A result on field clip ``fc`` expressed in photo pixels (``located`` says how); its
    verdict fails when the fitted field's width contradicts the clip's prior."""
    out = replace(_in_frame(result, fc.to_photo, photo_shape),
                  located={"field_mm": fc.field_mm, "field_px": fc.field_px,
                           "clip_to_photo": np.asarray(fc.to_photo).tolist()})
    if out.verdict is not None:
        out.verdict = _against_prior(out.verdict, out)
    return out


def _polish_passes(polish: PolishFit, fine_pair: tuple[PreparedImage, PreparedImage],
                   matrix: np.ndarray, config: RefineConfig
                   ) -> tuple[PolishFit, Matches] | None:
    """The polish refitted on NCC correspondences found around itself, once per entry of
    ``POLISH_PASSES``: around the homography, where the eye bends away from it, the true peaks
    lie beyond the search or were cut as outliers. Returns the last supported fit and its
    correspondences, or None when no pass gave a supported fit."""
    fixed, moving = fine_pair
    out = None
    for share, grid in POLISH_PASSES:
        search = max(3, round(config.search_radius * share))
        cand, _ = correspondences(fixed, moving, polish.transform, search,
                                  replace(config, grid=grid))
        again = fit_polish(polish.transform.kind, cand.kpts_moving, cand.kpts_fixed, matrix,
                           moving.original.shape)
        if not again.ok:
            break
        polish = again
        out = (again, cand)
    return out


def reestimate(result: RegistrationResult, transform_type: str,
               config: RegistrationConfig = RegistrationConfig()) -> RegistrationResult:
    """Fit another transform type to the same selected matches (no re-matching; after an
    accepted refinement these are the refined correspondences). A non-rigid polish searches
    around itself again when the result kept its fine-stage pair (``refined_on``)."""
    _check_transform(transform_type)
    t = time.perf_counter()
    matches, selected = result.matches, result.selected
    est = _estimate_selected(matches, selected, transform_type, result.threshold_px, config)
    est, polish, matches, selected = _polish_stage(transform_type, est, matches, selected,
                                                   result.moving_shape, result.refined_on,
                                                   config.refine)
    timings = {**result.timings, "estimate": time.perf_counter() - t}
    out = replace(result, transform_type=transform_type, matrix=est.matrix, status=est.status,
                  reason=est.reason, matches=matches, selected=selected, inliers=est.inliers,
                  residuals=_residuals_or_nan(est, matches, selected, polish),
                  timings=timings, verdict=None, **_polish_fields(polish))
    out.verdict = _judge(out, config.verdict)
    return out


def estimate_from_points(fixed_pts: np.ndarray, moving_pts: np.ndarray, transform_type: str,
                         threshold_px: float = 5.0) -> Estimate:
    """Transform from manually placed point pairs (full-res px); for a non-rigid type its
    global homography (``fit_points`` adds the polish).

    With exactly the minimum number of pairs every point must count, so it is a least-squares
    fit; with more, USAC rejects misplaced points (``threshold_px`` in fixed-image pixels).
    """
    _check_transform(transform_type)
    transform_type = global_type(transform_type)
    fixed_pts = np.asarray(fixed_pts, np.float64).reshape(-1, 2)
    moving_pts = np.asarray(moving_pts, np.float64).reshape(-1, 2)
    n, need = len(fixed_pts), MIN_POINTS[transform_type]
    if n != len(moving_pts):
        raise ValueError(f"point arrays differ in length: {n} fixed vs {len(moving_pts)} moving")
    if n > need:
        return estimate(moving_pts, fixed_pts, transform_type, threshold_px=threshold_px,
                        min_inliers=need)
    if n < need:
        return Estimate(transform_type, None, np.zeros(n, bool), "failed",
                        f"too few points ({n}; {transform_type} needs {need})")
    matrix = fit_least_squares(moving_pts, fixed_pts, transform_type)
    why = implausibility(matrix, moving_pts)
    if why:
        return Estimate(transform_type, None, np.zeros(n, bool), "failed", why)
    return Estimate(transform_type, matrix, np.ones(n, bool), "ok")


def fit_points(fixed_pts: np.ndarray, moving_pts: np.ndarray, transform_type: str,
               moving_shape: tuple[int, ...], threshold_px: float = 5.0
               ) -> tuple[Estimate, PolishFit | None]:
    """``estimate_from_points`` plus, for a non-rigid type, the polish fitted on its inliers
    (None for a 3x3 type): the transform of hand-edited points, under the same guard."""
    est = estimate_from_points(fixed_pts, moving_pts, transform_type, threshold_px)
    pts = Matches(fixed_pts, moving_pts, np.ones(len(est.inliers)))
    return est, _polish_stage(transform_type, est, pts, np.arange(len(pts)), moving_shape,
                              None, None)[1]
