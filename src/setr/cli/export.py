"""``setr export``: whole-mode logits to ONNX."""
from __future__ import annotations

import argparse
import sys

from .. import argtypes
from .common import add_checkpoint, add_preset, add_set, add_trust, preset_for


def cmd_export(args: argparse.Namespace) -> int:
    from ..model_files import load_model, read_config
    from ..config import build_model
    from ..export import check_onnx, export_onnx

    from ..outputs import ensure_writable_file

    from ..config import validate_model_config

    preset = preset_for(args)
    validate_model_config(preset.model)
    if args.checkpoint:
        from ..io.paths import check_outputs_apart

        check_outputs_apart(args.onnx, [args.checkpoint], "--onnx")  # never written over the weights it reads
    ensure_writable_file(args.onnx, "--onnx")
    if args.checkpoint:
        stored = read_config(args.checkpoint)
        model, cfg = load_model(args.checkpoint, stored if stored is not None and not args.set else preset.model)
    else:
        print("warning: no --checkpoint given: exporting random weights", file=sys.stderr)
        cfg = preset.model
        model = build_model(cfg, with_aux=False)
    shape = tuple(args.shape) * (2 if len(args.shape) == 1 else 1) if args.shape else tuple(cfg.backbone.img_size)
    path = export_onnx(model, args.onnx, shape, dynamic=args.dynamic)
    msg = f"wrote {path} (input 'img' (B, 3, {shape[0]}, {shape[1]}) normalised, output 'logits')"
    if args.verify:
        msg += f"; onnxruntime vs PyTorch max abs diff {check_onnx(model, path, shape):.2e}"
    print(msg)
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="export whole-mode logits to ONNX")
    add_preset(p, "segmentation")
    add_checkpoint(p)
    p.add_argument("--onnx", required=True, help="output .onnx file")
    argtypes.add_shape(p)
    p.add_argument("--dynamic", action="store_true", help="free batch dimension")
    p.add_argument("--verify", action="store_true", help="compare onnxruntime with PyTorch on a random input")
    add_set(p, "model.num_classes=19")
    add_trust(p)
    p.set_defaults(func=cmd_export)
