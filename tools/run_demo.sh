#!/usr/bin/env bash
# Set up the environment (idempotent) and run the end-to-end demo.
#   bash tools/run_demo.sh [--short] [tools/demo.py arguments...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" tools/demo.py "$@"
