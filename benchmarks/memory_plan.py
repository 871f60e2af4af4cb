"""Peak memory of a real-size training step on the CPU and its split (weights, gradients + optimizer state,
activations), each configuration in its own process:

    .venv/bin/python benchmarks/memory_plan.py [--preset SETR_PUP_768x768_40k_cityscapes_bs_8] \
        [--batches 1 2] [--amp bf16] [--checkpointing off on]

Per configuration: RSS after building the model (weights + runtime), the peak RSS of the first step (forward +
backward: weights, activations, gradients), RSS after it (weights + gradients + SGD momentum + what the allocator
keeps), and the peak of a second step. Activations = peak of step 2 - RSS before it with gradients set to None
(as the trainer does), so they include the transient gradients of the backward pass; their growth from batch 1
to 2 is the per-image cost used to extrapolate to the recipe's batch 8.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MB = 2 ** 20


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(preset_name: str, batch: int, amp: str, ckpt: bool, threads: int) -> dict:
    import torch

    from setr.config import build_model
    from setr.engine.losses import segmentor_losses
    from setr.engine.common import build_optimizer
    from setr.precision import autocast
    from setr import presets

    torch.set_num_threads(threads)
    preset = presets.get(preset_name)
    cfg = preset.model
    cfg.backbone.grad_checkpointing = ckpt
    h, w = cfg.backbone.img_size
    r0 = rss()
    torch.manual_seed(0)
    model = build_model(cfg, with_aux=True).train()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(batch, 3, h, w)
    target = torch.randint(0, cfg.num_classes, (batch, h, w))
    weights = [cfg.decode_head.loss_weight] + [a.loss_weight for a in cfg.aux_heads]
    opt = build_optimizer(model, preset.train, lr=1e-6)  # the trainer's step: its optimiser, deferred resizes
    r_model = rss()

    def step():
        with autocast(amp, "cpu"):
            outs = model(x, with_aux=True, defer=True)
        loss = sum(segmentor_losses(outs, weights, target, preset.train.loss_normalisation).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    reset_peak()
    t = time.perf_counter()
    step()
    t1 = time.perf_counter() - t
    p1 = peak()
    r_after = rss()
    opt.zero_grad(set_to_none=True)
    r_before2 = rss()
    reset_peak()
    t = time.perf_counter()
    step()
    t2 = time.perf_counter() - t
    p2 = peak()
    return {"preset": preset_name, "shape": [h, w], "batch": batch, "amp": amp, "checkpointing": ckpt,
            "params": params, "weights_mb": params * 4 / MB, "grads_mb": params * 4 / MB,
            "momentum_mb": params * 4 / MB, "rss_start_mb": r0 / MB, "rss_model_mb": r_model / MB,
            "step1_peak_mb": p1 / MB, "rss_after_step_mb": r_after / MB, "rss_before_step2_mb": r_before2 / MB,
            "step2_peak_mb": p2 / MB, "activations_mb": (p2 - r_before2) / MB, "step_s": [t1, t2],
            "load_average": " ".join(open("/proc/loadavg").read().split()[:3])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="SETR_PUP_768x768_40k_cityscapes_bs_8")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--amp", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--checkpointing", nargs="+", default=["off", "on"], choices=("off", "on"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        batch, ckpt = args.child.split(",")
        print(json.dumps(child(args.preset, int(batch), args.amp, ckpt == "on", args.threads)))
        return 0
    rows = []
    for ckpt in args.checkpointing:
        for batch in args.batches:
            cmd = [sys.executable, __file__, "--preset", args.preset, "--amp", args.amp, "--threads",
                   str(args.threads), "--child", f"{batch},{ckpt}"]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(f"batch {batch} checkpointing {ckpt}: failed ({out.returncode}): {out.stderr[-500:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"batch {batch} ckpt {ckpt}: params {r['params'] / 1e6:.1f}M, model RSS {r['rss_model_mb']:.0f} MB, "
                  f"step peak {r['step2_peak_mb']:.0f} MB, activations {r['activations_mb']:.0f} MB, "
                  f"after step {r['rss_after_step_mb']:.0f} MB, step {r['step_s'][1]:.1f} s "
                  f"(load {r['load_average']})", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
