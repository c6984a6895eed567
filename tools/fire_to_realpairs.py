"""Make a real-pair export (the fine-tuning input) from FIRE ground truth for part of the pairs,
and list the other pairs as a test CSV for ``retreg evaluate --pairs``.

FIRE pairs share images (P10_1 = P11_1 = P12_1; P26 and P27 are the same two images), so the
split is made over groups of pairs linked by a shared image, found by file hash: no image of a
test pair is ever exported for training.

    python tools/fire_to_realpairs.py --fire ../shared/data/FIRE_P --out /tmp/fire_ft --fraction 0.5
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from retreg.core.annotations import Annotation, ImageRef, export_realpair, read_fire_points, sha256_file
from retreg.core.io import read_image
from retreg.core.evaluation import fire_pairs
from retreg.training.realpairs import HCheck, compute_h, image_groups

REALPAIRS_DIR, TEST_CSV = "realpairs", "test_pairs.csv"


def split_groups(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """(n,) bool: pairs to annotate, whole groups at a time, about ``fraction`` of them."""
    annotate = np.zeros(len(labels), bool)
    for g in np.random.default_rng(seed).permutation(np.unique(labels)):
        if annotate.mean() >= fraction:
            break
        annotate |= labels == g
    return annotate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fire", type=Path, required=True, help="FIRE folder (data/, Ground_Truth/)")
    p.add_argument("--out", type=Path, required=True,
                   help=f"writes OUT/{REALPAIRS_DIR}/ (export) and OUT/{TEST_CSV}")
    p.add_argument("--fraction", type=float, default=0.5, help="share of pairs to annotate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--working-side", type=int, default=256,
                   help="model working side: H_computed thresholds are in its pixels")
    args = p.parse_args(argv)
    if not 0 < args.fraction < 1:
        p.error("--fraction must be between 0 and 1")
    pairs, skipped = fire_pairs(args.fire)
    for pid, why in skipped:
        print(f"skipped {pid}: {why}")
    ids = [(sha256_file(pr.fixed), sha256_file(pr.moving)) for pr in pairs]
    labels = image_groups(ids)
    annotate = split_groups(labels, args.fraction, args.seed)
    check = HCheck()
    root = args.out / REALPAIRS_DIR
    for pr, ann_it in zip(pairs, annotate):
        if not ann_it:
            continue
        fixed, moving = read_image(pr.fixed), read_image(pr.moving)
        points = read_fire_points(pr.gt)
        ann = Annotation(ImageRef(str(pr.fixed), None, fixed.shape),
                         ImageRef(str(pr.moving), None, moving.shape), "cfcf", points,
                         notes=f"FIRE ground truth {pr.gt.name}")
        f = max(fixed.shape[:2]) / args.working_side
        h = compute_h(*ann.included(), check.transform, check.ransac_threshold_px * f,
                      check.max_residual_px * f)
        export_realpair(root, pr.pair_id, ann, fixed, moving, H_computed=h.matrix)
        print(f"exported {pr.pair_id}: " + (f"H residual {h.residual_px:.1f} px" if h.ok
                                            else f"(fine-tuning will reject it: {h.reason})"))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / TEST_CSV, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["fixed", "moving", "gt", "category"])
        for pr, ann_it in zip(pairs, annotate):
            if not ann_it:
                w.writerow([pr.fixed.resolve(), pr.moving.resolve(), pr.gt.resolve(), pr.category])
    n_groups = len(np.unique(labels))
    print(f"{len(pairs)} pairs in {n_groups} image groups: {int(annotate.sum())} exported to "
          f"{root}, {int((~annotate).sum())} listed in {args.out / TEST_CSV}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
