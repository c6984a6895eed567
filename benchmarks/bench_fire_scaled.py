"""Real photos at a scale the matcher was not trained on: FIRE-P pairs whose moving photo is
rescaled about its centre (x1.4, x1.8: magnified, its rim cropped; x0.6: shrunk inside its
frame), registered as ``cfcf`` homographies and scored on the pair's control points, moved with
the photo (FIRE protocol, 50 / 20 px). The unscaled pairs are in ``retreg evaluate --fire``.

    python benchmarks/bench_fire_scaled.py --first 20 --last 29 --scales 0.6 1.4 1.8
    python benchmarks/bench_fire_scaled.py --weights runs/.../retreg_loftr_v1.safetensors \\
        --record bench_fire_scaled_candidate
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch

from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.core.annotations import read_fire_points
from retreg.core.io import read_image
from retreg.core.matchers import get_matcher
from retreg.core.metrics import SAME_MODALITY, classify, control_point_errors
from retreg.core.pipeline import register


def rescaled(moving: np.ndarray, pts: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo zoomed by ``s`` about its centre in its own frame, and its points moved."""
    h, w = moving.shape[:2]
    S = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 0, s)
    img = cv2.warpAffine(moving, S, (w, h), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return img, pts @ S[:, :2].T + S[:, 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fire", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "data" / "FIRE_P")
    ap.add_argument("--first", type=int, default=20, help="first pair number (P<first>)")
    ap.add_argument("--last", type=int, default=29, help="last pair number")
    ap.add_argument("--scales", type=float, nargs="+", default=[0.6, 1.4, 1.8])
    ap.add_argument("--weights", default=None, help="LoFTR weights (default: bundled)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--record", default="bench_fire_scaled")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    matcher = get_matcher("loftr", weights=args.weights)
    rows = []
    for k in range(args.first, args.last + 1):
        pid = f"P{k}"
        fixed = read_image(args.fire / "data" / f"{pid}_1.jpg")
        moving = read_image(args.fire / "data" / f"{pid}_2.jpg")
        pts = read_fire_points(args.fire / "Ground_Truth" / f"control_points_{pid}_1_2.txt")
        pf, pm = np.array([p.fixed for p in pts]), np.array([p.moving for p in pts])
        for s in args.scales:
            img, pm_s = rescaled(moving, pm, s)
            t = time.perf_counter()
            r = register(fixed, img, "cfcf", matcher=matcher, transform="homography")
            secs = time.perf_counter() - t
            e = control_point_errors(r.matrix, pm_s, pf)
            rows.append({"pair": pid, "scale": s, "mean_px": e.mean, "outcome": classify(e),
                         "verdict": r.verdict.level, "seconds": secs})
            print(f"{pid} x{s}: {rows[-1]['outcome']:10s} mean {e.mean:8.1f} px  verdict "
                  f"{r.verdict.level:14s} {secs:.1f} s", flush=True)
    summary = {}
    for s in args.scales:
        sub = [r for r in rows if r["scale"] == s]
        summary[str(s)] = {
            "acceptable": sum(r["outcome"] == "acceptable" for r in sub), "pairs": len(sub),
            "verdict_ok": sum(r["verdict"] == "ok" for r in sub),
            "ok_not_acceptable": sum(r["verdict"] == "ok" and r["outcome"] != "acceptable"
                                     for r in sub),
            "median_s": float(np.median([r["seconds"] for r in sub]))}
        print(f"x{s}: acceptable {summary[str(s)]['acceptable']}/{len(sub)}, verdict ok "
              f"{summary[str(s)]['verdict_ok']} (of them not acceptable "
              f"{summary[str(s)]['ok_not_acceptable']}), median {summary[str(s)]['median_s']:.1f} s")
    save(args.record, {**vars(args), "fire": str(args.fire), "thresholds": asdict(SAME_MODALITY)},
         None, {"summary": summary, "pairs": rows})


if __name__ == "__main__":
    main()
