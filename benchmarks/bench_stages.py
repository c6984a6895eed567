"""Where a user's time goes: per-stage seconds of ``register()`` on real full-resolution pairs,
the wall time of one ``retreg register`` command, process start included, and the same for
another version of the code (``--baseline-python``: an interpreter whose ``retreg`` is, e.g.,
the last release), all in one run on one machine.

Sets: FIRE-P (2912^2 fundus pairs), CF_OCTA_dev (the OCTA onto the whole CF photo and onto the
clinic's clip, from ``benchmarks/data/cfocta_dev/pairs.csv``) and the bundled sample pair;
FIRE-P with a homography (its protocol), the others with ``register``'s default affine.
Per set it prints the median seconds of every stage the pipeline clocks (the match stage holds
every network pass of the hypothesis search), network passes per pair, the median and 90th
percentile of the whole call, the FIRE-protocol accuracy of the same results (so a speed-up
that costs accuracy shows in the same table), and the ratio against the baseline.
Measured beside it on each pair: the vessel maps of both images at the matcher's and the fine
stage's side, one network pass, and the full-resolution warp + checkerboard overlay.

    python benchmarks/bench_stages.py --threads 2 \\
        --baseline-python /path/to/release/.venv/bin/python

The worker half (``--worker-out``) only uses APIs the last release has too.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data"
CFOCTA_CSV = HERE / "data" / "cfocta_dev" / "pairs.csv"
SAMPLES = ROOT / "resources" / "samples"
THRESHOLDS = {"FIRE-P": (50.0, 20.0), "CF-OCTA whole": (100.0, 60.0),
              "CF-OCTA clip": (100.0, 60.0)}
TRANSFORM = {"FIRE-P": "homography"}  # the FIRE protocol's; else register's default (affine)


def _pairs(args) -> list[dict]:
    """Every pair to time: set, mode, paths, optional fixed clip, ground truth."""
    from retreg.core.evaluation import csv_pairs, fire_pairs

    out = []
    fire = Path(args.fire)
    if fire.is_dir():
        for p in fire_pairs(fire)[0][:args.limit]:
            out.append({"set": "FIRE-P", "mode": "cfcf", "id": p.pair_id, "fixed": str(p.fixed),
                        "moving": str(p.moving), "gt": str(p.gt), "clip": None})
    csv = Path(args.cfocta)
    if csv.is_file() and Path(DATA / "CF_OCTA_dev").is_dir():
        seen: dict[str, int] = {}
        for p in csv_pairs(csv)[0]:
            kind = p.category.split("-")[0]
            if kind not in ("whole", "clip"):
                continue
            name = f"CF-OCTA {kind}"
            if seen.get(name, 0) >= args.limit:
                continue
            seen[name] = seen.get(name, 0) + 1
            out.append({"set": name, "mode": "cfocta", "id": f"{p.pair_id}:{p.moving.parent.name}",
                        "fixed": str(p.fixed), "moving": str(p.moving), "gt": str(p.gt),
                        "clip": list(p.fixed_clip) if p.fixed_clip else None})
    out.append({"set": "sample", "mode": "cffa", "id": "sample",
                "fixed": str(SAMPLES / "sample_cf_512.png"), "moving": str(SAMPLES / "sample_fa.png"),
                "gt": None, "clip": None})
    return out


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class _Counting:
    """A matcher that counts its passes (the search's cost unit)."""

    def __init__(self, inner) -> None:
        self.inner, self.passes = inner, 0
        self.name, self.working_side = inner.name, inner.working_side

    def match(self, fixed, moving):
        self.passes += 1
        return self.inner.match(fixed, moving)


def _side_stages(pair: dict, fixed, moving, matcher, res) -> dict[str, float]:
    """Stages timed beside the pipeline: vessel maps, one network pass, warp + overlay."""
    from retreg.core.modality import prepare
    from retreg.core.overlays import checkerboard
    from retreg.core.vessels import vessel_map
    from retreg.core.warp import warp_moving

    mode = {"cfcf": ("cf", "cf"), "cfocta": ("cf", "octa"), "cffa": ("cf", "fa")}[pair["mode"]]
    pf = prepare(fixed, mode[0], matcher.working_side)
    pm = prepare(moving, mode[1], matcher.working_side)
    fine = [prepare(img, m, 1024) for img, m in zip((fixed, moving), mode)]
    out = {"vessel maps": sum(_seconds(lambda p=p, s=s: vessel_map(p.work, p.modality, p.fov, s))
                              for p, s in ((pf, matcher.working_side), (pm, matcher.working_side),
                                           (fine[0], 1024), (fine[1], 1024))),
           "one network pass": _seconds(lambda: matcher.match(pf, pm))}
    if res.ok:
        out["warp + overlay"] = _seconds(
            lambda: checkerboard(fixed, warp_moving(moving, res.mapping, fixed.shape)))
    return out


def _errors(pair: dict, res, to_fixed: np.ndarray) -> tuple[float | None, str | None]:
    """The pair's mean control-point error (fixed px; inf when it failed) and its FIRE-protocol
    outcome under the set's thresholds; (None, None) without ground truth."""
    from retreg.core.annotations import read_fire_points
    from retreg.core.metrics import Thresholds, classify, control_point_errors
    from retreg.core.transforms import after

    if pair["gt"] is None:
        return None, None
    gt = read_fire_points(pair["gt"])
    errs = control_point_errors(after(to_fixed, res.mapping) if res.ok else None,
                                [p.moving for p in gt], [p.fixed for p in gt])
    return float(errs.mean), classify(errs, Thresholds(*THRESHOLDS[pair["set"]]))


def _cli_seconds(pair: dict, python: str) -> float:
    """Wall time of ``retreg register`` with a JSON result, as a user runs it."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [python, "-m", "retreg.cli", "register", pair["fixed"], pair["moving"],
               "--mode", pair["mode"], "--transform", TRANSFORM.get(pair["set"], "affine"),
               "--json", str(Path(tmp) / "r.json")]
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        secs = time.perf_counter() - t
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-500:]}")
    return secs


def work(args) -> dict:
    """Time every pair with the ``retreg`` this interpreter imports."""
    import torch

    from retreg.core.io import read_image
    from retreg.core.matchers import get_matcher
    from retreg.core.pipeline import register
    from retreg.core.warp import square_clip

    torch.set_num_threads(args.threads)
    matcher = _Counting(get_matcher("default"))
    rows = []
    pairs = _pairs(args)
    register(read_image(pairs[-1]["fixed"]), read_image(pairs[-1]["moving"]), "cffa",
             matcher=matcher.inner)  # warm-up: first-call costs are not per pair
    for i, pair in enumerate(pairs):
        fixed, moving = read_image(pair["fixed"]), read_image(pair["moving"])
        to_fixed = np.eye(3)
        if pair["clip"]:
            fixed, to_fixed = square_clip(fixed, *pair["clip"])
        matcher.passes = 0
        t = time.perf_counter()
        res = register(fixed, moving, pair["mode"], matcher=matcher,
                       transform=TRANSFORM.get(pair["set"], "affine"))
        total = time.perf_counter() - t
        row = {**pair, "total": total, "stages": {k: v for k, v in res.timings.items()
                                                  if k != "total"},
               "passes": matcher.passes, "verdict": res.verdict.level}
        row["mean_error"], row["outcome"] = _errors(pair, res, to_fixed)
        row["side"] = _side_stages(pair, fixed, moving, matcher.inner, res)
        rows.append(row)
        print(f"[{i + 1}/{len(pairs)}] {pair['set']} {pair['id']}: {total:.2f} s, "
              f"{matcher.passes} passes", file=sys.stderr, flush=True)
    cli = {}
    for name in dict.fromkeys(p["set"] for p in pairs):
        chosen = [p for p in pairs if p["set"] == name and not p["clip"]][:args.cli_pairs]
        cli[name] = [_cli_seconds(p, sys.executable) for p in chosen]
    from retreg.core.provenance import run_record

    return {"rows": rows, "cli": cli, "provenance": run_record({}, None)}


def _median(xs) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _p90(xs) -> float:
    return float(np.percentile(xs, 90)) if xs else float("nan")


def summarise(run: dict) -> dict[str, dict]:
    """Per set: stage medians, passes, total median / p90, CLI median, accuracy."""
    from retreg.core.metrics import auc

    out = {}
    for name in dict.fromkeys(r["set"] for r in run["rows"]):
        rows = [r for r in run["rows"] if r["set"] == name]
        stages = sorted({k for r in rows for k in (*r["stages"], *r["side"])})
        med = {k: _median([r["stages"].get(k, r["side"].get(k, 0.0)) for r in rows])
               for k in stages}
        errs = [r["mean_error"] for r in rows]
        scored = [e if e is not None and e == e else float("inf") for e in errs]
        graded = rows[0]["gt"] is not None
        out[name] = {"n": len(rows), "stages": med,
                     "passes": _median([r["passes"] for r in rows]),
                     "total": _median([r["total"] for r in rows]),
                     "p90": _p90([r["total"] for r in rows]),
                     "cli": _median(run["cli"].get(name, [])),
                     "ok": sum(r["verdict"] == "ok" for r in rows),
                     "acceptable": (sum(r["outcome"] == "acceptable" for r in rows)
                                    if graded else None),
                     "median error": _median(scored) if graded else float("nan"),
                     "auc": auc(scored) if graded else float("nan")}
    return out


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "nan" if x != x else f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"
    return str(x)


def print_table(cur: dict, base: dict | None) -> None:
    for name, s in cur.items():
        b = (base or {}).get(name)
        print(f"\n## {name} ({s['n']} pairs){'' if b is None else '   this | baseline | ratio'}")
        lines = [(f"stage {k} (median s)", v, None if b is None else b["stages"].get(k))
                 for k, v in s["stages"].items()]
        lines += [(k, s[k], None if b is None else b[k])
                  for k in ("passes", "total", "p90", "cli", "ok", "acceptable",
                            "median error", "auc")]
        for label, v, bv in lines:
            ratio = "" if not isinstance(bv, float) or not bv or v != v else f"{v / bv:.2f}x"
            print(f"  {label:34s} {_fmt(v):>8s}" + ("" if b is None else
                                                   f" | {_fmt(bv):>8s} | {ratio}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fire", default=str(DATA / "FIRE_P"))
    ap.add_argument("--cfocta", default=str(CFOCTA_CSV))
    ap.add_argument("--limit", type=int, default=100, help="pairs per set at most")
    ap.add_argument("--cli-pairs", type=int, default=5, help="CLI runs per set")
    ap.add_argument("--baseline-python", help="interpreter whose retreg is the baseline")
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.worker_out:
        Path(args.worker_out).write_text(json.dumps(work(args), default=float))
        return
    base = None
    if args.baseline_python:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "base.json"
            passed = [a for a in sys.argv[1:]]
            subprocess.run([args.baseline_python, __file__, *passed, "--worker-out", str(out)],
                           check=True, cwd=tempfile.gettempdir())
            base = json.loads(out.read_text())
    cur = work(args)
    print_table(summarise(cur), None if base is None else summarise(base))
    sys.path.insert(0, str(HERE))
    from record import save

    save("bench_stages", {**{k: v for k, v in vars(args).items() if k != "worker_out"}},
         None, {"this": {"summary": summarise(cur), "rows": cur["rows"], "cli": cur["cli"]},
                "baseline": None if base is None else {
                    "summary": summarise(base), "rows": base["rows"], "cli": base["cli"],
                    "provenance": base["provenance"]}})


if __name__ == "__main__":
    main()
