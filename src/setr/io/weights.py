"""Reading weights files safely (``weights_only=True`` unless trusted; safetensors) and the state-dict key
helpers every checkpoint reader shares (the one place the ``module.`` prefix is stripped)."""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TypeVar

import torch

from ..errors import SetrError

V = TypeVar("V")
log = logging.getLogger(__name__)

MODULE_PREFIX = "module."  # what DataParallel / DistributedDataParallel put before every key


def strip_prefixes(key: str, prefixes: Sequence[str] = (MODULE_PREFIX,)) -> str:
    """``key`` without each of ``prefixes`` in turn (each removed once, where the key starts with it)."""
    for prefix in prefixes:
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def strip_module_prefix(state_dict: Mapping[str, V]) -> dict[str, V]:
    """A copy of ``state_dict`` with a leading ``module.`` removed from every key that has one."""
    return {strip_prefixes(k): v for k, v in state_dict.items()}


# --------------------------------------------------------------------------- reading files safely
_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("setr_trust_checkpoint", default=False)
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
TRUST_HINT = ("if you trust this file, re-run with --trust-checkpoint (unsafe: it runs code stored in the file; "
              "Python: trust_checkpoint=True), or re-save its tensors with torch.save(state_dict) or as safetensors")


@contextlib.contextmanager
def trusted_checkpoints(enabled: bool = True) -> Iterator[None]:
    """Within this block every :func:`safe_torch_load` (e.g. inside a trainer's ``--resume``/``--load-from``)
    behaves as if ``trust=True`` was passed when ``enabled``: what ``--trust-checkpoint`` sets for a command."""
    token = _TRUSTED.set(bool(enabled) or _TRUSTED.get())
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def safe_torch_load(path: str | os.PathLike, trust: bool = False, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location='cpu', weights_only=True)``: tensors and plain Python values only.

    A file that needs any other Python object to unpickle is refused with a one-line :class:`SetrError` that
    names the file, the objects and how to proceed; nothing in it runs. ``trust=True`` (or an enclosing
    :func:`trusted_checkpoints`) loads it with ``weights_only=False``: only for files from a trusted source.
    The one place the package calls ``torch.load`` on a file it is given."""
    path = Path(path)
    if not path.is_file():
        raise SetrError(f"{path}: {what} file not found")
    if trust or _TRUSTED.get():
        log.warning(f"{path}: loading with weights_only=False (--trust-checkpoint): code stored in the file "
                    "can run")
        try:
            return torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any failure is a bad file
            raise SetrError(f"{path}: not a readable PyTorch {what} ({type(exc).__name__}: "
                            f"{_first_line(exc)})") from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        names = _unsafe_globals(path, exc)
        if names:
            raise SetrError(f"{path}: refused to load: the file contains Python objects other than tensors and "
                            f"plain values ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}), and "
                            f"unpickling them could run code; {TRUST_HINT}") from None
        raise SetrError(f"{path}: not a PyTorch checkpoint (.pth/.pt) or safetensors file "
                        f"({type(exc).__name__})") from None


def _unsafe_globals(path: Path, exc: Exception) -> list[str]:
    """The Python objects (module.name) a file's pickle asked for that weights_only refuses; [] if none."""
    names = list(dict.fromkeys(_GLOBAL_RE.findall(str(exc))))
    if names or "Unsupported global" in str(exc) or "is blocked" in str(exc):
        return names or ["unknown objects"]
    return []


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:200] if lines else ""


def read_state_dict(path: str | os.PathLike, trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors / .pth / .pt / .bin file (mmcv ``state_dict`` and DeiT ``model`` unwrapped).
    ``.pth`` files are read with ``weights_only=True`` (see :func:`safe_torch_load`)."""
    path = Path(path)
    if not path.is_file():
        raise SetrError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
            raise SetrError(f"{path}: not a readable safetensors file ({exc})") from None
    obj = safe_torch_load(path, trust=trust_checkpoint)
    return unwrap_state_dict(obj, path)


def unwrap_state_dict(obj: Any, path: str | os.PathLike = "<checkpoint>") -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return strip_module_prefix(tensors)
    raise SetrError(f"{path}: expected a state dict (or a dict with 'state_dict' / 'model'), found no tensors")
