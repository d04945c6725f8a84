#!/usr/bin/env bash
# The prepared GPU check, in one process each (the embedded path: no broker, so neither celery
# nor redis is needed); outputs go to $OUT (default results/gpu-check):
#   1. the default model on CPU and on the NVIDIA GPU, batch sizes 1, 8, 32, fp32 and fp16;
#   2. the GPU alone: variants eager, compile, cudagraph x fp32, fp16, bf16 x batch 1, 8, 32,
#      with FLOPs, the measured and spec-sheet peaks and the fastest-way table;
#   3. the measured GEMM peak against a bare matmul loop (benchmarks/peak.py);
#   4. GPT-2 generating on CPU and GPU: prefill and decode apart.
# Needs python3 with torch (CUDA build), transformers, pandas, typer, psutil, nvidia-ml-py;
# works offline (the default model runs with random weights from its bundled config).
#   OUT=/tmp/out bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu-check}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv 2>&1 || echo "no nvidia-smi"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/environment.txt"

# The report needs tabulate (and matplotlib for plots); without them results.json is still written.
for mod in tabulate matplotlib; do
  "$PY" -c "import $mod" 2>/dev/null || "$PY" -m pip install -q "$mod" 2>/dev/null || echo "note: $mod unavailable"
done

export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
# Run from the source tree: nothing to install, so it works with no network.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
timeout 170 "$PY" -m bench_ctl.cli run \
  --devices cpu,cuda --batch-sizes 1,8,32 --dtypes fp32,fp16 --min-time 1 --iterations 10 \
  --out "$OUT/report" 2>&1 | tee "$OUT/run.log"
rc=${PIPESTATUS[0]}
if [ -f "$OUT/report/report.md" ]; then
  sed -n '/## Performance Comparison/,/## Conclusion/p' "$OUT/report/report.md"
fi
timeout 250 "$PY" -m bench_ctl.cli run \
  --devices cuda --batch-sizes 1,8,32 --dtypes fp32,fp16,bf16 --variants eager,compile,cudagraph \
  --min-time 0.5 --iterations 10 --out "$OUT/variants" 2>&1 | tee "$OUT/variants.log"
rc2=${PIPESTATUS[0]}
if [ -f "$OUT/variants/report.md" ]; then
  sed -n '/## Fastest way to run it/,/## Details/p' "$OUT/variants/report.md"
fi
timeout 60 "$PY" benchmarks/peak.py --device cuda --dtypes fp32,bf16 --size 8192 --iters 50 --rounds 3 2>&1 | tee "$OUT/peak.txt"
timeout 100 "$PY" -m bench_ctl.cli run --devices cpu,cuda --task generate --batch-sizes 1,8 --seq-lens 128 \
  --new-tokens 32 --iterations 5 --min-time 0.5 --out "$OUT/generate" 2>&1 | tee "$OUT/generate.log"
if [ -f "$OUT/generate/report.md" ]; then
  sed -n '/## Performance Comparison/,/## Conclusion/p' "$OUT/generate/report.md"
fi
[ "$rc" -eq 0 ] && exit "$rc2"
exit "$rc"
