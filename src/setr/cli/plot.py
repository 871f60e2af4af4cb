"""``setr plot WORK_DIR [WORK_DIR ...]``: training curves (losses per head and total, learning rates, validation
metrics), several runs overlaid, as ``curves.png`` and ``curves.html``."""
from __future__ import annotations

import argparse
from pathlib import Path


def cmd_plot(args: argparse.Namespace) -> int:
    from ..outputs import ensure_writable_dir
    from ..reports.curves import read_run, write_curves_page

    runs = [read_run(d) for d in args.work_dirs]
    out = args.out or (args.work_dirs[0] if len(args.work_dirs) == 1 else "curves")
    ensure_writable_dir(out, "--out")
    page = write_curves_page(runs, out)
    print(f"wrote {Path(out) / 'curves.png'} and {page}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("plot", help="training curves of one or more work dirs (PNG and an HTML page)")
    p.add_argument("work_dirs", nargs="+", metavar="WORK_DIR", help="work dirs written by `setr train`")
    p.add_argument("--out", metavar="DIR",
                   help="where curves.png and curves.html go (default: the work dir for one run, ./curves for several)")
    p.set_defaults(func=cmd_plot)
