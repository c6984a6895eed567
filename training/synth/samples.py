"""Write the app's bundled sample pairs (resources/samples/) from a held-out synthetic eye.

The moving images (FA, OCTA) are rotated, scaled and shifted so registration has work to do;
the exact moving→fixed matrices go to ``sample_truth.json``.
``python -m training.synth.samples --out resources/samples``
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from retreg.training.synth.case import SAMPLE_SEED0, render_case

SAMPLE_SEED = SAMPLE_SEED0 + 1
# (angle° counter-clockwise, scale, shift x, shift y) applied to fixed-aligned moving images
TRANSFORMS = {"fa": (25.0, 1.08, 18.0, -12.0), "octa": (-20.0, 0.95, -10.0, 14.0)}


def _moved(img: np.ndarray, angle: float, scale: float, tx: float, ty: float) -> tuple[np.ndarray, np.ndarray]:
    """(moved image, 3×3 moving→fixed matrix) for a similarity about the image centre."""
    h, w = img.shape[:2]
    fwd = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    fwd[:, 2] += (tx, ty)
    moved = cv2.warpAffine(img, fwd, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    return moved, np.linalg.inv(np.vstack([fwd, [0, 0, 1]]))


def write_samples(out: str | Path, seed: int = SAMPLE_SEED, size: int = 512) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    case = render_case(seed, size)
    fa, fa_to_cf = _moved(case["fa"], *TRANSFORMS["fa"])
    octa, octa_to_clip = _moved(case["octa"], *TRANSFORMS["octa"])
    images = {
        "sample_cf_512.png": case["cf"], "sample_fa.png": fa,
        "sample_cf_clip_512.png": case["cf_clip"], "sample_octa.png": octa,
    }
    for name, img in images.items():
        cv2.imwrite(str(out / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img)
    truth = {
        "seed": seed,
        "note": "matrix maps MOVING pixel (x, y, 1) to FIXED pixel; pixel centres at integers",
        "cffa": {"fixed": "sample_cf_512.png", "moving": "sample_fa.png",
                 "matrix": fa_to_cf.tolist(), "applied": dict(zip(("angle_deg", "scale", "tx", "ty"), TRANSFORMS["fa"]))},
        "cfocta": {"fixed": "sample_cf_clip_512.png", "moving": "sample_octa.png",
                   "matrix": octa_to_clip.tolist(), "applied": dict(zip(("angle_deg", "scale", "tx", "ty"), TRANSFORMS["octa"]))},
    }
    (out / "sample_truth.json").write_text(json.dumps(truth, indent=2))
    return truth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("resources/samples"))
    p.add_argument("--seed", type=int, default=SAMPLE_SEED)
    args = p.parse_args(argv)
    write_samples(args.out, args.seed)
    print(f"wrote samples to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
