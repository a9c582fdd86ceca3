#!/usr/bin/env bash
# The GPU run, prepared: runs unchanged on any CUDA host and finishes in under ten minutes.
#
#   benchmarks/gpu_check.sh              install what is missing, then python -m benchmarks.gpu_check
#   benchmarks/gpu_check.sh --dry-run    resolve every step without a GPU (what CI runs)
#
# Options after the first are passed to python -m benchmarks.gpu_check (--out, --models, --budget-s).
# Environment: PYTHON (default: .venv/bin/python if present, else python3), WHEELS (a folder of wheels
# to install offline, for hosts without a package index), SKIP_INSTALL=1 (use what is installed).
# Results: benchmarks/results/<gpu>/gpu_check.{json,md} and .../service/night.{json,md,png}.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
[ "${1:-}" = "--dry-run" ] && dry_run=1
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3
fi
torch_cuda_index=https://download.pytorch.org/whl/cu128
torch_pin=$("$py" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(next(d for d in deps if re.match(r"torch\s*==", d)).replace(" ", ""))
PY
)

step() { printf '\n== %s\n' "$*"; }

step "python: $($py --version 2>&1) at $(command -v "$py" || echo "$py"); torch pin: $torch_pin"
if [ "$dry_run" = 1 ]; then
  step "dry run: checking that each step resolves"
  "$py" -m pip --version >/dev/null
  grep -q '^gpu = ' pyproject.toml || { echo "pyproject.toml has no gpu extra"; exit 1; }
  echo "would install: $torch_pin from $torch_cuda_index (if torch lacks CUDA), then -e '.[gpu]'"
  command -v nvidia-smi >/dev/null && echo "nvidia-smi: present" || echo "nvidia-smi: absent (expected without a GPU)"
  exec "$py" -m benchmarks.gpu_check --dry-run "${@:2}"
fi

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || { echo "no NVIDIA driver answers: not a CUDA host"; exit 1; }

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  step "install"
  if [ -n "${WHEELS:-}" ]; then
    "$py" -m pip install -q --no-index --find-links "$WHEELS" "$torch_pin" -e '.[gpu]'
  elif ! "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    "$py" -m pip install -q "$torch_pin" --index-url "$torch_cuda_index"
    "$py" -m pip install -q -e '.[gpu]'
  else
    "$py" -m pip install -q -e '.[gpu]' || echo "gpu extra not installable here; using the TensorRT already installed, if any"
  fi
fi
"$py" -c 'import torch; assert torch.cuda.is_available(), "torch has no CUDA"; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'

step "checks (build, parity, preprocessing, limits, service)"
exec "$py" -m benchmarks.gpu_check "$@"
