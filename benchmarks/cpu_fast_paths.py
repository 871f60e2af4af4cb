"""The CPU inference paths side by side, interleaved in one run (A B C A B C ..., warm-ups, median):

* ``--what attention``: the attention kernels alone (``setr.models.vit``: ``sdpa`` = PyTorch's CPU flash kernel,
  ``math`` = two bf16 matmuls with an fp32 softmax, ``chunked`` = ``math`` over 256-query blocks) at the SETR
  sizes (ViT-B/16 at 512x512: 12 heads x 1025 tokens; ViT-L/16 at 768x768: 16 heads x 2305 tokens), bf16, with
  the bf16 matmul peak measured in the same run.
* ``--what model``: SETR-PUP ViT-B/16 512x512 (150 classes, batch 1, whole) forward through
  ``prepare_for_inference``: fp32, bf16 with each attention kernel (sdpa is the default path), int8, and the
  bf16 floor (counted FLOPs / bf16 matmul peak of the same run).

Only the CPU at hand can be measured: limiting oneDNN to AVX512-BF16 (``ONEDNN_MAX_CPU_ISA``) slows its matmuls
but not PyTorch's flash kernel, so it does not reproduce a CPU without AMX.

    .venv/bin/python benchmarks/cpu_fast_paths.py --what attention
    .venv/bin/python benchmarks/cpu_fast_paths.py --what model [--int8-engine x86|onednn|fbgemm]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time

import torch

ISAS = {"native": None}


def interleaved(fns: dict, warmup: int, runs: int) -> dict[str, float]:
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {n: [] for n in fns}
    for _ in range(runs):
        for n, f in fns.items():
            t = time.perf_counter()
            f()
            times[n].append(time.perf_counter() - t)
    return {n: statistics.median(t) for n, t in times.items()}


def matmul(n: int = 2048):
    a = torch.randn(n, n, dtype=torch.bfloat16)
    b = torch.randn(n, n, dtype=torch.bfloat16)
    return (lambda: a @ b), 2 * n ** 3


def attention(warmup: int, runs: int) -> dict:
    import torch.nn.functional as F

    from setr.models.vit import CHUNK_QUERIES, _attention_matmuls

    out = {}
    for name, heads, tokens in (("ViT-B 512x512", 12, 1025), ("ViT-L 768x768", 16, 2305)):
        g = torch.Generator().manual_seed(0)
        qkv = torch.randn(1, tokens, 3, heads, 64, generator=g).to(torch.bfloat16).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # the strided views the model passes
        scale = 64 ** -0.5
        mm, mm_flops = matmul()
        fns = {"sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
               "math": lambda: _attention_matmuls(q * scale, k, v, tokens),
               "chunked": lambda: _attention_matmuls(q * scale, k, v, CHUNK_QUERIES),
               "matmul_peak": mm}
        med = interleaved(fns, warmup, runs)
        flops = 4 * heads * tokens * tokens * 64
        peak = mm_flops / med.pop("matmul_peak") / 1e12
        out[name] = {"bf16_matmul_peak_tflops": peak,
                     **{k: {"ms": 1000 * t, "tflops": flops / t / 1e12, "fraction_of_peak": flops / t / 1e12 / peak}
                        for k, t in med.items()}}
    return out


def model(warmup: int, runs: int) -> dict:
    from setr.complexity import count_flops
    from setr.config import build_model
    from setr.models.vit import set_attention_kernel
    from setr.precision import autocast, prepare_for_inference
    from setr import presets

    cfg = presets.get("SETR_PUP_DeiT_512x512_160k_ade20k_bs_16").model
    torch.manual_seed(0)
    base = build_model(cfg, with_aux=False).eval()
    x = torch.randn(1, 3, 512, 512)
    paths = {"fp32": ("fp32", None), "bf16 sdpa (default)": ("bf16", "sdpa"), "bf16 math": ("bf16", "math"),
             "bf16 chunked": ("bf16", "chunked"), "int8": ("int8", None)}
    models = {}
    for name, (prec, kernel) in paths.items():
        m = prepare_for_inference(copy.deepcopy(base), prec, "cpu")
        if kernel:
            set_attention_kernel(m, kernel)
        models[name] = (m, prec)

    def run(name):
        m, prec = models[name]
        with torch.inference_mode(), autocast(prec, "cpu"):
            return m.encode_decode(x)

    ref = run("fp32")
    diffs = {n: float((run(n).float() - ref).abs().max()) for n in models}
    flops = count_flops(base.encode_decode, x)["flops"]
    mm, mm_flops = matmul()
    fns = {n: (lambda n=n: run(n)) for n in models}
    fns["matmul_peak"] = mm
    med = interleaved(fns, warmup, runs)
    peak = mm_flops / med.pop("matmul_peak") / 1e12
    floor = flops / (peak * 1e12)
    return {"gflops": flops / 1e9, "bf16_matmul_peak_tflops": peak, "bf16_floor_s": floor,
            **{n: {"median_s": t, "vs_floor": t / floor, "max_abs_diff_vs_fp32": diffs[n]} for n, t in med.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", choices=("attention", "model"), required=True)
    ap.add_argument("--isa", nargs="+", choices=sorted(ISAS), default=["native"])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--int8-engine", default="x86", help="torch.backends.quantized.engine for the int8 path")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        torch.set_num_threads(args.threads)
        torch.backends.quantized.engine = args.int8_engine
        r = (attention if args.what == "attention" else model)(args.warmup, args.runs)
        print(json.dumps(r))
        return 0
    results = {}
    for isa in args.isa:
        env = dict(os.environ)
        if ISAS[isa]:
            env["ONEDNN_MAX_CPU_ISA"] = ISAS[isa]
        load = open("/proc/loadavg").read().split()[:3]
        cmd = [sys.executable, __file__, "--child", "--what", args.what, "--warmup", str(args.warmup),
               "--runs", str(args.runs), "--threads", str(args.threads), "--int8-engine", args.int8_engine]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        results[isa] = json.loads(out.strip().splitlines()[-1])
        results[isa]["load_average"] = " ".join(load)
        results[isa]["int8_engine"] = args.int8_engine
    print(json.dumps(results, indent=1))
    for isa, r in results.items():
        print(f"\n{isa} (load average {r['load_average']}):")
        if args.what == "attention":
            for shape, d in r.items():
                if not isinstance(d, dict):
                    continue
                cells = ", ".join(f"{k} {v['ms']:.1f} ms ({100 * v['fraction_of_peak']:.0f}% of peak)"
                                  for k, v in d.items() if isinstance(v, dict))
                print(f"  {shape}: {cells}; bf16 matmul peak {d['bf16_matmul_peak_tflops']:.3f} TFLOP/s")
        else:
            print(f"  {r['gflops']:.1f} GFLOP, bf16 matmul peak {r['bf16_matmul_peak_tflops']:.3f} TFLOP/s, "
                  f"bf16 floor {r['bf16_floor_s']:.3f} s")
            for n, d in r.items():
                if isinstance(d, dict):
                    print(f"  {n:<22} {d['median_s']:.3f} s  {d['vs_floor']:.2f}x the floor  "
                          f"max |diff| vs fp32 {d['max_abs_diff_vs_fp32']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
