#!/usr/bin/env bash
# The prepared GPU check of the learned path (docs/MODELS.md, docs/BENCHMARKS.md). Run it as-is
# from the repository root of a copy of the repo on a machine with an NVIDIA GPU:
#
#     bash scripts/gpu_check.sh [--out DIR] [--runs N] [--dry-run]
#
# It measures, with random ViT-S/14 weights of the real architectures (one 640x480 frame,
# 518 px aerial patch): torch CUDA fp16 (learned matcher + Depth Anything V2 Small), ONNX
# Runtime's CUDA execution provider when onnxruntime-gpu is installed, TensorRT fp16 engines
# built with cvgl-ros build-engine when tensorrt and pycuda import; each against the CPU
# float32 result of the same weights. Rows go to DIR/gpu_check.json (DIR: --out, else $OUT,
# else ./gpu-check-out).
#
# Set-up: the machine's own torch (with CUDA) is used, never replaced. When the Python packages
# the check needs are missing, a virtual environment .gpu-venv is created with
# --system-site-packages (so it sees that torch) and only the missing ones are installed from
# PyPI; when PyPI cannot be reached, the items that need them are skipped with the reason.
# Without a GPU (no nvidia-smi or no device) every item is skipped with a message and the
# script exits 0 without installing anything. --dry-run only reports what would run.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-$PWD/gpu-check-out}"
RUNS=20
DRY_RUN=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT_DIR="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT_DIR"
ITEMS=(torch-cuda-fp16 onnxruntime-cuda tensorrt-fp16)

skip_all() {  # reason
    local rows="" sep=""
    for item in "${ITEMS[@]}"; do
        echo "SKIP $item: $1"
        rows="$rows$sep{\"item\": \"$item\", \"status\": \"skip\", \"reason\": \"$1\"}"
        sep=", "
    done
    printf '{"machine": {"gpu": null}, "rows": [%s]}\n' "$rows" > "$OUT_DIR/gpu_check.json"
    echo "wrote $OUT_DIR/gpu_check.json"
}

# --- is there a GPU? (nothing installed or imported before this answer) ---------------------
if ! command -v nvidia-smi > /dev/null 2>&1; then
    skip_all "no GPU: nvidia-smi not found"
    exit 0
fi
if ! GPUS="$(nvidia-smi -L 2> /dev/null)" || [ -z "$GPUS" ]; then
    skip_all "no GPU: nvidia-smi lists no device"
    exit 0
fi
echo "gpu_check: $GPUS"

# --- Python packages: the machine's torch, the rest only if missing -------------------------
# module:pip requirement (torch is never installed: the machine's CUDA build is the point).
NEEDED=("numpy:numpy" "cv2:opencv-python-headless" "transformers:transformers>=4.40"
    "safetensors:safetensors>=0.4" "onnx:onnx>=1.15" "onnxruntime:onnxruntime>=1.17"
    "yaml:pyyaml")
missing() {  # python -> the pip requirements of the modules it cannot import
    local out=()
    for pair in "${NEEDED[@]}"; do
        "$1" -c "import ${pair%%:*}" > /dev/null 2>&1 || out+=("${pair#*:}")
    done
    echo "${out[@]:-}"
}
if ! "$PY" -c "import torch" > /dev/null 2>&1; then
    echo "gpu_check: WARNING: $PY has no torch; the torch, ONNX Runtime and TensorRT items skip"
fi
TO_INSTALL="$(missing "$PY")"
if [ "$DRY_RUN" = 1 ]; then
    echo "gpu_check: dry run: would install: ${TO_INSTALL:-nothing}"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" - << 'EOF' || skip_all "dry run: cvgl_ros does not import with $PY"
from cvgl_ros.tools.gpu_check import plan
for item, why in plan(cpu_smoke=False).items():
    print(f"{'SKIP' if why else 'WOULD RUN'} {item}{': ' + why if why else ''}")
EOF
    exit 0
fi
if [ -n "$TO_INSTALL" ]; then
    VENV="$PWD/.gpu-venv"
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv --system-site-packages "$VENV" || echo "gpu_check: WARNING: no venv"
    fi
    if [ -x "$VENV/bin/python" ]; then
        PY="$VENV/bin/python"
        # shellcheck disable=SC2086  # word splitting of the requirement list is intended
        if ! "$PY" -m pip install --quiet --disable-pip-version-check $TO_INSTALL; then
            echo "gpu_check: WARNING: could not install $TO_INSTALL (no PyPI?);" \
                "items that need them are skipped"
        fi
    fi
fi

# --- the check itself -----------------------------------------------------------------------
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
if ! "$PY" -c "import numpy, cv2, cvgl_ros.tools.gpu_check" > /dev/null 2>&1; then
    skip_all "cvgl_ros cannot be imported with $PY (numpy / opencv missing and not installable)"
    exit 0
fi
"$PY" -m cvgl_ros.tools.gpu_check --out "$OUT_DIR" --runs "$RUNS"
