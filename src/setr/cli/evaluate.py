"""``setr evaluate``: score a folder of prediction PNGs against ground truth."""
from __future__ import annotations

import argparse
import sys

from .. import argtypes
from .common import STDOUT, add_json, emit_json
from .report_options import add_report_options, check_report_option


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import evaluate_folders
    from ..evaluation.metrics import format_table, to_json

    from ..data.classes import class_names_from

    names = class_names_from(args.classes, args.num_classes) if args.classes else None
    report = None
    check_report_option(args, {"PRED_DIR": args.pred_dir, "GT_DIR": args.gt_dir})
    if args.report:
        from ..data.classes import classes_and_palette
        from ..reports.segmentation import SegmentationReport

        palette = classes_and_palette(args.classes if args.classes in ("cityscapes", "ade20k", "pascal_context")
                                      else None, args.num_classes, names)[1]
        report = SegmentationReport(args.num_classes, names, palette, args.ignore_index, worst=args.report_images)
    metrics = evaluate_folders(args.pred_dir, args.gt_dir, args.num_classes, args.reduce_zero_label,
                               args.ignore_index, class_names=names, ignore_out_of_range=args.ignore_out_of_range,
                               on_image=report.add if report else None)
    if args.json:
        emit_json(args.json, None, to_json(metrics))
    else:
        print(format_table(metrics))
    if report is not None:
        meta = {"predictions": str(args.pred_dir), "ground_truth": str(args.gt_dir), "num_images": metrics["num_images"],
                "reduce_zero_label": args.reduce_zero_label}
        page = report.write(args.report, {k: metrics[k] for k in ("aAcc", "mIoU", "mAcc", "per_class")}, meta)
        print(f"report written to {page}", file=sys.stderr if args.json == STDOUT else sys.stdout)
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
    add_report_options(p)
    p.set_defaults(func=cmd_evaluate)
