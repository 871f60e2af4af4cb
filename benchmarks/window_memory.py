"""Process peak memory of one sliding window through a preset's network, as ``setr predict`` prepares it.

    .venv/bin/python benchmarks/window_memory.py SETR_PUP_768x768_40k_cityscapes_bs_8 --precision fp32
    .venv/bin/python benchmarks/window_memory.py SETR_PUP_768x768_40k_cityscapes_bs_8 --precision int8

Prints the resident set size after the imports, after building the model (random weights), after
``Segmenter`` has prepared it, and the peak (the kernel's VmHWM, reset just before) of one window-sized
``encode_decode``, twice (the second run sees the allocator's state after the first).
"""
from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_plan import peak, reset_peak  # noqa: E402  (one VmHWM reader)


def rss_mb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from setr import presets
    from setr.config import build_model
    from setr.inference import Segmenter

    cfg = presets.get(args.preset).model
    print(f"after imports: {rss_mb()} MB")
    model = build_model(cfg, with_aux=False)
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) // 2 ** 20
    print(f"model built: {rss_mb()} MB (fp32 weights {weights_mb} MB)")
    seg = Segmenter(model, cfg, precision=args.precision, mode="slide")
    del model
    gc.collect()
    print(f"prepared ({seg.precision}): {rss_mb()} MB")
    x = torch.randn(1, 3, *cfg.test.crop_size)
    for attempt in (1, 2):
        reset_peak()
        with torch.inference_mode():
            seg.model.encode_decode(x)
        print(f"one {x.shape[-2]}x{x.shape[-1]} window (run {attempt}): peak {peak() // 2 ** 20} MB, after {rss_mb()} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
