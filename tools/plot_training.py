"""Plot a training run's CSV log (Lightning CSVLogger ``metrics.csv``): training loss terms per
step (smoothed) and the validation registration metrics. Dev tool: needs matplotlib.

    python tools/plot_training.py runs/retreg_loftr_v1/logs/version_0/metrics.csv \
        --out resources/models/retreg_loftr_v1_loss.png
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def read_metrics(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metric name -> (steps, values), rows where the metric is empty skipped."""
    series: dict[str, tuple[list, list]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            step = row.get("step")
            if not step:
                continue
            for key, value in row.items():
                if key in ("step", "epoch") or value in ("", None):
                    continue
                s, v = series.setdefault(key, ([], []))
                s.append(int(float(step)))
                v.append(float(value))
    return {k: (np.asarray(s), np.asarray(v)) for k, (s, v) in series.items()}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.convolve(np.pad(values, (window // 2, window - 1 - window // 2), mode="edge"),
                       kernel, mode="valid")


def plot(metrics: dict, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("train/coarse", "coarse NLL"), ("train/fine", "fine L2"),
                       ("train/des", "descriptor NLL"), ("train/det", "detector Dice"),
                       ("train/geo", "geometric Dice"), ("val/loss", "validation loss")):
        if key in metrics:
            s, v = metrics[key]
            ax0.plot(s, smooth(v, 9) if key.startswith("train") else v, label=label,
                     marker="o" if key.startswith("val") else None)
    if "sched/lambda" in metrics:
        s, v = metrics["sched/lambda"]
        ax0.plot(s, v, "--", color="gray", label="vessel prior lambda")
    if "sched/phase" in metrics:  # phased training (SuperRetina-style): mark each new phase
        s, v = metrics["sched/phase"]
        for k in np.flatnonzero(np.diff(v)) + 1:
            ax0.axvline(s[k - 1], color="gray", ls=":")
            ax0.text(s[k - 1], ax0.get_ylim()[1], f" phase {int(v[k])}", va="top", fontsize=8)
    ax0.set_xlabel("step")
    ax0.set_yscale("log")
    ax0.set_title("training loss (moving average of 9)")
    ax0.legend()
    if "val/success" in metrics:
        s, v = metrics["val/success"]
        ax1.plot(s, 100 * v, "o-", label="success % (MCE < 5 px @512)")
    for key, label in (("val/gt_nn_correct", "descriptor NN right at true junctions %"),
                       ("val/det_recall", "true junctions detected (3 px) %")):
        if key in metrics:
            s, v = metrics[key]
            ax1.plot(s, 100 * v, "^-", label=label)
    if "val/mce_median_px512" in metrics:
        s, v = metrics["val/mce_median_px512"]
        ax1b = ax1.twinx()
        ax1b.plot(s, np.minimum(v, 50), "s-", color="tab:red", label="median MCE px (capped 50)")
        ax1b.set_ylabel("median mean-corner error (px @512)")
        ax1b.legend(loc="center right")
    ax1.set_xlabel("step")
    ax1.set_ylabel("success %")
    ax1.set_title("held-out synthetic registration")
    ax1.legend(loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    plot(read_metrics(args.csv), args.out, args.title or str(args.csv.parent))


if __name__ == "__main__":
    main()
