"""A stand-in for ``mmcv.ops`` (the compiled ops that mmcv-lite does not ship).

MMSegmentation 1.2.2 imports a few names from ``mmcv.ops`` when its model registry loads (point_sample,
sigmoid_focal_loss, ...); SETR uses none of them. ``install()`` registers a module whose every attribute is a
stand-in that raises on use, so importing works and any real use fails loudly instead of computing something else.
"""
from __future__ import annotations

import sys
import types


class _MissingOp:
    def __init__(self, name: str):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"mmcv.ops.{self._name} is a compiled op that mmcv-lite does not ship; "
                           "the peer benchmark's stand-in cannot run it")

    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        raise RuntimeError(f"mmcv.ops.{self._name}.{item}: mmcv-lite ships no compiled ops")


def install() -> None:
    if "mmcv.ops" in sys.modules and not getattr(sys.modules["mmcv.ops"], "_setr_stub", False):
        return  # a real mmcv.ops is importable: leave it
    try:
        import mmcv._ext  # noqa: F401  (present only in the full mmcv build)
        return
    except ImportError:
        pass
    mod = types.ModuleType("mmcv.ops")
    mod._setr_stub = True
    def __getattr__(name: str):  # PEP 562: `from mmcv.ops import X` gets a stand-in (dunders stay missing)
        if name.startswith("__"):
            raise AttributeError(name)
        return _MissingOp(name)

    mod.__getattr__ = __getattr__
    mod.__file__ = __file__
    mod.__all__ = []
    sys.modules["mmcv.ops"] = mod
    import mmcv

    mmcv.ops = mod
