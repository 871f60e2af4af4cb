"""``setr convert`` (training labels) and ``setr convert-weights`` (pretrained folders)."""
from __future__ import annotations

import argparse

from .. import argtypes
from ..errors import SetrError
from .common import add_trust


def cmd_convert(args: argparse.Namespace) -> int:
    from ..data.convert import convert_cityscapes, convert_pascal_context

    if args.dataset == "cityscapes":
        if args.out_dir:
            from ..outputs import ensure_writable_dir

            ensure_writable_dir(args.out_dir, "--out-dir")
        written = convert_cityscapes(args.root, args.gt_dir, args.out_dir, args.nproc)
    else:
        if not args.context_dir:
            raise SetrError("pascal_context needs --context-dir (the PASCAL-Context release: trainval/, labels.txt)")
        written = convert_pascal_context(args.root, args.context_dir, args.train_list, args.val_list)
    print(f"wrote {len(written)} label maps")
    return 0


def cmd_convert_weights(args: argparse.Namespace) -> int:
    from ..hub.convert import convert_weights

    names = None
    if args.class_names:
        from pathlib import Path

        names = [ln.strip() for ln in Path(args.class_names).read_text().splitlines() if ln.strip()]
    size = tuple(args.verify_size) * (2 if args.verify_size and len(args.verify_size) == 1 else 1) \
        if args.verify_size else None
    result = convert_weights(args.source, args.out, preset=args.preset, class_names=names, verify_size=size,
                             trust_checkpoint=args.trust_checkpoint, ema=args.ema)
    print(result.summary())
    if result.max_abs_diff > 0:
        raise SetrError(f"{result.folder}: the reloaded model's outputs differ from the checkpoint's "
                        f"(max abs difference {result.max_abs_diff:.3g})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("convert", help="make training labels: Cityscapes polygons, Pascal Context masks")
    p.add_argument("dataset", choices=("cityscapes", "pascal_context"))
    p.add_argument("root", help="cityscapes/ (with gtFine/) or VOCdevkit/")
    p.add_argument("--gt-dir", default="gtFine")
    p.add_argument("--out-dir", help="where train.txt / val.txt go (Cityscapes; default: root)")
    p.add_argument("--nproc", type=argtypes.positive_int, default=1)
    p.add_argument("--context-dir", help="Pascal Context: the release folder with trainval/*.mat and labels.txt")
    p.add_argument("--train-list")
    p.add_argument("--val-list")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("convert-weights", help="a checkpoint -> a pretrained folder (config.json, model.safetensors, "
                                               "README.md) for from_pretrained / the Hugging Face Hub")
    p.add_argument("source", help="an original SETR .pth (with --preset), an HLG ImageNet .pth, or one of our "
                                  "checkpoints (.safetensors, iter_N.pth, epoch_N.pth)")
    p.add_argument("--out", "-o", required=True, help="the pretrained folder to write")
    p.add_argument("--preset", help="the preset the weights belong to (required for original SETR checkpoints)")
    p.add_argument("--class-names", help="HLG classifiers: a text file with one class name per line")
    p.add_argument("--ema", action="store_true", help="our classification checkpoints: convert the EMA weights")
    p.add_argument("--verify-size", type=argtypes.positive_int, nargs="+", metavar=("H", "W"),
                   help="size of the random input the reloaded model is checked on (default: 256, 224 for HLG)")
    add_trust(p)
    p.set_defaults(func=cmd_convert_weights)
