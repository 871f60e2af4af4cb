"""Named presets: ``get_preset(name)``, ``list_presets()``."""
from __future__ import annotations

import difflib
from functools import lru_cache

from ..errors import SetrError
from .base import Preset, TrainRecipe
from .demo import demo_preset
from .setr import setr_presets

__all__ = ["Preset", "TrainRecipe", "get_preset", "list_presets", "preset_names"]


@lru_cache(maxsize=1)
def _registry() -> dict[str, Preset]:
    return {p.name: p for p in [*setr_presets(), demo_preset()]}


def preset_names() -> list[str]:
    return list(_registry())


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
            close = difflib.get_close_matches(key, list(reg), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else "; `setr presets` lists them"
            raise SetrError(f"unknown preset {name!r}{hint}")
    return copy.deepcopy(reg[key])
