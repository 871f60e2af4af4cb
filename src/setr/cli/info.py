"""``setr presets``, ``setr info``, ``setr flops``: what the presets are, their sizes and FLOPs."""
from __future__ import annotations

import argparse

from .. import argtypes
from .common import add_json, emit_json


def cmd_presets(args: argparse.Namespace) -> int:
    from ..presets import COMMANDS, all_presets

    rows = [p.summary() for p in all_presets(args.task)]
    if args.dataset:
        rows = [r for r in rows if r["dataset"] == args.dataset]
    if args.json:
        emit_json(args.json, rows)
        return 0
    for task in ("segmentation", "classification", "detection"):
        these = [r for r in rows if r["task"] == task]
        if not these:
            continue
        print(f"{task} ({COMMANDS[task]}):")
        if task == "segmentation":
            print(f"  {'preset':<52} {'dataset':<15} {'crop':<8} {'backbone':<32} {'head':<10} {'mIoU':>6} {'ms':>6}")
        for r in these:
            if task != "segmentation":
                print(f"  {r['name']:<52} {r['dataset']:<15} {r['backbone']:<12} {r['head']}")
                continue
            miou = f"{r['reported_mIoU']:.2f}" if r["reported_mIoU"] is not None else "-"
            ms = f"{r['reported_ms_mIoU']:.2f}" if r["reported_ms_mIoU"] is not None else "-"
            crop = "x".join(str(c) for c in r["crop"])
            print(f"  {r['name']:<52} {r['dataset']:<15} {crop:<8} {r['backbone']:<32} {r['head']:<10} "
                  f"{miou:>6} {ms:>6}")
        print()
    return 0


def cmd_hlg_info(args: argparse.Namespace, p) -> int:
    from ..complexity import hlg_complexity

    shape = tuple(args.shape) * (2 if len(args.shape) == 1 else 1) if getattr(args, "shape", None) else (224, 224)
    variant = p.model.variant
    c = hlg_complexity(variant, shape)
    from dataclasses import asdict

    from ..models.hlg import HLG_VARIANTS

    info = {"name": p.name, "task": p.task, "variant": variant, "architecture": HLG_VARIANTS[variant],
            "params": {"total": c["params"]["classification"], "dense_backbone": c["params"]["dense_backbone"]},
            "gmacs": c["gmacs"], "gflops": c["gflops"], "shape": c["shape"],
            "published": {"params_m": p.published_params_m, "gflops": p.published_gflops,
                          "note": "the paper's G counts multiply-adds (MACs), without the stem"},
            "notes": list(p.notes), "model": asdict(p.model), "train": asdict(p.train), "data": None}
    if args.json:
        emit_json(args.json, info)
        return 0
    print(f"{p.name}: depths {list(HLG_VARIANTS[variant]['depths'])}, dims {list(HLG_VARIANTS[variant]['embed_dims'])}")
    print(f"  params: {c['params']['classification'] / 1e6:.2f}M classification (1000 classes), "
          f"{c['params']['dense_backbone'] / 1e6:.2f}M dense backbone   [published {p.published_params_m}M]")
    print(f"  at {shape[0]}x{shape[1]}: {c['gmacs']['with_stem']:.2f} GMACs ({c['gflops']['with_stem']:.2f} GFLOPs), "
          f"{c['gmacs']['without_stem']:.2f} GMACs without the stem   [published {p.published_gflops}G]")
    for n in p.notes:
        print(f"  note: {n}")
    return 0


def cmd_detection_info(args: argparse.Namespace, p) -> int:
    from dataclasses import asdict

    from ..complexity import build_on_meta, count_params
    from ..detection.model import build_retinanet_hlg

    p.model.pretrained = None  # counting needs no ImageNet weights
    model = build_on_meta(build_retinanet_hlg, p.model, 80)
    counts = {"total": count_params(model), "backbone": count_params(model.backbone),
              "fpn": count_params(model.neck), "head": count_params(model.bbox_head)}
    info = {"name": p.name, "task": p.task, "dataset": p.dataset, "backbone": p.backbone_name, "head": p.head_name,
            "params": counts, "notes": list(p.notes), "model": asdict(p.model), "train": asdict(p.train),
            "data": None}
    if args.json:
        emit_json(args.json, info)
        return 0
    print(f"{p.name}  ({p.dataset}, {p.backbone_name}, {p.head_name}; 80 classes)")
    for k, v in counts.items():
        print(f"  params {k:<12} {v:>13,d}  ({v / 1e6:.2f}M)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ..complexity import build_on_meta, segmentor_param_counts
    from ..config import build_model
    from ..presets import get

    preset = get(args.preset)
    if preset.task == "classification":
        return cmd_hlg_info(args, preset)
    if preset.task == "detection":
        return cmd_detection_info(args, preset)
    counts = segmentor_param_counts(build_on_meta(build_model, preset.model))
    info = {"name": preset.name, "task": preset.task, "dataset": preset.dataset, "backbone": preset.backbone_name,
            "head": preset.head_name, "params": counts, "reported_mIoU": preset.reported_miou,
            "reported_ms_mIoU": preset.reported_ms_miou, "notes": list(preset.notes),
            "train": preset.to_dict()["train"], "data": preset.to_dict()["data"], "model": preset.model.to_dict()}
    if args.json:
        emit_json(args.json, info)
        return 0
    print(f"{preset.name}  ({preset.dataset}, {preset.backbone_name}, {preset.head_name})")
    for k, v in counts.items():
        print(f"  params {k:<12} {v:>13,d}  ({v / 1e6:.2f}M)")
    if preset.reported_miou is not None:
        print(f"  reported mIoU (single scale): {preset.reported_miou:.2f}")
    if preset.reported_ms_miou is not None:
        print(f"  reported mIoU (ms+flip): {preset.reported_ms_miou:.2f}")
    for n in preset.notes:
        print(f"  note: {n}")
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    from ..complexity import build_on_meta, segmentor_flops, segmentor_param_counts
    from ..config import build_model
    from ..errors import SetrError
    from ..presets import get

    preset = get(args.preset)
    if preset.task == "classification":
        return cmd_hlg_info(args, preset)
    if preset.task == "detection":
        raise SetrError(f"setr flops counts segmentation and classification presets; {preset.name} is a detection "
                        "preset (`setr info` gives its parameters)")
    shape = tuple(args.shape) if args.shape else preset.model.backbone.img_size
    if len(shape) == 1:
        shape = (shape[0], shape[0])
    model = build_on_meta(build_model, preset.model, with_aux=False)
    res = segmentor_flops(model, shape)
    params = segmentor_param_counts(model)["total"]
    attn = res["attention_flops"]
    out = {"preset": preset.name, "shape": list(shape), "params": params, "gflops": res["flops"] / 1e9,
           "gmacs": res["flops"] / 2e9, "attention_gflops": attn / 1e9,
           "by_op_gflops": {k: v / 1e9 for k, v in res["by_op"].items()}}
    if args.json:
        emit_json(args.json, out)
        return 0
    print(f"{preset.name} at {shape[0]}x{shape[1]} (inference: backbone + decode head)")
    print(f"  params: {params / 1e6:.2f}M")
    print(f"  FLOPs:  {out['gflops']:.1f} G  ({out['gmacs']:.1f} GMACs; the original tool printed MACs as FLOPs)")
    print(f"  of which attention matmuls: {out['attention_gflops']:.1f} G (missed by the original counter)")
    for k, v in out["by_op_gflops"].items():
        print(f"    {k:<40} {v:10.1f} G")
    return 0


def register(sub) -> None:
    p = sub.add_parser("presets", help="list the named presets of every task (the original results tables)")
    p.add_argument("--task", choices=("segmentation", "classification", "detection"))
    p.add_argument("--dataset", choices=("cityscapes", "ade20k", "pascal_context", "folder", "imagenet", "coco"))
    add_json(p, "the list")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("info", help="parameter counts and settings of a preset (computed on the meta device)")
    p.add_argument("preset", help="any preset: segmentation, classification or detection")
    add_json(p, "the parameters and settings")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("flops", help="parameters and FLOPs of one forward, attention matmuls included")
    p.add_argument("preset")
    argtypes.add_shape(p)
    add_json(p, "the counts")
    p.set_defaults(func=cmd_flops)
