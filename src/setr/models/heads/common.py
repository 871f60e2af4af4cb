"""Small pieces shared by the SETR heads."""
from __future__ import annotations

from typing import NamedTuple, Sequence

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


class DeferredLogits(NamedTuple):
    """A head's logits before its last bilinear resizes, for a loss that upsamples piece by piece instead of
    holding the full-resolution map (see :func:`setr.engine.losses.seg_cross_entropy`). ``logits`` resized
    through ``sizes`` in turn (bilinear, ``align_corners``), then cropped to ``crop`` (rows, cols) when given,
    is what the head returns: :meth:`materialise` does exactly that."""

    logits: torch.Tensor
    sizes: tuple  # ((h, w), ...): the bilinear resizes still to apply, no-ops left out
    align_corners: bool = False
    crop: tuple | None = None  # (h, w): the top-left part kept after the resizes (padded inputs)

    def materialise(self) -> torch.Tensor:
        x = self.logits
        for size in self.sizes:
            x = resize(x, size, self.align_corners)
        if self.crop is not None and tuple(x.shape[-2:]) != tuple(self.crop):
            x = x[..., :self.crop[0], :self.crop[1]]
        return x

    @property
    def out_size(self) -> tuple[int, int]:
        """(h, w) of the materialised logits."""
        if self.crop is not None:
            return (int(self.crop[0]), int(self.crop[1]))
        return tuple(int(v) for v in (self.sizes[-1] if self.sizes else self.logits.shape[-2:]))


def deferred(x: torch.Tensor, sizes: Sequence[Sequence[int]], align_corners: bool = False) -> DeferredLogits:
    """``x`` with the bilinear resizes ``sizes`` still to apply (those that would be no-ops left out)."""
    kept, h, w = [], int(x.shape[-2]), int(x.shape[-1])
    for size in sizes:
        size = (int(size[0]), int(size[1]))
        if size != (h, w):
            kept.append(size)
            h, w = size
    return DeferredLogits(x, tuple(kept), align_corners)


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
