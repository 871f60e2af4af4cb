#!/usr/bin/env bash
# Issue 21's measurements: the original SETR code, MMSeg 1.2.2 and ours, interleaved, one thread per process.
#   A: SETR-PUP ViT-B/16 512x512 whole-image inference, every path this machine offers (the speed targets)
#   B: a Cityscapes-size image (2048x1024) through the test pipeline, slide 768/512 (peak memory, time)
#   C: an ADE20K-size image (683x512) multi-scale + flip (ratios 0.75, 1.0), slide 512/341
#   D: the training step, batch 2, aux heads, fp32
# A and B run side by side (two cores, one thread each), then C and D. Usage: bash benchmarks/peers/run_issue21.sh [OUT]
# Needs benchmarks/peers/setup_mmseg.sh and setup_original.sh run first. B uses the ViT-B Cityscapes preset:
# ViT-L's eight 768 windows take minutes per image per code base on one thread (set CITY=... to change).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-/tmp/setr_issue21}"; mkdir -p "$OUT"
CITY="${CITY:-SETR_PUP_DeiT_768x768_40k_cityscapes_bs_8}"
C=".venv/bin/python benchmarks/peers/compare.py --threads 1"
uptime
$C --group infer --warmup 1 --runs 3 --json "$OUT/A_infer.json" > "$OUT/A_infer.log" 2>&1 &
A=$!
$C --configs original:predict:fp32 mmseg:predict:fp32 ours:predict:fp32 --preset "$CITY" --size 1024 2048 \
   --warmup 0 --runs 1 --json "$OUT/B_city.json" > "$OUT/B_city.log" 2>&1
wait $A
$C --configs original:predict:fp32 mmseg:predict:fp32 ours:predict:fp32 --size 512 683 --aug --aug-ratios 0.75 1.0 \
   --warmup 0 --runs 1 --json "$OUT/C_ade_msflip.json" > "$OUT/C_ade_msflip.log" 2>&1 &
C_PID=$!
$C --configs original:train:fp32 mmseg:train:fp32 ours:train:fp32 --warmup 1 --runs 2 \
   --json "$OUT/D_train.json" > "$OUT/D_train.log" 2>&1
wait $C_PID
uptime
for f in "$OUT"/*.log; do sed -n '/^| configuration/,$p' "$f"; done
