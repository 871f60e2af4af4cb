"""FCN auxiliary head (the SETR-PUP-HLG auxiliary head on stage 3): [3x3 conv -> BN -> ReLU] x num_convs,
Dropout2d, 1x1 classifier, resized to the output size. Keys ``convs.{i}.conv``, ``convs.{i}.bn``, ``conv_seg``."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .common import bn, resize


class ConvBNReLU(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = bn(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class FCNHead(nn.Module):
    def __init__(self, in_index: int, in_channels: int, num_classes: int, channels: int = 256, num_convs: int = 1,
                 dropout_ratio: float = 0.1, align_corners: bool = False):
        super().__init__()
        self.in_index = in_index
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.convs = nn.Sequential(*[ConvBNReLU(in_channels if i == 0 else channels, channels)
                                     for i in range(num_convs)])
        self.dropout = nn.Dropout2d(dropout_ratio)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor], out_size: Sequence[int], grid=None) -> torch.Tensor:
        return resize(self.conv_seg(self.dropout(self.convs(feats[self.in_index]))), out_size, self.align_corners)
