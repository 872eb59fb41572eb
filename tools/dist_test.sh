#!/usr/bin/env bash
# Distributed testing with torchrun (mmdet's conventions).
#   tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [tools/test.py arguments...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as in mmdet.
# Interpreter: PYTHON, else the checkout's .venv when no other environment is
# active, else python (see dist_run.sh).
set -euo pipefail
if [[ $# -lt 3 ]]; then
    echo "usage: $0 CONFIG CHECKPOINT NUM_PROCESSES [tools/test.py arguments...]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/dist_run.sh" test.py "$3" "$1" "$2" --launcher pytorch "${@:4}"
