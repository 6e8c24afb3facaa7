#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the stack:
#   torch + torchvision (a matched pair; kept when already working),
#   mmcv 2.1.0 with ops (built once per torch build, wheel cached by torch version),
#   mmengine / mmdet / timm / ... from requirements.txt, and this package (editable).
# Re-running is cheap: every step checks before it installs.
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

req_hash=$(cat requirements.txt pyproject.toml tools/setup_env.sh 2>/dev/null | sha1sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$req_hash" ] \
   && "$PY" -c "import mmcv.ops, mmdet, mmdet_sparse" >/dev/null 2>&1; then
  exit 0
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

# 2. mmcv with ops, built once per torch build and cached under a key that
#    names that build (pip's own cache keys only by the source archive).
if "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  key=$("$PY" -c "import sys, torch; print(f'py{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__}-cuda{torch.version.cuda if torch.cuda.is_available() else \"none\"}')")
  wheel_dir="$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-$key"
  mkdir -p "$wheel_dir"
  if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION with ops for $key (about 20 minutes on 2 cores)"
    tmp_dir=$(mktemp -d)
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "${PIP[@]}" wheel --no-build-isolation \
      --no-cache-dir --no-deps -w "$tmp_dir" "mmcv==$MMCV_VERSION"
    mv "$tmp_dir"/mmcv-*.whl "$wheel_dir"/
    rmdir "$tmp_dir" || true
  fi
  "${PIP[@]}" install -q "$wheel_dir"/mmcv-*.whl
fi

# 3. The rest of the stack and this package.
"${PIP[@]}" install -q -r requirements.txt
"${PIP[@]}" install -q --no-deps openmim==0.3.9
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .
"$PY" -c "import mmcv.ops, mmdet, mmdet_sparse" 
echo "$req_hash" > "$STAMP"
log "environment ready: $VENV"
