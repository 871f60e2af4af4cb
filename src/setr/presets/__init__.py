"""Named presets: ``get_preset(name)``, ``list_presets()``."""
from __future__ import annotations

import difflib
from functools import lru_cache

from ..errors import SetrError
from .base import Preset, TrainRecipe
from .demo import demo_preset
from .hlg import ClassifierPreset, hlg_presets
from .setr import setr_presets
from .setr_hlg import setr_hlg_presets

__all__ = ["ClassifierPreset", "Preset", "TrainRecipe", "get_classifier_preset", "get_preset",
           "is_classifier_preset", "list_classifier_presets", "list_presets", "preset_names"]


@lru_cache(maxsize=1)
def _registry() -> dict[str, Preset]:
    return {p.name: p for p in [*setr_presets(), *setr_hlg_presets(), demo_preset()]}


@lru_cache(maxsize=1)
def _classifiers() -> dict[str, ClassifierPreset]:
    return {p.name: p for p in hlg_presets()}


def preset_names() -> list[str]:
    return list(_registry())


def list_classifier_presets() -> list[ClassifierPreset]:
    return list(_classifiers().values())


def is_classifier_preset(name: str) -> bool:
    return name.lower() in _classifiers()


def get_classifier_preset(name: str) -> ClassifierPreset:
    import copy

    if name.lower() not in _classifiers():
        close = difflib.get_close_matches(name, list(_classifiers()), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(_classifiers())}"
        raise SetrError(f"unknown classification preset {name!r}{hint}")
    return copy.deepcopy(_classifiers()[name.lower()])


def list_presets() -> list[Preset]:
    return list(_registry().values())


def get_preset(name: str) -> Preset:
    """A fresh copy of the named preset (case-insensitive; a trailing ``.py`` is accepted)."""
    import copy

    reg = _registry()
    key = name[:-3] if name.endswith(".py") else name
    if key not in reg:
        lower = {k.lower(): k for k in reg}
        if key.lower() in lower:
            key = lower[key.lower()]
        else:
            close = difflib.get_close_matches(key, list(reg) + list(_classifiers()), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else "; `setr presets` lists them"
            raise SetrError(f"unknown preset {name!r}{hint}")
    return copy.deepcopy(reg[key])
