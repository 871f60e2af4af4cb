"""``setr test``: evaluate a checkpoint on a dataset split."""
from __future__ import annotations

import argparse

from ..errors import SetrError
from ..dist import resolve_device
from .common import add_compile, add_device, add_flip_directions, add_speed_options, add_trust, preset_from_args

LISTED_DATASETS = ("cityscapes", "ade20k", "pascal_context", "folder")


def _load_for_test(args, preset):
    from ..model_files import config_for, load_model
    from ..inference import Segmenter

    from ..overrides import apply_model_overrides

    cfg = config_for(args.checkpoint, preset.model)
    if cfg is not preset.model:  # one of ours: its stored config, with this command's model.* --set on top
        cfg = apply_model_overrides(cfg, [a for a in args.set if a.strip().startswith("model.")])
    model, cfg = load_model(args.checkpoint, cfg)
    seg = Segmenter(model, cfg, device=resolve_device(args.device), mode=args.mode, aug=True if args.aug else None,
                    window_batch=args.window_batch, precision=args.precision, flip_directions=args.flip_directions,
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

    preset = preset_from_args(args)
    if args.format_only and not args.out:
        raise SetrError("--format-only needs --out DIR for the prediction files")
    json_path = Path(args.json or Path(args.checkpoint).with_name(f"{Path(args.checkpoint).stem}_{args.split}_metrics.json"))
    for option, folder in (("--out", args.out), ("--show-dir", args.show_dir)):
        if folder:
            ensure_writable_dir(folder, option)
    if not args.format_only:
        ensure_writable_file(json_path, "--json" if args.json else "--json (default: next to the checkpoint)")
    seg = _load_for_test(args, preset)
    # the dataset the checkpoint was trained on (stored with it) unless --set data.dataset says otherwise
    name = preset.data.dataset
    if seg.cfg.dataset in LISTED_DATASETS and not any(s.startswith("data.dataset=") for s in args.set):
        name = seg.cfg.dataset
    dataset = build_dataset(name, args.data_root, args.split, seg.cfg.num_classes,
                            require_masks=not args.format_only)
    writer = SubmissionWriter(name, args.out) if args.out else None
    metrics = evaluate(seg, dataset, progress=not args.no_progress, show_dir=args.show_dir, formatter=writer)
    if writer is not None:
        print(f"wrote {len(writer.written)} prediction files to {args.out}")
    if args.format_only or not metrics:
        return 0
    metrics.update({"preset": preset.name, "checkpoint": str(args.checkpoint), "split": args.split,
                    "mode": seg.mode, "aug": seg.aug, "precision": seg.precision, "num_images": len(dataset)})
    print(format_table(metrics))  # the numbers first: a failing write below cannot take them away
    atomic_write_text(json_path, to_json(metrics))
    print(f"metrics written to {json_path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("test", help="evaluate a checkpoint on a dataset split (mIoU, mAcc, aAcc, per class)")
    p.add_argument("preset")
    p.add_argument("checkpoint")
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--mode", choices=("whole", "slide"))
    p.add_argument("--aug", action="store_true", help="multi-scale + flip test")
    add_flip_directions(p)
    p.add_argument("--format-only", action="store_true", help="only write prediction files (needs --out)")
    p.add_argument("--out", help="write prediction files in the evaluation server's format here")
    p.add_argument("--show-dir", help="write overlays here")
    p.add_argument("--json", help="metrics JSON path (default: next to the checkpoint)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE")
    add_speed_options(p)
    add_compile(p)
    p.add_argument("--no-progress", action="store_true")
    add_device(p)
    add_trust(p)
    p.set_defaults(func=cmd_test)
