"""Do synthetic vessels have real vessel widths once both are scaled by their field of view?

The learned matcher runs where the field of view spans its working side (``core.modality``),
which only transfers from synthetic to real if vessel widths relative to the FOV diameter agree.
This compares DRIVE's manual vessel masks (real, 45-degree fundus) with the synthetic cases'
vessel masks. Width = twice the distance transform on the vessel centre ridge (local maxima),
in per-mille of the FOV diameter; also the area / half-perimeter width of the whole tree.

    python benchmarks/bench_vessel_width.py [--drive ../shared/data/DRIVE/DRIVE] [--cases 20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.training.synth import render_case

ROOT = Path(__file__).resolve().parents[1]


def vessel_widths(vessels: np.ndarray, fov: np.ndarray) -> dict[str, float]:
    """Ridge-width percentiles and area/half-perimeter width, per mille of the FOV diameter."""
    mask = (vessels > 0).astype(np.uint8)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    ridge = (dist >= cv2.dilate(dist, np.ones((3, 3), np.uint8)) - 1e-6) & (mask > 0)
    diameter = 2.0 * np.sqrt(fov.sum() / np.pi)
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    w = 2.0 * dist[ridge] / diameter * 1000
    return {"p50": float(np.percentile(w, 50)), "p90": float(np.percentile(w, 90)),
            "area_width": float(2.0 * mask.sum() / perimeter / diameter * 1000),
            "fov_diameter_px": float(diameter)}


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drive", default=str(ROOT.parent / "shared/data/DRIVE/DRIVE"))
    ap.add_argument("--cases", type=int, default=20, help="synthetic cases (training seeds 0..)")
    args = ap.parse_args()
    test = Path(args.drive) / "test"
    masks = sorted((test / "1st_manual").glob("*_manual1.gif"))
    if not masks:
        sys.exit(f"no DRIVE masks under {test / '1st_manual'} (see ../shared/data/README.md)")
    real = []
    for path in masks:
        fov = np.array(Image.open(test / "mask" / f"{path.name[:2]}_test_mask.gif")) > 0
        real.append(vessel_widths(np.array(Image.open(path)), fov))
    synth = []
    for seed in range(args.cases):
        case = render_case(seed, 512)
        synth.append(vessel_widths(case["vessels"], case["fov"]))
    r, s = _mean(real), _mean(synth)
    print("vessel width, per mille of the FOV diameter (mean over images)")
    print(f"{'':12s}{'ridge p50':>10s}{'ridge p90':>10s}{'area/perim':>11s}{'FOV px':>8s}")
    for name, v in (("DRIVE", r), ("synthetic", s)):
        print(f"{name:12s}{v['p50']:10.2f}{v['p90']:10.2f}{v['area_width']:11.2f}"
              f"{v['fov_diameter_px']:8.0f}")
    ratio = {k: s[k] / r[k] for k in ("p50", "p90", "area_width")}
    print("synthetic / real: " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()))
    save("bench_vessel_width", vars(args), 0,
         {"drive": r, "synthetic": s, "synthetic_over_real": ratio, "n_drive": len(real)})


if __name__ == "__main__":
    main()
