#!/usr/bin/env bash
# The GPU check as one command: paper-size speed and memory of the tokenizer, EgoSchema-style evaluation, the
# de-tokenizer samplers and Divot-LLM training on one GPU (benchmarks/gpu_check.py says what each part measures).
#
#   bash benchmarks/gpu_check.sh                         # paper size on the GPU (a few minutes; capped at 450 s)
#   bash benchmarks/gpu_check.sh --size tiny --device cpu --threads 1    # the same code in seconds on a CPU
#   bash benchmarks/gpu_check.sh --fetch-wheels          # where PyPI is reachable: wheels for a machine without
#
# Python: .venv/bin/python where the project's environment exists, else python3 (a GPU image with torch,
# transformers, timm, einops, OpenCV). The library imports diffusers, which such an image may lack: it is then
# installed from .whl/ (filled by --fetch-wheels: the version installed here, a pure-Python wheel; its
# dependencies are common and the image has them) into a temporary folder. The check itself downloads nothing.
# Arguments go to gpu_check.py. Environment: GPU_CHECK_JSON (default benchmarks/results/gpu_check.json),
# GPU_CHECK_TIMEOUT (seconds, default 450), GPU_CHECK_WHEELS (default .whl), PYTHON, OUT (a folder: the JSON and
# the log are copied there).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.whl}

PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  pin=$("$PY" -c 'import importlib.metadata as m; print("diffusers==" + m.version("diffusers"))') || exit 1
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation py \
    -d "$WHEELS" "$pin" || exit 1
  echo "wheels in $WHEELS: $(cd "$WHEELS" && ls diffusers-*.whl)"
  exit 0
fi

if ! "$PY" -c "import diffusers" 2>/dev/null; then
  if compgen -G "$WHEELS/diffusers-*.whl" >/dev/null; then
    SITE=$(mktemp -d /tmp/gpu_check_site.XXXXXX)
    trap 'rm -rf "$SITE"' EXIT
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
      "$WHEELS"/diffusers-*.whl || exit 1
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "diffusers is not installed and $WHEELS holds no wheel of it: run 'bash benchmarks/gpu_check.sh" \
      "--fetch-wheels' where PyPI is reachable and bring .whl/ along" >&2
  fi
fi

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # the library from this tree, installed or not
export TOKENIZERS_PARALLELISM=false
JSON=${GPU_CHECK_JSON:-benchmarks/results/gpu_check.json}
LOG=/dev/null
if [[ -n "${OUT:-}" ]]; then mkdir -p "$OUT" && LOG="$OUT/gpu_check.log"; fi

timeout --kill-after=20 "${GPU_CHECK_TIMEOUT:-450}" "$PY" benchmarks/gpu_check.py --json "$JSON" "$@" 2>&1 \
  | tee "$LOG"
rc=${PIPESTATUS[0]}
if [[ $rc == 124 || $rc == 137 ]]; then
  echo "gpu_check.py ran past ${GPU_CHECK_TIMEOUT:-450} s and was stopped; the JSON keeps the parts it finished" >&2
fi
if [[ -n "${OUT:-}" && -f "$JSON" ]]; then cp "$JSON" "$OUT/"; fi
echo "JSON: $JSON (exit $rc)"
exit "$rc"
