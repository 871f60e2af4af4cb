#!/usr/bin/env bash
# SETR-PUP with a ViT-B/16 encoder (the DeiT-B ADE20K preset: 512x512, 150 classes), batch 1, on this machine:
# fp32 and the default (auto = bf16 where the CPU has bf16 units) forward, and a training step (batch 2, aux heads).
# Usage: bash benchmarks/cpu_setr_pup_vitb.sh [OUT.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
SETR="${SETR:-.venv/bin/setr}"
OUT="${1:-benchmarks/cpu_setr_pup_vitb.jsonl}"
P=SETR_PUP_DeiT_512x512_160k_ade20k_bs_16
: > "$OUT"
for prec in fp32 auto; do
  "$SETR" benchmark $P --precision $prec --runs 7 --json | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))' >> "$OUT"
done
"$SETR" benchmark $P --mode slide --shape 512 683 --precision auto --runs 3 --json | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))' >> "$OUT"
for prec in fp32 bf16; do
  "$SETR" benchmark $P --train --batch 2 --precision $prec --runs 3 --json | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))' >> "$OUT"
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'mode':<6} {'shape':<9} {'batch':>5} {'prec':<5} {'median s':>9} {'img/s':>7} {'peak MB':>8} {'TFLOP/s':>8} {'% matmul peak':>13}")
for r in rows:
    print(f"{r['mode']:<6} {r['shape'][0]}x{r['shape'][1]:<5} {r['batch']:>5} {r['precision']:<5} {r['median_s']:>9.3f} "
          f"{r['images_per_s']:>7.2f} {r['peak_memory_mb']:>8.0f} {r['achieved_tflops']:>8.3f} {100 * r['fraction_of_matmul_peak']:>12.0f}%")
PY
