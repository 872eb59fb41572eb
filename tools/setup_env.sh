#!/usr/bin/env bash
# Create (or update) the project environment in <repo>/.venv.
#
# Idempotent: when every requirement file and this script are unchanged since the
# last successful run and the stack imports, it returns in a few seconds.
#
#   bash tools/setup_env.sh                  # create / update .venv
#   PYTHON=python3.11 bash tools/setup_env.sh
#   EAKD_TORCH=cpu bash tools/setup_env.sh   # small CPU torch, no torchvision
#
# torch: an interpreter that already has torch (e.g. a CUDA build installed by
# the user) is kept: the venv is created with --system-site-packages and torch is
# not reinstalled. Otherwise the pair of requirements/torch.txt is installed
# (torch 2.13.0, CUDA build, + torchvision 0.28.0), or with EAKD_TORCH=cpu the CPU build of
# requirements/torch_cpu.txt.
#
# torchvision (mmengine's loader of the shipped students' torchvision://
# weights imports it): a torchvision that imports and whose nms runs is kept;
# otherwise the release built for the installed torch is installed (table in
# torchvision_for) and checked the same way. When none loads, setup stops and
# says what to do, unless EAKD_TORCH=cpu or EAKD_TORCHVISION=optional.
#
# mmcv 2.1.0 is built once per torch: its wheel is kept in a folder named by the
# torch build and Python (EAKD_WHEEL_CACHE, default ~/.cache/mmdet-eakd/wheels),
# never taken from pip's cache, which keys a built wheel by the sdist alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY_BASE="${PYTHON:-python3}"
STAMP="$VENV/.eakd-setup-stamp"
LOG_DIR="$VENV/setup-logs"
EAKD_TORCH="${EAKD_TORCH:-pair}"
case "$EAKD_TORCH" in
    pair) TORCH_REQ="$ROOT/requirements/torch.txt"; TV_POLICY="${EAKD_TORCHVISION:-required}" ;;
    cpu) TORCH_REQ="$ROOT/requirements/torch_cpu.txt"; TV_POLICY=optional ;;
    *) printf '[setup] ERROR: EAKD_TORCH=%s; use pair (default) or cpu.\n' "$EAKD_TORCH" >&2; exit 1 ;;
esac
case "$TV_POLICY" in
    required|optional) ;;
    *) printf '[setup] ERROR: EAKD_TORCHVISION=%s; use required (default) or optional.\n' "$TV_POLICY" >&2; exit 1 ;;
esac
WHEEL_CACHE="${EAKD_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmdet-eakd/wheels}"

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
    { cat "$ROOT"/requirements/*.txt "$ROOT/tools/setup_env.sh" "$ROOT/setup.py"
      echo "$EAKD_TORCH $TV_POLICY"; } | sha256sum | cut -d' ' -f1
}

# Exit 0 when torchvision imports beside this torch and its compiled nms runs.
torchvision_works() {
    "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import torch, torchvision
from torchvision.ops import nms
assert nms(torch.tensor([[0., 0., 1., 1.]]), torch.tensor([1.]), 0.5).tolist() == [0]
EOF
}

# The torchvision series built for a torch version (X.Y.Z[+local]); empty when
# unknown. pip picks the release in it whose torch pin the installed torch meets.
torchvision_for() {
    case "${1%%+*}" in
        2.14.*) echo '0.29.*' ;;
        2.13.*) echo '0.28.*' ;;
        2.12.*) echo '0.27.*' ;;
        2.11.*) echo '0.26.*' ;;
        2.10.*) echo '0.25.*' ;;
        2.9.*) echo '0.24.*' ;;
        2.8.*) echo '0.23.*' ;;
        2.7.*) echo '0.22.*' ;;
        2.6.*) echo '0.21.*' ;;
        2.5.*) echo '0.20.*' ;;
        2.4.*) echo '0.19.*' ;;
        *) echo "" ;;
    esac
}

stack_imports() {
    "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import torch, mmengine, mmcv, mmdet, pycocotools, mmdet_eakd
from mmcv.ops import RoIAlign, nms  # compiled ops present
assert mmcv.__version__ == '2.1.0' and mmdet.__version__ == '3.3.0'
EOF
    [[ "$TV_POLICY" == optional ]] || torchvision_works
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
        "${PIP[@]}" install -r "$TORCH_REQ"
fi
TORCH_VERSION="$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"

if torchvision_works; then
    say "torchvision $("$VENV/bin/python" -c 'import torchvision; print(torchvision.__version__)') loads beside torch $TORCH_VERSION, kept"
else
    TV_VERSION="$(torchvision_for "$TORCH_VERSION")"
    if [[ -n "$TV_VERSION" ]]; then
        say "torchvision $TV_VERSION for torch $TORCH_VERSION ..."
        # Pinning the installed torch keeps it: pip only adds the torchvision built for it.
        "${PIP[@]}" install "torchvision==$TV_VERSION" "torch==$TORCH_VERSION" \
            >"$LOG_DIR/torchvision.log" 2>&1 || true
    fi
    if ! torchvision_works; then
        # A torchvision that cannot load is worse than none: importing it raises.
        [[ -z "$TV_VERSION" ]] || "${PIP[@]}" uninstall -y torchvision >/dev/null 2>&1 || true
        if [[ -n "$TV_VERSION" ]]; then
            tried="torchvision $TV_VERSION was tried, log: $LOG_DIR/torchvision.log; it did not install, or its import or torchvision.ops.nms failed"
        else
            tried="no torchvision series is known for it"
        fi
        why="torch $TORCH_VERSION has no torchvision that loads here ($tried)"
        if [[ "$TV_POLICY" == optional ]]; then
            say "WARNING: $why. Going on without torchvision (EAKD_TORCH=$EAKD_TORCH, EAKD_TORCHVISION=$TV_POLICY): configs whose backbone initialises from torchvision:// (the shipped R-18 students) cannot initialise, and tests/test_pretrained_uris.py fails saying so."
        else
            die "$why. The shipped R-18 students initialise from torchvision://resnet18, which needs it. Either remove .venv and rerun for the default pair of requirements/torch.txt (torch 2.13.0, CUDA build, + torchvision 0.28.0), or install a torch with its own torchvision (e.g. from download.pytorch.org) and rerun, or rerun with EAKD_TORCHVISION=optional to go on without torchvision."
        fi
    fi
fi

step build-tools "Check network access to PyPI." \
    "${PIP[@]}" install -r "$ROOT/requirements/build.txt"

if "$VENV/bin/python" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' >/dev/null 2>&1; then
    say "mmcv 2.1.0 with ops already present, kept"
else
    # One wheel folder per torch build, CUDA ops or not, and Python: a wheel built
    # against another torch fails to load its ops (undefined symbols).
    MMCV_KEY="$("$VENV/bin/python" -c '
import os, sys, torch
ops = f"cuda{torch.version.cuda}" if torch.cuda.is_available() or os.getenv("FORCE_CUDA") == "1" else "cpu"
print(f"mmcv-2.1.0_torch-{torch.__version__}_ops-{ops}_cp{sys.version_info[0]}{sys.version_info[1]}")')"
    MMCV_DIR="$WHEEL_CACHE/$MMCV_KEY"
    if compgen -G "$MMCV_DIR/mmcv-2.1.0-*.whl" >/dev/null; then
        say "mmcv 2.1.0 built for torch $TORCH_VERSION found in $MMCV_DIR"
    else
        say "building mmcv 2.1.0 with compiled ops for torch $TORCH_VERSION (several minutes on a small CPU; kept in $MMCV_DIR)"
        mkdir -p "$MMCV_DIR"
        step mmcv-build "The mmcv build needs gcc/g++ and the Python headers (and a CUDA toolkit matching torch for GPU ops)." \
            env MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "${PIP[@]}" wheel --no-build-isolation --no-deps --no-cache-dir -w "$MMCV_DIR" -r "$ROOT/requirements/mmcv.txt"
    fi
    "${PIP[@]}" uninstall -y mmcv >/dev/null 2>&1 || true
    step mmcv "Remove $MMCV_DIR and rerun to rebuild it." \
        "${PIP[@]}" install "$(compgen -G "$MMCV_DIR/mmcv-2.1.0-*.whl" | head -n 1)"
fi

step runtime "Check network access to PyPI." \
    "${PIP[@]}" install -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"

step package "pip install -e . failed." \
    "${PIP[@]}" install --no-build-isolation --no-deps -e "$ROOT"

stack_imports || die "the stack does not import; run: $VENV/bin/python -c 'import mmcv.ops, mmdet, mmdet_eakd'"
fingerprint >"$STAMP"
say "environment ready: $VENV"
