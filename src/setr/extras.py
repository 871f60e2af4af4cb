"""Optional dependencies ("extras"): which ``pip install 'setr[...]'`` provides a missing module, as one line.

The base install covers inference, training, pretrained folders and the Hub; these are extras:
``cityscapes`` (cityscapesscripts), ``coco`` (pycocotools), ``tensorboard``, ``convert`` (scipy), ``export``
(onnx, onnxscript, onnxruntime), ``report`` (matplotlib); ``all`` is every one of them. ``setr``'s command line turns a missing one into
``setr <command>: error: <what> needs <module>: pip install 'setr[<extra>]'``.
"""
from __future__ import annotations

import re

# top-level module -> (extra, what needs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "cityscapesscripts": ("cityscapes", "Cityscapes label conversion and server-format files"),
    "pycocotools": ("coco", "COCO detection data and evaluation"),
    "tensorboard": ("tensorboard", "TensorBoard logging"),
    "scipy": ("convert", "Pascal Context label conversion"),
    "onnx": ("export", "ONNX export"),
    "onnxscript": ("export", "ONNX export"),
    "onnxruntime": ("export", "ONNX verification"),
    "matplotlib": ("report", "Report pages and training curves"),
}
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")


def missing_extra(exc: BaseException) -> str | None:
    """The one-line message for an ImportError of a module an extra provides, else None. Works for errors
    re-raised from worker processes too (the module name is read from the message when not attached)."""
    name = getattr(exc, "name", None)
    if not name:
        found = _NO_MODULE.findall(str(exc))
        name = found[-1] if found else None
    if not name:
        return None
    top = name.split(".")[0]
    if top not in EXTRAS:
        return None
    extra, what = EXTRAS[top]
    return f"{what} needs the {top} package, an optional extra: pip install 'setr[{extra}]'"
