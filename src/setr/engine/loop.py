"""One training loop for every task: segmentation (iteration-based), classification and detection (epoch-based).

The loop owns what every task needs; a task (:class:`TrainTask`) plugs in its data, model, optimiser, step and
evaluation:

* process-group setup under torchrun (:func:`init_distributed`), device, autocast and the fp16 GradScaler;
* the work dir: one run at a time (``train.lock`` with the holder's pid and host; a stale lock of a dead process
  is taken over with a warning), stale temporary files of interrupted checkpoint writes removed at the start, a
  new run refused where another run's checkpoints lie (``--resume`` / another ``--work-dir`` / ``overwrite``);
* ``resume``: the newest checkpoint (``True``) or a path, only of the same task, preset and resolved
  configuration (run-length and bookkeeping keys excepted); ``True`` with no checkpoint yet starts at 0;
* checkpoints written atomically with every rank's RNG state: every ``checkpoint_interval`` iterations, at the
  end of each epoch (``epoch_N.pth``) for epoch-based tasks, at the end, on SIGINT / SIGTERM (every rank stops
  together after the iteration in flight, exit with a resume hint) and when an exception leaves the loop (the
  last whole iteration); pruned to ``keep_checkpoints``, never the newest;
* the data order: a sampler whose items are a pure function of the iteration, so a resumed run (from any
  iteration, also inside an epoch) sees exactly what an uninterrupted one would;
* non-finite losses detected on every rank together (all-reduced) before anything is updated;
* progress bar, ``train.log``, TensorBoard scalars, ``metrics.jsonl`` (every iteration's losses and learning
  rates at full precision) and ``metrics.json`` (the task's final metrics).
"""
from __future__ import annotations

import abc
import functools
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import SetrError
from .state import gather_rng_states, read_checkpoint, rng_state, set_rng_state, write_checkpoint
from .common import optimizer_step, run_logger, tensorboard_writer
from ..precision import autocast
from ..reports.curves import append_validation, write_work_dir_curves
from ..dist import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed

CKPT_RE = re.compile(r"^(iter|epoch)_(\d+)\.pth$")
LOCK_NAME = "train.lock"
logger = logging.getLogger(__name__)
# keys that may change between a run and its resumption (run length and bookkeeping, not the training itself)
RESUMABLE_KEYS = {"iters", "epochs", "stop_at", "checkpoint_interval", "keep_checkpoints", "eval_interval",
                  "workers", "log_interval"}


class StopRequest:
    """Turns SIGINT / SIGTERM into a flag the training loop checks between iterations, so an interrupted run
    saves a checkpoint of a whole iteration (never one cut inside an optimizer step) and resumes exactly."""

    def __init__(self):
        import signal
        import threading

        self.requested = False
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class TrainingStopped(KeyboardInterrupt):
    """Raised after SIGINT / SIGTERM stopped the run cleanly: the checkpoint is written and the resume hint
    printed (the CLI exits 0 on it; ``checkpointed`` tells it apart from a bare KeyboardInterrupt)."""

    checkpointed = True


class TrainTask(abc.ABC):
    """A task plugged into :func:`run_training`. ``build`` sets the attributes below; a task must define
    ``build``, ``batches`` and ``forward``; the other hooks have defaults."""

    kind: str = "task"  # "segmentation", "classification", "detection": a checkpoint resumes only its own kind
    ckpt_format: str = "setr-train-1"  # meta.format of its checkpoints (readers tell the kinds apart by it too)
    name: str = ""  # the preset (or model) name, stored in checkpoints and compared on resume
    config: dict = {}  # the resolved configuration: config.json, compared on resume
    model: nn.Module  # the bare model: its state_dict is checkpointed
    optimizer: torch.optim.Optimizer
    total_iters: int = 0  # the whole schedule, in iterations
    iters_per_epoch: int | None = None  # None: iteration-based (checkpoints iter_N.pth only)
    checkpoint_interval: int = 0  # iterations between checkpoints (0: epoch ends / the end only)
    keep_checkpoints: int = 0  # newest checkpoints kept (0: all)
    stop_at: int | None = None  # stop after this many iterations of the schedule (checkpointed, resumable)
    clip_grad: float | None = None
    score_key: str | None = None  # the metric that decides "best" (higher is better)
    log_interval: int = 50

    # ---- set-up
    @abc.abstractmethod
    def build(self, info: DistInfo, log, amp: str | None) -> None:
        """Build the model, optimiser and data for this process (sets the attributes above)."""

    @abc.abstractmethod
    def batches(self, start_iter: int) -> Iterable:
        """The training batches from iteration ``start_iter`` on (an endless iterator)."""

    # ---- one iteration
    def before_step(self, it: int) -> None:
        """Before iteration ``it`` (0-based): e.g. set the learning rates."""

    @abc.abstractmethod
    def forward(self, batch, autocast) -> dict[str, torch.Tensor]:
        """The weighted losses of one batch by name (their sum is back-propagated)."""

    def after_step(self, it: int, losses: dict[str, torch.Tensor]) -> None:
        """After the optimiser step; ``it`` = iterations done (scheduler step, EMA update)."""

    def log_extras(self) -> str:
        return ""

    # ---- evaluation and the end
    def should_evaluate(self, it: int) -> bool:
        return False

    def evaluate(self, it: int) -> dict:
        return {}

    def on_best(self, it: int, metrics: dict) -> None:
        """Main rank, after an evaluation that improved ``score_key``."""

    def end_of_epoch(self, epoch: int, metrics: dict | None) -> None:
        """Epoch-based tasks, after the evaluation of the epoch (``metrics`` None when none ran)."""

    def finish(self, it: int, metrics: dict, best: dict) -> dict | None:
        """Main rank, at the end: write the final files; return what goes to metrics.json (None: nothing)."""
        return None

    # ---- checkpoints
    def meta(self) -> dict:
        return {}

    def extra_state(self) -> dict:
        """Checkpoint entries besides model, optimizer, scaler and RNG (scheduler, EMA, ...)."""
        return {}

    def load_weights(self, state_dict: dict, path: Path) -> None:
        try:
            self.model.load_state_dict(state_dict)
        except RuntimeError:
            raise SetrError(f"{path}: weights do not fit preset {self.name}") from None

    def load_state(self, state: dict, path: Path) -> None:
        """Everything of :meth:`extra_state` and :meth:`meta` back (model and optimizer are loaded by the loop)."""


@dataclass
class LoopResult:
    iterations: int
    metrics: dict
    best: dict
    last_checkpoint: Path | None
    finished: Any = None  # what the task's finish() returned (main rank)
    stopped_early: bool = False
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- work dir
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


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": [x, {"c": y}]}} -> {"a.b": <len 2>, "a.b.0": x, "a.b.1.c": y}."""
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(d, list) and any(isinstance(v, (dict, list)) for v in d):
        out = {prefix[:-1]: f"<{len(d)} items>"}
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: d}


def config_differences(stored: dict, current: dict) -> list[str]:
    """Dotted keys whose values differ (JSON-normalised), run-length and bookkeeping keys excepted. Keys present on
    one side only (settings added by a later version, with their defaults) are not differences."""
    a = _flatten(json.loads(json.dumps(stored, default=str)))
    b = _flatten(json.loads(json.dumps(current, default=str)))
    diffs = []
    for k in sorted(set(a) & set(b)):
        if k.rsplit(".", 1)[-1] in RESUMABLE_KEYS:
            continue
        if a[k] != b[k]:
            diffs.append(f"{k}: {a[k]!r} there, {b[k]!r} here")
    return diffs


def _on_main(info: DistInfo, fn):
    """Run ``fn`` on rank 0; its result (or its SetrError, raised on every rank) is shared with all ranks."""
    result, error = None, None
    if info.is_main:
        try:
            result = fn()
        except SetrError as exc:
            error = str(exc)
    if info.distributed:
        import torch.distributed as dist

        box = [(result, error)]
        dist.broadcast_object_list(box, src=0)
        result, error = box[0]
    if error is not None:
        raise SetrError(error)
    return result


def amp_context(amp: str | None, device: torch.device):
    """A factory of the step's autocast context (:func:`setr.precision.autocast`); ``amp`` None or "": fp32."""
    if amp not in (None, "", "bf16", "fp16"):
        raise SetrError(f"--amp {amp}: expected bf16 or fp16")
    return functools.partial(autocast, amp or "fp32", device)


# --------------------------------------------------------------------------------------------- the loop
def run_training(task: TrainTask, work_dir: str | Path, *, resume: bool | str | Path | None = None,
                 overwrite: bool = False, amp: str | None = None, device: str | None = None,
                 progress: bool = True, info: DistInfo | None = None) -> LoopResult:
    """Train ``task`` in ``work_dir`` (see the module doc). Under torchrun every process calls this."""
    own = info is None
    info = info or init_distributed(device)
    try:
        return _Loop(task, Path(work_dir), info, resume, overwrite, amp, progress).run()
    finally:
        if own:
            cleanup(info)


class _Loop:
    def __init__(self, task, work_dir, info, resume, overwrite, amp, progress):
        self.task, self.work_dir, self.info = task, work_dir, info
        self.resume, self.overwrite, self.amp, self.progress = resume, overwrite, amp, progress
        self.lock = None
        self.saved_iter = -1
        self.best: dict = {}

    # ---- preparation
    def _prepare_dir(self) -> str | None:
        wd = self.work_dir
        if wd.exists() and not wd.is_dir():
            raise SetrError(f"{wd}: --work-dir is a file, not a folder")
        try:
            wd.mkdir(parents=True, exist_ok=True)
            self.lock, warning = acquire_lock(wd)
        except OSError as exc:
            raise SetrError(f"{wd}: cannot write to the work dir ({exc.strerror or exc})") from None
        removed = remove_stale_temporaries(wd)
        notes = [warning] if warning else []
        if removed:
            notes.append(f"removed {len(removed)} temporary file(s) of an interrupted write: "
                         + ", ".join(p.name for p in removed[:3]))
        if not self.resume:
            existing = [p.name for _, p in list_checkpoints(wd)]
            if existing and not self.overwrite:
                release_lock(self.lock)
                self.lock = None
                shown = ", ".join(existing[-3:]) + (f" (+{len(existing) - 3} more)" if len(existing) > 3 else "")
                raise SetrError(f"{wd} holds another run's checkpoints ({shown}): continue it with --resume, "
                                "pick another --work-dir, or discard them with --overwrite")
            if existing or self.overwrite:
                for name in existing + ["final.safetensors", "final.json", "best.safetensors", "best.json",
                                        "metrics.json"]:
                    (wd / name).unlink(missing_ok=True)
                if existing:
                    notes.append(f"--overwrite: removed {len(existing)} checkpoint(s) of the previous run")
        return "\n".join(notes) or None

    def _resume_path(self) -> Path | None:
        if not self.resume:
            return None
        if self.resume is True or self.resume == "latest":
            found = list_checkpoints(self.work_dir, self.task.iters_per_epoch)
            return found[-1][1] if found else None
        path = Path(self.resume)
        if path.is_dir():
            raise SetrError(f"{path}: --resume takes a checkpoint file (or nothing, for the newest in the work dir)")
        if not path.is_file():
            raise SetrError(f"{path}: checkpoint not found")
        return path

    def _check_compatible(self, state: dict, path: Path) -> int:
        task, meta = self.task, state.get("meta")
        if not isinstance(meta, dict) or not ("iteration" in meta or "epoch" in meta):
            raise SetrError(f"{path}: not a setr training checkpoint (no meta.iteration); "
                            "use --load-from to start from weights only")
        kind = meta.get("task") or ("detection" if meta.get("format") == "setr-det-1"
                                    else "classification" if "model" in meta else "segmentation")
        if kind != task.kind:
            raise SetrError(f"{path}: a {kind} checkpoint, not a {task.kind} one")
        name = meta.get("preset") or meta.get("model")
        if name != task.name:
            raise SetrError(f"{path}: checkpoint is from preset {name}, not {task.name}")
        if isinstance(meta.get("config"), dict):
            diffs = config_differences(meta["config"], task.config)
            if diffs:
                more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
                raise SetrError(f"{path}: checkpoint was trained with another configuration ({'; '.join(diffs[:3])}"
                                f"{more}): resume with the same settings, or start a new run in another --work-dir")
        if "iteration" in meta:
            return int(meta["iteration"])
        return int(meta["epoch"]) * (task.iters_per_epoch or 1)

    # ---- checkpoints
    def _ckpt_name(self, it: int) -> str:
        ipe = self.task.iters_per_epoch
        return f"epoch_{it // ipe}.pth" if ipe and it % ipe == 0 else f"iter_{it}.pth"

    def _save(self, it: int, rng_ranks) -> Path:
        task = self.task
        state = {"meta": {"format": task.ckpt_format, "task": task.kind, "iteration": it,
                          "epoch": (it // task.iters_per_epoch) if task.iters_per_epoch else None,
                          "preset": task.name, "config": task.config, "best": self.best, **task.meta()},
                 "state_dict": {k: v.detach().cpu() for k, v in task.model.state_dict().items()},
                 "optimizer": task.optimizer.state_dict(), "rng": rng_state(), **task.extra_state()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if rng_ranks is not None:
            state["rng_ranks"] = rng_ranks
        path = write_checkpoint(self.work_dir / self._ckpt_name(it), state)
        prune(self.work_dir, task.keep_checkpoints, task.iters_per_epoch, protect=path)
        return path

    def checkpoint(self, it: int, collective: bool = True) -> Path | None:
        """Every rank calls this (collective) unless ``collective`` is False (main rank alone, no RNG of the
        other ranks: used when an exception leaves the loop on one process)."""
        ranks = gather_rng_states(self.info) if collective else None
        path = self._save(it, ranks) if self.info.is_main else None
        if collective:
            barrier(self.info)
        self.saved_iter = it
        self.last_ckpt = path
        return path

    # ---- the run
    def run(self) -> LoopResult:
        info = self.info
        notes = _on_main(info, self._prepare_dir)
        try:
            return self._run(notes)
        finally:
            if info.is_main:
                release_lock(self.lock)

    def _say(self, text: str) -> None:
        """What the user must notice (a resume from nothing, an interruption, a partial run): into train.log and
        to the ``setr`` logger as a warning, which the command line prints as one line (main process only)."""
        if self.info.is_main:
            self.log.info(text)
            logger.warning(text)

    def _run(self, notes) -> LoopResult:
        from tqdm import tqdm

        info, task, wd = self.info, self.task, self.work_dir
        self.log = log = run_logger(wd, "train", info.is_main)
        if notes:
            self._say(notes)
        task.build(info, log, self.amp)
        self.scaler = torch.amp.GradScaler(info.device.type) if self.amp == "fp16" else None
        autocast = amp_context(self.amp, info.device)

        start = 0
        path = _on_main(info, self._resume_path)
        if self.resume and path is None:
            self._say(f"--resume: no checkpoint in {wd} yet; starting from iteration 0")
        if path is not None:
            state = read_checkpoint(path)
            start = self._check_compatible(state, path)
            task.load_weights(state["state_dict"], path)
            task.optimizer.load_state_dict(state["optimizer"])
            if self.scaler is not None and "scaler" in state:
                self.scaler.load_state_dict(state["scaler"])
            task.load_state(state, path)
            ranks = state.get("rng_ranks")
            set_rng_state(ranks[info.rank] if ranks and len(ranks) == info.world_size else state["rng"])
            self.best = dict(state["meta"].get("best") or {})
            self.saved_iter = start
            log.info(f"resumed from {path} at iteration {start}")
        self.last_ckpt = None
        total = task.total_iters
        end = min(total, task.stop_at) if task.stop_at else total
        if info.is_main:
            (wd / "config.json").write_text(json.dumps(task.config, indent=2, default=str))
            self._trim_jsonl(start)
        if start >= end:
            log.info(f"nothing to do: iteration {start} >= {end}")

        tb = tensorboard_writer(wd, info.is_main)
        jsonl = open(wd / "metrics.jsonl", "a") if info.is_main else None
        bar = tqdm(total=total, initial=start, desc=task.name[:40], unit="it",
                   disable=not (self.progress and info.is_main), dynamic_ncols=True)
        log.info(f"training {task.name} for {total} iterations"
                 + (f" ({total // task.iters_per_epoch} epochs of {task.iters_per_epoch})" if task.iters_per_epoch else "")
                 + (f", stopping at {end}" if end < total else "")
                 + f", {info.world_size} process(es), device {info.device}, amp {self.amp or 'off'}, "
                 f"from iteration {start}")
        metrics: dict = {}
        stop = StopRequest()
        it, stepping, handled = start, False, False
        t0 = time.time()
        try:
            batches = iter(task.batches(start))
            while it < end:
                task.before_step(it)
                batch = next(batches)
                losses = task.forward(batch, autocast)
                loss = sum(losses.values())
                bad = all_reduce_sum(torch.tensor(0.0 if torch.isfinite(loss.detach()).all() else 1.0,
                                                  device=info.device), info)
                if bad.item() > 0:  # every rank stops together instead of hanging in the gradient all-reduce
                    path = self.checkpoint(it) if it > self.saved_iter else self.last_ckpt
                    handled = True
                    saved = f"; the last whole iteration is saved in {path}" if path else ""
                    raise SetrError(f"iteration {it + 1}: loss is not finite (try a lower learning rate or "
                                    f"--amp bf16){saved}")
                lrs = {g.get("name", f"group_{i}"): g["lr"] for i, g in enumerate(task.optimizer.param_groups)}
                stepping = True
                optimizer_step(loss, task.optimizer, task.model, self.scaler, task.clip_grad)
                it += 1
                task.after_step(it, losses)
                stepping = False
                logged, logged_total = losses, loss
                if info.distributed:  # logged as the original: each loss averaged over the processes
                    names = list(losses)
                    mean = all_reduce_sum(torch.stack([losses[k].detach().float() for k in names]), info)
                    mean = mean / info.world_size
                    logged, logged_total = dict(zip(names, mean)), mean.sum()
                if info.is_main:
                    self._record(jsonl, tb, bar, it - 1, logged, logged_total, lrs, start, t0, end)
                epoch_end = bool(task.iters_per_epoch) and it % task.iters_per_epoch == 0
                evaluated = None
                if task.should_evaluate(it):
                    train_rng = rng_state()  # evaluation must not shift the training RNG streams (exact resume)
                    try:
                        metrics = evaluated = task.evaluate(it)
                    finally:
                        set_rng_state(train_rng)
                    if info.is_main and task.score_key and metrics and metrics.get(task.score_key) is not None:
                        append_validation(wd, it, metrics)  # val_metrics.jsonl: `setr plot`'s validation curves
                        if tb:
                            for k, v in metrics.items():
                                if isinstance(v, (int, float)) and not isinstance(v, bool):
                                    tb.add_scalar(f"val/{k}", v, it)
                        score = metrics[task.score_key]
                        if not self.best or score > self.best.get(task.score_key, float("-inf")):
                            self.best = {task.score_key: score, "iteration": it}
                            if task.iters_per_epoch:
                                self.best["epoch"] = it // task.iters_per_epoch
                            task.on_best(it, metrics)
                if epoch_end:
                    task.end_of_epoch(it // task.iters_per_epoch, evaluated)
                interval = task.checkpoint_interval
                if epoch_end or (interval and it % interval == 0) or it == end:
                    self.checkpoint(it)
                if it < end and all_reduce_sum(torch.tensor(float(stop.requested), device=info.device),
                                               info).item() > 0:
                    # Ctrl-C / SIGTERM: the iteration in flight completed; save it and leave (every rank together)
                    path = self.checkpoint(it) if it > self.saved_iter else self.last_ckpt
                    handled = True
                    self._say(f"interrupted at iteration {it}: saved {path}; continue with --resume")
                    raise TrainingStopped
        except BaseException as exc:
            if not handled and not stepping and it > self.saved_iter and it > start:
                # keep what was done: the last whole iteration, before the exception propagates
                try:
                    if info.distributed:  # the other ranks may be anywhere: the main rank saves alone
                        path = self.checkpoint(it, collective=False) if info.is_main else None
                    else:
                        path = self.checkpoint(it)
                    if info.is_main and path is not None:
                        self._say(f"{type(exc).__name__} at iteration {it + 1}: saved the last whole iteration "
                                  f"in {path}; continue with --resume once fixed")
                except Exception as save_exc:  # noqa: BLE001
                    log.info(f"could not save a checkpoint after the error: {save_exc}")
            raise
        finally:
            stop.restore()
            bar.close()
            if tb:
                tb.close()
            if jsonl:
                jsonl.close()
        if end < total:
            self._say(f"stopped at iteration {end} of {total} (train.stop_at): saved {self.last_ckpt}; "
                      "continue with --resume")
        finished = None
        if info.is_main:
            finished = task.finish(it, metrics, self.best)
            if finished is not None:
                from ..evaluation.metrics import to_json

                (wd / "metrics.json").write_text(to_json(finished))
            write_work_dir_curves(wd, log)  # curves.png: losses, learning rates, validation (issue 22)
        barrier(info)
        return LoopResult(it, metrics, self.best, self.last_ckpt, finished, stopped_early=end < total)

    def _trim_jsonl(self, start: int) -> None:
        """metrics.jsonl keeps the records of iterations before ``start`` (a resumed run rewrites the rest)."""
        path = self.work_dir / "metrics.jsonl"
        if not path.is_file():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if int(json.loads(line)["iteration"]) < start:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                break
        path.write_text("".join(f"{line}\n" for line in keep))

    def _record(self, jsonl, tb, bar, it0, losses, loss, lrs, start, t0, end) -> None:
        task = self.task
        values = {k: v.item() for k, v in losses.items()}
        total = loss.item()
        jsonl.write(json.dumps({"iteration": it0, "losses": values, "total_loss": total, "lr": lrs}) + "\n")
        jsonl.flush()
        it = it0 + 1
        lr = next(iter(lrs.values()))
        bar.update(1)
        bar.set_postfix(loss=f"{total:.4f}", lr=f"{lr:.2e}")
        if tb:
            tb.add_scalar("train/loss", total, it)
            tb.add_scalar("train/lr", lr, it)
            if len(values) > 1:
                for k, v in values.items():
                    tb.add_scalar(f"train/{k}", v, it)
        if (task.log_interval and it % task.log_interval == 0) or it == end or it == start + 1:
            speed = (it - start) / max(time.time() - t0, 1e-9)
            epoch = ""
            if task.iters_per_epoch:
                e, i = divmod(it - 1, task.iters_per_epoch)
                epoch = f"epoch {e + 1} [{i + 1}/{task.iters_per_epoch}] "
            parts = " ".join(f"{k} {v:.4f}" for k, v in values.items()) if len(values) > 1 else ""
            extra = task.log_extras()
            self.log.info(f"{epoch}iter {it}/{task.total_iters} lr {lr:.3e} loss {total:.4f} {parts} {extra} "
                          f"{speed:.2f} it/s".replace("  ", " "))
