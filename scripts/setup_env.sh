#!/usr/bin/env bash
# Create/refresh the project virtual environment in .venv (idempotent, quick when up to date).
# CPU-only by default: torch comes from PyTorch's CPU wheel index, not the multi-GB CUDA build.
# GPU users: RETREG_TORCH_INDEX=https://download.pytorch.org/whl/cu126 (or any CUDA index) first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${RETREG_TORCH_VERSION:-2.13.0}
TORCH_INDEX=${RETREG_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
stamp=.venv/.retreg-installed
want="$(sha256sum pyproject.toml | cut -c1-16) torch=$TORCH_VERSION index=$TORCH_INDEX"

[ -x .venv/bin/python ] || "$PY" -m venv .venv
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "retreg: setting up .venv (first run takes a few minutes)..." >&2
if ! .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  .venv/bin/pip install --quiet --retries 1 --timeout 30 --index-url "$TORCH_INDEX" "torch==$TORCH_VERSION"
fi
.venv/bin/pip install --quiet -e ".[test]"
echo "$want" > "$stamp"
