"""One configuration of the peer comparison in its own process: ours (project venv) or MMSegmentation 1.2.2's SETR
(benchmarks/peers/.venv), built on the same weights, driven one step at a time by ``compare.py`` over stdin/stdout
so that the configurations run interleaved (A B A B ...), never at the same time.

Commands (one per line): ``run`` -> ``ok <seconds>``; ``reset_mem`` -> ``ok``; ``mem`` -> ``ok <peak RSS bytes>``;
``logits PATH`` -> ``ok`` (fp32 eval-mode logits of the fixed input saved with torch.save); ``loss`` -> ``ok <float>``
(total training loss of the fixed batch, no update); ``quit``.

MMSeg's SETR computes our function once configured and mapped as follows (same weights, same input):
* ``patch_bias=True``: MMSeg's ViT drops the patch-conv bias by default; SETR's (ours) has one.
* the heads' conv biases are folded into the BatchNorm running mean (MMSeg's ConvModule has no bias before BN;
  ``BN(conv(x) + b)`` with mean ``m`` equals ``BN(conv(x))`` with mean ``m - b``; in training the batch mean
  absorbs ``b`` exactly).
* classifier order: MMSeg's SETRUPHead runs the 1x1 classifier after the last x2 upsample, ours (the original's)
  before it. Bilinear interpolation is a per-channel linear map whose weights sum to 1, so it commutes with a 1x1
  conv plus bias: the same function (up to float rounding), left as MMSeg ships it, which costs MMSeg 4x the
  classifier FLOPs (at 512x512 with 150 classes: 2*512^2*256*150 = 20.1 GFLOP instead of 5.0).
* decode ``SETRUPHead(num_convs=4, up_scale=2, kernel_size=3)``; aux ``SETRUPHead(num_convs=1, up_scale=4,
  kernel_size=3)`` on the outputs of blocks (4, 7, 9, 11) (our PUP aux heads); dropout 0; plain BatchNorm; LN eps
  1e-6; cross-entropy averaged over all pixels (MMSeg's default, the original's); aux loss weight 0.4.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext

import torch

PRESET = "SETR_PUP_DeiT_512x512_160k_ade20k_bs_16"  # SETR-PUP, ViT-B/16, 150 classes
AUX_BLOCKS = (4, 7, 9, 11)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
from memory_plan import peak as peak_rss, reset_peak as peak_rss_reset  # noqa: E402  (one VmHWM reader)


# ----------------------------------------------------------------------------------------------- ours
def build_ours(state: dict, train: bool, precision: str):
    from setr.config import build_model
    from setr import presets

    cfg = presets.get(PRESET).model
    model = build_model(cfg, with_aux=train)
    if not train:
        state = {k: v for k, v in state.items() if not k.startswith("auxiliary_head.")}
    model.load_state_dict(state, strict=True)
    if not train:
        model.eval()
        try:  # the default inference path of this version (attention kernel, channels-last, ...)
            from setr.precision import prepare_for_inference
            model = prepare_for_inference(model, precision, torch.device("cpu"))
        except ImportError:
            if precision != "fp32":
                model = model.to(memory_format=torch.channels_last)
    else:
        model.train()
    weights = [cfg.decode_head.loss_weight] + [a.loss_weight for a in cfg.aux_heads]

    def logits(x):
        return model.encode_decode(x)

    import inspect

    # the trainer's step: heads' last resizes deferred to the loss where this version has that
    defer = {"defer": True} if "defer" in inspect.signature(model.forward).parameters else {}

    def loss(x, target):
        from setr.engine.losses import segmentor_losses

        return sum(segmentor_losses(model(x, with_aux=True, **defer), weights, target).values())

    return model, logits, loss


def ours_optimizer(model):
    """The trainer's optimiser (fused SGD where this version has it) at the comparison's lr and momentum."""
    from setr import presets

    try:
        from setr.engine.common import build_optimizer
    except ImportError:
        return torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    import dataclasses

    train = dataclasses.replace(presets.get(PRESET).train, head_lr_mult=1.0)  # one lr, as the peer's
    assert train.momentum == 0.9 and train.weight_decay == 0.0 and train.optimizer == "sgd"
    return build_optimizer(model, train, lr=1e-6)


# ----------------------------------------------------------------------------------------------- MMSeg
def mmseg_config(num_classes: int = 150, img: int = 512) -> dict:
    norm = dict(type="BN", requires_grad=True)
    ce = lambda w: dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=w)  # noqa: E731
    head = dict(type="SETRUPHead", in_channels=768, channels=256, num_classes=num_classes, dropout_ratio=0.0,
                norm_cfg=norm, align_corners=False, norm_layer=dict(type="LN", eps=1e-6, requires_grad=True))
    return dict(
        type="EncoderDecoder",
        backbone=dict(type="VisionTransformer", img_size=(img, img), patch_size=16, in_channels=3, embed_dims=768,
                      num_layers=12, num_heads=12, mlp_ratio=4, out_indices=AUX_BLOCKS, qkv_bias=True,
                      drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, with_cls_token=True,
                      norm_cfg=dict(type="LN", eps=1e-6), act_cfg=dict(type="GELU"), patch_bias=True,
                      final_norm=False, interpolate_mode="bilinear"),
        decode_head=dict(head, in_index=3, num_convs=4, up_scale=2, kernel_size=3, loss_decode=ce(1.0)),
        auxiliary_head=[dict(head, in_index=i, num_convs=1, up_scale=4, kernel_size=3, loss_decode=ce(0.4))
                        for i in range(len(AUX_BLOCKS))],
        train_cfg=dict(), test_cfg=dict(mode="whole"))


def map_to_mmseg(state: dict, train: bool) -> dict:
    """Our (the original's) SETR-PUP keys -> MMSeg 1.x SETR keys, conv biases folded into BN running means."""
    out = {}
    for k, v in state.items():
        if not k.startswith("backbone."):
            continue
        k2 = k.replace("patch_embed.proj.", "patch_embed.projection.").replace("blocks.", "layers.")
        k2 = (k2.replace(".norm1.", ".ln1.").replace(".norm2.", ".ln2.")
              .replace(".attn.qkv.weight", ".attn.attn.in_proj_weight").replace(".attn.qkv.bias", ".attn.attn.in_proj_bias")
              .replace(".attn.proj.", ".attn.attn.out_proj.")
              .replace(".mlp.fc1.", ".ffn.layers.0.0.").replace(".mlp.fc2.", ".ffn.layers.1."))
        out[k2] = v

    def head(src: str, dst: str, num_convs: int):
        out[f"{dst}.norm.weight"] = state[f"{src}.norm.weight"]
        out[f"{dst}.norm.bias"] = state[f"{src}.norm.bias"]
        for i in range(num_convs):
            out[f"{dst}.up_convs.{i}.0.conv.weight"] = state[f"{src}.conv_{i}.weight"]
            for s in ("weight", "bias", "running_var", "num_batches_tracked"):
                out[f"{dst}.up_convs.{i}.0.bn.{s}"] = state[f"{src}.syncbn_fc_{i}.{s}"]
            out[f"{dst}.up_convs.{i}.0.bn.running_mean"] = \
                state[f"{src}.syncbn_fc_{i}.running_mean"] - state[f"{src}.conv_{i}.bias"]
        out[f"{dst}.conv_seg.weight"] = state[f"{src}.conv_{num_convs}.weight"]
        out[f"{dst}.conv_seg.bias"] = state[f"{src}.conv_{num_convs}.bias"]

    head("decode_head", "decode_head", 4)
    if train:
        for j in range(len(AUX_BLOCKS)):
            head(f"auxiliary_head.{j}", f"auxiliary_head.{j}", 1)
    return out


def build_mmseg(state: dict, train: bool, precision: str):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import mmcv_ops_stub

    mmcv_ops_stub.install()
    import warnings

    warnings.filterwarnings("ignore")
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg = mmseg_config()
    if not train:
        cfg.pop("auxiliary_head")
    model = MODELS.build(cfg)
    missing, unexpected = model.load_state_dict(map_to_mmseg(state, train), strict=False)
    missing = [k for k in missing if not k.startswith("data_preprocessor")]
    if missing or unexpected:
        raise SystemExit(f"mmseg key mapping: missing {missing}, unexpected {unexpected}")
    model.train(train)

    def logits(x):
        h, w = x.shape[-2:]
        return model.encode_decode(x, [dict(img_shape=(h, w), ori_shape=(h, w))] * x.shape[0])

    def loss(x, target):
        samples = []
        for t in target:
            s = SegDataSample()
            s.gt_sem_seg = PixelData(data=t[None])
            s.set_metainfo(dict(img_shape=tuple(x.shape[-2:]), ori_shape=tuple(x.shape[-2:])))
            samples.append(s)
        losses = model.loss(x, samples)
        return sum(v for k, v in losses.items() if "loss" in k)

    return model, logits, loss


# ----------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=("ours", "mmseg"), required=True)
    ap.add_argument("--task", choices=("infer", "train"), required=True)
    ap.add_argument("--precision", choices=("fp32", "bf16"), required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train = args.task == "train"
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    build = build_ours if args.impl == "ours" else build_mmseg
    model, logits_fn, loss_fn = build(state, train, args.precision)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g)
    target = torch.randint(0, 150, (args.batch, args.size, args.size), generator=g)
    target[:, :8] = 255  # a band of ignored pixels, as padding gives
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext()
    opt = None
    if train:  # SGD, lr 1e-6, momentum 0.9 for both; ours as its trainer builds it
        opt = ours_optimizer(model) if args.impl == "ours" else torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    def step():
        if train:
            with amp:
                loss = loss_fn(x, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        else:
            with torch.inference_mode(), amp:
                logits_fn(x)

    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *rest = line.split()
        if cmd == "run":
            t = time.perf_counter()
            step()
            print(f"ok {time.perf_counter() - t:.6f}", flush=True)
        elif cmd == "reset_mem":
            peak_rss_reset()
            print("ok", flush=True)
        elif cmd == "mem":
            print(f"ok {peak_rss()}", flush=True)
        elif cmd == "logits":
            was = model.training
            model.eval()
            with torch.inference_mode():
                torch.save(logits_fn(x).float(), rest[0])
            model.train(was)
            print("ok", flush=True)
        elif cmd == "loss":
            with torch.no_grad(), amp:
                print(f"ok {float(loss_fn(x, target)):.8f}", flush=True)
        elif cmd == "quit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
