"""Copy the matching defaults (``det_threshold``, ``ratio``) of one SuperRetina-style weights file
into others, in place, so that comparisons (the phase ablation, phase 4 before/after) differ in
the trained weights only. The card notes where the defaults came from.

    python tools/superretina_matching_defaults.py \
        --from resources/models/retreg_superretina_v1.safetensors \
        runs/retreg_superretina_v1/retreg_superretina_v1_phase1.safetensors ...
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from retreg.core.matchers.superretina.weights import (card_path, load_model, read_config,
                                                      save_weights)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", type=Path, required=True)
    ap.add_argument("weights", type=Path, nargs="+")
    args = ap.parse_args()
    ref = read_config(args.source)
    for path in args.weights:
        model = load_model(path)
        model.config = dataclasses.replace(model.config, det_threshold=ref.det_threshold,
                                           ratio=ref.ratio)
        card = json.loads(card_path(path).read_text()) if card_path(path).is_file() else {}
        card.pop("architecture", None)
        card["matching_defaults_from"] = str(args.source)
        save_weights(model, path, card)
        print(f"{path}: det_threshold {ref.det_threshold}, ratio {ref.ratio}")


if __name__ == "__main__":
    main()
