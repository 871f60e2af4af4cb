"""``setr test``: evaluate a checkpoint on a dataset split."""
from __future__ import annotations

import argparse
import sys

from ..errors import SetrError
from ..dist import resolve_device
from .common import (STDOUT, add_checkpoint, add_compile, add_device, add_flip_directions, add_json, add_preset,
                     add_set, add_speed_options, add_trust, checkpoint_of, preset_for)
from .report_options import add_report_options, check_report_option

LISTED_DATASETS = ("cityscapes", "ade20k", "pascal_context", "folder")


def _load_for_test(args, preset):
    """The checkpoint's model with the command's ``model.*`` / ``test.*`` overrides: on the preset for a foreign
    checkpoint, on the stored config for one of ours (the same rule as ``setr predict``)."""
    from ..inference import Segmenter

    overrides = [a for a in args.set if a.strip().startswith(("model.", "test."))]
    seg = Segmenter.from_checkpoint(args.checkpoint, preset, overrides=overrides, device=resolve_device(args.device),
                                    mode=args.mode, aug=True if args.aug else None, window_batch=args.window_batch,
                                    precision=args.precision, flip_directions=args.flip_directions,
                                    compile=args.compile)
    print(f"testing with mode={seg.mode}, aug={'ms+flip' if seg.aug else 'off'}, device={seg.device}, "
          f"precision={seg.precision}")
    return seg


def cmd_test(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.datasets import build_dataset
    from ..evaluation.evaluate import evaluate
    from ..evaluation.formats import SubmissionWriter
    from ..evaluation.metrics import format_table, to_json

    from ..io.atomic import atomic_write_text
    from ..outputs import ensure_writable_dir, ensure_writable_file

    useless = [a for a in args.set if a.strip().startswith("train.")]
    if useless:  # never ignored silently: a test does not train
        raise SetrError(f"--set {useless[0]}: train.* settings have no meaning for setr test (model.*, test.* and "
                        "data.* apply)")
    preset = preset_for(args)
    checkpoint_of(args, "setr test")
    if args.format_only and not args.out:
        raise SetrError("--format-only needs --out DIR for the prediction files")
    if args.report and args.format_only:
        raise SetrError("--report scores predictions against the ground truth: not with --format-only")
    to_stdout = args.json == STDOUT
    json_path = Path(args.json if args.json and not to_stdout
                     else Path(args.checkpoint).with_name(f"{Path(args.checkpoint).stem}_{args.split}_metrics.json"))
    from ..io.paths import is_within

    for option, folder in (("--out", args.out), ("--show-dir", args.show_dir)):
        if folder and is_within(folder, args.data_root):  # prediction files and overlays are named like the images
            raise SetrError(f"{option} {folder}: lies inside --data-root {args.data_root}; the files written there "
                            f"could replace or be read as the dataset's own: choose a folder outside it")
    for option, folder in (("--out", args.out), ("--show-dir", args.show_dir)):
        if folder:
            ensure_writable_dir(folder, option)
    if not args.format_only and not to_stdout:
        ensure_writable_file(json_path, "--json" if args.json else "--json (default: next to the checkpoint)")
    check_report_option(args, {"--data-root": args.data_root})
    seg = _load_for_test(args, preset)
    from .predict import preset_mismatch

    mismatch = preset_mismatch(args.checkpoint, args.preset, [s for s in args.set if s.startswith("model.")],
                               doing="testing")
    if mismatch:  # never ignored without a word (the same rule as setr predict)
        print(mismatch, file=sys.stderr)
    # the dataset the checkpoint was trained on (stored with it) unless --set data.dataset says otherwise
    name = preset.data.dataset
    if seg.cfg.dataset in LISTED_DATASETS and not any(s.startswith("data.dataset=") for s in args.set):
        name = seg.cfg.dataset
    dataset = build_dataset(name, args.data_root, args.split, seg.cfg.num_classes,
                            require_masks=not args.format_only)
    writer = SubmissionWriter(name, args.out) if args.out else None
    report = None
    if args.report:
        from ..reports.segmentation import SegmentationReport

        report = SegmentationReport(dataset.num_classes, dataset.class_names, seg.palette, worst=args.report_images)
    metrics = evaluate(seg, dataset, progress=not args.no_progress, show_dir=args.show_dir, formatter=writer,
                       on_image=report.add if report else None)
    if writer is not None:
        print(f"wrote {len(writer.written)} prediction files to {args.out}")
    if args.format_only or not metrics:
        return 0
    metrics.update({"preset": preset.name, "checkpoint": str(args.checkpoint), "split": args.split,
                    "mode": seg.mode, "aug": seg.aug, "precision": seg.precision, "num_images": len(dataset)})
    if to_stdout:
        print(to_json(metrics))
    else:
        print(format_table(metrics))  # the numbers first: a failing write below cannot take them away
        atomic_write_text(json_path, to_json(metrics))
        print(f"metrics written to {json_path}")
    if report is not None:
        meta = {k: metrics[k] for k in ("preset", "checkpoint", "split", "precision", "mode", "num_images")}
        meta["augmentation"] = (f"multi-scale + flip ({', '.join(seg.cfg.test.flip_directions)})" if seg.aug
                                else "off")
        meta["data_root"] = str(args.data_root)
        scores = {k: metrics[k] for k in ("aAcc", "mIoU", "mAcc", "per_class")}
        page = report.write(args.report, scores, meta)
        print(f"report written to {page}", file=sys.stderr if to_stdout else sys.stdout)
    return 0


def register(sub) -> None:
    p = sub.add_parser("test", help="evaluate a checkpoint on a dataset split (mIoU, mAcc, aAcc, per class)")
    add_preset(p, "segmentation")
    add_checkpoint(p, required=True, positional_too=True)
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--mode", choices=("whole", "slide"))
    p.add_argument("--aug", action="store_true", help="multi-scale + flip test")
    add_flip_directions(p)
    p.add_argument("--format-only", action="store_true", help="only write prediction files (needs --out)")
    p.add_argument("--out", help="write prediction files in the evaluation server's format here")
    p.add_argument("--show-dir", help="write overlays here")
    add_json(p, "the metrics", default="<checkpoint>_<split>_metrics.json next to the checkpoint")
    add_report_options(p)
    add_set(p, "test.img_scale=[1024,512] data.dataset=folder")
    add_speed_options(p)
    add_compile(p)
    p.add_argument("--no-progress", action="store_true")
    add_device(p)
    add_trust(p)
    p.set_defaults(func=cmd_test)
