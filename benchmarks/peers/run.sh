#!/usr/bin/env bash
# The peer table of benchmarks/RESULTS.md: MMSegmentation 1.2.2's SETR and ours, same weights and input,
# interleaved (each configuration its own process), SETR-PUP ViT-B/16 512x512, 150 classes, 2 threads.
# Usage: bash benchmarks/peers/run.sh [OUT_DIR]    (builds benchmarks/peers/.venv on first use)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-/tmp/setr_peers}"
mkdir -p "$OUT"
test -x benchmarks/peers/.venv/bin/python || bash benchmarks/peers/setup_mmseg.sh
uptime
.venv/bin/python benchmarks/peers/compare.py --group infer --warmup 2 --runs 5 --json "$OUT/infer.json" | tail -8
.venv/bin/python benchmarks/peers/compare.py --group train-bf16 --warmup 1 --runs 3 --json "$OUT/train-bf16.json" | tail -6
.venv/bin/python benchmarks/peers/compare.py --group train-fp32 --warmup 1 --runs 3 --json "$OUT/train-fp32.json" | tail -6
uptime
