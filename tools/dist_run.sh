#!/usr/bin/env bash
# torchrun launcher shared by dist_train.sh and dist_test.sh (mmdet's conventions).
#   tools/dist_run.sh SCRIPT NUM_PROCESSES [SCRIPT arguments...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as in mmdet.
# The interpreter: PYTHON when set; else the checkout's .venv (what
# tools/setup_env.sh builds) unless another environment is active (VIRTUAL_ENV
# or CONDA_PREFIX set); else the python on the PATH.
set -euo pipefail
SCRIPT=$1
NPROC=$2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -z "${VIRTUAL_ENV:-}" && -z "${CONDA_PREFIX:-}" && -x "$ROOT/.venv/bin/python" ]]; then
        PYTHON="$ROOT/.venv/bin/python"
    else
        PYTHON=python
    fi
fi
# torchrun sets OMP_NUM_THREADS=1 when it starts several processes. Unless you
# set it yourself, a CPU run replaces that default with each process's share of
# the machine's cores (mmdet_eakd/engine/threads.py): tell it the value is not yours.
if [[ -z "${OMP_NUM_THREADS+set}" ]]; then
    export EAKD_OMP_NUM_THREADS_UNSET=1
else
    unset EAKD_OMP_NUM_THREADS_UNSET
fi
PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROC" \
    --master_port="${PORT:-29500}" \
    "$ROOT/tools/$SCRIPT" "${@:3}"
