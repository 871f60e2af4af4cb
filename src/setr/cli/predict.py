"""``setr predict``: label maps and overlays for image files or folders."""
from __future__ import annotations

import argparse
import sys

from .. import argtypes
from .common import (add_batch_size, add_checkpoint, add_compile, add_device, add_flip_directions, add_preset, add_set,
                     add_speed_options, add_trust)


def preset_mismatch(checkpoint, preset: str, overrides=(), doing: str = "predicting") -> str | None:
    """A one-line warning when one of our checkpoints holds another model than ``preset`` describes (its own
    stored configuration is used, the preset's architecture is not); None when they agree or the file is foreign."""
    from ..model_files import architecture, read_config
    from ..presets import with_overrides

    stored = read_config(checkpoint)
    if stored is None:
        return None
    a, b = architecture(stored), architecture(with_overrides(preset, overrides, "segmentation").model)
    keys = [k for k in ("num_classes", "backbone", "decode_head") if a[k] != b[k]]
    if not keys:
        return None
    detail = []
    for k in keys:
        if isinstance(a[k], dict):
            detail += [f"{k}.{f}" for f in a[k] if a[k].get(f) != b[k].get(f)]
        else:
            detail.append(k)
    return (f"warning: {checkpoint} was trained as another model than preset {preset} ({', '.join(detail[:4])}"
            f"{' ...' if len(detail) > 4 else ''} differ): {doing} with the checkpoint's own configuration")


def cmd_predict(args: argparse.Namespace) -> int:
    from ..errors import SetrError
    from ..inference import Segmenter
    from pathlib import Path

    from ..batch_predict import collect_inputs
    from ..outputs import ensure_writable_dir

    from ..presets import resolve_name

    resolve_name(args.preset, "segmentation")  # a preset of another task names the command that owns it
    # before loading a large model and before --out is even created: a checkpoint given where the images go, a
    # missing or unreadable input, an --out that would replace an input (the inputs are walked once, here)
    collected = collect_inputs(args.inputs, Path(args.out))
    if args.checkpoint is None and not args.random_weights:
        raise SetrError("no weights: pass the checkpoint with -c/--checkpoint (or --random-weights to try the "
                        "pipeline with an untrained network)")
    if args.checkpoint is not None and args.random_weights:
        raise SetrError("--random-weights and --checkpoint: choose one")
    ensure_writable_dir(args.out, "--out")  # after every one-line refusal: a refused run leaves no folder behind
    from ..batch_predict import format_summary, local_device, predict_files

    seg = Segmenter.from_preset(args.preset, args.checkpoint, overrides=args.set, device=local_device(args.device),
                                mode=args.mode, aug=True if args.aug else None, window_batch=args.window_batch,
                                precision=args.precision, compile=args.compile, flip_directions=args.flip_directions)
    seg.progress = not args.no_progress  # a bar over the windows of very large images
    mismatch = preset_mismatch(args.checkpoint, args.preset, args.set) if args.checkpoint is not None else None
    if mismatch:  # once the checkpoint has loaded (a file refused is its one line alone)
        print(mismatch, file=sys.stderr)
    if args.random_weights:
        print("warning: --random-weights: predicting with an untrained network (the label maps mean nothing)",
              file=sys.stderr)
    summary = predict_files(seg, args.inputs, args.out, batch_size=args.batch_size, workers=args.workers,
                            progress=not args.no_progress, write_summary=True, max_size=args.max_size,
                            collected=collected)
    if summary["rank"] == 0:  # torchrun: every process predicts its shard, rank 0 reports
        print(format_summary(summary, args.out) + f" (mode={seg.mode}, aug={'ms+flip' if seg.aug else 'off'}, "
              f"device={seg.device}, precision={seg.precision})")
    return 1 if summary.get("failed") else 0  # the rest is written; the exit status says not everything was


def register(sub) -> None:
    p = sub.add_parser("predict", help="segment images or folders: <stem>.png label maps and <stem>_overlay.jpg")
    add_preset(p, "segmentation")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    add_checkpoint(p, help="our .safetensors checkpoint or an original SETR .pth (required unless --random-weights)")
    p.add_argument("--random-weights", action="store_true",
                   help="predict with an untrained network (to try the pipeline; the label maps mean nothing)")
    p.add_argument("--out", "-o", required=True,
                   help="output folder: <name>.png label maps, <name>_overlay.jpg, predict_summary.json (which input "
                        "gave which files); <name> is the image's stem, or <stem>_<ext> / <folder>_<stem> where "
                        "several inputs share a stem; never an input folder (a folder inside one is left out of "
                        "the inputs)")
    p.add_argument("--mode", choices=("whole", "slide"),
                   help="default: the preset's own test mode (`setr info PRESET`; whole for the demo preset, "
                        "slide for most Cityscapes / ADE20K ones)")
    p.add_argument("--max-size", type=argtypes.positive_int, default=None, metavar="N",
                   help="shrink images whose longer side exceeds N pixels before the network (label maps and "
                        "overlays keep the image's size); bounds the time of very large images")
    p.add_argument("--aug", action="store_true", help="multi-scale + flip test")
    add_flip_directions(p)
    add_set(p, "test.img_scale=[1024,512]")
    add_speed_options(p)
    add_compile(p)
    add_batch_size(p, 1, help="images per forward pass (consecutive images of equal size; default 1)")
    p.add_argument("--workers", type=argtypes.nonneg_int, default=2,
                   help="image-decoding worker processes per process (default 2; 0 decodes in the main process)")
    p.add_argument("--no-progress", action="store_true")
    add_device(p)
    add_trust(p)
    p.set_defaults(func=cmd_predict)
