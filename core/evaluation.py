"""Benchmark evaluation under the FIRE protocol: find the pairs, register each, score, report.

The registration call is passed in (``register_fn``) so this module knows nothing about
matchers or the CLI; ``training/commands/evaluate.py`` builds it from the options.
"""
from __future__ import annotations

import csv
import io
import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from retreg.core.annotations import read_fire_points
from retreg.core.atomic import atomic_write_bytes
from retreg.core.errors import AnnotationError, DatasetError, ImageReadError
from retreg.core.io import read_image
from retreg.core.metrics import (SAME_MODALITY, PairErrors, Summary, Thresholds, classify,
                                 control_point_errors)
from retreg.core.transforms import after
from retreg.core.types import RegistrationResult
from retreg.core.warp import square_clip

FIRE_EXCLUDED = ("P37",)  # ground truth known to be wrong
PAIRS_CSV_COLUMNS = ("fixed", "moving", "gt", "category")
CLIP_COLUMN = "fixed_clip"  # optional: "x0 y0 side out_side", register onto that square of fixed
_FIRE_NAME = re.compile(r"([A-Za-z])(\d+)_1\.jpg")


@dataclass(frozen=True)
class EvalPair:
    pair_id: str
    category: str
    fixed: Path
    moving: Path
    gt: Path
    fixed_clip: tuple[int, int, int, int] | None = None  # x0, y0, side, out_side (fixed px)


@dataclass
class PairResult:
    pair: EvalPair
    result: RegistrationResult
    errors: PairErrors
    outcome: str  # failed | inaccurate | acceptable
    seconds: float  # registration only (image reading excluded)


def _missing(pair: EvalPair) -> str:
    gone = [p.name for p in (pair.fixed, pair.moving, pair.gt) if not p.is_file()]
    return f"missing {', '.join(gone)}" if gone else ""


def fire_pairs(root: str | Path, include_p37: bool = False
               ) -> tuple[list[EvalPair], list[tuple[str, str]]]:
    """Pairs of a FIRE folder (``data/Xk_1.jpg``, ``Xk_2.jpg``,
    ``Ground_Truth/control_points_Xk_1_2.txt``; category = first letter) and the skipped ones."""
    root = Path(root)
    data = root / "data"
    if not data.is_dir():
        raise DatasetError(f"{root}: not a FIRE folder (no data/ inside)")
    pairs, skipped = [], []
    for fixed in sorted(data.iterdir()):
        m = _FIRE_NAME.fullmatch(fixed.name)
        if not m:
            continue
        pid = f"{m.group(1).upper()}{m.group(2)}"
        if pid in FIRE_EXCLUDED and not include_p37:
            skipped.append((pid, "excluded: wrong ground truth (--include-p37 keeps it)"))
            continue
        pair = EvalPair(pid, pid[0], fixed, data / f"{pid}_2.jpg",
                        root / "Ground_Truth" / f"control_points_{pid}_1_2.txt")
        why = _missing(pair)
        if why:
            skipped.append((pid, why))
        else:
            pairs.append(pair)
    if not pairs:
        raise DatasetError(f"{root}: no usable FIRE pairs (expected data/<X><k>_1.jpg)")
    return pairs, skipped


def csv_pairs(path: str | Path) -> tuple[list[EvalPair], list[tuple[str, str]]]:
    """Pairs listed in a CSV with columns ``fixed,moving,gt,category`` (paths relative to it)
    and optionally ``fixed_clip`` (``x0 y0 side out_side``: the pair is registered onto that
    square of the fixed image, resampled to ``out_side``; errors stay in fixed-image px)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: pairs CSV does not exist")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [c.strip() for c in reader.fieldnames or []]
        if not set(PAIRS_CSV_COLUMNS) <= set(header):
            raise DatasetError(f"{path}: line 1: columns must include "
                               f"{','.join(PAIRS_CSV_COLUMNS)} (got {','.join(header)})")
        reader.fieldnames = header
        rows = list(reader)
    pairs, skipped = [], []
    for lineno, row in enumerate(rows, start=2):
        values = {k: (row.get(k) or "").strip() for k in PAIRS_CSV_COLUMNS}
        if not any(values.values()):
            continue
        if not all(values[k] for k in ("fixed", "moving", "gt")):
            raise DatasetError(f"{path}: line {lineno}: fixed, moving and gt are required")
        pair = EvalPair(f"line{lineno}:{Path(values['fixed']).stem}", values["category"] or "-",
                        path.parent / values["fixed"], path.parent / values["moving"],
                        path.parent / values["gt"],
                        _clip((row.get(CLIP_COLUMN) or "").strip(), f"{path}: line {lineno}"))
        why = _missing(pair)
        if why:
            skipped.append((pair.pair_id, why))
        else:
            pairs.append(pair)
    if not pairs:
        raise DatasetError(f"{path}: no usable pairs")
    return pairs, skipped


def _clip(text: str, where: str) -> tuple[int, int, int, int] | None:
    if not text:
        return None
    try:
        values = tuple(int(v) for v in text.split())
    except ValueError:
        values = ()
    if len(values) != 4 or min(values[2:]) < 8 or min(values[:2]) < 0:
        raise DatasetError(f"{where}: {CLIP_COLUMN} must be 'x0 y0 side out_side' "
                           f"(integers, sides >= 8), got {text!r}")
    return values  # type: ignore[return-value]


def evaluate(pairs: Sequence[EvalPair],
             register_fn: Callable[[EvalPair, np.ndarray, np.ndarray], RegistrationResult],
             thresholds: Thresholds = SAME_MODALITY, progress: bool = True
             ) -> tuple[list[PairResult], list[tuple[str, str]]]:
    """Register and score every pair; unreadable images or ground truth are skipped with a
    reason rather than aborting a long run."""
    results, skipped = [], []
    bar = tqdm(pairs, desc="evaluate", unit="pair", file=sys.stderr, disable=not progress)
    for pair in bar:
        bar.set_postfix_str(pair.pair_id)
        try:
            gt = read_fire_points(pair.gt)
            fixed, moving = read_image(pair.fixed), read_image(pair.moving)
        except (AnnotationError, ImageReadError) as exc:
            skipped.append((pair.pair_id, str(exc)))
            continue
        to_fixed = np.eye(3)
        if pair.fixed_clip is not None:
            try:
                fixed, to_fixed = square_clip(fixed, *pair.fixed_clip)
            except ValueError as exc:
                skipped.append((pair.pair_id, str(exc)))
                continue
        t0 = time.perf_counter()
        res = register_fn(pair, fixed, moving)
        seconds = time.perf_counter() - t0
        errs = control_point_errors(after(to_fixed, res.mapping) if res.ok else None,
                                    [p.moving for p in gt], [p.fixed for p in gt])
        results.append(PairResult(pair, res, errs, classify(errs, thresholds), seconds))
    return results, skipped


def median_seconds(results: Sequence[PairResult]) -> float:
    return statistics.median(r.seconds for r in results) if results else float("nan")


def stage_medians(results: Sequence[PairResult]) -> dict[str, float]:
    """Median seconds of each pipeline stage over the pairs (real, full-resolution timings)."""
    stages: dict[str, list[float]] = {}
    for r in results:
        for stage, secs in r.result.timings.items():
            stages.setdefault(stage, []).append(secs)
    return {stage: statistics.median(v) for stage, v in stages.items()}


def verdict_counts(results: Sequence[PairResult]) -> dict[str, int]:
    """How many results the quality verdict called ok / low confidence / failed."""
    counts = {"ok": 0, "low confidence": 0, "failed": 0}
    for r in results:
        if r.result.verdict is not None:
            counts[r.result.verdict.level] += 1
    return counts


def format_table(summary: Summary, results: Sequence[PairResult], thresholds: Thresholds) -> str:
    """The protocol table as fixed-width text."""
    lines = [f"FIRE protocol: inaccurate = max > {thresholds.max_px:g} px or median > "
             f"{thresholds.median_px:g} px; AUC over mean error, t = 1..25 px",
             f"{'category':<10}{'n':>5}{'failed%':>10}{'inacc.%':>10}{'accept.%':>10}{'AUC':>8}"]
    for cat, row in summary.categories.items():
        lines.append(f"{cat:<10}{row.n:>5}{100 * row.failed:>10.1f}{100 * row.inaccurate:>10.1f}"
                     f"{100 * row.acceptable:>10.1f}{row.auc:>8.3f}")
    lines.append(f"mAUC {summary.mauc:.3f}   median {median_seconds(results):.2f} s/pair "
                 f"(registration only, {len(results)} pairs)")
    if results:
        lines.append("median s per stage: " + ", ".join(
            f"{stage} {secs:.2f}" for stage, secs in stage_medians(results).items()))
        lines.append("verdict: " + ", ".join(f"{level} {n}"
                                             for level, n in verdict_counts(results).items()))
    return "\n".join(lines)


def _fmt(x: float) -> str:
    return "inf" if x == float("inf") else f"{x:.3f}"


def pairs_csv_text(results: Sequence[PairResult]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["pair", "category", "status", "outcome", "mean_px", "median_px", "max_px",
                "n_matches", "n_inliers", "seconds", "verdict", "reason"])
    for r in results:
        w.writerow([r.pair.pair_id, r.pair.category, r.result.status, r.outcome,
                    _fmt(r.errors.mean), _fmt(r.errors.median), _fmt(r.errors.max),
                    len(r.result.matches), r.result.n_inliers, f"{r.seconds:.3f}",
                    "" if r.result.verdict is None else r.result.verdict.level,
                    r.result.reason])
    return buf.getvalue()


def write_outputs(out_dir: str | Path, results: Sequence[PairResult], table: str,
                  skipped: Sequence[tuple[str, str]], record: dict) -> None:
    """``pairs.csv`` (one row per pair), ``table.txt`` and ``run.json`` (provenance)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "pairs.csv", pairs_csv_text(results).encode())
    skipped_text = "".join(f"skipped {pid}: {why}\n" for pid, why in skipped)
    atomic_write_bytes(out / "table.txt", (table + "\n" + skipped_text).encode())
    record = dict(record, skipped=[{"pair": p, "reason": w} for p, w in skipped])
    atomic_write_bytes(out / "run.json", (json.dumps(record, indent=2) + "\n").encode())
