"""Numeric precision of inference and training: the fastest honest mode for the device, or exact fp32.

``auto`` picks bf16 autocast where the hardware has bf16 matrix units (CUDA GPUs of compute capability >= 8,
CPUs with AVX512-BF16 or AMX), else fp32. Under bf16 autocast, matmuls and convolutions run in bf16 while
softmax, LayerNorm and the loss stay in fp32 (PyTorch's autocast lists); ``fp32`` reproduces the original bit
for bit (up to float summation order).
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

from .errors import SetrError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def has_fast_bf16(device: torch.device | str) -> bool:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)
    return False


def resolve_precision(requested: str | None, device: torch.device | str) -> str:
    requested = requested or "auto"
    if requested not in PRECISIONS:
        raise SetrError(f"--precision {requested}: expected one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        return "bf16" if has_fast_bf16(device) else "fp32"
    if requested == "fp16" and torch.device(device).type == "cpu":
        raise SetrError("--precision fp16 is for GPUs; use bf16 or fp32 on the CPU")
    return requested


def autocast(precision: str, device: torch.device | str):
    """The autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=DTYPES[precision])
