"""``setr benchmark``: latency, throughput, memory of a forward or training step."""
from __future__ import annotations

import argparse

from .. import argtypes
from ..dist import resolve_device
from .common import (add_batch_size, add_compile, add_device, add_json, add_preset, add_set, deprecated, emit_json,
                     preset_for)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from ..benchmark import benchmark, format_result

    if args.batch is not None:
        deprecated(f"--batch {args.batch}: write --batch-size {args.batch}")
        args.batch_size = args.batch_size or args.batch
    preset = preset_for(args)
    shape = tuple(args.shape) * (2 if args.shape and len(args.shape) == 1 else 1) if args.shape else None
    r = benchmark(preset, shape, args.batch_size or 1, args.precision, args.compile, args.train, args.mode,
                  resolve_device(args.device), runs=args.runs, window_batch=args.window_batch)
    if args.json:
        emit_json(args.json, r)
    else:
        print(format_result(r))
    return 0


def register(sub) -> None:
    p = sub.add_parser("benchmark", help="latency, images/s, peak memory and TFLOP/s of a forward or training step")
    add_preset(p, "segmentation")
    argtypes.add_shape(p)
    add_batch_size(p, help="images per forward / training step (default 1)")
    p.add_argument("--batch", type=argtypes.positive_int, default=None, help=argparse.SUPPRESS)  # deprecated
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16", "int8", "int8-static"),
                   help="auto (the default path): bf16 autocast where the hardware has bf16 matrix units, else "
                        "fp32; int8: CPU inference with dynamic int8 encoder linear layers; int8-static: static "
                        "int8 linear and conv layers (torchao PT2E, compiled; first call reported apart)")
    add_compile(p)
    p.add_argument("--train", action="store_true", help="time a training step (aux heads, SGD) instead")
    p.add_argument("--mode", default="whole", choices=("whole", "slide"))
    p.add_argument("--window-batch", type=argtypes.positive_int, default=None)
    p.add_argument("--runs", type=argtypes.positive_int, default=5)
    add_set(p, "model.num_classes=19")
    add_json(p, "the measurements")
    add_device(p)
    p.set_defaults(func=cmd_benchmark)
