"""Small pieces shared by the SETR heads."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-5


def resize(x: torch.Tensor, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize; a no-op (the same tensor) when the size already matches."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def tokens_to_map(tokens: torch.Tensor, grid: Sequence[int] | None, has_cls_token: bool) -> torch.Tensor:
    """(B, [1 +] N, C) -> (B, C, h, w).

    The original drops the first token "when the token count is not divisible by 48", which for a cls-token ViT
    is always; we simply drop it when the backbone kept one. ``grid`` defaults to a square layout.
    """
    if has_cls_token:
        tokens = tokens[:, 1:]
    b, n, c = tokens.shape
    if grid is None:
        side = int(round(n ** 0.5))
        grid = (side, side)
    h, w = grid
    if h * w != n:
        raise ValueError(f"cannot lay {n} tokens out on a {h}x{w} grid")
    return tokens.transpose(1, 2).reshape(b, c, h, w)


def bn(channels: int) -> nn.BatchNorm2d:
    """The heads' norm: BatchNorm (SyncBatchNorm under DDP), eps 1e-5, momentum 0.1."""
    return nn.BatchNorm2d(channels, eps=BN_EPS)


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Bias-free conv -> BN -> ReLU as ``Sequential`` (keys ``0.weight``, ``1.*``), the MLA layout."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        bn(out_channels),
        nn.ReLU(inplace=True),
    )
