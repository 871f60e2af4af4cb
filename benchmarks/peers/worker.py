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
def mmseg_config(cfg=None) -> dict:
    if cfg is None:
        from setr import presets

        cfg = presets.get(PRESET).model
    b = cfg.backbone
    num_classes, img, width = cfg.num_classes, b.img_size[0], b.embed_dim
    aux_blocks = tuple(a.in_index for a in cfg.aux_heads) or AUX_BLOCKS
    outs = sorted(set(aux_blocks) | {b.depth - 1})  # the blocks whose outputs the heads read
    norm = dict(type="BN", requires_grad=True)
    ce = lambda w: dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=w)  # noqa: E731
    head = dict(type="SETRUPHead", in_channels=width, channels=256, num_classes=num_classes, dropout_ratio=0.0,
                norm_cfg=norm, align_corners=False, norm_layer=dict(type="LN", eps=1e-6, requires_grad=True))
    return dict(
        type="EncoderDecoder",
        backbone=dict(type="VisionTransformer", img_size=(img, img), patch_size=16, in_channels=3, embed_dims=width,
                      num_layers=b.depth, num_heads=b.num_heads, mlp_ratio=4, out_indices=outs,
                      qkv_bias=True,
                      drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, with_cls_token=True,
                      norm_cfg=dict(type="LN", eps=1e-6), act_cfg=dict(type="GELU"), patch_bias=True,
                      final_norm=False, interpolate_mode="bilinear"),
        decode_head=dict(head, in_index=outs.index(b.depth - 1), num_convs=4, up_scale=2, kernel_size=3,
                         loss_decode=ce(1.0)),
        auxiliary_head=[dict(head, in_index=outs.index(i), num_convs=1, up_scale=4, kernel_size=3,
                             loss_decode=ce(0.4)) for i in aux_blocks],
        train_cfg=dict(), test_cfg=dict(mode="whole"))


def map_to_mmseg(state: dict, train: bool, n_aux: int = len(AUX_BLOCKS)) -> dict:
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
        for j in range(n_aux):
            head(f"auxiliary_head.{j}", f"auxiliary_head.{j}", 1)
    return out


def build_mmseg(state: dict, train: bool, precision: str, cfg_ours=None):
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
    cfg = mmseg_config(cfg_ours)
    if not train:
        cfg.pop("auxiliary_head")
    model = MODELS.build(cfg)
    missing, unexpected = model.load_state_dict(
        map_to_mmseg(state, train, len(cfg.get("auxiliary_head") or [])), strict=False)
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

    return model, dict(logits=logits, loss=loss)


# ----------------------------------------------------------------------------------------------- the original
def build_original(state: dict, train: bool, preset: str):
    """The original SETR code (fudan-zvg/SETR at 1361561 over mmcv 1.2.2's sources, benchmarks/peers/.original/
    .venv: see setup_original.sh and original_env.py), built from its own config file of ``preset``, random
    init skipped, our weights loaded (the original's keys are ours). Its DeiT configs give the heads
    ``embed_dim=1024`` (the ViT-L base's) on a 768-wide backbone, which cannot run; the heads get the backbone's
    width, as our presets do. Dropout / drop-path off (our presets' values for the compared ViT-B)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import original_env

    original_env.install()
    import mmcv
    import mmseg
    from mmseg.models import build_segmentor

    root = os.path.dirname(os.path.dirname(os.path.abspath(mmseg.__file__)))
    cfg = mmcv.Config.fromfile(os.path.join(root, "configs", "SETR", f"{preset}.py"))
    width = cfg.model.backbone.embed_dim
    cfg.model.backbone.random_init = True
    heads = [cfg.model.decode_head] + list(cfg.model.get("auxiliary_head") or [])
    for h in heads:
        h.embed_dim = h.in_channels = width
    if not train:
        cfg.model.pop("auxiliary_head", None)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # "Initialize weight randomly"
        model = build_segmentor(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    if not train:
        state = {k: v for k, v in state.items() if not k.startswith("auxiliary_head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("conv_seg.weight", "conv_seg.bias"))]  # unused by its heads
    if missing or unexpected:
        raise SystemExit(f"original: missing {missing}, unexpected {unexpected}")
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model.train(train)

    def metas(x, ori=None, flip=None):
        h, w = x.shape[-2:]
        ori = ori or (h, w)
        return [dict(img_shape=(h, w, 3), ori_shape=(ori[0], ori[1], 3), pad_shape=(h, w, 3), flip=bool(flip),
                     flip_direction=flip)] * x.shape[0]

    def logits(x):
        return model.encode_decode(x, metas(x))

    def slide(x):
        model.test_cfg.mode = "slide"
        return model.slide_inference(x, metas(x), rescale=False)

    def predict(views, ori):  # its own simple_test / aug_test (softmax, flip back, average, argmax)
        model.test_cfg.mode = "slide"
        if len(views) == 1:
            return model.simple_test(views[0][0], metas(views[0][0], ori, views[0][1]))[0]
        return model.aug_test([v for v, _ in views], [metas(v, ori, f) for v, f in views])[0]

    def loss(x, target):
        losses = model.forward_train(x, metas(x), target[:, None])
        return sum(v for k, v in losses.items() if "loss" in k)

    return model, dict(logits=logits, slide=slide, predict=predict, loss=loss)


# ----------------------------------------------------------------------------------------------- main
def pipeline_views(image, cfg, aug: bool, device="cpu"):
    """The test views of ``image`` as the original's data pipeline makes them (our implementation of it, which
    the pipeline goldens check): [(normalised (1, 3, h, w) tensor, flip or None)], not timed for the peers."""
    from setr.data.transforms import flip as flip_image, normalise, resize_image
    from setr.inference import views_for

    out = []
    for v in views_for(image.shape[:2], cfg.test, aug):
        x = normalise(resize_image(image, v.size), cfg.mean, cfg.std)[None]
        out.append((flip_image(x, v.flip) if v.flip else x, v.flip))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=("ours", "mmseg", "original"), required=True)
    ap.add_argument("--task", choices=("infer", "slide", "train", "predict"), required=True)
    ap.add_argument("--precision", choices=("fp32", "bf16", "int8", "int8-static"), required=True)
    ap.add_argument("--compile", action="store_true", help="ours: torch.compile")
    ap.add_argument("--preset", default=PRESET)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, nargs="+", default=None, help="H [W] of the input (default: the crop)")
    ap.add_argument("--aug", action="store_true", help="predict: the multi-scale + flip test")
    ap.add_argument("--aug-ratios", type=float, nargs="+", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train = args.task == "train"
    if args.impl != "ours" and (args.precision.startswith("int8") or args.compile):
        raise SystemExit(f"{args.impl}: only fp32 and bf16")
    from setr import presets

    cfg = presets.get(args.preset).model
    if args.aug_ratios:
        cfg.test.aug_ratios = tuple(args.aug_ratios)
    size = tuple(args.size or cfg.backbone.img_size)
    h, w = size if len(size) == 2 else size * 2
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, h, w, generator=g)
    target = torch.randint(0, cfg.num_classes, (args.batch, h, w), generator=g)
    target[:, :8] = 255  # a band of ignored pixels, as padding gives
    image = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext()
    if args.impl == "ours":
        model, fns = build_ours_v2(state, train, args.precision, args.preset, cfg, args.compile, args.aug)
    elif args.impl == "mmseg":
        model, fns = build_mmseg_v2(state, train, args.preset, cfg)
    else:
        model, fns = build_original(state, train, args.preset)
    del state  # loaded into the model: the peak memory measured is the model's, not a second copy of the weights
    import gc

    gc.collect()
    views = pipeline_views(image, cfg, args.aug) if args.task == "predict" and args.impl != "ours" else None
    opt = None
    if train:  # SGD, lr 1e-6, momentum 0.9 for all; ours as its trainer builds it
        opt = ours_optimizer(model) if args.impl == "ours" else torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    def step():
        if train:
            with amp:
                loss = fns["loss"](x, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return None
        with torch.inference_mode(), (nullcontext() if args.impl == "ours" else amp):
            if args.task == "infer":
                return fns["logits"](x)
            if args.task == "slide":
                return fns["slide"](x)
            return fns["predict"](image) if args.impl == "ours" else fns["predict"](views, (h, w))

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
        elif cmd == "logits":  # what the task computes (fp32 logits, or the labels of predict), for parity
            was = model.training
            model.eval()
            with torch.inference_mode():
                if train:
                    out = fns["logits"](x)
                else:
                    out = step()
                out = torch.as_tensor(out).float()
            torch.save(out, rest[0])
            model.train(was)
            print("ok", flush=True)
        elif cmd == "loss":
            with torch.no_grad(), amp:
                print(f"ok {float(fns['loss'](x, target)):.8f}", flush=True)
        elif cmd == "quit":
            break
    return 0


def build_ours_v2(state, train, precision, preset, cfg, compile, aug):
    from setr.config import build_model
    from setr.inference import Segmenter

    model = build_model(cfg, with_aux=train)
    if not train:
        state = {k: v for k, v in state.items() if not k.startswith("auxiliary_head.")}
    model.load_state_dict(state, strict=True)
    if train:
        model.train()
        forward = torch.compile(model) if compile else model
        weights = [cfg.decode_head.loss_weight] + [a.loss_weight for a in cfg.aux_heads]

        def loss(x, target):
            from setr.engine.losses import segmentor_losses

            return sum(segmentor_losses(forward(x, with_aux=True, defer=True), weights, target).values())

        def logits(x):
            return model.encode_decode(x)

        return model, dict(loss=loss, logits=logits)
    # the path `setr predict` takes (precision's preparation, --compile, window batch, streamed labels)
    seg = Segmenter(model, cfg, precision=precision, compile=compile, mode="slide", aug=aug)
    from setr.precision import autocast

    t = cfg.test

    def logits(x):
        with autocast(seg.precision, "cpu"):
            return seg.model.encode_decode(x)

    def slide(x):
        with autocast(seg.precision, "cpu"):
            return seg.model.inference_logits(x, "slide", t.crop_size, t.stride, window_batch=seg.window_batch)

    return seg.model, dict(logits=logits, slide=slide, predict=seg.predict)


def build_mmseg_v2(state, train, preset, cfg):
    """MMSeg 1.2.2's SETR for ``preset`` (widths, depth, heads, classes from our preset; see build_mmseg)."""
    model, fns = build_mmseg(state, train, "fp32", cfg)
    from mmengine.structures import PixelData  # noqa: F401
    from mmseg.structures import SegDataSample

    t = cfg.test

    def slide(x):
        model.test_cfg = dict(mode="slide", crop_size=tuple(t.crop_size), stride=tuple(t.stride))
        from mmengine.config import ConfigDict

        model.test_cfg = ConfigDict(model.test_cfg)
        h, w = x.shape[-2:]
        return model.slide_inference(x, [dict(img_shape=(h, w), ori_shape=(h, w))] * x.shape[0])

    def predict(views, ori):  # its predict (inference, resize to the original size, flip back) + TTA's mean
        from mmengine.config import ConfigDict

        model.test_cfg = ConfigDict(mode="slide", crop_size=tuple(t.crop_size), stride=tuple(t.stride))
        total = None
        for v, flip in views:
            s = SegDataSample()
            s.set_metainfo(dict(img_shape=tuple(v.shape[-2:]), ori_shape=tuple(ori), flip=bool(flip),
                                flip_direction=flip, padding_size=[0, 0, 0, 0]))
            out = model.predict(v, [s])[0]
            if len(views) == 1:
                return out.pred_sem_seg.data[0]
            p = out.seg_logits.data.softmax(0)
            total = p if total is None else total + p
        return (total / len(views)).argmax(0)

    fns.update(slide=slide, predict=predict)
    return model, fns


if __name__ == "__main__":
    sys.exit(main())
