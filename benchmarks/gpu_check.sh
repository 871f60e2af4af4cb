#!/usr/bin/env bash
# One GPU check, about 10 minutes on one H100 / H200 (compilation included). Runs from a source checkout (no install needed):
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# Prints: CUDA-vs-reference parity on the golden fixtures, bf16 inference throughput of SETR-PUP ViT-L at
# 768x768 with its fraction of the bf16 matmul peak measured on the spot, a training step's throughput and peak
# memory, and what torch.compile gains. Record the numbers in benchmarks/RESULTS.md with the device name.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${1:-${OUT:-/tmp/setr_gpu_check}}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
P=SETR_PUP_768x768_40k_cityscapes_bs_8
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'

echo "== 1. parity: the golden fixtures on CUDA (fp32, TF32 off) =="
timeout 120 "$PY" scripts/check_reference_case.py --device cuda tests/fixtures/setr_reference/*.pt | tee "$OUT/parity.txt" | grep -E "^\S|FAIL"

run() {  # name, then setr benchmark arguments
  local name=$1; shift
  timeout 300 "$PY" -m setr benchmark "$P" --device cuda --json "$@" > "$OUT/$name.json" \
    && "$PY" - "$OUT/$name.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<22} {r['mode']:<6} batch {r['batch']:>2} {r['precision']:<5} "
      f"{'compiled' if r['compile'] else 'eager':<8} first call {r.get('first_call_s', 0):6.1f} s "
      f"{r['median_s'] * 1000:8.1f} ms "
      f"{r['images_per_s']:7.1f} img/s  peak {r['peak_memory_mb'] / 1024:6.1f} GiB  {r['achieved_tflops']:6.1f} TFLOP/s "
      f"= {100 * r['fraction_of_matmul_peak']:4.0f}% of {r['matmul_peak_tflops']:.0f} (bf16 matmul peak, measured)")
PY
}
echo "== 2. inference, SETR-PUP ViT-L 768x768 (target >= 50% of the bf16 peak) =="
run infer_bf16 --precision bf16 --batch 8 --runs 10
run infer_fp32 --precision fp32 --batch 2 --runs 5
echo "== 3. training step, batch 4, aux heads, bf16 autocast (target >= 35% of the peak) =="
run train_bf16 --train --precision bf16 --batch 4 --runs 5
run train_bf16_ckpt --train --precision bf16 --batch 4 --runs 5 --set model.backbone.grad_checkpointing=true
echo "== 4. torch.compile on (off: sections 2 and 3); first call (compilation) reported apart =="
run infer_bf16_compiled --precision bf16 --batch 8 --runs 10 --compile
run infer_fp32_compiled --precision fp32 --batch 2 --runs 5 --compile
run train_bf16_compiled --train --precision bf16 --batch 4 --runs 5 --compile
echo "== 5. the batch-8 ViT-L training step's memory (bf16, the preset's batch on one GPU) =="
run train_bf16_batch8 --train --precision bf16 --batch 8 --runs 3
echo "results in $OUT"
