"""``--report DIR`` and ``--report-images N``, shared by the evaluation commands (test, evaluate)."""
from __future__ import annotations

import argparse

from .. import argtypes


def add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report", metavar="DIR",
                   help="write report.html (one page that opens offline: per-class chart, confusion matrix, the "
                        "worst images) and report.json with the same numbers into DIR")
    p.add_argument("--report-images", type=argtypes.positive_int, default=None, metavar="N",
                   help="with --report: how many of the worst images (by their own mIoU) the page shows "
                        "(default: 8)")


def check_report_option(args: argparse.Namespace, inputs: dict) -> None:
    """Before any computation: the report folder is writable and is not one of the command's input folders;
    ``args.report_images`` gets its default."""
    from ..errors import SetrError
    from ..outputs import ensure_writable_dir
    from ..reports.html import check_report_dir

    if not args.report:
        if args.report_images is not None:
            raise SetrError("--report-images needs --report DIR")
        return
    args.report_images = args.report_images or 8
    check_report_dir(args.report, inputs)
    ensure_writable_dir(args.report, "--report")
