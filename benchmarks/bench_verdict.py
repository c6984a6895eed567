"""Calibrate and check the quality verdict (``core.verdict``) on pairs that must register and
pairs that must not.

Positives (with ground truth): FIRE-P (acceptable by the FIRE protocol or not) and unseen
synthetic pairs of every mode (right when the mean corner error is below 5 px at 512 px).
Negatives (nothing to register): FIRE-P fixed images against another pair's moving image
flipped left-right (a flipped eye never matches without a mirror), CF_OCTA_dev CF clips against
other eyes' OCTA (both slabs), synthetic pairs of different eyes in every mode, and noise, flat
and blank images against a fundus.

    python benchmarks/bench_verdict.py collect [--cases 25] [--sets S ...]  # registers (slow)
    python benchmarks/bench_verdict.py report                 # rates for the current thresholds

``collect`` stores every pair's evidence in ``benchmarks/results/verdict_evidence.json``
(``--evidence`` elsewhere, e.g. for candidate ``--weights``); ``report`` re-judges that evidence
with ``VerdictConfig()``, so thresholds can be revisited without registering again. Each set's
pairs alternate between a calibration half (even) and a check half (odd); rates are printed for
both.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from record import RESULTS, save  # benchmarks/record.py (scripts run with benchmarks/ on sys.path)
from retreg.core.annotations import read_fire_points
from retreg.core.disc import clip_around_disc
from retreg.core.evaluation import fire_pairs
from retreg.core.io import read_image
from retreg.core.matchers import get_matcher
from retreg.core.metrics import (SAME_MODALITY, classify, control_point_errors,
                                 mean_corner_error)
from retreg.core.pipeline import register
from retreg.core.provenance import run_record
from retreg.core.verdict import Evidence, VerdictConfig, judge
from retreg.training.augment import AugmentConfig, random_affine
from retreg.training.synth import render_case

EVIDENCE = RESULTS / "verdict_evidence.json"
SEED_POS, SEED_NEG = 10_700_000, 10_800_000
SYNTH = {"cffa": ("cf", "fa"), "cfoct": ("cf", "oct"), "octfa": ("oct", "fa"),
         "cfocta": ("cf_clip", "octa")}
GEOMETRY = AugmentConfig(rotation_deg=90.0, scale_range=(0.85, 1.15), translate_frac=0.1,
                         hflip_p=0.0, vflip_p=0.0)
OCTA_FIELD_PX = {"3x3": 440, "6x6": 760}


def _record(kind: str, label: str, name: str, mode: str, res, right: bool | None,
            error_px: float | None) -> dict:
    v = res.verdict
    return {"set": kind, "label": label, "pair": name, "mode": mode, "right": right,
            "error_px": error_px, "status": res.status, "level": v.level,
            "evidence": None if v.evidence is None else v.evidence.to_json(),
            "seconds": res.timings.get("total"), "verdict_s": res.timings.get("verdict")}


def _synthetic_pair(case_f: dict, case_m: dict, mode: str, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fkey, mkey = SYNTH[mode]
    fixed, moving = case_f[fkey], case_m[mkey]
    h, w = fixed.shape[:2]
    T = random_affine(rng, w, h, GEOMETRY)
    return fixed, cv2.warpAffine(moving, T[:2], (w, h), flags=cv2.INTER_LINEAR), T


def fire_positives(matcher, data: Path):
    for p in fire_pairs(data / "FIRE_P")[0]:
        res = register(read_image(p.fixed), read_image(p.moving), "cfcf", matcher=matcher,
                       transform="homography")
        gt = read_fire_points(p.gt)
        errs = control_point_errors(res.matrix, np.array([q.moving for q in gt]),
                                    np.array([q.fixed for q in gt]))
        yield _record("fire", "pos", p.pair_id, "cfcf", res,
                      classify(errs, SAME_MODALITY) == "acceptable",
                      None if errs.failed else errs.mean)


def fire_flipped(matcher, data: Path, offset: int, name: str):
    """Each fixed image against the moving image ``offset`` pairs on, flipped left-right."""
    fire = fire_pairs(data / "FIRE_P")[0]
    for i, p in enumerate(fire):
        other = fire[(i + offset) % len(fire)]
        moving = np.ascontiguousarray(read_image(other.moving)[:, ::-1])
        res = register(read_image(p.fixed), moving, "cfcf", matcher=matcher,
                       transform="homography")
        yield _record(name, "neg", f"{p.pair_id}~{other.pair_id}f", "cfcf", res, None, None)


def cfocta_other_eyes(matcher, data: Path):
    """Each CF_OCTA_dev CF clip against the next two eyes' OCTA, both slabs."""
    eyes = sorted((data / "CF_OCTA_dev").glob("*/B_Fundus/*.jpg"))
    for i, cf_path in enumerate(eyes):
        size = cf_path.parent.parent.name
        clip, _ = clip_around_disc(read_image(cf_path), round(1.5 * OCTA_FIELD_PX[size]), 512)
        for j in (1, 2):
            other = eyes[(i + j) % len(eyes)]
            for slab in ("C_optic_nerve_head", "B_RPC"):
                octa = read_image(other.parent.parent / "A_OCTA" / slab / other.name)
                res = register(clip, octa, "cfocta", matcher=matcher)
                yield _record("cfocta_other", "neg",
                              f"{size}/{cf_path.stem}~{other.stem}/{slab[:3]}", "cfocta", res,
                              None, None)


def synthetic(matcher, cases: int):
    """Unseen synthetic positives and pairs of two different eyes, every mode."""
    rng = np.random.default_rng(SEED_POS)
    for k in range(cases):
        case, other = render_case(SEED_POS + k, 512), render_case(SEED_NEG + k, 512)
        for mode in SYNTH:
            fixed, warped, T = _synthetic_pair(case, case, mode, rng)
            res = register(fixed, warped, mode, matcher=matcher)
            err = mean_corner_error(res.matrix, np.linalg.inv(T), 512, 512)
            yield _record("synthetic", "pos", f"{SEED_POS + k}/{mode}", mode, res,
                          bool(np.isfinite(err) and err < 5.0), float(err))
            fixed, warped, _ = _synthetic_pair(case, other, mode, rng)
            res = register(fixed, warped, mode, matcher=matcher)
            yield _record("synthetic_other", "neg", f"{SEED_POS + k}~{SEED_NEG + k}/{mode}",
                          mode, res, None, None)


def junk(matcher):
    """Noise, flat and blank images against a synthetic fundus, as moving and as fixed."""
    fundus = render_case(SEED_NEG + 999, 512)
    rng = np.random.default_rng(SEED_NEG)
    images = {"noise": rng.integers(0, 256, (512, 512), dtype=np.uint8),
              "blurred_noise": cv2.GaussianBlur(
                  rng.integers(0, 256, (512, 512), dtype=np.uint8), (0, 0), 3),
              "flat": np.full((512, 512), 110, np.uint8), "blank": np.zeros((512, 512), np.uint8)}
    for name, img in images.items():
        for mode in ("cffa", "cfoct"):
            res = register(fundus["cf"], img, mode, matcher=matcher)
            yield _record("junk", "neg", f"cf~{name}", mode, res, None, None)
        res = register(img, fundus["fa"], "octfa", matcher=matcher)
        yield _record("junk", "neg", f"{name}~fa", "octfa", res, None, None)


SETS = {
    "fire": lambda m, a: fire_positives(m, a.data),
    "fire_flipped": lambda m, a: fire_flipped(m, a.data, 7, "fire_flipped"),
    "fire_flipped_19": lambda m, a: fire_flipped(m, a.data, 19, "fire_flipped_19"),
    "cfocta_other": lambda m, a: cfocta_other_eyes(m, a.data),
    "synthetic": lambda m, a: synthetic(m, a.cases),  # also yields "synthetic_other"
    "junk": lambda m, a: junk(m),
}


def collect(args) -> None:
    """Register the chosen sets and (re)place their records in the evidence file."""
    matcher = get_matcher("loftr", weights=args.weights)
    chosen = args.sets or list(SETS)
    evidence = args.evidence
    doc = json.loads(evidence.read_text()) if evidence.is_file() else {"pairs": []}
    out = [p for p in doc["pairs"]
           if p["set"] not in chosen and not (p["set"] == "synthetic_other"
                                              and "synthetic" in chosen)]
    for name in chosen:
        for rec in SETS[name](matcher, args):
            out.append(rec)
            print(f"{len(out):4d} {rec['label']} {rec['set']:15s} {rec['pair']:28s} "
                  f"{rec['level']:15s} right={rec['right']} {rec['seconds']:.1f}s", flush=True)
    evidence.parent.mkdir(exist_ok=True)
    evidence.write_text(json.dumps({**run_record(
        {"cases": args.cases, "data": str(args.data), "sets": chosen, "weights": args.weights},
        SEED_POS), "pairs": out}, indent=1) + "\n")
    print(f"evidence of {len(out)} pairs in {evidence}")


def rates(pairs: list[dict], config: VerdictConfig) -> dict:
    """Verdict counts per set and the error rates the issue's bars are about."""
    levels = [judge(Evidence(**p["evidence"]), config).level if p["evidence"] else "failed"
              for p in pairs]
    neg = [lv for p, lv in zip(pairs, levels) if p["label"] == "neg"]
    pos_right = [(p, lv) for p, lv in zip(pairs, levels) if p["label"] == "pos" and p["right"]]
    pos_wrong = [lv for p, lv in zip(pairs, levels) if p["label"] == "pos" and not p["right"]]
    real = [lv for p, lv in pos_right if p["set"] == "fire"]
    synth = [lv for p, lv in pos_right if p["set"] == "synthetic"]

    def share(lv: list[str], level: str) -> float:
        return sum(x == level for x in lv) / max(len(lv), 1)

    return {"negatives": len(neg), "false_accept": share(neg, "ok"),
            "real_positives": len(real), "false_reject_real": share(real, "failed"),
            "synthetic_positives": len(synth), "false_reject_synthetic": share(synth, "failed"),
            "wrong_results": len(pos_wrong),
            "wrong_flagged": sum(x != "ok" for x in pos_wrong)}


def roc(pairs: list[dict], key: str) -> list[tuple[float, float, float]]:
    """(threshold, true accept rate on right positives, false accept rate on negatives) for
    one piece of evidence alone."""
    pos = np.array([p["evidence"][key] for p in pairs if p["label"] == "pos" and p["right"]
                    and p["evidence"]])
    neg = np.array([p["evidence"][key] if p["evidence"] else -np.inf for p in pairs
                    if p["label"] == "neg"])
    out = []
    for t in np.unique(np.quantile(np.concatenate([pos, neg[np.isfinite(neg)]]),
                                   np.linspace(0, 1, 41))):
        out.append((float(t), float(np.mean(pos >= t)), float(np.mean(neg >= t))))
    return out


def report(args) -> None:
    doc = json.loads(args.evidence.read_text())
    pairs = doc["pairs"]
    config = VerdictConfig()
    index: dict[str, int] = {}
    parity = []
    for pr in pairs:  # alternate within each set, so both halves hold every set
        parity.append(index.get(pr["set"], 0) % 2)
        index[pr["set"]] = index.get(pr["set"], 0) + 1
    halves = {"calibration (even)": [pr for pr, k in zip(pairs, parity) if k == 0],
              "check (odd)": [pr for pr, k in zip(pairs, parity) if k == 1], "all": pairs}
    results = {}
    for name, subset in halves.items():
        r = rates(subset, config)
        results[name] = r
        print(f"{name:20s} negatives {r['negatives']:3d}: false accept {r['false_accept']:.1%}"
              f" | real positives {r['real_positives']:3d}: false reject "
              f"{r['false_reject_real']:.1%} | synthetic positives {r['synthetic_positives']:3d}:"
              f" false reject {r['false_reject_synthetic']:.1%} | wrong results flagged "
              f"{r['wrong_flagged']}/{r['wrong_results']}")
    by_set: dict[str, dict[str, int]] = {}
    for p in pairs:
        lv = judge(Evidence(**p["evidence"]), config).level if p["evidence"] else "failed"
        truth = "" if p["label"] == "neg" else ", right" if p["right"] else ", wrong"
        key = f"{p['set']} [{p['label']}{truth}]"
        by_set.setdefault(key, {"ok": 0, "low confidence": 0, "failed": 0})[lv] += 1
    print(f"\n{'set':34s} {'ok':>5s} {'low':>5s} {'failed':>7s}")
    for key, c in sorted(by_set.items()):
        print(f"{key:34s} {c['ok']:5d} {c['low confidence']:5d} {c['failed']:7d}")
    curves = {}
    for key in ("structure_ncc", "structure_z", "inlier_ratio"):
        curves[key] = roc(pairs, key)
        print(f"\nROC of {key} alone: threshold, right positives kept, negatives let through")
        for t, tpr, fpr in curves[key][::5]:
            print(f"  >= {t:7.2f}: {tpr:6.1%} {fpr:6.1%}")
    secs = [p["verdict_s"] for p in pairs if p["verdict_s"] is not None]
    share = [p["verdict_s"] / p["seconds"] for p in pairs if p["verdict_s"] and p["seconds"]]
    print(f"\nverdict time: median {1000 * np.median(secs):.0f} ms, median share of register() "
          f"{np.median(share):.1%}")
    save(args.record, {"config": vars(config), "evidence": str(args.evidence),
                           "evidence_code_version": doc.get("code_version")}, SEED_POS,
         {"rates": results, "by_set": by_set, "roc": curves,
          "verdict_ms_median": 1000 * float(np.median(secs)),
          "verdict_share_median": float(np.median(share))})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("collect", "report"))
    ap.add_argument("--cases", type=int, default=25, help="synthetic cases (x 4 modes, x 2)")
    ap.add_argument("--sets", nargs="+", choices=list(SETS),
                    help="collect only these sets, keeping the others' records (default: all)")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2]
                    / "shared" / "data")
    ap.add_argument("--weights", default=None, help="LoFTR weights (default: bundled)")
    ap.add_argument("--evidence", type=Path, default=EVIDENCE,
                    help="evidence file collect writes and report reads (default: %(default)s)")
    ap.add_argument("--record", default="bench_verdict", help="results name report saves under")
    args = ap.parse_args()
    t = time.perf_counter()
    (collect if args.what == "collect" else report)(args)
    print(f"{time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
