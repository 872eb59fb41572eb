#!/usr/bin/env bash
# Distributed training with torchrun (mmdet's conventions).
#   tools/dist_train.sh CONFIG NUM_PROCESSES [tools/train.py arguments...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as in mmdet.
# Interpreter: PYTHON, else the checkout's .venv when no other environment is
# active, else python (see dist_run.sh).
# On a machine without CUDA the processes train on the CPU with the gloo backend.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: $0 CONFIG NUM_PROCESSES [tools/train.py arguments...]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/dist_run.sh" train.py "$2" "$1" --launcher pytorch "${@:3}"
