"""``setr demo``: train and evaluate a small SETR on generated data."""
from __future__ import annotations

import argparse

from .. import argtypes


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    metrics = run_demo(args.work_dir, iters=args.iters, progress=not args.no_progress, say=print)
    print(f"demo mIoU {metrics['mIoU']:.4f} (aAcc {metrics['aAcc']:.4f}, precision {metrics['precision']}); "
          f"results in {args.work_dir}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="train and evaluate a small SETR on generated data (CPU, about a minute; "
                                    "torch threads: OMP_NUM_THREADS, else the free physical cores)")
    p.add_argument("--work-dir", default="work_dirs/demo")
    p.add_argument("--iters", type=argtypes.positive_int)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)
