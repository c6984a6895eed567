"""`retreg evaluate`: the FIRE protocol on a FIRE folder or on pairs listed in a CSV."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2

from retreg.cli.field_args import add_field_args, registration_config
from retreg.core.matchers import available_matchers, get_matcher
from retreg.core.metrics import Thresholds, summarise
from retreg.core.errors import ModeError
from retreg.core.modality import resolve_mode
from retreg.core.pipeline import register
from retreg.core.provenance import run_record
from retreg.core.types import TRANSFORM_TYPES, Mode
from retreg.core.evaluation import (csv_pairs, evaluate, fire_pairs, format_table, median_seconds,
                                    write_outputs)


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="benchmark registration under the FIRE protocol",
                       description="Register every pair, warp the moving control points and "
                                   "report failed / inaccurate / acceptable shares and AUC.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fire", type=Path, metavar="DIR",
                     help="FIRE folder (data/Pk_1.jpg, data/Pk_2.jpg, Ground_Truth/...)")
    src.add_argument("--pairs", type=Path, metavar="CSV",
                     help="CSV with columns fixed,moving,gt,category (paths relative to it)")
    p.add_argument("--matcher", choices=available_matchers(), default="default")
    p.add_argument("--weights", type=Path,
                   help="safetensors weights of the learned matcher (loftr / default, fast, superretina)")
    add_field_args(p)
    p.add_argument("--transform", choices=TRANSFORM_TYPES, default="homography")
    p.add_argument("--mode", choices=[m.value for m in Mode],
                   help="registration mode (FIRE: cfcf; --pairs: guessed from each pair's "
                        "file names when omitted)")
    p.add_argument("--thresholds", type=float, nargs=2, metavar=("MAX", "MED"),
                   default=(50.0, 20.0),
                   help="inaccurate when max error > MAX or median > MED px (default 50 20; "
                        "100 60 is common for multimodal pairs)")
    p.add_argument("--include-p37", action="store_true",
                   help="keep FIRE pair P37 (excluded by default: wrong ground truth)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N pairs")
    p.add_argument("--seed", type=int, default=0, help="OpenCV RNG seed (RANSAC sampling)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write pairs.csv, table.txt and run.json here")
    p.set_defaults(func=run)


def _mode_for(pair, explicit: str | None) -> Mode:
    try:
        return resolve_mode(pair.fixed, pair.moving, explicit).mode
    except ModeError as exc:
        raise ModeError(f"{pair.pair_id}: {exc}") from None


def run(args) -> int:
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    max_px, med_px = args.thresholds
    if max_px <= 0 or med_px <= 0:
        raise ValueError("--thresholds must be positive pixel distances")
    thresholds = Thresholds(max_px, med_px)
    if args.fire:
        pairs, skipped = fire_pairs(args.fire, include_p37=args.include_p37)
        default_mode = args.mode or Mode.CFCF.value
    else:
        pairs, skipped = csv_pairs(args.pairs)
        default_mode = args.mode
    pairs = pairs[: args.limit] if args.limit else pairs
    modes = {p.pair_id: _mode_for(p, default_mode) for p in pairs}  # fail before any work
    matcher = get_matcher(args.matcher, weights=args.weights)
    cv2.setRNGSeed(args.seed)

    reg_config = registration_config(args)

    def register_fn(pair, fixed, moving):
        return register(fixed, moving, modes[pair.pair_id], matcher=matcher,
                        transform=args.transform, config=reg_config)

    results, unreadable = evaluate(pairs, register_fn, thresholds)
    skipped = skipped + unreadable
    for pid, why in skipped:
        print(f"skipped {pid}: {why}", file=sys.stderr)
    if not results:
        raise ValueError("no pair could be evaluated")
    summary = summarise([r.pair.category for r in results], [r.errors for r in results],
                        thresholds)
    table = format_table(summary, results, thresholds)
    print(table)
    if args.out:
        config = {"source": str(args.fire or args.pairs), "matcher": args.matcher,
                  "matcher_resolved": matcher.name,
                  "weights": str(args.weights) if args.weights else None,
                  "transform": args.transform, "octa_field_mm": args.octa_field_mm,
                  "cf_fov_deg": args.cf_fov_deg, "modes": sorted({m.value for m in modes.values()}),
                  "thresholds": [max_px, med_px], "include_p37": args.include_p37,
                  "limit": args.limit, "n_pairs": len(results),
                  "mauc": summary.mauc, "median_seconds": median_seconds(results)}
        write_outputs(args.out, results, table, skipped, run_record(config, seed=args.seed))
    return 0
