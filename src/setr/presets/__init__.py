"""Every named preset, one registry, one shape (:class:`Preset`: name, task, model, train, data) for the three
tasks (``segmentation``, ``classification``, ``detection``).

``get(name)`` returns a fresh (mutable) copy of any preset; ``get(name, task)`` also checks that it belongs to
``task``: a name of another task is refused in one line naming the command that owns it ("hlg_tiny is a
classification preset: use `setr classify ...`"). ``names(task)`` lists them, ``task_of(name)`` says whose a
name is. One lookup rule for all: the exact name, else the name case-insensitively (a trailing ``.py``, as in the
original config files, is accepted), else a one-line error with the closest names ("did you mean ...").
"""
from __future__ import annotations

import copy
import difflib
from functools import lru_cache
from typing import Sequence

from ..errors import SetrError
from .base import TASKS, DataConfig, Preset, TrainRecipe
from .demo import demo_preset
from .detection import DetModelConfig, DetTrainConfig, detection_presets
from .hlg import ClassifyRecipe, HLGModelConfig, hlg_presets
from .setr import setr_presets
from .setr_hlg import setr_hlg_presets

__all__ = ["TASKS", "COMMANDS", "ClassifyRecipe", "DataConfig", "DetModelConfig", "DetTrainConfig", "HLGModelConfig",
           "Preset", "TrainRecipe", "all_presets", "get", "names", "resolve_name", "task_of", "with_overrides"]

# the command that owns each task's presets
COMMANDS = {"segmentation": "setr train / test / predict", "classification": "setr classify",
            "detection": "setr detect"}


@lru_cache(maxsize=1)
def _registry() -> dict[str, Preset]:
    presets = [*setr_presets(), *setr_hlg_presets(), demo_preset(), *hlg_presets(), *detection_presets()]
    return {p.name: p for p in presets}


def all_presets(task: str | None = None) -> list[Preset]:
    """Every preset (of ``task``), in the registry's order (shared: copy before changing one; :func:`get` does)."""
    _check_task(task)
    return [p for p in _registry().values() if task is None or p.task == task]


def names(task: str | None = None) -> list[str]:
    """The preset names (of ``task``), in the registry's order."""
    return [p.name for p in all_presets(task)]


def _check_task(task: str | None) -> None:
    if task is not None and task not in TASKS:
        raise SetrError(f"unknown preset task {task!r} (one of {', '.join(TASKS)})")


def resolve_name(name: str, task: str | None = None) -> str:
    """The registered name ``name`` stands for under the one lookup rule; a miss, or a name of another task than
    ``task``, is a one-line ``SetrError``."""
    _check_task(task)
    reg = _registry()
    key = name[:-3] if name.endswith(".py") else name
    if key not in reg:
        lower = {k.lower(): k for k in reg}
        key = lower.get(key.lower(), key)
    if key in reg:
        owner = reg[key].task
        if task is not None and owner != task:
            raise SetrError(f"{key} is a {owner} preset: use `{COMMANDS[owner]} ...`")
        return key
    pool = {k.lower(): k for k in names(task)} if task else {k.lower(): k for k in reg}
    close = [pool[c] for c in difflib.get_close_matches(key.lower(), list(pool), n=3, cutoff=0.5)]
    if close:
        hint = f"; did you mean {', '.join(close)}?"
    else:
        hint = f"; known: {', '.join(pool.values())}" if len(pool) <= 12 else "; `setr presets` lists them"
    label = f"{task} preset" if task and task != "segmentation" else "preset"
    raise SetrError(f"unknown {label} {name!r}{hint}")


def task_of(name: str) -> str:
    """The task the preset ``name`` belongs to."""
    return _registry()[resolve_name(name)].task


def get(name: str, task: str | None = None) -> Preset:
    """A fresh (mutable) copy of the preset ``name``; with ``task``, refused unless it is one of that task's."""
    return copy.deepcopy(_registry()[resolve_name(name, task)])


def with_overrides(name: str, assignments: Sequence[str] = (), task: str | None = None) -> Preset:
    """:func:`get` with ``--set`` assignments (``section.key=value``) applied: the one way every command and API
    turns a preset name plus overrides into a configuration."""
    from ..overrides import apply_overrides

    return apply_overrides(get(name, task), list(assignments or ()))
