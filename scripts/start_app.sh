#!/usr/bin/env bash
# Install (if needed) and start the RetReg app on the bundled sample pair with the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/retreg-gui "$@"
