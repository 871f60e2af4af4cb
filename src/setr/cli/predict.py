"""``setr predict``: label maps and overlays for image files or folders."""
from __future__ import annotations

import argparse
import sys

from .. import argtypes
from .common import add_compile, add_device, add_flip_directions, add_speed_options, add_trust


def cmd_predict(args: argparse.Namespace) -> int:
    from ..inference import Segmenter
    from ..io.images import find_images

    from ..outputs import ensure_writable_dir

    find_images(args.inputs)  # fail on a bad input before loading a large model
    ensure_writable_dir(args.out, "--out")
    from ..batch_predict import format_summary, local_device, predict_files

    seg = Segmenter.from_preset(args.preset, args.checkpoint, overrides=args.set, device=local_device(args.device),
                                mode=args.mode, aug=True if args.aug else None, window_batch=args.window_batch,
                                precision=args.precision, compile=args.compile, flip_directions=args.flip_directions)
    seg.progress = not args.no_progress  # a bar over the windows of very large images
    if args.checkpoint is None:
        print("warning: no --checkpoint given: predicting with random weights", file=sys.stderr)
    summary = predict_files(seg, args.inputs, args.out, batch_size=args.batch_size, workers=args.workers,
                            progress=not args.no_progress, write_summary=True)
    if summary["rank"] == 0:  # torchrun: every process predicts its shard, rank 0 reports
        print(format_summary(summary, args.out) + f" (mode={seg.mode}, aug={'ms+flip' if seg.aug else 'off'}, "
              f"device={seg.device}, precision={seg.precision})")
    return 1 if summary.get("failed") else 0  # the rest is written; the exit status says not everything was


def register(sub) -> None:
    p = sub.add_parser("predict", help="segment images or folders: <stem>.png label maps and <stem>_overlay.jpg")
    p.add_argument("preset")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--checkpoint", "-c", help="our .safetensors checkpoint or an original SETR .pth")
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--mode", choices=("whole", "slide"), help="default: the preset's (slide)")
    p.add_argument("--aug", action="store_true", help="multi-scale + flip test")
    add_flip_directions(p)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override preset values (model.*; e.g. model.test.img_scale=[1024,512])")
    add_speed_options(p)
    add_compile(p)
    p.add_argument("--batch-size", type=argtypes.positive_int, default=1,
                   help="images per forward pass (consecutive images of equal size; default 1)")
    p.add_argument("--workers", type=argtypes.nonneg_int, default=2,
                   help="image-decoding worker processes per process (default 2; 0 decodes in the main process)")
    p.add_argument("--no-progress", action="store_true")
    add_device(p)
    add_trust(p)
    p.set_defaults(func=cmd_predict)
