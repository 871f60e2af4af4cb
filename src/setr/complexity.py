"""Parameter and FLOP counting (on the ``meta`` device: no memory, no weights needed).

FLOPs come from PyTorch's ``FlopCounterMode``, which sees every matmul and convolution. It has no formula for
some fused attention kernels, notably the CPU flash-attention kernel that ``F.scaled_dot_product_attention``
runs on the CPU (``_scaled_dot_product_flash_attention_for_cpu`` and its backward), and counted *nothing* for
them: ``flop_counter()`` adds the closed-form attention formulas (2 matmuls forward, 5 backward, as PyTorch
counts its CUDA kernels) for every such kernel, so a count is the same whichever attention kernel ran (the meta
device's decomposition into ``bmm``, the CPU flash kernel, CUDA's) and includes the attention matmuls that the
original mmcv counter missed. One multiply-add counts as 2 FLOPs; ``GMACs`` = GFLOPs / 2 is what mmcv's tool
printed as "GFLOPs".
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


def _attention_kernels() -> tuple[list, list]:
    """(forward, backward) fused-attention ops that PyTorch's FlopCounterMode has no formula for (this build)."""
    from torch.utils.flop_counter import flop_registry

    aten = torch.ops.aten
    names_fwd = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable",
                 "_scaled_dot_product_attention_math_for_mps")
    names_bwd = ("_scaled_dot_product_flash_attention_for_cpu_backward",
                 "_scaled_dot_product_fused_attention_overrideable_backward")

    def ops(names):
        out = []
        for n in names:
            packet = getattr(aten, n, None)
            if packet is not None and packet not in flop_registry and packet.default not in flop_registry:
                out.append(packet)
        return out

    return ops(names_fwd), ops(names_bwd)


#: attention ops as they appear in ``by_op`` (the meta device decomposes attention into ``bmm``)
ATTENTION_OPS = ("bmm", "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                 "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
                 "_scaled_dot_product_fused_attention_overrideable", "_scaled_dot_product_attention_math_for_mps",
                 "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention_backward",
                 "_scaled_dot_product_cudnn_attention_backward", "_scaled_dot_product_flash_attention_for_cpu_backward",
                 "_scaled_dot_product_fused_attention_overrideable_backward")


def flop_counter(display: bool = False):
    """A ``FlopCounterMode`` that also counts the fused attention kernels PyTorch's own registry misses (the CPU
    flash kernel, forward and backward) by the closed-form formula: q @ k^T and p @ v, 2 * B * heads * Nq * Nk * d
    FLOPs each; backward 5 such matmuls (scores recomputed, dV, dP, dQ, dK). Dynamic int8 linear and convolution
    layers count the multiply-adds of the layer they replace."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    def fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    def bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

    def int8_linear(x, packed, *args, out_val=None, **kwargs) -> int:  # the same multiply-adds as the fp32 layer
        return 2 * x.numel() * out_val.shape[-1]

    int8_linear._get_raw = True

    def int8_conv(qx, x_scale, x_zero_point, qw, *args, out_val=None, **kwargs) -> int:  # as the fp32 conv
        return 2 * out_val.numel() * qw.shape[1] * qw.shape[2] * qw.shape[3]

    int8_conv._get_raw = True
    forward_ops, backward_ops = _attention_kernels()
    mapping = {op: fwd for op in forward_ops}
    mapping.update({op: bwd for op in backward_ops})
    quantized = getattr(torch.ops, "quantized", None)
    if quantized is not None and hasattr(quantized, "linear_dynamic"):  # --precision int8's linear layers
        mapping[quantized.linear_dynamic] = int8_linear
    onednn = getattr(torch.ops, "onednn", None)
    if onednn is not None and hasattr(onednn, "qconv2d_pointwise"):  # --precision int8's head convolutions
        mapping[onednn.qconv2d_pointwise] = int8_conv
    return FlopCounterMode(display=display, custom_mapping=mapping)


def _op_name(k) -> str:
    return k.__name__ if hasattr(k, "__name__") else str(k).split(".")[-1]


def counter_result(counter) -> dict[str, int | dict[str, int]]:
    """Total FLOPs, a per-operator breakdown and the attention share of a finished ``flop_counter()``."""
    by_op = {_op_name(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return {"flops": int(counter.get_total_flops()), "by_op": by_op,
            "attention_flops": sum(v for k, v in by_op.items() if k in ATTENTION_OPS)}


def count_flops(fn, *args) -> dict[str, float | dict[str, int]]:
    """Run ``fn(*args)`` under ``flop_counter()``; returns total FLOPs, a per-operator breakdown and the
    attention matmuls' share."""
    counter = flop_counter()
    with torch.no_grad(), counter:
        fn(*args)
    return counter_result(counter)


def vit_flops(image_hw: Sequence[int], patch_size: int, embed_dim: int, depth: int, mlp_ratio: float = 4.0,
              batch: int = 1, cls_token: bool = True) -> dict[str, int]:
    """Closed-form forward FLOPs of a ViT encoder (patch conv, ``depth`` pre-norm blocks), 2 FLOPs per
    multiply-add, matmuls and convolutions only (as the counter): the reference the counters are tested against.
    """
    h, w = int(image_hw[0]) // patch_size, int(image_hw[1]) // patch_size
    n = h * w + (1 if cls_token else 0)
    c, hidden = embed_dim, int(embed_dim * mlp_ratio)
    patch = 2 * batch * h * w * c * 3 * patch_size * patch_size
    linear = 2 * batch * n * (c * 3 * c + c * c + c * hidden + hidden * c)  # qkv, proj, fc1, fc2
    attention = 2 * (2 * batch * n * n * c)  # q @ k^T and p @ v over all heads (heads * head_dim = c)
    return {"flops": patch + depth * (linear + attention), "patch_embed": patch, "linear": depth * linear,
            "attention": depth * attention}


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
