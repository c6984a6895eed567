"""Benchmarks print their numbers and also save them beside how they were made
(config, seed, code version, package versions: ``core.provenance.run_record``)."""
from __future__ import annotations

import json
from pathlib import Path

from retreg.core.provenance import run_record

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, config: dict, seed: int | None, results: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {**run_record(config, seed), "results": results}
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(f"recorded in {path}")
    return path
