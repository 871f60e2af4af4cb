"""``setr classify {train,test}``: ImageNet-style classification with the HLG models."""
from __future__ import annotations

import argparse
import json
import sys

from .. import argtypes
from ..errors import SetrError
from ..dist import resolve_device
from .common import (STDOUT, add_batch_size, add_checkpoint, add_device, add_json, add_overwrite, add_preset,
                     add_set, add_trust, checkpoint_of, preset_for)
from .report_options import add_report_options, check_report_option


def cmd_classify_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..engine.classification import train_classifier

    p = preset_for(args)
    recipe = p.train
    from ..engine.workdir import default_work_dir
    from ..outputs import ensure_writable_dir

    resume = True if args.resume == "latest" else args.resume
    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir(p.name, resume)
    ensure_writable_dir(work_dir, "--work-dir")
    result = train_classifier(f"hlg_{p.model.variant}", args.data_root, work_dir, recipe, resume=resume, amp=args.amp,
                              device=args.device, seed=args.seed, progress=not args.no_progress,
                              overwrite=getattr(args, "overwrite", False))
    if result:
        top1 = result.get("top1")
        print(f"trained {p.name} for {recipe.epochs} epochs in {work_dir}"
              + (f"; top-1 {top1:.2f}% (best {result['best']['top1']:.2f}%)" if top1 is not None else ""))
    return 0


def cmd_classify_test(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..engine.classification import ClassifyRecipe, build_image_folder, eval_transform, evaluate_classifier
    from ..dist import DistInfo
    from ..models.hlg_timm import load_hlg_checkpoint
    from ..outputs import ensure_writable_file

    p = preset_for(args)
    checkpoint_of(args, "setr classify test")
    variant = p.model.variant
    state_path = Path(args.checkpoint)
    # the EMA's numbers go to their own file: a plain test and an --ema test of one checkpoint keep both
    suffix = "_ema" if args.ema else ""
    to_stdout = args.json == STDOUT
    out = Path(args.json if args.json and not to_stdout
               else state_path.with_name(f"{state_path.stem}_{args.split}_top1{suffix}.json"))
    if not to_stdout:
        ensure_writable_file(out, "--json" if args.json else "--json (default: next to the checkpoint)")
    check_report_option(args, {"--data-root": args.data_root})
    if args.ema:
        from ..engine.state import read_checkpoint

        state = read_checkpoint(state_path)
        if "ema" not in state:
            raise SetrError(f"{state_path}: no EMA weights in this checkpoint")
        # the EMA state dict straight from memory (no temporary file)
        model, arch = load_hlg_checkpoint(state["ema"], variant, source=f"{state_path} (EMA weights)")
    else:
        model, arch = load_hlg_checkpoint(state_path, variant)
    for note in arch["notes"]:
        print(f"note: {note}")
    recipe = ClassifyRecipe(img_size=args.img_size)
    dataset = build_image_folder(Path(args.data_root) / args.split, eval_transform(recipe))
    if len(dataset.classes) != model.num_classes:
        raise SetrError(f"{args.checkpoint}: checkpoint has {model.num_classes} classes, "
                        f"{Path(args.data_root) / args.split} has {len(dataset.classes)}")
    info = DistInfo(device=torch.device(resolve_device(args.device)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    net, report = model.to(info.device), None
    if args.report:  # the same single pass, observed: each batch's outputs and targets go to the report too
        from ..reports.classification import ClassificationReport, observe

        report = ClassificationReport(dataset.classes, worst=args.report_images)
        net, loader = observe(net, loader, report, [path for path, _ in dataset.samples])
    metrics = evaluate_classifier(net, loader, info)
    metrics.update({"preset": p.name, "checkpoint": str(args.checkpoint), "split": args.split, "ema": args.ema})
    if to_stdout:
        print(json.dumps(metrics, indent=2))
    else:
        from ..io.atomic import atomic_write_text

        atomic_write_text(out, json.dumps(metrics, indent=2))
        print(f"top-1 {metrics['top1']:.2f}%  top-5 {metrics['top5']:.2f}%  on {metrics['images']} images; {out}")
    if report is not None:
        scores = {k: metrics[k] for k in ("top1", "top5", "loss", "images")}
        meta = {"preset": p.name, "checkpoint": str(args.checkpoint), "split": args.split, "ema weights": args.ema,
                "image size": args.img_size, "data_root": str(args.data_root)}
        page = report.write(args.report, scores, meta)
        print(f"report written to {page}", file=sys.stderr if to_stdout else sys.stdout)
    return 0


def register(sub) -> None:
    cls = sub.add_parser("classify", help="ImageNet-style classification with the HLG models")
    csub = cls.add_subparsers(dest="classify_command", required=True)
    p = csub.add_parser("train", help="train an HLG classifier on <root>/train/<class>/*")
    add_preset(p, "classification", help="hlg_tiny, hlg_small, hlg_medium or hlg_large")
    p.add_argument("--data-root", required=True)
    p.add_argument("--work-dir")
    p.add_argument("--epochs", type=argtypes.positive_int)
    add_batch_size(p, help="global batch (lr scales as 5e-4 x batch / 512)")
    p.add_argument("--amp", choices=("bf16", "fp16"))
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CKPT")
    add_overwrite(p)
    add_set(p, "train.mixup=0 train.drop_path=0.1")
    p.add_argument("--seed", type=argtypes.nonneg_int, default=0)
    p.add_argument("--no-progress", action="store_true")
    add_device(p)
    add_trust(p)
    p.set_defaults(func=cmd_classify_train, batch_size_is_training=True)
    p = csub.add_parser("test", help="top-1 / top-5 of a checkpoint on <root>/<split>/<class>/*")
    add_preset(p, "classification", help="hlg_tiny, hlg_small, hlg_medium or hlg_large")
    add_checkpoint(p, required=True, positional_too=True, help="ours (epoch_N.pth) or the authors' released .pth")
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--ema", action="store_true", help="evaluate the EMA weights of one of our checkpoints")
    p.add_argument("--img-size", type=argtypes.positive_int, default=224)
    add_batch_size(p, 64, help="images per forward pass (default 64)")
    p.add_argument("--workers", type=argtypes.nonneg_int, default=4)
    add_json(p, "the metrics", default="<checkpoint>_<split>_top1.json next to the checkpoint")
    add_report_options(p)
    add_device(p)
    add_trust(p)
    p.set_defaults(func=cmd_classify_test)
