"""SETR-MLA: the multi-level aggregation neck, its decode head and its auxiliary heads.

Neck (stored in the backbone as ``backbone.mla``, as in the original): per level a 1x1 conv -> BN -> ReLU
lateral, a top-down cumulative sum at the same resolution (S24 = L24, S18 = S24 + L18, ...), then a 3x3
conv -> BN -> ReLU per level. Returns (P6, P12, P18, P24).
Head: per level [3x3 conv -> BN -> ReLU] x 2, x4 bilinear with align_corners=True (hard-coded in the original),
concatenate, 3x3 classifier, resize to the output size.
Aux: a single bias-free 1x1 conv on one neck level, resized to the output size.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .common import ConvBNSequential, conv_bn_relu, deferred, resize

LEVELS = (2, 3, 4, 5)  # key suffixes p2..p5 <-> mla_index[0..3]


class MLANeck(nn.Module):
    def __init__(self, embed_dim: int, channels: int = 256):
        super().__init__()
        for lv in LEVELS:
            self.add_module(f"mla_p{lv}_1x1", conv_bn_relu(embed_dim, channels, 1))
            self.add_module(f"mla_p{lv}", conv_bn_relu(channels, channels, 3))

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [getattr(self, f"mla_p{lv}_1x1")(m) for lv, m in zip(LEVELS, maps)]
        summed = [laterals[3]]  # top-down: deepest first
        for lateral in reversed(laterals[:3]):
            summed.insert(0, summed[0] + lateral)
        return [getattr(self, f"mla_p{lv}")(s) for lv, s in zip(LEVELS, summed)]


class MLAHead(nn.Module):
    can_defer = True  # forward(..., defer=True) returns DeferredLogits

    def __init__(self, num_classes: int, mla_channels: int = 256, mlahead_channels: int = 128,
                 align_corners: bool = False, img_size: Sequence[int] | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.img_size = tuple(img_size) if img_size is not None else None  # the original's own output size
        self.mlahead = nn.Module()
        for lv in LEVELS:
            branch = ConvBNSequential(*conv_bn_relu(mla_channels, mlahead_channels, 3),
                                   *conv_bn_relu(mlahead_channels, mlahead_channels, 3))
            self.mlahead.add_module(f"head{lv}", branch)  # keys head{lv}.{0,1,3,4}.*
        self.cls = nn.Conv2d(4 * mlahead_channels, num_classes, 3, padding=1)

    def forward(self, feats: Sequence[torch.Tensor], out_size: Sequence[int] | None = None,
                grid: Sequence[int] | None = None, defer: bool = False):
        """Logits at ``out_size`` (``None``: the head's own output, resized to the configured ``img_size`` as
        the original head does); ``defer``: a :class:`DeferredLogits` for the training loss."""
        branches = []
        for lv, f in zip(LEVELS, feats):
            y = getattr(self.mlahead, f"head{lv}")(f)
            # reference quirk: the branch x4 uses align_corners=True whatever the head setting
            branches.append(resize(y, (4 * y.shape[-2], 4 * y.shape[-1]), align_corners=True))
        x = self.cls(torch.cat(branches, dim=1))  # (B, 4*mlahead_channels, 4h, 4w) -> (B, K, 4h, 4w)
        out = deferred(x, [out_size or self.img_size or x.shape[-2:]], self.align_corners)  # defer: left to the loss
        return out if defer else out.materialise()


class MLAAuxHead(nn.Module):
    can_defer = True  # forward(..., defer=True) returns DeferredLogits

    def __init__(self, in_index: int, num_classes: int, mla_channels: int = 256, align_corners: bool = False,
                 img_size: Sequence[int] | None = None):
        super().__init__()
        self.in_index = in_index
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.img_size = tuple(img_size) if img_size is not None else None  # the original's own output size
        self.aux = nn.Conv2d(mla_channels, num_classes, 1, bias=False)

    def forward(self, feats: Sequence[torch.Tensor], out_size: Sequence[int] | None = None,
                grid: Sequence[int] | None = None, defer: bool = False):
        """Logits at ``out_size`` (``None``: the head's own output, resized to the configured ``img_size`` as
        the original head does); ``defer``: a :class:`DeferredLogits` for the training loss."""
        x = self.aux(feats[self.in_index])
        out = deferred(x, [out_size or self.img_size or x.shape[-2:]], self.align_corners)
        return out if defer else out.materialise()
