"""``setr detect {train,test,predict}``: RetinaNet-HLG on COCO. Register with ``add_detect_parser(subparsers)``."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import argtypes
from ..dist import resolve_device
from ..errors import SetrError


def _preset(args: argparse.Namespace):
    from ..overrides import apply_overrides
    from ..presets.detection import get_detection_preset

    p = get_detection_preset(args.preset)
    apply_overrides(p, getattr(args, "set", None) or [])
    return p


def cmd_detect_train(args: argparse.Namespace) -> int:
    from .engine import train_detector

    p = _preset(args)
    if args.epochs is not None and args.epochs < 1:
        raise SetrError(f"--epochs {args.epochs}: must be at least 1")
    if args.batch_size is not None and args.batch_size < 1:
        raise SetrError(f"--batch-size {args.batch_size}: must be at least 1")
    if not Path(args.data_root).is_dir():
        raise SetrError(f"{args.data_root}: data root not found")
    resume = None if args.resume is None else (True if args.resume == "latest" else args.resume)
    from ..engine.loop import default_work_dir

    work_dir = args.work_dir or default_work_dir(p.name, resume)
    from ..outputs import ensure_writable_dir

    ensure_writable_dir(work_dir, "--work-dir")
    metrics = train_detector(p, args.data_root, work_dir, epochs=args.epochs, batch_size=args.batch_size,
                             amp=args.amp, resume=resume, device=resolve_device(args.device) if args.device else None,
                             seed=args.seed, progress=not args.no_progress,
                             overwrite=getattr(args, "overwrite", False))
    if metrics and "AP" in metrics:
        from .engine import format_metrics

        print(format_metrics(metrics))
    print(f"checkpoints in {work_dir}")
    return 0


def cmd_detect_test(args: argparse.Namespace) -> int:
    from .coco import CocoDetection
    from .engine import evaluate_detector, format_metrics, load_detector

    p = _preset(args)
    if args.json:
        from ..outputs import ensure_writable_file

        ensure_writable_file(args.json, "--json")
    dataset = CocoDetection(args.data_root, args.split)
    device = resolve_device(args.device)
    model, categories = load_detector(p, args.checkpoint, num_classes=None,
                                      device=device)
    if categories is None and model.head.classification_head.num_classes != dataset.num_classes:
        raise SetrError(f"{args.checkpoint}: checkpoint has {model.head.classification_head.num_classes} classes, "
                        f"{dataset.ann_file} has {dataset.num_classes}")
    metrics = evaluate_detector(model, dataset, batch_size=args.batch_size, device=device, amp=args.amp,
                                categories=categories, results_json=args.json, progress=not args.no_progress)
    print(format_metrics(metrics))
    if args.json:
        print(f"results ({metrics['num_detections']} detections) written to {args.json}")
    return 0


def cmd_detect_predict(args: argparse.Namespace) -> int:
    from .engine import load_detector, predict_images

    from ..outputs import ensure_writable_dir

    p = _preset(args)
    ensure_writable_dir(args.out, "--out")
    device = resolve_device(args.device)
    model, categories = load_detector(p, args.checkpoint, device=device)
    if categories is not None:
        names = [c["name"] for c in categories]
    else:
        names = [str(i) for i in range(model.head.classification_head.num_classes)]
    counts: list[int] = []
    written = predict_images(model, args.inputs, args.out, names, score_thresh=args.score_thresh, device=device,
                             box_counts=counts)
    with_boxes = sum(1 for c in counts if c)
    print(f"{sum(counts)} box(es) with score >= {args.score_thresh:g} on {with_boxes} of {len(written)} image(s); "
          f"{len(written)} drawing(s) written to {args.out}"
          + ("" if with_boxes else " (no detections: lower --score-thresh to see weaker ones)"))
    return 0


def add_detect_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``detect`` (train / test / predict) on an ``add_subparsers()`` object; returns its parser."""
    det = subparsers.add_parser("detect", help="RetinaNet-HLG object detection on COCO")
    dsub = det.add_subparsers(dest="detect_command", required=True)

    def common(p, with_set=True):
        p.add_argument("preset", help="retinanet_hlg_{small,medium,large}_fpn_mstrain_1x_coco")
        if with_set:
            p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                           help="preset overrides, e.g. train.lr=2e-4 model.fpn_channels=128")
        p.add_argument("--device", type=argtypes.device, help="cpu, cuda, cuda:1 (default: cuda when available)")
        p.add_argument("--trust-checkpoint", action="store_true",
                       help="UNSAFE: load .pth files that hold Python objects other than tensors and plain values "
                            "(weights_only=False), which runs any code stored in them; only for trusted files")

    p = dsub.add_parser("train", help="train on <root>/annotations/instances_train2017.json + train2017/")
    common(p)
    p.add_argument("--data-root", required=True)
    p.add_argument("--work-dir", help="default work_dirs/<preset>")
    p.add_argument("--epochs", type=argtypes.positive_int)
    p.add_argument("--batch-size", type=argtypes.positive_int, help="global batch size (the recipe's is 16)")
    p.add_argument("--amp", choices=("bf16", "fp16"))
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CKPT",
                   help="continue from CKPT, or from the newest checkpoint in the work dir (none yet: from 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard the checkpoints of another run found in the work dir")
    p.add_argument("--seed", type=argtypes.nonneg_int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_detect_train)

    p = dsub.add_parser("test", help="COCO bbox AP of a checkpoint on <root>/<split>2017")
    common(p)
    p.add_argument("checkpoint")
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--json", help="write the detections here (COCO results format)")
    p.add_argument("--batch-size", type=argtypes.positive_int, default=2)
    p.add_argument("--amp", choices=("bf16", "fp16"))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_detect_test)

    p = dsub.add_parser("predict", help="draw detected boxes into <out>/<stem>_boxes.jpg")
    common(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True)
    p.add_argument("--score-thresh", type=argtypes.fraction, default=0.3)
    p.set_defaults(func=cmd_detect_predict)
    return det
