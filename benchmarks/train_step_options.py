"""Training-step options for SETR-PUP ViT-B/16 512x512 (150 classes, batch 2, the four PUP aux heads), timed
interleaved in one process (A B C A B C ..., warm-up, median) on the same weights and batch, with the loss of the
first step of each (the fp32 options must give the baseline's loss) and, with ``--memory``, each option's peak
RSS over one step in a process of its own:

* ``baseline``: what ``setr benchmark --train`` and the trainer do (``model(x, with_aux=True, defer=True)``: the
  heads' last resizes happen inside the loss, piece by piece; the trainer's fused SGD);
* ``plain_loss``: the step before that: full-resolution logits from the heads, the loss's direct formula
  (interpolate, fp32 copy, cross-entropy) and per-tensor SGD;
* ``loop_sgd``: the baseline with the per-tensor SGD loop instead of the fused kernel;
* ``channels_last``: model and input in channels-last memory format (the head convolutions' layout on the CPU);
* ``ckpt_aux``: the auxiliary heads under activation checkpointing (their maps recomputed in the backward pass
  instead of kept; the recomputation updates their BatchNorm running statistics a second time, so timing only).

    .venv/bin/python benchmarks/train_step_options.py --amp bf16 [--options baseline plain_loss ...] [--memory]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.utils.checkpoint as cp

OPTIONS = ("baseline", "plain_loss", "loop_sgd", "channels_last", "ckpt_aux")


def main() -> None:
    from setr.config import build_model
    from setr.engine.losses import plain_seg_cross_entropy, segmentor_losses
    from setr.engine.common import build_optimizer
    from setr.precision import autocast
    from setr import presets

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--amp", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--options", nargs="+", default=list(OPTIONS), choices=OPTIONS)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory", action="store_true",
                    help="instead of timing: each option's peak RSS over its second step, one process each")
    ap.add_argument("--peak-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory:
        return memory(args)
    torch.set_num_threads(args.threads)
    preset = presets.get("SETR_PUP_DeiT_512x512_160k_ade20k_bs_16")
    cfg = preset.model
    torch.manual_seed(0)
    base = build_model(cfg, with_aux=True).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g)
    target = torch.randint(0, cfg.num_classes, (args.batch, args.size, args.size), generator=g)
    target[:, :8] = 255  # a band of ignored pixels, as padding gives
    weights = [cfg.decode_head.loss_weight] + [a.loss_weight for a in cfg.aux_heads]

    def make(option):
        model = copy.deepcopy(base)
        cl = option == "channels_last"
        if cl:
            model = model.to(memory_format=torch.channels_last)
        inp = x.contiguous(memory_format=torch.channels_last) if cl else x
        if option in ("plain_loss", "loop_sgd"):
            opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
        else:
            opt = build_optimizer(model, preset.train, lr=1e-6)
        ckpt = option == "ckpt_aux"

        def forward():
            if not ckpt:
                return model(inp, with_aux=True, defer=option != "plain_loss")
            h, w = inp.shape[-2:]
            feats = model.backbone(inp)
            grid = model.backbone.token_grid((h, w))
            outs = [model.decode_head(feats, out_size=(h, w), grid=grid, defer=True)]
            for head in model.auxiliary_head:
                def run_head(f, head=head):
                    fl = list(feats)
                    fl[head.in_index] = f
                    return head(fl, out_size=(h, w), grid=grid, defer=True).logits

                # (the recomputation updates the aux heads' BatchNorm running statistics a second time)
                low = cp.checkpoint(run_head, feats[head.in_index], use_reentrant=False)
                outs.append(outs[0]._replace(logits=low, sizes=((h, w),)))
            return outs

        state = {"first_loss": None}

        def step():
            with autocast(args.amp, "cpu"):
                outs = forward()
            if option == "plain_loss":
                loss = sum(w * plain_seg_cross_entropy(o, target) for o, w in zip(outs, weights))
            else:
                loss = sum(segmentor_losses(outs, weights, target).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if state["first_loss"] is None:
                state["first_loss"] = loss.item()

        return step, state

    steps = {o: make(o) for o in args.options}
    for _ in range(args.warmup):
        for o, (step, _) in steps.items():
            step()
    if args.peak_child:  # one option: its peak RSS over the next step
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        next(iter(steps.values()))[0]()
        with open("/proc/self/status") as f:
            hwm = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
        print(f"peak_rss_mb {hwm / 1024:.1f}")
        return
    times = {o: [] for o in steps}
    for _ in range(args.runs):
        for o, (step, _) in steps.items():
            t = time.perf_counter()
            step()
            times[o].append(time.perf_counter() - t)
    base_t = statistics.median(times[args.options[0]])
    print(f"training step, batch {args.batch}, {args.size}x{args.size}, {args.amp}, load {' '.join(open('/proc/loadavg').read().split()[:3])}")
    for o in steps:
        m = statistics.median(times[o])
        print(f"  {o:<14} {m:7.2f} s  {base_t / m:.2f}x {args.options[0]}  first loss {steps[o][1]['first_loss']:.6f}")


def memory(args) -> None:
    """Each option in a process of its own: peak RSS (VmHWM, reset after a first step) over a second step."""
    import subprocess
    import sys

    print(f"peak RSS over one training step, batch {args.batch}, {args.size}x{args.size}, {args.amp}, load "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    for o in args.options:
        out = subprocess.run([sys.executable, __file__, "--amp", args.amp, "--options", o, "--batch", str(args.batch),
                              "--size", str(args.size), "--warmup", "1", "--runs", "1", "--threads",
                              str(args.threads), "--peak-child"], capture_output=True, text=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("peak_rss_mb")]
        print(f"  {o:<14} {float(line[-1].split()[1]):7.0f} MB" if line else f"  {o:<14} failed: {out.stderr[-500:]}")


if __name__ == "__main__":
    main()
