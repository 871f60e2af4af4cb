"""Training-step options for SETR-PUP ViT-B/16 512x512 (150 classes, batch 2, the four PUP aux heads), timed
interleaved in one process (A B C A B C ..., warm-up, median) on the same weights and batch, with the loss of the
first step of each (the fp32 options must give the baseline's loss):

* ``baseline``: what ``setr benchmark --train`` and the trainer do (model, loss, zero_grad, backward, SGD step);
* ``channels_last``: model and input in channels-last memory format (the head convolutions' layout on the CPU);
* ``foreach_sgd``: ``torch.optim.SGD(foreach=True)`` (PyTorch only picks foreach by itself for CUDA tensors);
* ``ckpt_aux``: the auxiliary heads under activation checkpointing (their 1/4-resolution maps recomputed in the
  backward pass instead of kept);
* ``all``: the three together.

    .venv/bin/python benchmarks/train_step_options.py --amp bf16 [--options baseline channels_last ...]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.utils.checkpoint as cp

OPTIONS = ("baseline", "channels_last", "foreach_sgd", "ckpt_aux", "all")


def main() -> None:
    from setr.config import build_model
    from setr.engine.losses import segmentor_losses
    from setr.precision import autocast
    from setr.presets import get_preset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--amp", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--options", nargs="+", default=list(OPTIONS), choices=OPTIONS)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = get_preset("SETR_PUP_DeiT_512x512_160k_ade20k_bs_16").model
    torch.manual_seed(0)
    base = build_model(cfg, with_aux=True).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g)
    target = torch.randint(0, cfg.num_classes, (args.batch, args.size, args.size), generator=g)
    weights = [cfg.decode_head.loss_weight] + [a.loss_weight for a in cfg.aux_heads]

    def make(option):
        model = copy.deepcopy(base)
        cl = option in ("channels_last", "all")
        if cl:
            model = model.to(memory_format=torch.channels_last)
        inp = x.contiguous(memory_format=torch.channels_last) if cl else x
        opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9,
                              foreach=option in ("foreach_sgd", "all"))
        ckpt = option in ("ckpt_aux", "all")

        def forward():
            if not ckpt:
                return model(inp, with_aux=True)
            h, w = inp.shape[-2:]
            feats = model.backbone(inp)
            grid = model.backbone.token_grid((h, w))
            outs = [model.decode_head(feats, out_size=(h, w), grid=grid)]
            for head in model.auxiliary_head:
                def run_head(f, head=head):
                    fl = list(feats)
                    fl[head.in_index] = f
                    return head(fl, out_size=(h, w), grid=grid)

                # (the recomputation updates the aux heads' BatchNorm running statistics a second time)
                outs.append(cp.checkpoint(run_head, feats[head.in_index], use_reentrant=False))
            return outs

        state = {"first_loss": None}

        def step():
            with autocast(args.amp, "cpu"):
                loss = sum(segmentor_losses(forward(), weights, target).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if state["first_loss"] is None:
                state["first_loss"] = float(loss)

        return step, state

    steps = {o: make(o) for o in args.options}
    for _ in range(args.warmup):
        for o, (step, _) in steps.items():
            step()
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


if __name__ == "__main__":
    main()
