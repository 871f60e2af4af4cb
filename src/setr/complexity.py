"""Parameter and FLOP counting (on the ``meta`` device: no memory, no weights needed).

FLOPs come from PyTorch's ``FlopCounterMode``, which sees every matmul, convolution and
``scaled_dot_product_attention`` (the attention matmuls that the original mmcv counter missed). One
multiply-add counts as 2 FLOPs; ``GMACs`` = GFLOPs / 2 is what mmcv's tool printed as "GFLOPs".
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def segmentor_param_counts(model: nn.Module) -> dict[str, int]:
    backbone = count_params(model.backbone)
    decode = count_params(model.decode_head)
    aux = sum(count_params(h) for h in model.auxiliary_head)
    return {"total": backbone + decode + aux, "without_aux": backbone + decode, "backbone": backbone,
            "decode_head": decode, "aux_heads": aux}


def count_flops(fn, *args) -> dict[str, float | dict[str, int]]:
    """Run ``fn(*args)`` under FlopCounterMode; returns total FLOPs and a per-operator breakdown."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(*args)
    by_op = {str(k).split(".")[-1] if not hasattr(k, "__name__") else k.__name__: int(v)
             for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return {"flops": int(counter.get_total_flops()), "by_op": by_op}


def segmentor_flops(model: nn.Module, shape: Sequence[int], device: str = "meta") -> dict:
    """FLOPs of one whole-image forward (decode head only, as at inference) on a (1, 3, H, W) input."""
    x = torch.zeros(1, 3, int(shape[0]), int(shape[1]), device=device)
    return count_flops(model.encode_decode, x)


def build_on_meta(build, *args, **kwargs) -> nn.Module:
    """Build a model on the meta device: real sizes, no memory."""
    with torch.device("meta"):
        return build(*args, **kwargs)
