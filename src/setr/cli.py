"""The ``setr`` command line. Thin: every subcommand calls the library."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .errors import SetrError


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")


def _device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SetrError(f"--device {name}: CUDA is not available on this machine")
    return name


# --------------------------------------------------------------------------- presets / info / flops
def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import list_presets

    rows = [p.summary() for p in list_presets()]
    if args.dataset:
        rows = [r for r in rows if r["dataset"] == args.dataset]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':<52} {'dataset':<15} {'crop':<8} {'backbone':<32} {'head':<10} {'mIoU':>6} {'ms':>6}")
    for r in rows:
        miou = f"{r['reported_mIoU']:.2f}" if r["reported_mIoU"] is not None else "-"
        ms = f"{r['reported_ms_mIoU']:.2f}" if r["reported_ms_mIoU"] is not None else "-"
        crop = "x".join(str(c) for c in r["crop"])
        print(f"{r['name']:<52} {r['dataset']:<15} {crop:<8} {r['backbone']:<32} {r['head']:<10} {miou:>6} {ms:>6}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .complexity import build_on_meta, segmentor_param_counts
    from .config import build_model
    from .presets import get_preset

    preset = get_preset(args.preset)
    counts = segmentor_param_counts(build_on_meta(build_model, preset.model))
    info = {"name": preset.name, "dataset": preset.dataset, "backbone": preset.backbone_name,
            "head": preset.head_name, "params": counts, "reported_mIoU": preset.reported_miou,
            "reported_ms_mIoU": preset.reported_ms_miou, "notes": list(preset.notes),
            "train": preset.to_dict()["train"], "model": preset.model.to_dict()}
    if args.json:
        print(json.dumps(info, indent=2))
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
    from .complexity import build_on_meta, segmentor_flops, segmentor_param_counts
    from .config import build_model
    from .presets import get_preset

    preset = get_preset(args.preset)
    shape = tuple(args.shape) if args.shape else preset.model.backbone.img_size
    if len(shape) == 1:
        shape = (shape[0], shape[0])
    model = build_on_meta(build_model, preset.model, with_aux=False)
    res = segmentor_flops(model, shape)
    params = segmentor_param_counts(model)["total"]
    attn = res["by_op"].get("bmm", 0) + res["by_op"].get("_scaled_dot_product_flash_attention", 0) \
        + res["by_op"].get("_scaled_dot_product_efficient_attention", 0)
    out = {"preset": preset.name, "shape": list(shape), "params": params, "gflops": res["flops"] / 1e9,
           "gmacs": res["flops"] / 2e9, "attention_gflops": attn / 1e9,
           "by_op_gflops": {k: v / 1e9 for k, v in res["by_op"].items()}}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{preset.name} at {shape[0]}x{shape[1]} (inference: backbone + decode head)")
    print(f"  params: {params / 1e6:.2f}M")
    print(f"  FLOPs:  {out['gflops']:.1f} G  ({out['gmacs']:.1f} GMACs; the original tool printed MACs as FLOPs)")
    print(f"  of which attention matmuls: {out['attention_gflops']:.1f} G (missed by the original counter)")
    for k, v in out["by_op_gflops"].items():
        print(f"    {k:<40} {v:10.1f} G")
    return 0


# --------------------------------------------------------------------------- predict
def cmd_predict(args: argparse.Namespace) -> int:
    from .inference import Segmenter, find_images

    find_images(args.inputs)  # fail on a bad input before loading a large model
    seg = Segmenter.from_preset(args.preset, args.checkpoint, device=_device(args.device), mode=args.mode,
                                aug=True if args.aug else None, window_batch=args.window_batch)
    if args.checkpoint is None:
        print("warning: no --checkpoint given: predicting with random weights", file=sys.stderr)
    written = seg.predict_files(args.inputs, args.out, progress=not args.no_progress)
    print(f"wrote {len(written)} label maps and overlays to {args.out} "
          f"(mode={seg.mode}, aug={'ms+flip' if seg.aug else 'off'}, device={seg.device})")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="setr", description="SETR semantic segmentation: presets, inference, tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("presets", help="list the named presets (the original results tables)")
    p.add_argument("--dataset", choices=("cityscapes", "ade20k", "pascal_context"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("info", help="parameter counts and settings of a preset (computed on the meta device)")
    p.add_argument("preset")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("flops", help="parameters and FLOPs of one forward, attention matmuls included")
    p.add_argument("preset")
    p.add_argument("--shape", type=int, nargs="+", metavar=("H", "W"), help="input size (default: the crop)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("predict", help="segment images or folders: <stem>.png label maps and <stem>_overlay.jpg")
    p.add_argument("preset")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--checkpoint", "-c", help="our .safetensors checkpoint or an original SETR .pth")
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--mode", choices=("whole", "slide"), help="default: the preset's (slide)")
    p.add_argument("--aug", action="store_true", help="multi-scale + flip test")
    p.add_argument("--window-batch", type=int, default=1, help="sliding windows per forward pass")
    p.add_argument("--no-progress", action="store_true")
    _add_device(p)
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SetrError as exc:
        print(f"setr {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `setr presets | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
