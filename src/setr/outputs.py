"""Output locations: checked for writability before any computation, and small files written atomically with
the permissions the user's umask gives every other file (logs, JSON, weights alike)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import SetrError


def default_file_mode() -> int:
    """0o666 less the process umask: the mode ``open(path, "w")`` gives a new file (0o644 under umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def ensure_writable_dir(path: str | os.PathLike, option: str) -> Path:
    """Create ``path`` (and its parents) if needed and prove that a file can be written in it; a file in the
    way, a read-only folder or a missing permission is one line naming ``option`` and the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SetrError(f"{option} {path}: is a file, expected a folder")
    for parent in path.parents:  # a file standing where a parent folder should be
        if parent.exists():
            if not parent.is_dir():
                raise SetrError(f"{option} {path}: {parent} is a file, not a folder")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SetrError(f"{option} {path}: cannot create the folder ({_reason(exc)})") from None
    try:
        fd, probe = tempfile.mkstemp(dir=str(path), prefix=".setr_write_check.")
    except OSError as exc:
        raise SetrError(f"{option} {path}: folder is not writable ({_reason(exc)})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def ensure_writable_file(path: str | os.PathLike, option: str) -> Path:
    """An output file: not a folder, and its folder writable (created if needed)."""
    path = Path(path)
    if path.is_dir():
        raise SetrError(f"{option} {path}: is a folder, expected a file name")
    ensure_writable_dir(path.parent if str(path.parent) else Path("."), option + " (its folder)")
    return path
