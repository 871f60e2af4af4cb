"""Training checkpoints: model, optimizer, iteration, RNG states and the resolved preset, written atomically.

The layout follows mmcv's (``meta`` / ``state_dict`` / ``optimizer``), so a training checkpoint is also an
"original-format" checkpoint that ``setr test`` / ``setr predict`` load directly.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoints import atomic_write
from ..errors import SetrError

ITER_RE = re.compile(r"iter_(\d+)\.pth$")


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(info) -> list | None:
    """Every process's RNG state (for per-rank dropout / drop-path streams), on all ranks; None alone."""
    if not info.distributed:
        return None
    import torch.distributed as dist

    states = [None] * info.world_size
    dist.all_gather_object(states, rng_state())
    return states


def save_training_checkpoint(path: Path, model: torch.nn.Module, optimizer, iteration: int, preset: dict,
                             best: dict | None = None, scaler=None, rng_ranks: list | None = None) -> Path:
    state = {"meta": {"iteration": iteration, "preset": preset["name"], "config": preset, "best": best or {},
                      "format": "setr-train-1"},
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict(), "rng": rng_state()}
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    if rng_ranks is not None:
        state["rng_ranks"] = rng_ranks
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint (any of our trainers') as a dict, on the CPU; one-line errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise SetrError(f"{path}: checkpoint not found")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise SetrError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise SetrError(f"{path}: not a checkpoint (a {type(state).__name__})")
    return state


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    state = read_checkpoint(path)
    if "iteration" not in state.get("meta", {}):
        raise SetrError(f"{path}: not a setr training checkpoint (no meta.iteration); "
                        "use --load-from to start from weights only")
    return state


def latest_checkpoint(work_dir: Path) -> Path | None:
    from .common import newest_checkpoint

    return newest_checkpoint(work_dir, "iter")


def prune_checkpoints(work_dir: Path, keep: int, protect: set[Path] = frozenset()) -> None:
    if keep <= 0:
        return
    found = sorted((int(m.group(1)), p) for p in work_dir.glob("iter_*.pth") if (m := ITER_RE.search(p.name)))
    for _, p in found[:-keep]:
        if p not in protect:
            p.unlink(missing_ok=True)
