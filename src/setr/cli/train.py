"""``setr train``: train a segmentation preset (one process, or N with torchrun)."""
from __future__ import annotations

import argparse

from .. import argtypes
from .common import (add_batch_size, add_compile, add_device, add_overwrite, add_preset, add_set, add_trust,
                     preset_for)


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.check import check_training_data
    from ..engine.segmentation import train
    from ..outputs import ensure_writable_dir

    from ..dist import is_main_process, launch_env
    from ..engine.segmentation import validate_preset

    preset = preset_for(args)
    validate_preset(preset, launch_env()[1])  # recipe, data and model config, before the data check
    from ..engine.workdir import default_work_dir

    resume = True if args.resume == "latest" else args.resume
    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir(preset.name, resume)
    ensure_writable_dir(work_dir, "--work-dir")
    # every image and label map readable, sizes matching, labels in range: checked once (cached), before any work;
    # the validation split too, unless --no-validate
    check_training_data(preset.data.dataset, args.data_root, preset.model.num_classes, work_dir,
                        progress=not args.no_progress and is_main_process(), validate=not args.no_validate)
    result = train(preset, args.data_root, work_dir, resume=resume, load_from=args.load_from,
                   pretrained=args.pretrained, amp=args.amp, device=args.device, seed=args.seed,
                   progress=not args.no_progress, validate=not args.no_validate,
                   overwrite=getattr(args, "overwrite", False), compile=args.compile)
    msg = f"trained {preset.name} to iteration {result.iterations}; checkpoints and logs in {work_dir}"
    if result.metrics:
        msg += f"; mIoU {result.metrics['mIoU']:.4f}"
    if is_main_process():
        print(msg)
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a preset (one process, or N with torchrun)")
    add_preset(p, "segmentation")
    p.add_argument("--data-root", required=True, help="dataset folder in the preset's layout")
    p.add_argument("--work-dir", help="checkpoints and logs (default: work_dirs/<preset>)")
    p.add_argument("--iters", type=argtypes.positive_int, help="total iterations (default: the preset's)")
    add_batch_size(p, help="global batch size (default: the preset's)")
    p.add_argument("--amp", choices=("bf16", "fp16"), help="mixed precision")
    add_compile(p)
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CKPT",
                   help="continue from CKPT, or from the latest iter_*.pth in the work dir (none yet: from 0)")
    add_overwrite(p)
    p.add_argument("--load-from", help="start from these weights (a checkpoint), at iteration 0")
    p.add_argument("--pretrained", help="ImageNet ViT/DeiT weights for the backbone: a .pth/.npz/.safetensors "
                                        "file or a timm model name")
    add_set(p)
    p.add_argument("--seed", type=argtypes.nonneg_int, default=0)
    p.add_argument("--no-validate", action="store_true", help="no evaluation during training")
    p.add_argument("--no-progress", action="store_true")
    add_device(p)
    add_trust(p)
    p.set_defaults(func=cmd_train, batch_size_is_training=True)
