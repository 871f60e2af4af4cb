"""``setr detect {train,test,predict}``: RetinaNet-HLG on COCO, with the authors' mmdet 2.26 arithmetic."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import argtypes
from ..errors import SetrError
from .common import (STDOUT, add_batch_size, add_checkpoint, add_device, add_json, add_overwrite, add_preset,
                     add_set, add_trust, checkpoint_of, emit_json, preset_for)
from .report_options import add_report_options, check_report_option

PRESET_HELP = "retinanet_hlg_{small,medium,large}_fpn_mstrain_1x_coco (`setr presets` lists them)"
CHECKPOINT_HELP = ("the authors' mmdet checkpoint (.pth: state_dict + meta), one of ours (epoch_N.pth) or a "
                   "state dict / .safetensors with the same keys; read with weights_only=True")


def _preset(args: argparse.Namespace):
    return preset_for(args, "detection")


def cmd_detect_train(args: argparse.Namespace) -> int:
    from ..detection.training import train_detector
    from ..dist import resolve_device
    from ..engine.workdir import default_work_dir
    from ..outputs import ensure_writable_dir

    p = _preset(args)
    if not Path(args.data_root).is_dir():
        raise SetrError(f"{args.data_root}: data root not found")
    resume = None if args.resume is None else (True if args.resume == "latest" else args.resume)
    work_dir = args.work_dir or default_work_dir(p.name, resume)
    ensure_writable_dir(work_dir, "--work-dir")
    metrics = train_detector(p, args.data_root, work_dir, epochs=args.epochs, batch_size=args.batch_size,
                             amp=args.amp, resume=resume, device=resolve_device(args.device) if args.device else None,
                             seed=args.seed, progress=not args.no_progress, overwrite=args.overwrite,
                             load_from=args.load_from)
    if metrics and "AP" in metrics:
        from ..detection.evaluation import format_metrics

        print(format_metrics(metrics))
    print(f"checkpoints in {work_dir}")
    return 0


def _detector(args: argparse.Namespace, checkpoint):
    from ..batch_predict import local_device
    from ..detection.api import Detector

    device = local_device(args.device)
    if checkpoint is None:
        return Detector.from_preset(args.preset, overrides=args.set, device=device, precision=args.precision)
    return Detector.from_checkpoint(checkpoint, args.preset, overrides=args.set, device=device,
                                    precision=args.precision)


def cmd_detect_test(args: argparse.Namespace) -> int:
    from ..detection.coco import CocoDetection
    from ..detection.evaluation import evaluate_detector, format_metrics
    from ..outputs import ensure_writable_file

    checkpoint_of(args, "setr detect test")
    for option, path in (("--json", args.json), ("--results", args.results)):
        if path and path != STDOUT:
            ensure_writable_file(path, option)
    if args.json and args.json != STDOUT:
        print("note: --json PATH holds the metrics, as in `setr test`; the detections (COCO results format) go to "
              "--results PATH", file=sys.stderr)
    check_report_option(args, {"--data-root": args.data_root})
    dataset = CocoDetection(args.data_root, args.split)
    det = _detector(args, args.checkpoint)
    if det.num_classes != dataset.num_classes:
        raise SetrError(f"{args.checkpoint}: checkpoint has {det.num_classes} classes, {dataset.ann_file} has "
                        f"{dataset.num_classes}")
    # our checkpoints record their training categories (ids and names): they must be the dataset's; the authors'
    # checkpoints name their classes only, and the labels map to the dataset's categories in id order
    results: list = []
    metrics = evaluate_detector(det, dataset, batch_size=args.batch_size, categories=det.checkpoint_categories,
                                results_json=args.results, progress=not args.no_progress, results_out=results)
    metrics.update({"preset": args.preset, "checkpoint": str(args.checkpoint), "split": args.split,
                    "precision": det.precision, "batch_size": args.batch_size})
    to_stdout = args.json == STDOUT
    if to_stdout:
        emit_json(STDOUT, metrics)
    else:
        print(format_metrics(metrics) + f"\n(precision {det.precision}, batch {args.batch_size})")
    if args.json and not to_stdout:
        emit_json(args.json, metrics)
        print(f"metrics written to {args.json}")
    if args.results:
        print(f"results ({metrics['num_detections']} detections) written to {args.results}",
              file=sys.stderr if to_stdout else sys.stdout)
    if args.report:
        from ..reports.detection import write_detection_report

        page = write_detection_report(
            args.report, dataset.coco, results, {img_id: dataset.image_path(k) for k, img_id in enumerate(dataset.ids)},
            meta={"preset": args.preset, "checkpoint": str(args.checkpoint), "precision": det.precision,
                  "split": args.split, "batch_size": args.batch_size}, worst=args.report_images)
        print(f"report written to {page}", file=sys.stderr if to_stdout else sys.stdout)
    return 0


def cmd_detect_predict(args: argparse.Namespace) -> int:
    from ..detection.evaluation import predict_files
    from ..io.images import find_images
    from ..io.paths import check_not_weights, check_outputs_apart
    from ..outputs import ensure_writable_dir

    # before loading a large model: a weights file among the images, an --out that is an input, a bad input
    check_not_weights(args.inputs)
    check_outputs_apart(args.out, [i for i in args.inputs if Path(i).is_dir()])
    find_images(args.inputs)
    if args.checkpoint is None and not args.random_weights:
        raise SetrError("no weights: pass the checkpoint with -c/--checkpoint (or --random-weights to try the "
                        "pipeline with an untrained network)")
    if args.checkpoint is not None and args.random_weights:
        raise SetrError("--random-weights and --checkpoint: choose one")
    ensure_writable_dir(args.out, "--out")
    det = _detector(args, args.checkpoint)
    if args.random_weights:
        print("warning: --random-weights: detecting with an untrained network (the boxes mean nothing)",
              file=sys.stderr)
    out = predict_files(det, args.inputs, args.out, score_thresh=args.score_thresh, progress=not args.no_progress)
    counts = out["boxes_drawn"]
    with_boxes = sum(1 for c in counts if c)
    if with_boxes:
        hint = ""
    elif out["num_detections"] and args.score_thresh > 0:
        hint = " (none drawn: lower --score-thresh to see weaker ones)"
    else:
        hint = " (the model kept no detection at all)"
    print(f"{sum(counts)} box(es) with score >= {args.score_thresh:g} on {with_boxes} of {len(counts)} image(s); "
          f"{len(counts)} drawing(s) and {out['results'].name} ({out['num_detections']} detections) written to "
          f"{args.out}{hint}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    add_preset(p, "detection", help=PRESET_HELP)
    add_set(p, "model.score_thresh=0.1 model.test_min_size=600 train.lr=2e-4")
    add_device(p)
    add_trust(p)


def _precision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16", "fp16"),
                   help="fp32 (default): the original's arithmetic; auto: bf16 where the hardware has bf16 units")


def register(sub) -> argparse.ArgumentParser:
    det = sub.add_parser("detect", help="RetinaNet-HLG object detection on COCO")
    dsub = det.add_subparsers(dest="detect_command", required=True)

    p = dsub.add_parser("train", help="train on <root>/annotations/instances_train2017.json + train2017/")
    _common(p)
    p.add_argument("--data-root", required=True)
    p.add_argument("--work-dir", help="default work_dirs/<preset>")
    p.add_argument("--epochs", type=argtypes.positive_int)
    add_batch_size(p, help="global batch size (the recipe's is 16)")
    p.add_argument("--amp", choices=("bf16", "fp16"))
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CKPT",
                   help="continue from CKPT, or from the newest checkpoint in the work dir (none yet: from 0)")
    add_overwrite(p)
    p.add_argument("--load-from", metavar="CKPT",
                   help="start from these weights (an mmdet RetinaNet checkpoint or ours; read with weights_only=True)")
    p.add_argument("--seed", type=argtypes.nonneg_int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_detect_train)

    p = dsub.add_parser("test", help="COCO bbox AP of a checkpoint on <root>/<split>2017")
    _common(p)
    add_checkpoint(p, required=True, positional_too=True, help=CHECKPOINT_HELP)
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default="val")
    add_json(p, "the metrics")
    p.add_argument("--results", metavar="PATH", help="write every detection here (COCO results format, as mmdet's "
                                                     "format_results writes them)")
    add_report_options(p)
    add_batch_size(p, 1, help="images padded into one batch (default 1, the original's test; more pads them together)")
    _precision(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_detect_test)

    p = dsub.add_parser("predict", help="detect in image files or folders (recursively): <stem>_boxes.jpg "
                                        "drawings and results.bbox.json")
    _common(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    add_checkpoint(p, help=CHECKPOINT_HELP + " (required unless --random-weights)")
    p.add_argument("--random-weights", action="store_true",
                   help="detect with an untrained network (to try the pipeline; the boxes mean nothing)")
    p.add_argument("--out", "-o", required=True,
                   help="output folder: <name>_boxes.jpg drawings, results.bbox.json, predict_summary.json (which "
                        "input gave which file), names as `setr predict` gives them; never an input folder (a "
                        "folder inside one is left out of the inputs)")
    p.add_argument("--score-thresh", type=argtypes.fraction, default=0.3,
                   help="draw boxes with at least this score (results.bbox.json holds every detection)")
    _precision(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_detect_predict)
    return det
