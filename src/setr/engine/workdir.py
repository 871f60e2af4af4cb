"""The work dir of a training run: one run at a time (``train.lock``), its checkpoints listed and pruned, the
default location that never adopts another run's files, stale temporaries of interrupted writes removed."""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from pathlib import Path

from ..errors import SetrError

CKPT_RE = re.compile(r"^(iter|epoch)_(\d+)\.pth$")
LOCK_NAME = "train.lock"
# what a new run (``overwrite``) removes besides the checkpoints: the previous run's final files
RUN_FILES = ("final.safetensors", "final.json", "best.safetensors", "best.json", "metrics.json")
logger = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(work_dir: Path) -> tuple[Path, str | None]:
    """Take ``work_dir/train.lock`` (pid, host, start time); refuse a live holder in one line. A lock left by a
    process that no longer exists on this host is taken over; the warning is returned."""
    path = work_dir / LOCK_NAME
    host = socket.gethostname()
    me = json.dumps({"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    warning = None
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
                pid, where = int(holder["pid"]), str(holder["host"])
            except (OSError, ValueError, KeyError, TypeError):
                pid, where = None, host  # half-written by a process killed right after creating it
            if pid is not None and where != host:
                raise SetrError(f"{work_dir}: in use by a training run on host {where} (pid {pid}); if that run is "
                                f"dead, delete {path}, or pick another --work-dir") from None
            if pid is not None and _pid_alive(pid):
                raise SetrError(f"{work_dir}: in use by a live training run (pid {pid} on {where}, since "
                                f"{holder.get('started', '?')}): wait for it to end or pick another --work-dir") from None
            warning = (f"warning: {path}: taking over the stale lock of pid {pid} on {where} (that process is gone)"
                       if pid is not None else f"warning: {path}: taking over an unreadable stale lock")
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return path, warning
    raise SetrError(f"{work_dir}: could not take {path} (another run keeps taking it): pick another --work-dir")


def release_lock(path: Path | None) -> None:
    if path is None:
        return
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def remove_stale_temporaries(work_dir: Path) -> list[Path]:
    """Temporary files of checkpoint / weights writes that a killed process left behind (``.NAME.XXXX.tmp``,
    see :func:`setr.io.atomic.atomic_write`). Call with the work dir's lock held."""
    removed = []
    for p in work_dir.glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def list_checkpoints(work_dir: Path, iters_per_epoch: int | None = None) -> list[tuple[int, Path]]:
    """``iter_N.pth`` / ``epoch_N.pth`` in ``work_dir`` as (iteration, path), oldest first (an epoch checkpoint
    after an iteration one of the same iteration)."""
    found = []
    for p in Path(work_dir).glob("*.pth"):
        m = CKPT_RE.match(p.name)
        if m:
            n = int(m.group(2))
            is_epoch = m.group(1) == "epoch"
            found.append(((n * (iters_per_epoch or 1) if is_epoch else n), int(is_epoch), p))
    return [(it, p) for it, _, p in sorted(found)]


def default_work_dir(name: str, resume: bool | str | Path | None = None, root: str | Path = "work_dirs") -> Path:
    """The work dir when ``--work-dir`` is not given: ``work_dirs/<name>``, unless another run's checkpoints are
    there; then the first free ``work_dirs/<name>-N`` (a new run never adopts or replaces another run's files,
    and the same command line still runs). With ``--resume`` (latest): the newest of those holding checkpoints."""
    base = Path(root) / name
    candidates = [base, *sorted((p for p in Path(root).glob(f"{name}-*") if p.name[len(name) + 1:].isdigit()),
                                key=lambda p: int(p.name[len(name) + 1:]))]
    if resume is True or resume == "latest":
        held = [(max(p.stat().st_mtime for _, p in list_checkpoints(d)), d) for d in candidates
                if d.is_dir() and list_checkpoints(d)]
        return max(held)[1] if held else base
    for n, d in enumerate([base, *(Path(root) / f"{name}-{k}" for k in range(2, 10_000))]):
        if not (d.is_dir() and list_checkpoints(d)):
            if n:
                logger.warning(f"{base} holds another run: this run writes to {d} (choose with --work-dir)")
            return d
    raise SetrError(f"{base}: no free work dir next to it; pass --work-dir")


def prune(work_dir: Path, keep: int, iters_per_epoch: int | None, protect: Path | None) -> list[Path]:
    """Keep the ``keep`` newest checkpoints (0: all); ``protect`` (the one just written) is never removed."""
    if keep <= 0:
        return []
    removed = []
    for _, p in list_checkpoints(work_dir, iters_per_epoch)[:-keep]:
        if protect is None or p.resolve() != Path(protect).resolve():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def prepare_work_dir(wd: Path, resume, overwrite: bool) -> tuple[Path, str | None]:
    """Create ``wd``, take its lock and clean up stale temporaries; a new run (no ``resume``) is refused where
    another run's checkpoints lie, unless ``overwrite`` (then they and that run's final files are removed).
    Returns the lock and the notes to show (None: nothing to say)."""
    if wd.exists() and not wd.is_dir():
        raise SetrError(f"{wd}: --work-dir is a file, not a folder")
    try:
        wd.mkdir(parents=True, exist_ok=True)
        lock, warning = acquire_lock(wd)
    except OSError as exc:
        raise SetrError(f"{wd}: cannot write to the work dir ({exc.strerror or exc})") from None
    removed = remove_stale_temporaries(wd)
    notes = [warning] if warning else []
    if removed:
        notes.append(f"removed {len(removed)} temporary file(s) of an interrupted write: "
                     + ", ".join(p.name for p in removed[:3]))
    if not resume:
        existing = [p.name for _, p in list_checkpoints(wd)]
        if existing and not overwrite:
            release_lock(lock)
            shown = ", ".join(existing[-3:]) + (f" (+{len(existing) - 3} more)" if len(existing) > 3 else "")
            raise SetrError(f"{wd} holds another run's checkpoints ({shown}): continue it with --resume, "
                            "pick another --work-dir, or discard them with --overwrite")
        if existing or overwrite:
            for name in [*existing, *RUN_FILES]:
                (wd / name).unlink(missing_ok=True)
            if existing:
                notes.append(f"--overwrite: removed {len(existing)} checkpoint(s) of the previous run")
    return lock, "\n".join(notes) or None
