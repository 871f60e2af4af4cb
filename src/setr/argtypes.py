"""Argument types for the command lines: every numeric option has its valid range, and ``--device`` names only
a device PyTorch can use on this machine. A bad value is refused by argparse before any work starts."""
from __future__ import annotations

import argparse
import re


def _checked(text: str, convert, valid, expected: str):
    """``convert(text)`` if it parses and ``valid`` holds for it; else argparse's one-line refusal."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (iterations, batch sizes, epochs, runs, class counts, sizes)."""
    return _checked(text, int, lambda v: v >= 1, "a whole number >= 1")


def nonneg_int(text: str) -> int:
    """A whole number >= 0 (data-loader workers, seeds)."""
    return _checked(text, int, lambda v: v >= 0, "a whole number >= 0")


def label_value(text: str) -> int:
    """A label value of an 8-bit label map: 0..255."""
    return _checked(text, int, lambda v: 0 <= v <= 255, "a label value 0..255")


def fraction(text: str) -> float:
    """A number in [0, 1] (score thresholds)."""
    return _checked(text, float, lambda v: 0.0 <= v <= 1.0, "a number between 0 and 1")


class ShapeAction(argparse.Action):
    """``--shape S`` or ``--shape H W`` (positive sizes); three or more values are refused."""

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) not in (1, 2):
            raise argparse.ArgumentError(self, f"expected H W or a single size S, got {len(values)} values "
                                               f"({' '.join(str(v) for v in values)})")
        setattr(namespace, self.dest, list(values))


def add_shape(p: argparse.ArgumentParser, help: str = "input size H W, or S for S x S (default: the crop)") -> None:
    p.add_argument("--shape", type=positive_int, nargs="+", metavar=("H", "W"), action=ShapeAction, help=help)


def available_devices() -> list[str]:
    import torch

    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def device(text: str) -> str:
    """``cpu``; ``cuda`` / ``cuda:N`` when PyTorch sees that GPU; ``mps`` where available. Anything else
    (``gpu``, ``tpu``, ``cuda`` on a machine without one) is refused with what this machine offers."""
    import torch

    name = text.strip().lower()
    usable = ", ".join(available_devices())
    if name == "cpu":
        return name
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m:
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine (PyTorch sees no GPU); "
                                             f"usable here: {usable}")
        count = torch.cuda.device_count()
        if m.group(1) is not None and int(m.group(1)) >= count:
            raise argparse.ArgumentTypeError(f"{text}: PyTorch sees {count} GPU(s) (cuda:0..cuda:{count - 1})")
        return name
    if name == "mps":
        if "mps" not in available_devices():
            raise argparse.ArgumentTypeError(f"{text}: Apple MPS is not available on this machine; usable here: {usable}")
        return name
    raise argparse.ArgumentTypeError(f"{text!r} is not a device PyTorch can use here (usable: {usable})")
