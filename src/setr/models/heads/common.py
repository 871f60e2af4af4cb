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


FOLD_FLAG = "_setr_fold_bn"  # set on a Conv2d by setr.precision.fold_batchnorm (inference only)


def conv_bn(conv: nn.Conv2d, norm: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``norm(conv(x))``. For inference, once :func:`setr.precision.fold_batchnorm` has marked ``conv`` and while
    both are in eval mode: one convolution with the BatchNorm folded into its weight and bias (the same function,
    up to float rounding: ~1e-7 on the logits), recomputed whenever a weight or running statistic changes."""
    if conv.training or norm.training or not getattr(conv, FOLD_FLAG, False):
        return norm(conv(x))
    return _folded_conv(conv, norm, x)


def _folded_conv(conv: nn.Conv2d, norm: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    tensors = (conv.weight, conv.bias, norm.weight, norm.bias, norm.running_mean, norm.running_var)
    # (inference tensors keep no version counter: their storage and dtype stand for them)
    key = tuple(None if t is None else (t.data_ptr(), -1 if t.is_inference() else t._version, t.dtype)
                for t in tensors)
    cached = getattr(conv, "_setr_folded", None)
    if cached is None or cached[0] != key:
        from torch.nn.utils.fusion import fuse_conv_bn_weights

        with torch.inference_mode(False), torch.no_grad():
            weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                                norm.eps, norm.weight, norm.bias)
            weight = weight.detach().contiguous(memory_format=torch.channels_last
                                                if conv.weight.is_contiguous(memory_format=torch.channels_last)
                                                else torch.contiguous_format)
        cached = conv._setr_folded = (key, weight, bias.detach())
    return conv._conv_forward(x, cached[1], cached[2])


class ConvBNSequential(nn.Sequential):
    """``nn.Sequential`` whose (Conv2d, BatchNorm2d) neighbours run through :func:`conv_bn` (the same modules,
    keys and function as a plain ``Sequential``; the BatchNorm folds into the conv for inference)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            if (i + 1 < len(layers) and isinstance(layers[i], nn.Conv2d)
                    and isinstance(layers[i + 1], nn.BatchNorm2d)):
                x = conv_bn(layers[i], layers[i + 1], x)
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> ConvBNSequential:
    """Bias-free conv -> BN -> ReLU as a ``Sequential`` (keys ``0.weight``, ``1.*``), the MLA layout."""
    return ConvBNSequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        bn(out_channels),
        nn.ReLU(inplace=True),
    )
