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


def hlg_complexity(variant: str, shape: Sequence[int] = (224, 224), num_classes: int = 1000) -> dict:
    """Parameters (classification and dense backbone) and GMACs at ``shape`` in both conventions: the full
    network, and without the two stem convs (the convention that reproduces the published table)."""
    from .models.hlg import create_hlg

    dense = build_on_meta(create_hlg, variant, num_classes=0, dense=True)
    # the relative-offset tables are built from the input's grid with Python ints, so FLOPs are counted on a
    # real (CPU) forward rather than on the meta device
    cls = create_hlg(variant, num_classes=num_classes).eval()
    x = torch.zeros(1, 3, int(shape[0]), int(shape[1]))
    total = count_flops(cls, x)["flops"]
    stem = count_flops(cls.s0_conv, x)["flops"]
    return {"params": {"classification": count_params(cls), "dense_backbone": count_params(dense)},
            "shape": [int(shape[0]), int(shape[1])],
            "gmacs": {"with_stem": total / 2e9, "without_stem": (total - stem) / 2e9},
            "gflops": {"with_stem": total / 1e9, "without_stem": (total - stem) / 1e9}}
