#!/usr/bin/env bash
# The GPU check, for a host with an NVIDIA GPU: every CUDA and NVML path asserted, in at most
# six minutes, from the source tree (no installs, no network, no broker). Needs python3 with a
# CUDA build of torch, transformers, pandas, typer, psutil and nvidia-ml-py (matplotlib and
# tabulate for the report). Writes summary.txt (PASS/FAIL per check, with its figure),
# environment.txt, steps.jsonl, check.log and report.md to $OUT; exits 1 if a check failed.
#   OUT=/tmp/out bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-results/gpu-check}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
timeout 355 "${PYTHON:-python3}" scripts/gpu_check.py
rc=$?
[ -f "$OUT/summary.txt" ] && { echo "== summary"; cat "$OUT/summary.txt"; }
exit "$rc"
