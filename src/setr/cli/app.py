"""``setr app``: a local demo page (drop an image, see the classes over it), on 127.0.0.1 only."""
from __future__ import annotations

import argparse
import sys

from .. import argtypes
from ..errors import SetrError
from .common import add_speed_options, add_trust


def _preset_kind(name: str) -> str:
    """detection for a detection preset's name (the registry's lookup rule), else segmentation."""
    from ..presets import names

    key = name[:-3] if name.endswith(".py") else name
    return "detection" if key.lower() in {n.lower() for n in names("detection")} else "segmentation"


def _check_weights(args: argparse.Namespace) -> None:
    """No silent random weights: a preset alone needs --random-weights, said on purpose."""
    if args.random_weights:
        if args.model:
            raise SetrError("--random-weights and MODEL (a pretrained folder or Hub repo id): choose one")
        if args.checkpoint:
            raise SetrError("--random-weights and --checkpoint: choose one")
        if not args.preset:
            raise SetrError("--random-weights needs --preset NAME (the network to show untrained)")
    elif args.preset and not args.checkpoint and not args.model:
        raise SetrError(f"--preset {args.preset}: no weights: pass the checkpoint with -c/--checkpoint (or "
                        "--random-weights to show an untrained network)")


def _load(args: argparse.Namespace):
    """(kind, the Segmenter or Detector, what it is in words) for the command's options."""
    from ..hub import read_pretrained_config

    device = args.device or "cpu"
    _check_weights(args)
    if args.model:
        if args.checkpoint or args.preset:
            raise SetrError("give either MODEL (a pretrained folder or Hub repo id) or --preset/--checkpoint, "
                            "not both")
        kind = read_pretrained_config(args.model)[0].get("kind", "segmentation")
        if kind not in ("segmentation", "detection"):
            raise SetrError(f"{args.model}: holds a {kind} model; setr app shows segmentation models and "
                            "detectors")
    elif args.preset or args.checkpoint:
        kind = _preset_kind(args.preset) if args.preset else "segmentation"
    else:
        raise SetrError("which model? give a pretrained folder or Hub repo id, or --preset NAME -c CHECKPOINT")
    if kind == "detection":
        if args.window_batch is not None:
            raise SetrError("--window-batch is for segmentation models (a detector sees the whole image)")
        return kind, *_detector(args, device)
    if args.score_thresh is not None:
        raise SetrError("--score-thresh is for detectors (a segmentation model's page has no scores)")
    return kind, *_segmenter(args, device)


def _segmenter(args: argparse.Namespace, device: str):
    from ..inference import Segmenter

    kwargs = {"device": device, "precision": args.precision, "window_batch": args.window_batch}
    if args.model:
        return Segmenter.from_pretrained(args.model, **kwargs), str(args.model)
    if args.checkpoint:
        return (Segmenter.from_checkpoint(args.checkpoint, args.preset, overrides=args.set, **kwargs),
                f"{args.preset or ''} {args.checkpoint}".strip())
    print("warning: --random-weights: the page shows an untrained network (the classes mean nothing)",
          file=sys.stderr)
    return Segmenter.from_preset(args.preset, overrides=args.set, **kwargs), args.preset


def _detector(args: argparse.Namespace, device: str):
    from ..detection.api import Detector

    kwargs = {"device": device, "precision": args.precision}
    if args.model:
        return Detector.from_pretrained(args.model, **kwargs), str(args.model)
    if args.checkpoint:
        return (Detector.from_checkpoint(args.checkpoint, args.preset, overrides=args.set,
                                         trust_checkpoint=args.trust_checkpoint, **kwargs),
                f"{args.preset} {args.checkpoint}")
    print("warning: --random-weights: the page shows an untrained network (the boxes mean nothing)",
          file=sys.stderr)
    return Detector.from_preset(args.preset, overrides=args.set, **kwargs), args.preset


def cmd_app(args: argparse.Namespace) -> int:
    from ..app import (DEFAULT_SCORE_THRESH, DetectionDemo, SegmentationDemo, default_examples, examples_from,
                       make_server)

    examples = examples_from(args.examples) if args.examples else None
    kind, model, what = _load(args)
    examples = examples if examples is not None else default_examples()
    title = f"setr demo: {what}"
    if kind == "detection":
        thresh = DEFAULT_SCORE_THRESH if args.score_thresh is None else args.score_thresh
        demo = DetectionDemo(model, examples, title=title, score_thresh=thresh)
    else:
        demo = SegmentationDemo(model, examples, title=title)
    server = make_server(demo, args.port)
    print(f"serving {what} on http://127.0.0.1:{server.server_port}/ (device {model.device}, precision "
          f"{model.precision}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
    return 0


def register(sub) -> None:
    p = sub.add_parser("app", help="a local demo page on 127.0.0.1: drop an image, see the predicted classes "
                                        "(or, for a detector, the boxes with labels and scores)")
    p.add_argument("model", nargs="?", help="a pretrained folder or Hugging Face Hub repo id (or use --preset/-c)")
    p.add_argument("--preset", help="segmentation or detection preset name (with --checkpoint, or --random-weights)")
    p.add_argument("--checkpoint", "-c", help="our .safetensors checkpoint, an original SETR .pth, or (with a "
                   "detection preset) an mmdet RetinaNet-HLG .pth")
    p.add_argument("--random-weights", action="store_true",
                   help="with --preset and no checkpoint: show the untrained network (its answers mean nothing)")
    p.add_argument("--score-thresh", type=argtypes.fraction, default=None,
                   help="detectors: the score threshold slider's start (default 0.3)")
    p.add_argument("--port", type=argtypes.nonneg_int, default=7860,
                   help="port on 127.0.0.1 (default 7860; 0 picks a free one)")
    p.add_argument("--examples", nargs="+", metavar="IMAGE|FOLDER",
                   help="images offered as examples (default: three generated shapes scenes)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override model.* preset values")
    add_speed_options(p)
    p.add_argument("--device", default=None, type=argtypes.device, help="default: cpu")
    add_trust(p)
    p.set_defaults(func=cmd_app)
