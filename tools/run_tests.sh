#!/usr/bin/env bash
# Set up the environment (idempotent) and run the whole test suite.
#   bash tools/run_tests.sh [pytest arguments...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
# pytest exits with 5 when it collects no tests: that is a failure here too.
exec "$ROOT/.venv/bin/python" -m pytest tests -p no:cacheprovider "$@"
