"""How often the content-based modality guess (``core.modality_content``) is right, per image
source: every real image at hand (FIRE-P, DRIVE, CF_OCTA_dev CF and both OCTA slabs) and unseen
synthetic cases of every modality (seeds from 10,500,000; the cues' edges were set by looking
at seeds 10,300,000-10,300,029 and a few real images of each set).

    python benchmarks/bench_modality.py [--data ../shared/data] [--cases 50]

Prints a confusion table (rows: true modality per source; columns: guess, and how many fell
below the confidence that ``resolve_mode`` accepts).
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from record import save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.core.io import read_image
from retreg.core.modality import MIN_CONTENT_CONFIDENCE
from retreg.core.modality_content import BOXES, guess_modality
from retreg.training.synth import render_case

SEED_START = 10_500_000
SYNTH_KEYS = {"cf": "cf", "cf_clip": "cf", "fa": "fa", "oct": "oct", "octa": "octa"}


def real_sources(data: Path) -> dict[str, tuple[str, list[Path]]]:
    """source name -> (true modality, image files); sources whose folder is absent are empty."""
    octa = data / "CF_OCTA_dev"
    return {
        "FIRE-P": ("cf", sorted((data / "FIRE_P" / "data").glob("P*_*.jpg"))),
        "DRIVE": ("cf", sorted((data / "DRIVE").glob("**/images/*.tif"))),
        "CF_OCTA_dev CF": ("cf", sorted(octa.glob("*/B_Fundus/*.jpg"))),
        "CF_OCTA_dev OCTA ONH": ("octa", sorted(octa.glob("*/A_OCTA/C_optic_nerve_head/*.jpg"))),
        "CF_OCTA_dev OCTA RPC": ("octa", sorted(octa.glob("*/A_OCTA/B_RPC/*.jpg"))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2]
                    / "shared" / "data")
    ap.add_argument("--cases", type=int, default=50, help="synthetic cases (5 images each)")
    args = ap.parse_args()
    rows: dict[str, Counter] = {}
    wrong: list[str] = []

    def tally(source: str, truth: str, img, label: str) -> None:
        g = guess_modality(img)
        row = rows.setdefault(f"{source} [{truth}]", Counter())
        row[g.modality] += 1
        row["unsure"] += g.confidence < MIN_CONTENT_CONFIDENCE
        if g.modality != truth:
            wrong.append(f"{label}: {truth} guessed {g.describe()}")

    for source, (truth, files) in real_sources(args.data).items():
        for f in files:
            tally(source, truth, read_image(f), str(f))
    for k in range(args.cases):
        case = render_case(SEED_START + k, size=512)
        for key, truth in SYNTH_KEYS.items():
            tally(f"synthetic {key}", truth, case[key], f"seed {SEED_START + k} {key}")
    cols = list(BOXES)
    print(f"{'source [truth]':34s} {'n':>4s} " + " ".join(f"{c:>5s}" for c in cols)
          + f" {'right':>7s} {'unsure':>7s}")
    results = {}
    for name, row in rows.items():
        n = sum(row[c] for c in cols)
        truth = name[name.index("[") + 1:-1]
        right = row[truth] / n
        print(f"{name:34s} {n:4d} " + " ".join(f"{row[c]:5d}" for c in cols)
              + f" {right:7.1%} {row['unsure']:7d}")
        results[name] = {"n": n, **{c: row[c] for c in cols}, "right": right,
                         "unsure": row["unsure"]}
    for line in wrong:
        print("wrong:", line)
    save("bench_modality", {"data": str(args.data), "cases": args.cases,
                            "min_confidence": MIN_CONTENT_CONFIDENCE}, SEED_START, results)


if __name__ == "__main__":
    main()
