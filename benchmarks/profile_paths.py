"""Where the time goes: torch.profiler over SETR-PUP ViT-B/16 512x512 (150 classes) on the CPU, grouped into
linear layers, attention, convolutions, upsampling, normalisation, loss and the rest, with the FLOPs of each
group and its achieved TFLOP/s against the matmul peak measured in the same run.

    .venv/bin/python benchmarks/profile_paths.py --precision auto            # the default inference path
    .venv/bin/python benchmarks/profile_paths.py --precision int8
    .venv/bin/python benchmarks/profile_paths.py --train --precision bf16    # training step, batch 2, aux heads
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

GROUPS = (  # (group, substrings of aten op names), first match wins
    ("attention", ("scaled_dot_product", "flash_attention", "_softmax", "softmax")),
    ("linear", ("addmm", "aten::mm", "aten::linear", "bmm", "matmul", "linear_dynamic", "quantized")),
    ("convolution", ("conv", "mkldnn_convolution")),
    ("upsample", ("upsample", "interpolate", "grid_sampler")),
    ("normalisation", ("layer_norm", "batch_norm", "native_batch_norm")),
    ("loss", ("nll_loss", "cross_entropy", "log_softmax")),
    ("optimizer", ("sgd", "_foreach", "_fused")),
)
LOSS_RANGES = ("setr::loss_forward", "setr::loss_backward")  # everything under these: the loss (pieces)


def group_of(name: str) -> str:
    for g, keys in GROUPS:
        if any(k in name for k in keys):
            return g
    return "other"


def main() -> None:
    from setr.complexity import counter_result, flop_counter
    from setr.config import build_model
    from setr.engine.losses import segmentor_losses
    from setr.engine.common import build_optimizer
    from setr.precision import autocast, prepare_for_inference, resolve_precision
    from setr import presets

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    prec = resolve_precision(args.precision, "cpu")
    preset = presets.get("SETR_PUP_DeiT_512x512_160k_ade20k_bs_16")
    cfg = preset.model
    batch = args.batch or (2 if args.train else 1)
    torch.manual_seed(0)
    model = build_model(cfg, with_aux=args.train)
    x = torch.randn(batch, 3, 512, 512)
    if args.train:
        model.train()
        target = torch.randint(0, cfg.num_classes, (batch, 512, 512))
        weights = [cfg.decode_head.loss_weight] + [a.loss_weight for a in cfg.aux_heads]
        target[:, :8] = 255  # a band of ignored pixels, as padding gives
        opt = build_optimizer(model, preset.train, lr=1e-6)  # the trainer's step (fused SGD, deferred resizes)

        def step():
            with autocast(prec, "cpu"):
                outs = model(x, with_aux=True, defer=True)
            loss = sum(segmentor_losses(outs, weights, target).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        model = prepare_for_inference(model.eval(), prec, "cpu")

        def step():
            with torch.inference_mode(), autocast(prec, "cpu"):
                model.encode_decode(x)

    step()
    counter = flop_counter()
    with counter:
        step()
    by_op = counter_result(counter)["by_op"]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        step()
        wall = time.perf_counter() - t
    n = 2048
    dt = torch.bfloat16 if prec in ("bf16", "int8") else torch.float32
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    a @ b
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    peak = 2 * n ** 3 / statistics.median(ts) / 1e12
    self_time = defaultdict(float)
    for e in prof.events():
        if e.name in LOSS_RANGES:
            continue
        parent, group = e.cpu_parent, None
        while parent is not None and group is None:
            group = "loss" if parent.name in LOSS_RANGES else None
            parent = parent.cpu_parent
        self_time[group or group_of(e.name)] += e.self_cpu_time_total / 1e6
    flops = defaultdict(int)
    for op, f in by_op.items():
        flops[group_of(op if op.startswith("aten::") else "aten::" + op)] += f
    print(f"{'train step' if args.train else 'forward'} batch {batch} {prec}: {wall:.3f} s wall (profiled), "
          f"{sum(by_op.values()) / 1e9:.1f} GFLOP, {dt} matmul peak {peak:.3f} TFLOP/s, load "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    total = sum(self_time.values())
    for g, s in sorted(self_time.items(), key=lambda kv: -kv[1]):
        f = flops.get(g, 0)
        rate = f"{f / s / 1e12:.3f} TFLOP/s = {100 * f / s / 1e12 / peak:.0f}% of peak" if f and s else ""
        print(f"  {g:<14} {s:7.3f} s ({100 * s / total:4.1f}%)  {f / 1e9:7.1f} GFLOP  {rate}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
