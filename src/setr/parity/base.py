"""What every golden-case checker shares: the per-output result and the case loader."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def load_case(path, trust: bool = False) -> dict[str, Any]:
    """A golden case, read like any file a user hands us: tensors and plain values only (``weights_only=True``;
    every case the original's scripts write is of that kind); ``trust`` (``--trust-checkpoint``) unpickles more."""
    from ..io.weights import safe_torch_load

    if not Path(path).is_file():
        raise SetrError(f"{path}: reference case not found")
    case = safe_torch_load(path, trust=trust, what="reference case")
    if not isinstance(case, dict):
        raise SetrError(f"{path}: not a reference case (a {type(case).__name__}, expected a dict)")
    return case
