#!/usr/bin/env bash
# Issue 21's measurements: the original SETR code, MMSeg 1.2.2 and ours, interleaved (A B C A B C ..., each
# configuration its own process, one step at a time, so only one computes at once), THREADS threads each (default
# 2 = every core of a 2-core machine; a machine shared with other work: use 1).
#   A: SETR-PUP ViT-B/16 512x512 whole-image inference, fp32 and int8 (the speed targets)
#   B: a Cityscapes-size image (2048x1024) through the test pipeline, ViT-L PUP, slide 768/512 (peak memory, time)
#   C: an ADE20K-size image (683x512), multi-scale (the preset's six ratios) + flip, ViT-B PUP, slide 512/341
#   D: the training step, batch 2, aux heads, fp32
#   E: ours compiled (torch.compile) and static int8 against the original (first call = compilation, apart)
# Usage: bash benchmarks/peers/run_issue21.sh [OUT] [STAGES]   e.g. STAGES="A B" (default: A B C D E)
# Needs benchmarks/peers/setup_mmseg.sh and setup_original.sh run first. B and C skip the parity step (it would run
# each image twice; parity is checked in A, D and E, and for label maps by `compare.py --configs
# original:predict:fp32 ... --size 512 683 --aug --aug-ratios 1.0`).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-/tmp/setr_issue21}"; mkdir -p "$OUT"
STAGES="${2:-A B C D E}"
THREADS="${THREADS:-2}"
CITY="${CITY:-SETR_PUP_768x768_40k_cityscapes_bs_8}"
ADE="${ADE:-SETR_PUP_DeiT_512x512_160k_ade20k_bs_16}"
C=".venv/bin/python benchmarks/peers/compare.py --threads $THREADS"
run() { local name=$1; shift; echo "== $name: $(date -u +%H:%M) load $(cut -d' ' -f1-3 /proc/loadavg)"
        $C "$@" --json "$OUT/$name.json" > "$OUT/$name.log" 2>&1; sed -n '/^| configuration/,$p' "$OUT/$name.log"; }
for s in $STAGES; do case $s in
  A) run A_infer --configs original:infer:fp32 mmseg:infer:fp32 ours:infer:fp32 ours:infer:int8 --warmup 1 --runs 5 ;;
  B) run B_city --configs original:predict:fp32 mmseg:predict:fp32 ours:predict:fp32 ours:predict:int8 \
         --preset "$CITY" --size 1024 2048 --warmup 0 --runs 1 --skip-parity ;;
  C) run C_ade_msflip --configs original:predict:fp32 mmseg:predict:fp32 ours:predict:fp32 ours:predict:int8 \
         --preset "$ADE" --size 512 683 --aug --warmup 0 --runs 1 --skip-parity ;;
  D) run D_train --configs original:train:fp32 mmseg:train:fp32 ours:train:fp32 --warmup 1 --runs 3 ;;
  E) run E_compiled --configs original:infer:fp32 ours:infer:fp32 ours:infer:fp32:compile ours:infer:int8-static \
         --warmup 1 --runs 3 ;;
  *) echo "unknown stage $s" >&2; exit 2 ;;
esac; done
