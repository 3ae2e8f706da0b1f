#!/usr/bin/env bash
# The one prepared GPU run: GPU tests, then the pipeline benchmark against transformers.
# Needs python3 with torch (CUDA), transformers, safetensors; nothing else, no network. Takes about 2-3
# minutes on an H200; every step has its own timeout, so the whole script ends within 6 minutes.
#
#   OUT=/some/folder bash bench/gpu_check.sh
#
# Writes $OUT/bench_gpu.jsonl (one JSON line per configuration, including `encoder-b256`: our encoder in
# passes of 8, 32, 128 and 256 documents against transformers' encoder), $OUT/bench_gpu_fp32.jsonl (token
# parity in fp32 at the base shape), $OUT/profile_decode.txt (kernel times of one encoder batch and of our
# decoding step), $OUT/gpu_check.log.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
started=$(date +%s)
elapsed() { echo "[$(($(date +%s) - started))s]"; }

echo "== environment $(elapsed)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
$PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, 'device', torch.cuda.get_device_name())"

echo "== GPU tests $(elapsed)"
if $PY -c "import pytest" 2>/dev/null; then
    # --confcutdir: the top-level tests/conftest.py needs the database stack, which this machine lacks
    timeout 60 $PY -m pytest -q -p no:cacheprovider --confcutdir=tests/pipeline tests/pipeline/test_gpu_decode.py
    timeout 45 $PY -m pytest -q -p no:cacheprovider --confcutdir=tests/model tests/model/test_gpu.py
else
    echo "(no pytest here: running the pipeline GPU tests as a script)"
    timeout 60 $PY tests/pipeline/test_gpu_decode.py
fi

echo "== benchmark: base shape, bf16, 512 -> 128 tokens $(elapsed)"
timeout 190 $PY bench/pipeline.py --device cuda --shape base --time-budget-s 130 \
    --out "$OUT/bench_gpu.jsonl" --profile-out "$OUT/profile_decode.txt" 2>&1 | grep -v -i "warn"

echo "== token parity in fp32 at the base shape $(elapsed)"
timeout 50 $PY bench/pipeline.py --device cuda --shape base --dtype float32 --configs 32 --rounds 1 \
    --out-len 32 --out "$OUT/bench_gpu_fp32.jsonl" 2>&1 | grep -v -i "warn"

echo "== done $(elapsed)"
