"""`retreg register FIXED MOVING`: register one pair, print a summary, optionally write the
result JSON, the warped moving image and an overlay.

Exit codes: 0 registered (also with a ``low confidence`` verdict, said on stderr), 1 no transform
or a ``failed`` verdict (the JSON still records why; no warped image or overlay is written),
2 bad input.
"""
from __future__ import annotations

import functools
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from retreg.core import overlays
from retreg.core.fusion import VIEWS as FUSION_VIEWS, fusion_view
from retreg.core.atomic import atomic_write_bytes
from retreg.core.io import check_image_file, read_image, write_image
from retreg.core.matchers import available_matchers, get_matcher
from retreg.core.modality import resolve_mode, source
from retreg.core.pipeline import register
from retreg.core.provenance import run_record
from retreg.core.types import TRANSFORM_TYPES, Mode
from retreg.core.warp import warp_moving
from retreg.cli.field_args import add_field_args, registration_config

OVERLAYS = {"checkerboard": overlays.checkerboard, "blend": overlays.blend,
            "diff": overlays.difference, "two-colour": overlays.two_colour,
            **{kind: functools.partial(fusion_view, kind) for kind in FUSION_VIEWS}}
OVERLAY_ALIASES = {"fusion": "two-colour"}  # the two-colour view's former name


def add_parser(sub) -> None:
    p = sub.add_parser("register", help="register a moving image onto a fixed image",
                       description="Register MOVING onto FIXED. The matrix maps moving pixel "
                                   "coordinates to fixed pixel coordinates (full resolution).")
    p.add_argument("fixed", type=Path, help="fixed (reference) image")
    p.add_argument("moving", type=Path, help="moving image, warped onto the fixed one")
    p.add_argument("--mode", choices=[m.value for m in Mode],
                   help="registration mode; guessed from the file names (_cf, _fa, _oct, _octa) "
                        "when omitted")
    p.add_argument("--transform", choices=TRANSFORM_TYPES, default="affine",
                   help="quadratic / smooth: a homography plus a non-rigid polish (curved or "
                        "wide-field pairs); the JSON keeps both")
    p.add_argument("--matcher", choices=available_matchers(), default="default")
    p.add_argument("--weights", type=Path,
                   help="safetensors weights of the learned matcher (loftr / default, fast, superretina)")
    add_field_args(p)
    p.add_argument("--json", type=Path, metavar="OUT", help="write the result as JSON")
    p.add_argument("--warped", type=Path, metavar="OUT.png",
                   help="write the moving image warped into the fixed frame")
    p.add_argument("--overlay", choices=sorted(OVERLAYS) + sorted(OVERLAY_ALIASES),
                   help="overlay kind for --overlay-out (fused: detail of both images in one; "
                        "fused-learned: the same with the learned detail choice; fusion-mask"
                        "[-learned]: that choice, white where the moving image's detail is kept; "
                        "two-colour: fixed magenta, moving green; fusion: old name of two-colour)")
    p.add_argument("--overlay-out", type=Path, metavar="OUT.png",
                   help="write fixed + warped moving as the chosen overlay")
    p.add_argument("--tile", type=int, metavar="PX",
                   help="checkerboard square size (default: 1/8 of the fixed image's shorter side)")
    p.set_defaults(func=run)


def _overlay(kind: str, fixed: np.ndarray, warped: np.ndarray, tile: int | None) -> np.ndarray:
    kind = OVERLAY_ALIASES.get(kind, kind)
    if kind == "checkerboard":
        return overlays.checkerboard(fixed, warped, tile or overlays.default_tile(fixed.shape))
    return OVERLAYS[kind](fixed, warped)


def _summary(res, fixed: Path, moving: Path) -> str:
    head = f"{moving.name} -> {fixed.name}: {res.mode}, {res.matcher}, {res.transform_type}"
    counts = f"{len(res.matches)} matches, {len(res.selected)} selected, {res.n_inliers} inliers"
    if not res.ok:
        return f"{head}\nFAILED: {res.reason} ({counts})"
    med = res.to_json()["median_residual_px"]
    note = "\n".join(n for n in (res.hypothesis_note(), res.located_note(), res.polish_note) if n)
    verdict = res.verdict
    level = "ok" if verdict is None or verdict.ok else verdict.level.upper()
    why = "" if verdict is None or verdict.ok else f" ({'; '.join(verdict.reasons)})"
    return (f"{head}\n{level}{why}: {counts}, median inlier residual {med:.2f} px, "
            f"{res.timings.get('total', 0.0):.2f} s" + (f"\n{note}" if note else ""))


def _judged_failed(res) -> bool:
    """No transform, or one the verdict rules out: either way nothing to show as a result."""
    return not res.ok or (res.verdict is not None and res.verdict.level == "failed")


def run(args) -> int:
    if (args.overlay is None) != (args.overlay_out is None):
        raise ValueError("--overlay and --overlay-out must be given together")
    check_image_file(args.fixed), check_image_file(args.moving)  # bad files fail at once
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Loading the model imports torch (~1.5 s): done beside the decoding and the
        # full-resolution preparation, not after them.
        loading = pool.submit(get_matcher, args.matcher, weights=args.weights)
        fixed, moving = read_image(args.fixed), read_image(args.moving)
        choice = resolve_mode(args.fixed, args.moving, args.mode, fixed, moving)
        mode = choice.mode
        sources = source(fixed, mode.fixed_modality), source(moving, mode.moving_modality)
        matcher = loading.result()
    if choice.source == "content":
        print(choice.describe(), file=sys.stderr)
    res = register(*sources, mode, matcher=matcher, transform=args.transform,
                   config=registration_config(args))
    print(_summary(res, args.fixed, args.moving))

    if args.json:
        doc = res.to_json()
        if res.ok and _judged_failed(res):  # the fit exists, the verdict rules it out
            doc["status"], doc["reason"] = "failed", "; ".join(res.verdict.reasons)
        doc["mode_source"] = choice.source
        doc["inputs"] = {"fixed": str(args.fixed.resolve()), "moving": str(args.moving.resolve())}
        doc["provenance"] = run_record({"mode": mode.value, "matcher": args.matcher,
                                        "weights": str(args.weights) if args.weights else None,
                                        "transform": args.transform}, seed=None)
        atomic_write_bytes(args.json, (json.dumps(doc, indent=2) + "\n").encode())
    if _judged_failed(res):
        reasons = res.reason if not res.ok else "; ".join(res.verdict.reasons)
        print(f"retreg register: failed: {reasons}", file=sys.stderr)
        if args.warped or args.overlay_out:
            print("no warped image or overlay written: registration failed")
        return 1
    if res.verdict is not None and not res.verdict.ok:
        print(f"retreg register: low confidence: {'; '.join(res.verdict.reasons)}",
              file=sys.stderr)
    if args.warped or args.overlay_out:
        warped = warp_moving(moving, res.mapping, fixed.shape)
        if args.warped:
            write_image(args.warped, warped)
        if args.overlay_out:
            write_image(args.overlay_out, _overlay(args.overlay, fixed, warped, args.tile))
    return 0
