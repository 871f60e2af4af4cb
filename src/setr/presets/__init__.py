"""Every named preset, one registry: ``get(task, name)`` and ``names(task)`` for the three tasks
(``segmentation``, ``classification``, ``detection``), one lookup rule for all of them: the exact name, else the
name case-insensitively (a trailing ``.py``, as in the original config files, is accepted), else a one-line
error with the closest names ("did you mean ..."). ``get_preset``, ``get_classifier_preset`` and
``setr.presets.detection.get_detection_preset`` are that rule for one task each."""
from __future__ import annotations

import copy
import difflib
from functools import lru_cache
from typing import Any, Callable, Sequence

from ..errors import SetrError
from .base import Preset, TrainRecipe
from .demo import demo_preset
from .hlg import ClassifierPreset, ClassifyRecipe, hlg_presets
from .setr import setr_presets
from .setr_hlg import setr_hlg_presets

__all__ = ["TASKS", "ClassifierPreset", "ClassifyRecipe", "Preset", "TrainRecipe", "get", "get_classifier_preset",
           "get_preset", "is_classifier_preset", "list_classifier_presets", "list_presets", "names", "preset_names", "resolved_preset"]

TASKS = ("segmentation", "classification", "detection")
_LABEL = {"segmentation": "preset", "classification": "classification preset", "detection": "detection preset"}


@lru_cache(maxsize=1)
def _registry() -> dict[str, Preset]:
    return {p.name: p for p in [*setr_presets(), *setr_hlg_presets(), demo_preset()]}


@lru_cache(maxsize=1)
def _classifiers() -> dict[str, ClassifierPreset]:
    return {p.name: p for p in hlg_presets()}


def _makers(task: str) -> dict[str, Callable[[], Any]]:
    """name -> a function returning a fresh copy of that preset."""
    if task == "segmentation":
        return {k: (lambda p=p: copy.deepcopy(p)) for k, p in _registry().items()}
    if task == "classification":
        return {k: (lambda p=p: copy.deepcopy(p)) for k, p in _classifiers().items()}
    if task == "detection":
        from .detection import list_detection_presets, make_detection_preset

        return {k: (lambda k=k: make_detection_preset(k)) for k in list_detection_presets()}
    raise SetrError(f"unknown preset task {task!r} (one of {', '.join(TASKS)})")


def names(task: str) -> list[str]:
    """The preset names of ``task``, in the registry's order."""
    return list(_makers(task))


def resolve_name(task: str, name: str) -> str:
    """The registered name ``name`` stands for under the one lookup rule; a miss is a one-line ``SetrError``."""
    known = names(task)
    key = name[:-3] if name.endswith(".py") else name
    if key in known:
        return key
    lower = {k.lower(): k for k in known}
    if key.lower() in lower:
        return lower[key.lower()]
    others = [n for t in TASKS if t != task for n in names(t)]
    pool = {k.lower(): k for k in [*known, *others]}
    close = [pool[c] for c in difflib.get_close_matches(key.lower(), list(pool), n=3, cutoff=0.5)]
    if close:
        hint = f"; did you mean {', '.join(close)}?"
    else:
        hint = f"; known: {', '.join(known)}" if len(known) <= 12 else "; `setr presets` lists them"
    raise SetrError(f"unknown {_LABEL[task]} {name!r}{hint}")


def get(task: str, name: str) -> Any:
    """A fresh (mutable) copy of the ``task`` preset ``name``, found by the one lookup rule."""
    return _makers(task)[resolve_name(task, name)]()


def preset_names() -> list[str]:
    return names("segmentation")


def list_presets() -> list[Preset]:
    return list(_registry().values())


def list_classifier_presets() -> list[ClassifierPreset]:
    return list(_classifiers().values())


def is_classifier_preset(name: str) -> bool:
    return name.lower() in _classifiers()


def get_classifier_preset(name: str) -> ClassifierPreset:
    return get("classification", name)


def get_preset(name: str) -> Preset:
    """A fresh copy of the named segmentation preset (case-insensitive; a trailing ``.py`` is accepted)."""
    return get("segmentation", name)


def resolved_preset(name: str, assignments: Sequence[str] = ()):
    """The named preset (a fresh copy) with ``--set`` assignments applied: the one way every command and API
    turns a preset name plus overrides into a configuration."""
    from ..overrides import apply_overrides

    return apply_overrides(get_preset(name), list(assignments or ()))
