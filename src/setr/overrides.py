"""``--set key=value`` overrides on a preset (``train.lr=0.001``, ``model.backbone.depth=12``,
``model.aux_heads=[]``, ``model.aux_heads.0.in_index=5``, ``data.crop_size=[512,512]``)."""
from __future__ import annotations

import ast
import dataclasses
from typing import Any, Sequence, get_args, get_origin, get_type_hints

from .errors import SetrError


def _parse(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def coerce_value(value: Any, annotation: Any, key: str) -> Any:
    """Fit a parsed value to a dataclass field's type (tuples from lists, dataclasses from dicts): the one
    coercer behind ``--set``, :func:`dataclass_from_dict` and every ``from_dict``."""
    origin = get_origin(annotation)
    args = [a for a in get_args(annotation) if a is not type(None)]
    if value is None:
        return None
    try:
        if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
            return annotation(**value)
        if origin is list and args and dataclasses.is_dataclass(args[0]) and isinstance(value, (list, tuple)):
            return [args[0](**v) if isinstance(v, dict) else v for v in value]
    except TypeError as exc:
        raise SetrError(f"--set {key}: {exc}") from None
    if origin is tuple or (args and any(get_origin(a) is tuple for a in args)):
        if isinstance(value, str) and str in _item_types(annotation):  # [horizontal,vertical] or a,b without quotes
            value = [v.strip().strip("'\"") for v in value.strip().strip("[]()").split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            return tuple(value)
        if isinstance(value, (int, float)):
            return (value, value)
    if annotation is float and isinstance(value, int):
        return float(value)
    if annotation in (int, float, str, bool) and not isinstance(value, annotation):
        raise SetrError(f"--set {key}: expected {annotation.__name__}, got {value!r}")
    return value


def dataclass_from_dict(klass: Any, values: dict[str, Any], *, ignore_unknown: bool = False,
                        prefix: str = "") -> Any:
    """``klass(**values)`` with every value fitted to its field's type by :func:`coerce_value`; nested
    dataclass fields (and lists of them) are built from their dicts the same way. Keys that are not fields are
    dropped with ``ignore_unknown``, refused otherwise."""
    hints = get_type_hints(klass)
    names = {f.name for f in dataclasses.fields(klass)}
    kwargs = {}
    for k, v in values.items():
        if k not in names:
            if ignore_unknown:
                continue
            raise SetrError(f"{prefix}{k}: unknown key in {klass.__name__} (known: {', '.join(sorted(names))})")
        ann = hints[k]
        item = [a for a in get_args(ann) if a is not type(None)]
        if dataclasses.is_dataclass(ann) and isinstance(v, dict):
            v = dataclass_from_dict(ann, v, ignore_unknown=ignore_unknown, prefix=f"{prefix}{k}.")
        elif get_origin(ann) is list and item and dataclasses.is_dataclass(item[0]) and isinstance(v, (list, tuple)):
            v = [dataclass_from_dict(item[0], x, ignore_unknown=ignore_unknown, prefix=f"{prefix}{k}.{i}.")
                 if isinstance(x, dict) else x for i, x in enumerate(v)]
        else:
            v = coerce_value(v, ann, f"{prefix}{k}")
        kwargs[k] = v
    return klass(**kwargs)


def _item_types(annotation: Any) -> set:
    """Element types of a tuple annotation (``tuple[str, ...]`` -> {str}), also inside ``X | None``."""
    out = set()
    for a in [annotation, *get_args(annotation)]:
        if get_origin(a) is tuple:
            out.update(t for t in get_args(a) if t is not Ellipsis)
    return out


@dataclasses.dataclass
class _ModelOnly:
    model: Any


def apply_model_overrides(cfg: Any, assignments: Sequence[str] = ()) -> Any:
    """Apply the ``model.*`` assignments of a ``--set`` list to a model config (the config stored with a
    checkpoint); other keys need the preset and are refused."""
    assignments = list(assignments or ())
    others = [a for a in assignments if not a.strip().startswith(("model.", "test."))]
    if others:
        raise SetrError(f"--set {others[0]}: only model.* keys apply to a checkpoint's stored config")
    return apply_overrides(_ModelOnly(cfg), assignments).model


# settings whose values have a range (checked when set, so a bad one is one line, not a traceback from torch)
POSITIVE = {"train.lr", "train.head_lr_mult", "lr", "base_lr"}
NON_NEGATIVE = {"train.momentum", "train.weight_decay", "train.min_lr", "train.warmup_iters", "train.warmup_ratio",
                "train.poly_power", "weight_decay", "min_lr", "warmup_lr"}


def check_range(key: str, value: Any) -> None:
    """A one-line :class:`SetrError` when ``value`` is out of range for ``key`` (see POSITIVE, NON_NEGATIVE)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if key in POSITIVE and not value > 0:
        raise SetrError(f"--set {key}={value}: must be > 0")
    if key in NON_NEGATIVE and not value >= 0:
        raise SetrError(f"--set {key}={value}: must be >= 0")


PRESET_SECTIONS = ("model", "train", "data")


def _is_preset(obj: Any) -> bool:
    """A preset (name, task, model, train, data): ``--set`` reaches its sections only, never its name or task."""
    return dataclasses.is_dataclass(obj) and {"name", "task", "model", "train", "data"} <= {
        f.name for f in dataclasses.fields(obj)}


def apply_overrides(obj: Any, assignments: Sequence[str]) -> Any:
    """Apply ``key=value`` assignments in place (and return ``obj``)."""
    for item in assignments:
        if "=" not in item:
            raise SetrError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if parts[0] == "test" and not hasattr(obj, "test") and hasattr(getattr(obj, "model", None), "test"):
            parts = ["model", *parts]  # ``test.*`` is short for ``model.test.*`` (the test pipeline's settings)
        if _is_preset(obj) and parts[0] not in PRESET_SECTIONS:
            raise SetrError(f"--set {key}: unknown key {parts[0]!r}: a key is section.name, the section one of "
                            f"{', '.join(s + '.*' for s in PRESET_SECTIONS)}, test.* (e.g. train.lr=0.001)")
        target = obj
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[:i]) or "the preset"
            if isinstance(target, list):
                if not part.isdigit() or int(part) >= len(target):
                    raise SetrError(f"--set {key}: {where} has {len(target)} entries, no index {part!r}")
                if last:
                    target[int(part)] = _parse(raw)
                else:
                    target = target[int(part)]
                continue
            if not dataclasses.is_dataclass(target):
                raise SetrError(f"--set {key}: {where} has no fields")
            names = [f.name for f in dataclasses.fields(target)]
            if part not in names:
                raise SetrError(f"--set {key}: unknown key {part!r} in {where} (known: {', '.join(names)})")
            if last:
                hints = get_type_hints(type(target))
                value = coerce_value(_parse(raw), hints[part], key)
                check_range(".".join(parts), value)
                setattr(target, part, value)
            else:
                target = getattr(target, part)
    return obj
