#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the stack:
#   torch + torchvision (a matched pair; kept when already working),
#   mmcv 2.1.0 with ops (built once per torch build and ops kind, wheel cached),
#   mmengine / mmdet / timm / ... from requirements.txt, and this package (editable).
# Re-running is cheap: every step checks before it installs.
# mmcv's ops get CUDA kernels when a CUDA toolkit matching torch's CUDA is
# found (tools/mmcv_build_plan.py decides; MMDET_SPARSE_CPU_OPS=1 opts out).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON_BOOT=${PYTHON_BOOT:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch===2.13.0 torchvision==0.28.0}
MMCV_VERSION=2.1.0
CACHE_ROOT=${MMDET_SPARSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmdet_sparse}
STAMP="$VENV/.mmdet_sparse_env"

log() { printf '[setup_env] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON_BOOT" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

req_hash=$(cat requirements.txt pyproject.toml tools/setup_env.sh tools/mmcv_build_plan.py \
  2>/dev/null | sha1sum | cut -c1-16)
# The stamp holds that hash and the installed mmcv ops (cpu | cudaX.Y); the
# plan checks those ops still fit this machine (a toolkit or GPU may be new).
if [ -f "$STAMP" ] && read -r stamp_hash stamp_ops < "$STAMP" \
   && [ "$stamp_hash" = "$req_hash" ] && [ -n "${stamp_ops:-}" ]; then
  "$PY" -c "import mmcv.ops, mmdet, mmdet_sparse" >/dev/null 2>&1 & imports=$!
  plan=$("$PY" tools/mmcv_build_plan.py --quiet --installed "${stamp_ops#mmcv_ops=}")
  eval "$plan"
  if wait "$imports" && [ "$MMCV_ACTION" = keep ]; then
    exit 0
  fi
fi

"${PIP[@]}" install -q "setuptools>=77,<81" wheel ninja

# 1. torch + torchvision: keep a working, compatible pair (e.g. a CUDA cluster's).
if "$PY" - <<'PYEOF' >/dev/null 2>&1
import torch, torchvision
from torchvision.ops import nms
nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
major, minor = (int(x) for x in torch.__version__.split('.')[:2])
assert (2, 0) <= (major, minor) <= (2, 14), torch.__version__
PYEOF
then
  log "keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  log "installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "${PIP[@]}" install -q $TORCH_SPEC
fi

# 2. mmcv with ops, built once per torch build and ops kind (CPU-only, or CUDA
#    version + arch list) and cached under a key that names both (pip's own
#    cache keys only by the source archive). The plan script decides.
plan=$("$PY" tools/mmcv_build_plan.py --mmcv-version "$MMCV_VERSION")
eval "$plan"
if [ "$MMCV_ACTION" = keep ]; then
  log "mmcv $MMCV_VERSION with ops ($MMCV_INSTALLED) already installed"
else
  wheel_dir="$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-$MMCV_WHEEL_KEY"
  mkdir -p "$wheel_dir"
  if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
    if [ "$MMCV_OPS" = cuda ]; then
      build_env=(FORCE_CUDA=1 "TORCH_CUDA_ARCH_LIST=$MMCV_ARCH_LIST" "CUDA_HOME=$MMCV_CUDA_HOME")
      log "building mmcv $MMCV_VERSION with CUDA ops for $MMCV_WHEEL_KEY (much longer than the CPU build)"
    else
      # mmcv compiles CUDA sources whenever a GPU is visible: hide it.
      build_env=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
      log "building mmcv $MMCV_VERSION with CPU ops for $MMCV_WHEEL_KEY (about 21 minutes on 2 cores)"
    fi
    tmp_dir=$(mktemp -d)
    env "${build_env[@]}" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "${PIP[@]}" wheel --no-build-isolation --no-cache-dir --no-deps -w "$tmp_dir" "mmcv==$MMCV_VERSION"
    mv "$tmp_dir"/mmcv-*.whl "$wheel_dir"/
    rmdir "$tmp_dir" || true
  fi
  # Same version, other ops: pip would call it already satisfied.
  "${PIP[@]}" uninstall -q -y mmcv >/dev/null 2>&1 || true
  "${PIP[@]}" install -q "$wheel_dir"/mmcv-*.whl
fi

# 3. The rest of the stack and this package.
"${PIP[@]}" install -q -r requirements.txt
"${PIP[@]}" install -q --no-deps openmim==0.3.9
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .
ops=$("$PY" -c "import mmcv.ops, mmdet, mmdet_sparse; print(mmcv.ops.get_compiling_cuda_version())" | tail -n 1)
case "$ops" in "not available") ops=cpu ;; *) ops=cuda$ops ;; esac
if [ "$MMCV_OPS" = cuda ] && [ "$ops" = cpu ]; then
  log "error: mmcv's ops were built without CUDA kernels; see docs/installation.md"
  exit 1
fi
echo "$req_hash mmcv_ops=$ops" > "$STAMP"
log "mmcv ops: $ops"
log "environment ready: $VENV"
