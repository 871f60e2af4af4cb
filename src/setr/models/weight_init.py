"""The initialisation both ViT (SETR) and HLG use before any weights are loaded."""
from __future__ import annotations

from timm.layers import trunc_normal_
from torch import nn


def init_linear_and_norm(m: nn.Module) -> None:
    """trunc-normal(0.02) Linear weights with zero biases, LayerNorm (1, 0); convs and BN keep PyTorch's init.
    Use with ``module.apply``."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
