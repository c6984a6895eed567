"""A PNG grid of synthetic cases: one row per modality, one column per case.

For eyeballing the generator's variety next to real images (docs/img/synth_contact_sheet.png).
``python -m training.synth.contact_sheet --out docs/img/synth_contact_sheet.png``
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from retreg.training.synth.case import render_case

ROWS = ("cf", "fa", "oct", "cf_clip", "octa", "vessels")


def contact_sheet(seeds: list[int], size: int = 512, tile: int = 160) -> np.ndarray:
    """RGB uint8 grid (len(ROWS)·tile, len(seeds)·tile); vessel tiles show keypoints and the clip box."""
    columns = []
    for seed in seeds:
        case = render_case(seed, size)
        tiles = []
        for key in ROWS:
            img = case[key]
            img = np.dstack([img] * 3) if img.ndim == 2 else img.copy()
            if key == "vessels":
                for x, y, kind in case["keypoints"]:
                    colour = (0, 255, 0) if kind == 0 else (255, 0, 255)
                    cv2.circle(img, (int(round(x)), int(round(y))), max(2, size // 128), colour, 1)
                x0, y0, x1, y1 = (int(v) for v in case["clip_box"])
                cv2.rectangle(img, (x0, y0), (x1, y1), (255, 255, 0), 1)
            tiles.append(cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA))
        columns.append(np.concatenate(tiles, 0))
    return np.concatenate(columns, 1)


def write_contact_sheet(path: str | Path, seeds: list[int], size: int = 512) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(contact_sheet(seeds, size), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/img/synth_contact_sheet.png"))
    p.add_argument("--seed", type=int, default=0, help="first seed; columns use seed..seed+n-1")
    p.add_argument("--n", type=int, default=6, help="number of cases (columns)")
    p.add_argument("--size", type=int, default=512)
    args = p.parse_args(argv)
    print(write_contact_sheet(args.out, list(range(args.seed, args.seed + args.n)), args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
