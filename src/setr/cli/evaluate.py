"""``setr evaluate``: score a folder of prediction PNGs against ground truth."""
from __future__ import annotations

import argparse

from .. import argtypes
from .common import add_json, emit_json


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import evaluate_folders
    from ..evaluation.metrics import format_table, to_json

    from ..data.classes import class_names_from

    names = class_names_from(args.classes, args.num_classes) if args.classes else None
    metrics = evaluate_folders(args.pred_dir, args.gt_dir, args.num_classes, args.reduce_zero_label,
                               args.ignore_index, class_names=names, ignore_out_of_range=args.ignore_out_of_range)
    if args.json:
        emit_json(args.json, None, to_json(metrics))
    else:
        print(format_table(metrics))
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="score a folder of prediction PNGs against ground truth")
    p.add_argument("pred_dir")
    p.add_argument("gt_dir")
    p.add_argument("--num-classes", type=argtypes.positive_int, required=True)
    p.add_argument("--reduce-zero-label", action="store_true", help="ADE20K: 0 is ignored, v -> v - 1")
    p.add_argument("--ignore-index", type=argtypes.label_value, default=255)
    p.add_argument("--classes", metavar="FILE|DATASET",
                   help="class names: a file with one name per line (or a folder with classes.txt), or cityscapes, "
                        "ade20k, pascal_context")
    p.add_argument("--ignore-out-of-range", action="store_true",
                   help="leave label values outside --num-classes out of every class instead of refusing them")
    add_json(p, "the metrics")
    p.set_defaults(func=cmd_evaluate)
