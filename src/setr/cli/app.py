"""``setr app``: a local demo page (drop an image, see the classes over it), on 127.0.0.1 only."""
from __future__ import annotations

import argparse
import sys

from .. import argtypes
from ..errors import SetrError
from .common import add_speed_options, add_trust


def _segmenter(args: argparse.Namespace):
    from ..inference import Segmenter

    device = args.device or "cpu"
    kwargs = {"device": device, "precision": args.precision, "window_batch": args.window_batch}
    if args.model:
        if args.checkpoint or args.preset:
            raise SetrError("give either MODEL (a pretrained folder or Hub repo id) or --preset/--checkpoint, "
                            "not both")
        return Segmenter.from_pretrained(args.model, **kwargs), str(args.model)
    if args.checkpoint:
        return (Segmenter.from_checkpoint(args.checkpoint, args.preset, overrides=args.set, **kwargs),
                f"{args.preset or ''} {args.checkpoint}".strip())
    if args.preset:
        print("warning: no --checkpoint given: the page shows a model with random weights", file=sys.stderr)
        return Segmenter.from_preset(args.preset, overrides=args.set, **kwargs), args.preset
    raise SetrError("which model? give a pretrained folder or Hub repo id, or --preset NAME -c CHECKPOINT")


def cmd_app(args: argparse.Namespace) -> int:
    from ..app import SegmentationDemo, default_examples, examples_from, make_server

    examples = examples_from(args.examples) if args.examples else default_examples()
    seg, what = _segmenter(args)
    demo = SegmentationDemo(seg, examples, title=f"setr demo: {what}")
    server = make_server(demo, args.port)
    print(f"serving {what} on http://127.0.0.1:{server.server_port}/ (device {seg.device}, precision "
          f"{seg.precision}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
    return 0


def register(sub) -> None:
    p = sub.add_parser("app", help="a local demo page on 127.0.0.1: drop an image, see the predicted classes")
    p.add_argument("model", nargs="?", help="a pretrained folder or Hugging Face Hub repo id (or use --preset/-c)")
    p.add_argument("--preset", help="preset name (with --checkpoint; alone: random weights)")
    p.add_argument("--checkpoint", "-c", help="our .safetensors checkpoint or an original SETR .pth")
    p.add_argument("--port", type=argtypes.nonneg_int, default=7860,
                   help="port on 127.0.0.1 (default 7860; 0 picks a free one)")
    p.add_argument("--examples", nargs="+", metavar="IMAGE|FOLDER",
                   help="images offered as examples (default: three generated shapes scenes)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override model.* preset values")
    add_speed_options(p)
    p.add_argument("--device", default=None, type=argtypes.device, help="default: cpu")
    add_trust(p)
    p.set_defaults(func=cmd_app)
