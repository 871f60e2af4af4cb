"""Strict reading of a golden case: every field is either used, verified against what we build, or declared
informational; anything else (an unknown field, or a value we do not implement) fails naming the field."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from ..errors import SetrError

INFO = "info"  # provenance only (names, seeds, notes): read and shown, changes nothing we compute


class UnsupportedField(SetrError):
    """A golden case holds a field or a value the checker does not implement."""


def unsupported(where: str, why: str) -> UnsupportedField:
    return UnsupportedField(f"unsupported fixture field {where}: {why}")


def check_fields(obj: Mapping[str, Any], spec: Mapping[str, Any], where: str) -> None:
    """Walk ``obj`` against ``spec``: for each key, ``INFO``, a nested spec (dict), a callable ``f(value, path)``
    that raises when the value is not what we implement, or a plain value that must be equal."""
    if not isinstance(obj, Mapping):
        raise unsupported(where, f"expected a mapping, got {type(obj).__name__}")
    for key, value in obj.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in spec:
            raise unsupported(path, f"unknown field (value {value!r:.80})")
        rule = spec[key]
        if rule is INFO:
            continue
        if isinstance(rule, Mapping):
            check_fields(value, rule, path)
        elif callable(rule):
            rule(value, path)
        elif not _equal(value, rule):
            raise unsupported(path, f"value {value!r} is not implemented (only {rule!r})")


def one_of(*allowed: Any) -> Callable[[Any, str], None]:
    def check(value: Any, path: str) -> None:
        if not any(_equal(value, a) for a in allowed):
            raise unsupported(path, f"value {value!r} is not implemented (only {', '.join(map(repr, allowed))})")
    return check


def equals(expected: Any, what: str) -> Callable[[Any, str], None]:
    """The fixture's value must equal what we build (``what`` says where ours comes from)."""
    def check(value: Any, path: str) -> None:
        if not _equal(value, expected):
            raise unsupported(path, f"value {value!r} differs from {what} ({expected!r})")
    return check


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
        except (TypeError, ValueError):
            return False
    return a == b
