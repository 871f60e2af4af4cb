"""onnxruntime's dynamic int8 against ours, for ``--precision int8`` (issue: "PyTorch's quantization or
onnxruntime's, whichever is faster and keeps the output").

SETR-PUP ViT-B/16 at 512x512 (150 classes, one seeded random model): exported once to ONNX (fp32, ``setr export``'s
exporter), quantized with ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, dynamic activations; every
op type it supports: MatMul/Gemm, and with ``--conv`` the convolutions too), then timed interleaved in one process
(A B C D ..., warm-ups, median) with a bf16 2048^3 matmul for this machine's peak:

* ``torch fp32`` and ``torch int8`` / ``torch default`` (what ``setr predict --precision int8`` / ``auto`` run),
* ``ort fp32`` and ``ort int8`` (onnxruntime CPU, ``intra_op_num_threads`` = ``--threads``).

Printed: each path's median, its ratio to ``torch default`` and to the bf16 floor, and its max |logit - fp32|.

    .venv/bin/python benchmarks/onnx_int8.py [--conv] [--warmup 2 --runs 5 --threads 2]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_fast_paths import interleaved, matmul  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conv", action="store_true", help="quantize the convolutions too (ORT: ConvInteger)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from setr.complexity import count_flops
    from setr.config import build_model
    from setr.export import export_onnx
    from setr.precision import autocast, prepare_for_inference
    from setr import presets

    cfg = presets.get("SETR_PUP_DeiT_512x512_160k_ade20k_bs_16").model
    torch.manual_seed(0)
    base = build_model(cfg, with_aux=False).eval()
    x = torch.randn(1, 3, 512, 512)
    tmp = Path(tempfile.mkdtemp(prefix="setr-onnx-int8-"))
    fp32_onnx = export_onnx(copy.deepcopy(base), tmp / "fp32.onnx", (512, 512))
    int8_onnx = tmp / "int8.onnx"
    ops = None if args.conv else ["MatMul", "Gemm"]
    quantize_dynamic(str(fp32_onnx), str(int8_onnx), weight_type=QuantType.QInt8, op_types_to_quantize=ops)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    sessions = {name: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
                for name, p in (("ort fp32", fp32_onnx), ("ort int8", int8_onnx))}
    torch_models = {"torch fp32": ("fp32", base), "torch default": ("bf16", None), "torch int8": ("int8", None)}
    for name, (prec, m) in list(torch_models.items()):
        if m is None:
            torch_models[name] = (prec, prepare_for_inference(copy.deepcopy(base), prec, "cpu"))
    feed = x.numpy()

    def run(name):
        if name in sessions:
            s = sessions[name]
            return torch.from_numpy(s.run(None, {s.get_inputs()[0].name: feed})[0])
        prec, m = torch_models[name]
        with torch.inference_mode(), autocast(prec, "cpu"):
            return m.encode_decode(x).float()

    ref = run("torch fp32")
    names = [*torch_models, *sessions]
    diffs = {n: float((run(n) - ref).abs().max()) for n in names}
    flops = count_flops(base.encode_decode, x)["flops"]
    mm, mm_flops = matmul()
    fns = {n: (lambda n=n: run(n)) for n in names}
    fns["matmul_peak"] = mm
    med = interleaved(fns, args.warmup, args.runs)
    peak = mm_flops / med.pop("matmul_peak") / 1e12
    floor = flops / (peak * 1e12)
    out = {"gflops": flops / 1e9, "bf16_matmul_peak_tflops": peak, "bf16_floor_s": floor,
           "quantized_ops": ops or "all supported", "threads": args.threads,
           **{n: {"median_s": t, "vs_default": t / med["torch default"], "vs_floor": t / floor,
                  "max_abs_diff_vs_fp32": diffs[n]} for n, t in med.items()}}
    print(f"{flops / 1e9:.1f} GFLOP; bf16 matmul peak {peak:.3f} TFLOP/s; bf16 floor {floor:.3f} s")
    for n in names:
        r = out[n]
        print(f"{n:<14} {r['median_s']:.3f} s  {r['vs_default']:.2f}x the default path  {r['vs_floor']:.2f}x the floor  "
              f"max |diff| vs fp32 {r['max_abs_diff_vs_fp32']:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
