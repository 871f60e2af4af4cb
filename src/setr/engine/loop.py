"""One training loop for every task: segmentation (iteration-based), classification and detection (epoch-based).

The loop owns what every task needs; a task (:class:`TrainTask`) plugs in its data, model, optimiser, step and
evaluation:

* process-group setup under torchrun (:func:`init_distributed`), device, autocast and the fp16 GradScaler;
* the work dir (:mod:`.workdir`): one run at a time (``train.lock`` with the holder's pid and host; a stale lock
  of a dead process is taken over with a warning), stale temporary files of interrupted checkpoint writes removed
  at the start, a new run refused where another run's checkpoints lie (``--resume`` / another ``--work-dir`` /
  ``overwrite``);
* ``resume``: the newest checkpoint (``True``) or a path, only of the same task, preset and resolved
  configuration (run-length and bookkeeping keys excepted); ``True`` with no checkpoint yet starts at 0;
* checkpoints written atomically with every rank's RNG state: every ``checkpoint_interval`` iterations, at the
  end of each epoch (``epoch_N.pth``) for epoch-based tasks, at the end, on SIGINT / SIGTERM (said at once; every
  rank stops together after the iteration in flight, exit with a resume hint; a second signal stops sooner and
  still saves the last whole iteration, a third quits without saving: :class:`StopRequest`) and when an
  exception leaves the loop (the last whole iteration); pruned to ``keep_checkpoints``, never the newest;
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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import SetrError
from .state import gather_rng_states, read_checkpoint, rng_state, set_rng_state, write_checkpoint
from .common import optimizer_step, run_logger, tensorboard_writer
from .workdir import list_checkpoints, prepare_work_dir, prune, release_lock
from ..precision import autocast
from ..reports.curves import append_validation, write_work_dir_curves
from ..dist import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed

logger = logging.getLogger(__name__)
# keys that may change between a run and its resumption (run length and bookkeeping, not the training itself)
RESUMABLE_KEYS = {"iters", "epochs", "stop_at", "checkpoint_interval", "keep_checkpoints", "eval_interval",
                  "workers", "log_interval"}


class StopNow(KeyboardInterrupt):
    """A second SIGINT / SIGTERM during the graceful stop: leave the iteration in flight now (its work is lost),
    saving the last whole iteration on the way out."""


class StopRequest:
    """Turns SIGINT / SIGTERM into a flag the training loop checks between iterations, so an interrupted run
    saves a checkpoint of a whole iteration (never one cut inside an optimizer step) and resumes exactly.

    * 1st signal: ``requested``; the iteration in flight (and its evaluation) finishes, is saved, the run ends.
      Said at once on stderr.
    * 2nd signal (Ctrl-C again, or the SIGTERM that ``timeout`` / ``make`` / a scheduler forwards): stop sooner.
      Outside the optimizer step the iteration in flight is dropped (:class:`StopNow`); inside it (``critical``)
      the step completes first (``now``). Either way the last whole iteration is saved.
    * 3rd signal: ``forced``: a bare KeyboardInterrupt, nothing saved.
    """

    def __init__(self, speak: bool = True):
        import signal
        import threading

        self.speak = speak  # under torchrun only the main process says what happens
        self.requested = self.now = self.forced = False
        self.critical = False  # inside the optimizer step: a half-updated model must not be saved
        self.done = 0  # whole iterations done, and the iteration in flight (1-based; the loop keeps them current)
        self.in_flight = 1
        self.count = 0
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _say(self, text: str) -> None:
        if not self.speak:
            return
        try:
            os.write(2, f"\n{text}\n".encode())  # unbuffered: safe inside a signal handler, shown at once
        except OSError:
            pass

    def _handle(self, signum, frame) -> None:
        import signal

        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.count += 1
        done, now = self.done, self.in_flight
        if self.count == 1:
            self.requested = True
            self._say(f"setr: {name}: finishing iteration {now}, then saving it and stopping; Ctrl-C again to stop "
                      "sooner (the last whole iteration is still saved), three times to quit without saving")
            return
        if self.count == 2:
            self.now = True
            if self.critical:
                self._say(f"setr: {name} again: stopping after the optimizer step of iteration {now}, then saving "
                          "it (Ctrl-C once more to quit without saving)")
                return
            self._say(f"setr: {name} again: stopping now, saving iteration {done}, the last whole one (Ctrl-C once "
                      "more to quit without saving)")
            raise StopNow
        self.forced = True
        self._say(f"setr: {name} a third time: quitting without saving")
        raise KeyboardInterrupt

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
        self.lock, notes = prepare_work_dir(self.work_dir, self.resume, self.overwrite)
        return notes

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
        self.autocast = amp_context(self.amp, info.device)
        start = self._resume_from(_on_main(info, self._resume_path))
        self.last_ckpt = None
        total = task.total_iters
        end = min(total, task.stop_at) if task.stop_at else total
        if info.is_main:
            (wd / "config.json").write_text(json.dumps(task.config, indent=2, default=str))
            self._trim_jsonl(start)
        if start >= end:
            log.info(f"nothing to do: iteration {start} >= {end}")
        self.tb = tensorboard_writer(wd, info.is_main)
        self.jsonl = open(wd / "metrics.jsonl", "a") if info.is_main else None
        self.bar = tqdm(total=total, initial=start, desc=task.name[:40], unit="it",
                        disable=not (self.progress and info.is_main), dynamic_ncols=True)
        log.info(f"training {task.name} for {total} iterations"
                 + (f" ({total // task.iters_per_epoch} epochs of {task.iters_per_epoch})" if task.iters_per_epoch else "")
                 + (f", stopping at {end}" if end < total else "")
                 + f", {info.world_size} process(es), device {info.device}, amp {self.amp or 'off'}, "
                 f"from iteration {start}")
        self.metrics = {}
        self.stop = stop = StopRequest(speak=info.is_main)
        self.it, self.handled, self.t0 = start, False, time.time()
        try:
            if start >= total and start > 0 and task.should_evaluate(start):
                # resumed at the very end: the final evaluation may be what stopped the previous run (a bad file)
                self._evaluate(start)
            batches = iter(task.batches(start))
            while self.it < end:
                stop.done, stop.in_flight = self.it, self.it + 1
                self._iteration(batches, start, end)
        except BaseException as exc:
            self._keep_progress(exc, start)
            raise
        finally:
            stop.restore()
            self.bar.close()
            if self.tb:
                self.tb.close()
            if self.jsonl:
                self.jsonl.close()
        if end < total:
            self._say(f"stopped at iteration {end} of {total} (train.stop_at): saved {self.last_ckpt}; "
                      "continue with --resume")
        finished = None
        if info.is_main:
            finished = task.finish(self.it, self.metrics, self.best)
            if finished is not None:
                from ..evaluation.metrics import to_json

                (wd / "metrics.json").write_text(to_json(finished))
            write_work_dir_curves(wd, log)  # curves.png: losses, learning rates, validation (issue 22)
        barrier(info)
        return LoopResult(self.it, self.metrics, self.best, self.last_ckpt, finished, stopped_early=end < total)

    def _resume_from(self, path: Path | None) -> int:
        """Load the checkpoint ``path`` (None: none) into the task; returns the iteration it holds (0 without)."""
        info, task = self.info, self.task
        if self.resume and path is None:
            self._say(f"--resume: no checkpoint in {self.work_dir} yet; starting from iteration 0")
        if path is None:
            return 0
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
        self.log.info(f"resumed from {path} at iteration {start}")
        return start

    def _iteration(self, batches, start: int, end: int) -> None:
        """One training iteration (self.it -> self.it + 1): step, records, evaluation, checkpoint, stop requests."""
        info, task, stop = self.info, self.task, self.stop
        it = self.it
        task.before_step(it)
        batch = next(batches)
        losses = task.forward(batch, self.autocast)
        loss = sum(losses.values())
        bad = all_reduce_sum(torch.tensor(0.0 if torch.isfinite(loss.detach()).all() else 1.0,
                                          device=info.device), info)
        if bad.item() > 0:  # every rank stops together instead of hanging in the gradient all-reduce
            path = self.checkpoint(it) if it > self.saved_iter else self.last_ckpt
            self.handled = True
            saved = f"; the last whole iteration is saved in {path}" if path else ""
            raise SetrError(f"iteration {it + 1}: loss is not finite (try a lower learning rate or "
                            f"--amp bf16){saved}")
        lrs = {g.get("name", f"group_{i}"): g["lr"] for i, g in enumerate(task.optimizer.param_groups)}
        stop.critical = True  # from here to after_step the model is half-updated: a signal waits
        optimizer_step(loss, task.optimizer, task.model, self.scaler, task.clip_grad)
        self.it = it = it + 1
        task.after_step(it, losses)
        stop.done, stop.critical = it, False
        if stop.now:  # a second signal arrived during the step: save this whole iteration and leave
            self._stop_now()
        logged, logged_total = losses, loss
        if info.distributed:  # logged as the original: each loss averaged over the processes
            names = list(losses)
            mean = all_reduce_sum(torch.stack([losses[k].detach().float() for k in names]), info) / info.world_size
            logged, logged_total = dict(zip(names, mean)), mean.sum()
        if info.is_main:
            self._record(self.jsonl, self.tb, self.bar, it - 1, logged, logged_total, lrs, start, self.t0, end)
        epoch_end = bool(task.iters_per_epoch) and it % task.iters_per_epoch == 0
        evaluated = self._evaluate(it) if task.should_evaluate(it) else None
        if epoch_end:
            task.end_of_epoch(it // task.iters_per_epoch, evaluated)
        interval = task.checkpoint_interval
        if epoch_end or (interval and it % interval == 0) or it == end:
            self.checkpoint(it)
        if it < end and all_reduce_sum(torch.tensor(float(stop.requested), device=info.device), info).item() > 0:
            # Ctrl-C / SIGTERM: the iteration in flight completed; save it and leave (every rank together)
            path = self.checkpoint(it) if it > self.saved_iter else self.last_ckpt
            self.handled = True
            self._say(f"interrupted at iteration {it}: saved {path}; continue with --resume")
            raise TrainingStopped

    def _evaluate(self, it: int) -> dict:
        """The task's evaluation after iteration ``it``; a better score becomes the run's best."""
        task, info = self.task, self.info
        train_rng = rng_state()  # evaluation must not shift the training RNG streams (exact resume)
        try:
            self.metrics = metrics = task.evaluate(it)
        finally:
            set_rng_state(train_rng)
        if info.is_main and task.score_key and metrics and metrics.get(task.score_key) is not None:
            append_validation(self.work_dir, it, metrics)  # val_metrics.jsonl: `setr plot`'s validation curves
            if self.tb:
                for k, v in metrics.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        self.tb.add_scalar(f"val/{k}", v, it)
            score = metrics[task.score_key]
            if not self.best or score > self.best.get(task.score_key, float("-inf")):
                self.best = {task.score_key: score, "iteration": it}
                if task.iters_per_epoch:
                    self.best["epoch"] = it // task.iters_per_epoch
                task.on_best(it, metrics)
        return metrics

    def _save_alone(self, it: int) -> Path | None:
        """Save iteration ``it`` outside the collective schedule (under torchrun the main rank alone: the other
        ranks may be anywhere)."""
        if self.info.distributed:
            return self.checkpoint(it, collective=False) if self.info.is_main else None
        return self.checkpoint(it)

    def _stop_now(self) -> None:
        """A second signal: save the last whole iteration (if not saved yet) and end with the resume hint."""
        it = self.it
        path = self._save_alone(it) if it > self.saved_iter else self.last_ckpt
        self.handled = True
        where = f"saved iteration {it} in {path}" if path else "nothing saved (no whole iteration since the start)"
        self._say(f"stopped at once at iteration {it} (second signal): {where}; continue with --resume")
        raise TrainingStopped

    def _keep_progress(self, exc: BaseException, start: int) -> None:
        """An exception leaves the loop: keep the last whole iteration unless it is saved already, the model is
        half-updated (inside the optimizer step) or the user forced the stop (third signal)."""
        it, stop = self.it, self.stop
        if isinstance(exc, StopNow) and not self.handled:
            self._stop_now()  # raises TrainingStopped (from here: the StopNow is its context)
        if self.handled or stop.critical or stop.forced or it <= self.saved_iter or it <= start:
            if stop.forced and self.info.is_main:
                self.log.info(f"forced stop at iteration {it}: nothing saved after {self.last_ckpt or 'the start'}")
            return
        try:
            path = self._save_alone(it)
            if self.info.is_main and path is not None:
                self._say(f"{type(exc).__name__} at iteration {stop.in_flight}: saved the last whole iteration "
                          f"in {path}; continue with --resume once fixed")
        except Exception as save_exc:  # noqa: BLE001
            self.log.info(f"could not save a checkpoint after the error: {save_exc}")

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
