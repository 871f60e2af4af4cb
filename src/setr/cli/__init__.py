"""The ``setr`` command line. Thin: every subcommand calls the library.

One module per command group, each registering its own sub-parser (``register(subparsers)``);
:func:`main` is the console entry point.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..errors import SetrError
from . import app, benchmark, classify, convert, demo, detect, evaluate, export, info, plot, predict, test, train

# the order of `setr --help` (after `detect`)
GROUPS = (info, predict, train, test, evaluate, benchmark, export, classify, convert, demo, plot, app)


class _OneLineParser(argparse.ArgumentParser):
    """A bad option is one line (what is wrong, and where the usage is), not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="setr", description="SETR semantic segmentation: presets, inference, tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    detect.register(sub)
    for group in GROUPS:
        group.register(sub)
    return parser


def _one_line(exc: Exception) -> str:
    """The message; for an error re-raised from a data-loader worker, the original message only."""
    msg = str(exc)
    if "Original Traceback" in msg:
        last = [ln for ln in msg.splitlines() if ln.strip()][-1]
        msg = last.split("SetrError: ", 1)[-1]
    return msg


def _trust_scope(args: argparse.Namespace):
    """--trust-checkpoint: every weights file the command reads may unpickle Python objects (unsafe)."""
    if not getattr(args, "trust_checkpoint", False):
        import contextlib

        return contextlib.nullcontext()
    from ..io.weights import trusted_checkpoints

    return trusted_checkpoints(True)


def _os_error_line(exc: OSError) -> str:
    import errno

    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p]
    where = " -> ".join(str(p) for p in paths)
    hint = {errno.ENOSPC: " (free some space or write elsewhere)", errno.EACCES: " (check the permissions)",
            errno.EROFS: " (a read-only file system: write elsewhere)"}.get(exc.errno, "")
    return f"{where}: {reason}{hint}" if where else f"{reason}{hint}"


class _StderrLogHandler(logging.Handler):
    """The library logs through ``logging``; the command line shows its warnings as one line each on stderr
    (looked up at each message, so redirected streams are honoured)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)


def _show_library_warnings() -> None:
    log = logging.getLogger("setr")
    if not any(isinstance(h, _StderrLogHandler) for h in log.handlers):
        handler = _StderrLogHandler(level=logging.WARNING)
        log.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _show_library_warnings()
    try:
        with _trust_scope(args):
            return int(args.func(args) or 0)
    except SetrError as exc:
        print(f"setr {args.command}: error: {_one_line(exc)}", file=sys.stderr)  # one line, no traceback
        return 1
    except ImportError as exc:  # an optional extra not installed: name it, in one line
        from ..extras import missing_extra

        msg = missing_extra(exc)
        if msg is None:
            raise
        print(f"setr {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        if getattr(exc, "checkpointed", False):  # training stopped on SIGINT / SIGTERM: saved, resume hint printed
            return 0
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `setr presets | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # permissions, not-a-directory, disk full, ...: the path and the reason, one line
        print(f"setr {args.command}: error: {_os_error_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
