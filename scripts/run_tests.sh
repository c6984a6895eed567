#!/usr/bin/env bash
# Install (if needed) and run the tests; fails when no test ran.
#   scripts/run_tests.sh           the whole suite (what CI runs)
#   scripts/run_tests.sh --fast    everything but the tests marked slow (the edit-test loop)
# Any other arguments go to pytest as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for a in "$@"; do
  if [ "$a" = "--fast" ]; then args+=(-m "not slow"); else args+=("$a"); fi
done
bash scripts/setup_env.sh
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest -q -p no:cacheprovider --timeout=600 ${args[@]+"${args[@]}"}
