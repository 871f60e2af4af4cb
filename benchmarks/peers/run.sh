#!/usr/bin/env bash
# The peer table of benchmarks/RESULTS.md: the original SETR code, MMSegmentation 1.2.2's SETR and ours, same
# weights and input, interleaved (each configuration its own process), SETR-PUP ViT-B/16 512x512, 150 classes.
# Usage: bash benchmarks/peers/run.sh SETR_CHECKOUT MMCV_CHECKOUT [OUT_DIR] [THREADS]
#   (the checkouts: see setup_original.sh; without them the original's rows are left out, with a note)
# Builds benchmarks/peers/.venv (MMSeg) and .original/.venv on first use. bf16 rows only where the CPU has bf16
# units; compiled and int8 rows for ours. Issue 21's full set (real sizes, ms+flip): run_issue21.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${3:-/tmp/setr_peers}"
THREADS="${4:-1}"
mkdir -p "$OUT"
test -x benchmarks/peers/.venv/bin/python || bash benchmarks/peers/setup_mmseg.sh
if [ $# -ge 2 ] && ! test -x benchmarks/peers/.original/.venv/bin/python; then
  bash benchmarks/peers/setup_original.sh "$1" "$2"
fi
uptime
.venv/bin/python benchmarks/peers/compare.py --group infer --threads "$THREADS" --warmup 1 --runs 3 \
  --json "$OUT/infer.json" | sed -n '/^| configuration/,$p'
.venv/bin/python benchmarks/peers/compare.py --group slide --size 512 683 --threads "$THREADS" --warmup 1 --runs 3 \
  --json "$OUT/slide.json" | sed -n '/^| configuration/,$p'
.venv/bin/python benchmarks/peers/compare.py --group train --threads "$THREADS" --warmup 1 --runs 2 \
  --json "$OUT/train.json" | sed -n '/^| configuration/,$p'
uptime
