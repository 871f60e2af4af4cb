"""Training states (the files ``--resume`` reads): model, optimizer, iteration, RNG states and the resolved preset, written atomically.

The layout follows mmcv's (``meta`` / ``state_dict`` / ``optimizer``), so a training checkpoint is also an
"original-format" checkpoint that ``setr test`` / ``setr predict`` load directly.

A checkpoint holds tensors and plain Python values only (RNG states included: numpy's and Python's are stored
as tensors / lists / ints), so it is read back with ``torch.load(weights_only=True)`` like any other file.
"""
from __future__ import annotations

import random
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io.atomic import atomic_write
from ..errors import SetrError
from ..io.weights import safe_torch_load



def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain values (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state(legacy=False)
    state = {"torch": torch.get_rng_state(),
             "numpy": {"bit_generator": str(np_state["bit_generator"]),
                       "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                       "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                       "gauss": float(np_state["gauss"])},
             "python": _python_rng_to_plain(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_rng_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [int(version), [int(v) for v in internal], None if gauss is None else float(gauss)]


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s states (also the numpy-tuple layout of checkpoints written before)."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    if isinstance(np_state, dict):
        key = np_state["key"]
        key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        np.random.set_state((np_state["bit_generator"], key.astype(np.uint32), int(np_state["pos"]),
                             int(np_state["has_gauss"]), float(np_state["gauss"])))
    else:
        np.random.set_state(np_state)
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def plain_state(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with numpy scalars -> Python numbers and numpy arrays -> tensors, so ``weights_only=True`` reads it
    back. Anything but tensors, plain values and containers of them is a programming error (``TypeError``)."""
    if isinstance(obj, torch.Tensor) or obj is None:
        return obj
    if isinstance(obj, np.generic):  # before the plain types: np.float64 is a float subclass that pickles as numpy
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy()) if obj.dtype.kind in "biuf" else plain_state(obj.tolist(), where)
    if type(obj) in (bool, int, float, complex, str, bytes) or isinstance(obj, (torch.dtype, torch.device, torch.Size)):
        return obj
    if isinstance(obj, dict):
        items = ((plain_state(k, where), plain_state(v, f"{where}[{k!r}]")) for k, v in obj.items())
        return OrderedDict(items) if isinstance(obj, OrderedDict) else dict(items)
    if isinstance(obj, (list, tuple, set, frozenset)):  # namedtuples and other subclasses: the plain container
        base = next(t for t in (list, tuple, set, frozenset) if isinstance(obj, t))
        return base(plain_state(v, f"{where}[{i}]") for i, v in enumerate(obj))
    for base in (bool, int, float, str, bytes):  # enums and other subclasses of the plain types
        if isinstance(obj, base):
            return base(obj)
    raise TypeError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be stored in a training "
                    "checkpoint (tensors and plain Python values only, so that weights_only=True can read it)")


def write_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """``torch.save`` a training state atomically, as tensors and plain values only (see :func:`plain_state`)."""
    state = plain_state(state)
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))
    return Path(path)


def gather_rng_states(info) -> list | None:
    """Every process's RNG state (for per-rank dropout / drop-path streams), on all ranks; None alone."""
    if not info.distributed:
        return None
    import torch.distributed as dist

    states = [None] * info.world_size
    dist.all_gather_object(states, rng_state())
    return states


def read_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> dict[str, Any]:
    """A training checkpoint (any of our trainers') as a dict, on the CPU; one-line errors for bad files.
    Read with ``weights_only=True``; ``trust_checkpoint`` loads other pickled objects too (unsafe)."""
    path = Path(path)
    if not path.is_file():
        raise SetrError(f"{path}: checkpoint not found")
    state = safe_torch_load(path, trust=trust_checkpoint)
    if not isinstance(state, dict):
        raise SetrError(f"{path}: not a checkpoint (a {type(state).__name__})")
    return state
