#!/usr/bin/env bash
# Create (or update) the project environment in <repo>/.venv.
#
# Idempotent: when every requirement file and this script are unchanged since the
# last successful run and the stack imports, it returns in a few seconds.
#
#   bash tools/setup_env.sh            # create / update .venv
#   PYTHON=python3.11 bash tools/setup_env.sh
#
# torch: an interpreter that already has torch (e.g. a CUDA build installed by
# the user) is kept: the venv is created with --system-site-packages and torch is
# not reinstalled. Otherwise torch==2.13.0 is installed (CPU build from local disk
# on the dev machines; a pinned wheel from PyPI elsewhere).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY_BASE="${PYTHON:-python3}"
STAMP="$VENV/.eakd-setup-stamp"
LOG_DIR="$VENV/setup-logs"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# Run a step, keep its full log, and fail with the log tail and a hint.
step() {
    local name="$1" hint="$2"; shift 2
    local log="$LOG_DIR/$name.log"
    say "$name ..."
    if ! "$@" >"$log" 2>&1; then
        tail -n 40 -- "$log" >&2 || true
        die "step '$name' failed (full log: $log). $hint"
    fi
}

fingerprint() {
    cat "$ROOT"/requirements/*.txt "$ROOT/tools/setup_env.sh" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1
}

stack_imports() {
    "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import torch, mmengine, mmcv, mmdet, pycocotools, mmdet_eakd
from mmcv.ops import RoIAlign, nms  # compiled ops present
assert mmcv.__version__ == '2.1.0' and mmdet.__version__ == '3.3.0'
EOF
}

command -v "$PY_BASE" >/dev/null || die "'$PY_BASE' not found; set PYTHON=/path/to/python3 (3.8-3.11 tested: 3.11)."

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(fingerprint)" ]] && stack_imports; then
    say "environment up to date: $VENV"
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    if "$PY_BASE" -c 'import torch' >/dev/null 2>&1; then
        say "keeping the torch of $PY_BASE ($("$PY_BASE" -c 'import torch; print(torch.__version__)'))"
        "$PY_BASE" -m venv --system-site-packages "$VENV" || die "could not create $VENV"
    else
        "$PY_BASE" -m venv "$VENV" || die "could not create $VENV (is the python venv module installed?)"
    fi
fi
mkdir -p "$LOG_DIR"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
    say "torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') already present, kept"
else
    step torch "Install a torch build for your machine first (see README), then rerun." \
        "${PIP[@]}" install -r "$ROOT/requirements/torch.txt"
fi

step build-tools "Check network access to PyPI." \
    "${PIP[@]}" install -r "$ROOT/requirements/build.txt"

if "$VENV/bin/python" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' >/dev/null 2>&1; then
    say "mmcv 2.1.0 with ops already present, kept"
else
    say "building mmcv 2.1.0 with compiled ops (several minutes on a small CPU; cached by pip afterwards)"
    step mmcv "The mmcv build needs gcc/g++ and the Python headers (and a CUDA toolkit matching torch for GPU ops)." \
        env MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "${PIP[@]}" install --no-build-isolation -r "$ROOT/requirements/mmcv.txt"
fi

step runtime "Check network access to PyPI." \
    "${PIP[@]}" install -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"

step package "pip install -e . failed." \
    "${PIP[@]}" install --no-build-isolation --no-deps -e "$ROOT"

stack_imports || die "the stack does not import; run: $VENV/bin/python -c 'import mmcv.ops, mmdet, mmdet_eakd'"
fingerprint >"$STAMP"
say "environment ready: $VENV"
