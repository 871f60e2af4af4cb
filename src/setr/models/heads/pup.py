"""SETR-PUP (progressive upsampling) decode head.

LN -> 4 x [3x3 conv -> BN -> ReLU], with a x2 bilinear upsample after each of the first three -> 1x1 classifier
at 1/2 resolution -> x2 upsample of the logits (reference quirk: the last upsample follows the classifier) ->
resize to the output size (a no-op when the input is a multiple of the patch size).
Keys: ``norm``, ``conv_0..conv_4``, ``syncbn_fc_0..3`` (the original's).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import bn, conv_bn, deferred, resize, tokens_to_map
from .naive import LAYER_NORM_EPS

NUM_CONVS = 4


class PUPHead(nn.Module):
    can_defer = True  # forward(..., defer=True) returns DeferredLogits

    def __init__(self, in_index: int, embed_dim: int, num_classes: int, channels: int = 256,
                 align_corners: bool = False, has_cls_token: bool = True, img_size: Sequence[int] | None = None):
        super().__init__()
        self.in_index = in_index
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.has_cls_token = has_cls_token
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        for i in range(NUM_CONVS):
            self.add_module(f"conv_{i}", nn.Conv2d(embed_dim if i == 0 else channels, channels, 3, padding=1))
            self.add_module(f"syncbn_fc_{i}", bn(channels))
        self.add_module(f"conv_{NUM_CONVS}", nn.Conv2d(channels, num_classes, 1))

    def _up2(self, x: torch.Tensor) -> torch.Tensor:
        return resize(x, (2 * x.shape[-2], 2 * x.shape[-1]), self.align_corners)

    def forward(self, feats: Sequence[torch.Tensor], out_size: Sequence[int] | None = None,
                grid: Sequence[int] | None = None, defer: bool = False):
        """Logits at ``out_size``; ``out_size=None``: the head's own output, as the original head returns it (at
        16x the token grid, whatever the image size: with patch size 8 that is twice the image); with ``defer``
        a :class:`DeferredLogits` (the classifier's output and the resizes still to apply) for the training
        loss. (``img_size`` is accepted for a uniform constructor; the original PUP head does not use it.)"""
        x = tokens_to_map(self.norm(feats[self.in_index]), grid, self.has_cls_token)  # (B, C, h, w)
        for i in range(NUM_CONVS):
            x = F.relu(conv_bn(getattr(self, f"conv_{i}"), getattr(self, f"syncbn_fc_{i}"), x), inplace=True)
            if i < NUM_CONVS - 1:
                x = self._up2(x)  # h -> 2h -> 4h -> 8h
        # classifier at 8h, then logits to 16h, then to out_size (contiguous: the head may run channels-last)
        x = getattr(self, f"conv_{NUM_CONVS}")(x).contiguous()
        natural = (2 * x.shape[-2], 2 * x.shape[-1])
        out = deferred(x, [natural, out_size or natural], self.align_corners)
        return out if defer else out.materialise()
