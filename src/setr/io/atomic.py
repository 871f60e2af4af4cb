"""Writing a file so that readers never see half of it: weights, training states, model folders, logs."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import SetrError
from ..outputs import default_file_mode


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see a half-written file. The file gets
    the umask's mode, as logs do (``mkstemp`` alone would make it 0600); a failed write (a full disk) is one
    line naming ``path`` and the free space, and leaves no temporary file."""
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            write(tmp)
            with open(tmp, "rb+") as f:  # a full disk can surface only here: never rename a truncated file in
                os.fsync(f.fileno())
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
            raise _write_failed(path, exc) from None
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` into ``path`` through :func:`atomic_write` (JSON summaries, metrics, caches)."""
    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def _write_failed(path: Path, exc: Exception) -> SetrError:
    import shutil

    reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    try:
        free = f"; {shutil.disk_usage(path.parent).free / 2 ** 20:.0f} MB free on its disk"
    except OSError:
        free = ""
    return SetrError(f"{path}: could not be written ({reason}{free}); nothing was replaced")
