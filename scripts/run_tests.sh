#!/usr/bin/env bash
# Install (if needed) and run the whole test suite; fails when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest -q -p no:cacheprovider --timeout=600 "$@"
