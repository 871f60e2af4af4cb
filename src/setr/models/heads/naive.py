"""SETR-Naive head, also the Naive-style and PUP auxiliary heads.

LN -> conv_0 (1x1, or 3x3 when ``first_kernel=3``) -> BN -> ReLU -> [x``mid_scale`` resize] -> conv_1 (1x1 to K)
-> bilinear resize to the output size. Keys: ``norm``, ``conv_0``, ``syncbn_fc_0``, ``conv_1`` (the original's).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import bn, conv_bn, deferred, resize, tokens_to_map

LAYER_NORM_EPS = 1e-6


class NaiveHead(nn.Module):
    can_defer = True  # forward(..., defer=True) returns DeferredLogits

    def __init__(self, in_index: int, embed_dim: int, num_classes: int, channels: int = 256,
                 first_kernel: int = 1, mid_scale: int = 1, align_corners: bool = False,
                 has_cls_token: bool = True, img_size: Sequence[int] | None = None):
        super().__init__()
        if first_kernel not in (1, 3):
            raise ValueError(f"first_kernel must be 1 or 3, got {first_kernel}")
        self.in_index = in_index
        self.num_classes = num_classes
        self.mid_scale = mid_scale
        self.align_corners = align_corners
        self.has_cls_token = has_cls_token
        self.img_size = tuple(img_size) if img_size is not None else None  # the original's own output size
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.conv_0 = nn.Conv2d(embed_dim, channels, first_kernel, padding=first_kernel // 2)
        self.syncbn_fc_0 = bn(channels)
        self.conv_1 = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor], out_size: Sequence[int] | None = None,
                grid: Sequence[int] | None = None, defer: bool = False):
        """Logits at ``out_size``; ``out_size=None``: the head's own output, as the original head returns it
        (resized to the configured ``img_size``); with ``defer`` a :class:`DeferredLogits` (the classifier's output
        and the resize still to apply) for the training loss."""
        x = tokens_to_map(self.norm(feats[self.in_index]), grid, self.has_cls_token)  # (B, C, h, w)
        x = F.relu(conv_bn(self.conv_0, self.syncbn_fc_0, x), inplace=True)
        if self.mid_scale != 1:  # PUP auxiliary heads: x4 before the classifier
            x = resize(x, (x.shape[-2] * self.mid_scale, x.shape[-1] * self.mid_scale), self.align_corners)
        x = self.conv_1(x)
        out = deferred(x, [out_size or self.img_size or x.shape[-2:]], self.align_corners)
        return out if defer else out.materialise()


class PUPAuxHead(NaiveHead):
    """SETR-PUP auxiliary head: a 3x3 first conv and a x4 upsample before the 1x1 classifier."""

    def __init__(self, in_index: int, embed_dim: int, num_classes: int, channels: int = 256,
                 align_corners: bool = False, has_cls_token: bool = True, img_size: Sequence[int] | None = None):
        super().__init__(in_index, embed_dim, num_classes, channels, first_kernel=3, mid_scale=4,
                         align_corners=align_corners, has_cls_token=has_cls_token, img_size=img_size)
