"""Contact sheet of the fused views for the fusion report: one synthetic CF + FA pair (the
benchmark's first seed) and one CF_OCTA_dev eye registered by the pipeline (the first that
registers), each as a crop at the benchmark's resolution around the centre of the overlap, so
vessels and capillaries are seen pixel for pixel. Columns: fixed, moving, average, max,
two-colour, classical fused, learned fused and both decision masks (white: the moving image's
detail kept). Tiles are small enough to keep the sheet under 1 MB.

    OMP_NUM_THREADS=1 python benchmarks/fusion_sheet.py --out docs/img/fusion_sheet.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from bench_fusion import CFOCTA, candidate_views, cfocta_pairs, synthetic_pairs
from retreg.core.fusion import fusion_mask_view
from retreg.core.io import write_image

COLUMNS = ("fixed", "moving", "average", "max", "two-colour", "fused", "fused-learned",
           "fusion-mask", "fusion-mask-learned")
TILE = 160
LABEL_PX = 22


def _rgb(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8:
        img = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)


def row(name: str, fixed: np.ndarray, warped: np.ndarray, crop: int) -> np.ndarray:
    views, overlap = candidate_views(fixed, warped)
    views["fusion-mask"] = fusion_mask_view(fixed, warped, "classical")
    views["fusion-mask-learned"] = fusion_mask_view(fixed, warped, "learned")
    ys, xs = np.nonzero(overlap)
    cy, cx = int(ys.mean()), int(xs.mean())
    h, w = overlap.shape
    y0, x0 = min(max(0, cy - crop // 2), h - crop), min(max(0, cx - crop // 2), w - crop)
    tiles = [cv2.resize(_rgb(views[c])[y0:y0 + crop, x0:x0 + crop], (TILE, TILE),
                        interpolation=cv2.INTER_AREA) for c in COLUMNS]
    label = np.full((LABEL_PX, TILE * len(COLUMNS), 3), 255, np.uint8)
    cv2.putText(label, name, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([label, np.hstack(tiles)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img/fusion_sheet.png"))
    ap.add_argument("--crop", type=int, default=320, help="crop side at benchmark resolution")
    args = ap.parse_args()
    header = np.full((LABEL_PX, TILE * len(COLUMNS), 3), 255, np.uint8)
    for k, c in enumerate(COLUMNS):
        cv2.putText(header, c.replace("fusion-", ""), (k * TILE + 4, 16),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    name, fixed, moving = next(p for p in synthetic_pairs(1) if p[0].endswith("/fa"))
    rows = [header, row(f"synthetic CF + FA, seed {name}", fixed, moving, args.crop)]
    if CFOCTA.is_dir():
        name, clip, octa = next(cfocta_pairs("default"))
        rows.append(row(f"CF_OCTA_dev {name}: CF clip + registered OCTA", clip, octa, args.crop))
    write_image(args.out, np.vstack(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
