"""What every golden-case checker shares: the per-output result and the case loader."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SetrError


@dataclass
class OutputCheck:
    name: str
    max_abs_err: float
    tolerance: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.max_abs_err <= self.tolerance


def load_case(path) -> dict[str, Any]:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise SetrError(f"{path}: reference case not found") from None
