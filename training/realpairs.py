"""Real annotated pairs for fine-tuning: read an exported set (``core.annotations`` real-pair
format), compute H_computed per pair from its human-confirmed points, hold pairs out by shared
image, and present each pair to ``AffinePairDataset`` at the model's working scale.

A pair becomes a training case by *pre-alignment*: the moving image is
resampled into the fixed image's frame through H_computed, so the dataset's random affine warp
then acts on top of it. The raw moving image therefore reaches ``image1`` through the
composition ``T_aug o H_computed``, and ``T_0to1 = T_aug`` maps image0 pixels to image1 pixels.
The annotated points themselves travel along exactly (fixed point -> image0, moving point ->
image1), which is what the anchor loss needs: they may disagree with the global H by the local
curvature of the eye, and then the human points win.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from retreg.core.annotations import Annotation, read_realpairs, sha256_file
from retreg.core.errors import DatasetError
from retreg.core.geometry import (cell_centres, cell_index, map_points, mask_at, rescale_matrix,
                                  residuals)
from retreg.core.io import read_image
from retreg.core.modality import prepare
from retreg.core.pipeline import estimate_from_points
from retreg.core.types import Mode
from retreg.training.config import check_transform
from retreg.training.datasets import AffinePairDataset, CaseImages, DiskSource

MIN_GOOD_POINTS = 4  # a homography needs 4; fewer leaves H_computed unchecked


@dataclass(frozen=True)
class HCheck:
    """How H_computed is fitted and when a pair is rejected. Distances are in the model's
    working-resolution pixels (the FOV scaled to ``working_side``) so one setting suits every
    camera; they are converted to full-resolution pixels per pair."""

    transform: str = "homography"
    ransac_threshold_px: float = 3.0
    max_residual_px: float = 1.5  # median inlier residual above this: points or model unreliable

    def __post_init__(self) -> None:
        check_transform("transform", self.transform)


@dataclass(frozen=True)
class HComputed:
    """``matrix`` maps MOVING -> FIXED (full resolution) or is None; ``reason`` is empty when
    the pair is usable, else why it was rejected."""

    matrix: np.ndarray | None
    inliers: np.ndarray  # (N,) bool over the included points
    residual_px: float  # median inlier residual, fixed-image pixels (nan when not fitted)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


def compute_h(fixed_pts: np.ndarray, moving_pts: np.ndarray, transform: str,
              threshold_px: float, max_residual_px: float) -> HComputed:
    """RANSAC fit of the annotated points (full-res px thresholds), with the rejection reasons:
    too few points, degenerate, residual too high."""
    n = len(fixed_pts)
    none = np.zeros(n, bool)
    if n < MIN_GOOD_POINTS:
        return HComputed(None, none, float("nan"),
                         f"too few points ({n} included; need at least {MIN_GOOD_POINTS})")
    est = estimate_from_points(fixed_pts, moving_pts, transform, threshold_px=threshold_px)
    if not est.ok:
        kind = "too few good points" if est.reason.startswith("too few") else "degenerate"
        return HComputed(None, est.inliers, float("nan"), f"{kind}: {est.reason}")
    n_in = int(est.inliers.sum())
    if n_in < MIN_GOOD_POINTS:
        return HComputed(None, est.inliers, float("nan"),
                         f"too few good points ({n_in} of {n} fit one transform; "
                         f"need {MIN_GOOD_POINTS})")
    res = float(np.median(residuals(est.matrix, moving_pts[est.inliers], fixed_pts[est.inliers])))
    if res > max_residual_px:
        return HComputed(None, est.inliers, res,
                         f"residual too high (median {res:.1f} px > {max_residual_px:.1f} px "
                         f"over {n_in} inliers)")
    return HComputed(est.matrix, est.inliers, res)


@dataclass(frozen=True)
class RealPair:
    """An accepted pair: its images, the included points (full res), H_computed and the
    SHA-256 of both images (pairs sharing an image must stay on one side of a split)."""

    pair_id: str
    mode: Mode
    fixed_path: Path
    moving_path: Path
    image_ids: tuple[str, str]
    fixed_pts: np.ndarray
    moving_pts: np.ndarray
    h: HComputed

    @property
    def anchors(self) -> tuple[np.ndarray, np.ndarray]:
        """(fixed, moving) points that agree with H_computed: the anchor-loss points."""
        return self.fixed_pts[self.h.inliers], self.moving_pts[self.h.inliers]


def _full_px_per_work_px(ann: Annotation, working_side: int) -> float:
    """Approximate full-res pixels per working pixel from the stored image shape (the FOV is
    at most the frame, so this errs towards stricter thresholds)."""
    return max(ann.fixed.shape[:2]) / float(working_side)


def _image_id(ref_sha: str | None, path: Path) -> str:
    return ref_sha if ref_sha is not None else sha256_file(path)


def load_realpairs(root: str | Path, working_side: int, check: HCheck = HCheck(),
                   default_mode: str | None = None
                   ) -> tuple[list[RealPair], list[tuple[str, str]]]:
    """Accepted pairs and ``(pair_id, reason)`` for every pair that cannot be used (unreadable
    export, no mode, or H_computed rejected). Raises DatasetError when none is usable."""
    listed, rejected = read_realpairs(root)
    pairs = []
    for pair_id, fixed_path, moving_path, ann in listed:
        mode = ann.mode or default_mode
        if mode is None:
            rejected.append((pair_id, "no mode in the annotation (set default_mode)"))
            continue
        fixed_pts, moving_pts = ann.included()
        f = _full_px_per_work_px(ann, working_side)
        h = compute_h(fixed_pts, moving_pts, check.transform, check.ransac_threshold_px * f,
                      check.max_residual_px * f)
        if not h.ok:
            rejected.append((pair_id, h.reason))
            continue
        ids = (_image_id(ann.fixed.sha256, fixed_path), _image_id(ann.moving.sha256, moving_path))
        pairs.append(RealPair(pair_id, Mode(mode), fixed_path, moving_path, ids, fixed_pts,
                              moving_pts, h))
    if not pairs:
        detail = "; ".join(f"{p}: {r}" for p, r in rejected[:3]) or "no pairs listed"
        raise DatasetError(f"{root}: no usable real pair ({len(rejected)} rejected; {detail})")
    return pairs, rejected


def image_groups(image_ids: Sequence[tuple[str, str]]) -> np.ndarray:
    """(len(image_ids),) group label per pair of image ids (e.g. SHA-256): pairs linked
    through any shared image, directly or along a chain, get the same label."""
    ids = sorted({i for pair in image_ids for i in pair})
    index = {i: k for k, i in enumerate(ids)}
    a = [index[f] for f, _ in image_ids]
    b = [index[m] for _, m in image_ids]
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ids), len(ids)))
    _, labels = connected_components(graph, directed=False)
    return labels[a]


def split_by_image(pairs: Sequence[RealPair], heldout_fraction: float, seed: int = 0
                   ) -> tuple[list[RealPair], list[RealPair]]:
    """(train, held-out): whole image groups go to one side, about ``heldout_fraction`` of the
    pairs are held out, both sides non-empty."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    labels = image_groups([p.image_ids for p in pairs])
    groups = np.unique(labels)
    if len(groups) < 2:
        raise DatasetError(f"all {len(pairs)} pairs share images: no pair can be held out "
                           "without its images being seen in training")
    order = np.random.default_rng(seed).permutation(groups)
    target = max(1, round(heldout_fraction * len(pairs)))
    held: set[int] = set()
    n_held = 0
    for g in order[:-1]:  # the last group always trains
        if n_held >= target:
            break
        held.add(int(g))
        n_held += int(np.sum(labels == g))
    train = [p for p, g in zip(pairs, labels) if g not in held]
    heldout = [p for p, g in zip(pairs, labels) if g in held]
    return train, heldout


# ---------------------------------------------------------------- pairs as training cases

@dataclass
class _Canvas:
    fixed: np.ndarray  # raw fixed image at working scale, FOV centred in size x size
    moving: np.ndarray  # raw moving image resampled into that frame through H_computed
    anchors0: np.ndarray  # (K, 2) annotated fixed points, canvas px
    anchors1: np.ndarray  # (K, 2) annotated moving points, canvas px (as the moving shows them)


class RealPairSource(DiskSource):
    """Real pairs as ``AffinePairDataset`` cases (``load(index, mode) -> CaseImages``), all of
    one mode, at ``size`` x ``size`` with the fixed FOV at the model's working scale
    (``core.modality.prepare``) and centred, so no further resize happens in the dataset.

    Subclasses ``DiskSource`` only because ``AffinePairDataset`` accepts that type.
    """

    def __init__(self, pairs: Sequence[RealPair], size: int, working_side: int):
        super().__init__(list(pairs))
        modes = {p.mode for p in pairs}
        if len(modes) != 1:
            raise DatasetError(f"a real-pair source holds one mode, got {sorted(modes)}")
        self.pairs, self.size, self.working_side = list(pairs), size, working_side
        self._canvases: dict[int, _Canvas] = {}

    def load(self, index: int, mode: Mode) -> CaseImages:
        pair = self.pairs[index]
        if pair.mode != mode:
            raise DatasetError(f"pair {pair.pair_id} is mode {pair.mode.value}, not {mode.value}")
        c = self.canvas(index)
        return CaseImages(c.fixed, c.moving)

    def anchors(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.canvas(index)
        return c.anchors0, c.anchors1

    def canvas(self, index: int) -> _Canvas:
        if index not in self._canvases:
            self._canvases[index] = self._make_canvas(self.pairs[index])
        return self._canvases[index]

    def _make_canvas(self, pair: RealPair) -> _Canvas:
        size = self.size
        fixed_img, moving_img = read_image(pair.fixed_path), read_image(pair.moving_path)
        pf = prepare(fixed_img, pair.mode.fixed_modality, self.working_side)
        pm = prepare(moving_img, pair.mode.moving_modality, self.working_side)
        ys, xs = np.nonzero(pf.fov)
        shift = np.rint((size - 1) / 2.0 - np.array([xs.min() + xs.max(), ys.min() + ys.max()]) / 2)
        work_to_canvas = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1.0]])
        fixed_to_canvas = work_to_canvas @ rescale_matrix(1 / np.asarray(pf.scale))
        moving_work_to_canvas = fixed_to_canvas @ pair.h.matrix @ np.linalg.inv(
            rescale_matrix(1 / np.asarray(pm.scale)))
        # integer shift with nearest neighbour: the fixed image is only resized, never resampled
        fixed = cv2.warpAffine(cv2.resize(fixed_img, pf.work_size, interpolation=cv2.INTER_AREA),
                               work_to_canvas[:2], (size, size), flags=cv2.INTER_NEAREST)
        moving = cv2.warpPerspective(
            cv2.resize(moving_img, pm.work_size, interpolation=cv2.INTER_AREA),
            moving_work_to_canvas, (size, size), flags=cv2.INTER_LINEAR)
        a_fixed, a_moving = pair.anchors
        return _Canvas(fixed, moving, map_points(fixed_to_canvas, a_fixed),
                       map_points(fixed_to_canvas @ pair.h.matrix, a_moving))


def anchor_labels(anchors0: np.ndarray, anchors1: np.ndarray, T_0to1: np.ndarray,
                  mask0: np.ndarray, mask1: np.ndarray, stride: int = 8
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth in the format of ``coarse_fine_gt`` (``anchor_j`` (L0,), ``anchor_xy1``
    (L0, 2)), but only at the cells holding an annotated fixed point.

    ``anchors1`` are the annotated moving points already in image1's frame. The target of a
    cell is where its centre lands when the annotated pair is trusted locally:
    ``a1 + T(c) - T(a0)``, i.e. the augmentation's local map shifted so that ``a0`` hits ``a1``
    exactly; its image1 cell is the coarse label, the position the fine label.
    """
    h0, w0 = mask0.shape
    h1, w1 = mask1.shape
    n_cells = (h0 // stride) * (w0 // stride)
    gt_j = np.full(n_cells, -1, np.int64)
    gt_xy1 = np.zeros((n_cells, 2), np.float32)
    if len(anchors0) == 0:
        return gt_j, gt_xy1
    i, in0 = cell_index(anchors0, h0 // stride, w0 // stride, stride)
    ok0 = mask_at(mask0, anchors0, in0)
    centres = cell_centres(h0 // stride, w0 // stride, stride)[np.clip(i, 0, None)]
    target = anchors1 + map_points(T_0to1, centres) - map_points(T_0to1, anchors0)
    j, in1 = cell_index(target, h1 // stride, w1 // stride, stride)
    ok = ok0 & mask_at(mask1, target, in1)
    gt_j[i[ok]] = j[ok]
    gt_xy1[i[ok]] = target[ok]
    return gt_j, gt_xy1


class AnchoredItems(torch.utils.data.Dataset):
    """``AffinePairDataset`` items of a ``RealPairSource`` plus ``anchor_j`` / ``anchor_xy1``
    (see ``anchor_labels``); ``source=None`` gives the same keys with no anchors (synthetic
    replay), so real and replay items batch together."""

    def __init__(self, dataset: AffinePairDataset, source: RealPairSource | None = None):
        self.dataset, self.source = dataset, source

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        if self.source is None:
            a0 = a1 = np.zeros((0, 2))
        else:
            a0, a1_canvas = self.source.anchors(index % len(self.source))
            a1 = map_points(item["T_0to1"].astype(np.float64), a1_canvas) if len(a1_canvas) else a1_canvas
        item["anchor_j"], item["anchor_xy1"] = anchor_labels(a0, a1, item["T_0to1"],
                                                             item["mask0"], item["mask1"])
        return item
