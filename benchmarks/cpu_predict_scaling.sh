#!/usr/bin/env bash
# `setr predict` throughput on this machine's CPU with 1 and 2 processes (torchrun, gloo), the demo preset
# (SETR-PUP, ViT patch 8, 96 wide, 4 blocks; random weights) on N generated 256x256 images, whole mode, fp32.
# Runs: 1 process x 1 thread, 1 process x all cores (PyTorch's default threads), 2 processes x 1 thread (torchrun's
# default); the 1x1 and 2x1 outputs must be byte-identical (same thread count = same arithmetic).
# Usage: bash benchmarks/cpu_predict_scaling.sh [N_IMAGES] [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
N="${1:-96}"
W="${2:-work_dirs/bench_predict}"
P=setr_demo_pup_tiny_64x64_shapes
rm -rf "$W" && mkdir -p "$W/images"
"$PY" - "$W" "$N" "$P" <<'PY'
import sys, numpy as np, torch
from PIL import Image
from setr.checkpoints import save_model
from setr.config import build_model
from setr.presets import get_preset
w, n, p = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
for i in range(n):
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(f"{w}/images/{i:05d}.jpg", quality=90)
torch.manual_seed(0)
cfg = get_preset(p).model
save_model(build_model(cfg, with_aux=False), cfg, f"{w}/model.safetensors")
PY
ARGS=(predict "$P" "$W/images" -c "$W/model.safetensors" --device cpu --precision fp32 --no-progress --workers 1)
OMP_NUM_THREADS=1 "$PY" -m setr "${ARGS[@]}" --out "$W/one"
"$PY" -m setr "${ARGS[@]}" --out "$W/one_all_threads"
OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m setr "${ARGS[@]}" --out "$W/two"
cmp -s <(cd "$W/one" && for f in $(ls | grep -v predict_summary); do md5sum "$f"; done) \
       <(cd "$W/two" && for f in $(ls | grep -v predict_summary); do md5sum "$f"; done) \
  && echo "outputs of 1 and 2 processes: identical" || echo "outputs of 1 and 2 processes: DIFFER"
for d in one one_all_threads two; do echo "$d: $(cat "$W/$d/predict_summary.json" | tr -d '\n ')"; done
