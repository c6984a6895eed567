#!/usr/bin/env bash
# Every measurement in resources/models/retreg_superretina_v1.report.md, in the order it was run
# (one torch thread; the LoFTR model in the same runs). Run from the repository root after
#   retreg train-superretina --config training/configs/superretina_v1.yaml        (phases 1-3)
#   retreg train-superretina --config training/configs/superretina_v1_phase4.yaml (phase 4)
# copying the phase-3 export to resources/models/, calibrating its matching defaults there
#   python benchmarks/calibrate_superretina.py resources/models/retreg_superretina_v1.safetensors \
#       --cases 3 --thresholds 0.3 0.1 0.03 --write
# and giving the phase-1/2 and phase-4 weights the same defaults
#   python tools/superretina_matching_defaults.py --from resources/models/retreg_superretina_v1.safetensors \
#       runs/retreg_superretina_v1/retreg_superretina_v1_phase{1,2}.safetensors \
#       runs/retreg_superretina_v1_phase4/retreg_superretina_v1_phase4.safetensors
# Argument: which part (all by default).
set -euo pipefail
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
PY=${PY:-.venv/bin/python}
RETREG=${RETREG:-.venv/bin/retreg}
W=resources/models/retreg_superretina_v1.safetensors
RUN=runs/retreg_superretina_v1
P4=runs/retreg_superretina_v1_phase4/retreg_superretina_v1_phase4.safetensors
FIRE=${FIRE:-/work/shared/data/FIRE_P}
HELD=${HELD:-/tmp/sr_fire_ft/test_pairs.csv}   # tools/fire_to_realpairs.py's image-disjoint test pairs
OUT=benchmarks/results
part=${1:-all}

if [[ $part == all || $part == synthetic ]]; then
  $PY benchmarks/bench_synthetic.py --cases 10 --threads 1 --matcher superretina --weights $W \
      --record bench_synthetic_superretina
  $PY benchmarks/bench_synthetic.py --cases 10 --threads 1 --matcher loftr \
      --record bench_synthetic_loftr_vs_superretina
fi
if [[ $part == all || $part == fire ]]; then
  $RETREG evaluate --fire "$FIRE" --matcher superretina --weights $W --out $OUT/fire_superretina
  $RETREG evaluate --fire "$FIRE" --matcher loftr --out $OUT/fire_loftr_vs_superretina
fi
if [[ $part == all || $part == cfocta ]]; then
  $RETREG evaluate --pairs benchmarks/data/cfocta_dev/pairs.csv --mode cfocta \
      --matcher superretina --weights $W --transform affine --thresholds 100 60 \
      --out $OUT/cfocta_dev_superretina
  $RETREG evaluate --pairs benchmarks/data/cfocta_dev/pairs.csv --mode cfocta --matcher loftr \
      --transform affine --thresholds 100 60 --out $OUT/cfocta_dev_loftr_vs_superretina
fi
if [[ $part == all || $part == speed ]]; then
  $PY benchmarks/bench_superretina_speed.py --threads 1
fi
if [[ $part == all || $part == ablation ]]; then   # phase 1 only, phases 1-2 (1-3 = the shipped W)
  for ph in 1 2; do
    $PY benchmarks/bench_synthetic.py --cases 10 --threads 1 --matcher superretina \
        --weights $RUN/retreg_superretina_v1_phase$ph.safetensors \
        --record bench_synthetic_superretina_phase$ph
    $RETREG evaluate --fire "$FIRE" --matcher superretina \
        --weights $RUN/retreg_superretina_v1_phase$ph.safetensors --out $OUT/fire_superretina_phase$ph
  done
fi
if [[ $part == all || $part == phase4 ]]; then   # before / after on the held-out FIRE pairs
  $RETREG evaluate --pairs "$HELD" --mode cfcf --matcher superretina --weights $W \
      --out $OUT/fire_heldout_superretina_before
  $RETREG evaluate --pairs "$HELD" --mode cfcf --matcher superretina --weights $P4 \
      --out $OUT/fire_heldout_superretina_after
  $RETREG evaluate --pairs "$HELD" --mode cfcf --matcher loftr --out $OUT/fire_heldout_loftr
  $PY benchmarks/bench_synthetic.py --cases 10 --threads 1 --matcher superretina --weights $P4 \
      --record bench_synthetic_superretina_phase4
fi
