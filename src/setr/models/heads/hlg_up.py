"""SETR-PUP-HLG decode head (``HLGUPHead``).

1. Resize the four backbone maps bilinearly to the size of map ``fuse_level`` (stride 4), concatenate,
   conv3x3 ``conv_0`` (bias) -> BN ``syncbn_fc_0`` -> ReLU.
2. ``decode_transformer``: ``depth`` head layers (the older pre-norm local-global design), by default a 7x7
   window layer then a dilated layer with interval ``dilation_interval``.
3. Dropout2d -> 1x1 ``conv_seg`` -> bilinear x4 to (4h, 4w) (the reference's square ``size=W*4`` is fixed).

One ``attn`` module (q, kv, DPB ``pos``, ``norm``, ``proj``) serves both the local and the global attention of
a layer. Its global position bias follows the reference's own index rule (checked by the ``seg_head`` case in
tests/fixtures/hlg_reference), kept as is.
Keys are the original's: ``conv_0``, ``syncbn_fc_0``, ``decode_transformer.{i}.*``, ``conv_seg``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import DropPath, Mlp

from ..hlg import (DynamicPosBias, Grouping, attention, crop_tokens, grid_coords, linspace, merge_heads,
                   nchw_to_tokens, pad_to_multiple, relative_offsets, smooth_bottleneck, spatial_smooth,
                   split_heads, tokens_to_nchw)
from .common import bn, conv_bn, resize

HEAD_LAYER_NORM_EPS = 1e-5


def head_global_offsets(hw: Sequence[int], group_grid: Sequence[int],
                        device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's global-bias offsets, (H*W, nG) each.

    Query (y, x) on the H x W grid, key (u, v) on the (g2 x g3) grid of global tokens. The reference computes
    r = (y - u + g2 - 1) * (2 g3 - 1) + (x - v + g3 - 1) and reads row r of a DPB table laid out over the
    offsets of the H x W grid, i.e. offset (r // (2W - 1) - (H - 1), r % (2W - 1) - (W - 1)).
    """
    h, w = hw
    g2, g3 = group_grid
    ys, xs = grid_coords(h, w, device)
    us, vs = grid_coords(g2, g3, device)
    r = (ys[:, None] - us[None, :] + g2 - 1) * (2 * g3 - 1) + (xs[:, None] - vs[None, :] + g3 - 1)
    return r // (2 * w - 1) - (h - 1), r % (2 * w - 1) - (w - 1)


class HLGHeadAttention(nn.Module):
    """MHSA with separate ``q`` and ``kv``; for global attention the keys/values come from LN ``norm`` of
    the global tokens."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, norm_eps: float = HEAD_LAYER_NORM_EPS,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.pos = DynamicPosBias(dim, num_heads)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, C) queries; keys/values from x itself (local) or from norm(context) (B, M, C) (global)."""
        kv_in = x if context is None else self.norm(context)
        b, m, c = kv_in.shape
        kv = self.kv(kv_in).view(b, m, 2, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = attention(split_heads(self.q(x), self.num_heads), kv[0], kv[1], bias, self.scale, self.attn_drop)
        return self.proj_drop(self.proj(merge_heads(out)))  # (B, N, C)


class HLGHeadLayer(nn.Module):
    """Spatial smoothing -> local MHSA per group (pre-norm ``norm0``) -> global MHSA to the per-group means
    (pre-norm ``norm1``) -> MLP (pre-norm ``norm2``)."""

    def __init__(self, dim: int, num_heads: int, grouping: Grouping, mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, norm_eps: float = HEAD_LAYER_NORM_EPS, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.grouping = grouping
        self.norm0 = nn.LayerNorm(dim, eps=norm_eps)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = HLGHeadAttention(dim, num_heads, qkv_bias, norm_eps, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)  # fc1, GELU, fc2
        self.spatial_smooth = nn.Sequential(smooth_bottleneck(dim))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """(B, H * W, C) -> (B, H * W, C)."""
        b, _, c = x.shape
        m = pad_to_multiple(x.view(b, hw[0], hw[1], c), self.grouping.size)  # (B, Hp, Wp, C), no mask
        hp, wp = m.shape[1:3]
        m = spatial_smooth(self.spatial_smooth, m)

        groups = self.grouping.partition(m)  # (B * nG, n, C)
        local_bias = self.attn.pos.bias(*relative_offsets(*self.grouping.token_grid(hp, wp), device=x.device))
        groups = groups + self.drop_path(self.attn(self.norm0(groups), local_bias))
        num_groups = groups.shape[0] // b
        tokens = groups.view(b, num_groups, -1, c).mean(2)  # (B, nG, C)

        x = crop_tokens(self.grouping.reverse(groups, hp, wp), hw)  # (B, H * W, C)
        global_bias = self.attn.pos.bias(*head_global_offsets(hw, self.grouping.group_grid(hp, wp), x.device))
        x = x + self.drop_path(self.attn(self.norm1(x), global_bias, context=tokens))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class HLGUPHead(nn.Module):
    def __init__(self, in_channels: Sequence[int] = (96, 192, 384, 768), num_classes: int = 19,
                 channels: int = 512, num_heads: int = 16, depth: int = 2, window_size: int = 7,
                 dilation_interval: int = 8, block_types: Sequence[str] | None = None, mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, norm_eps: float = HEAD_LAYER_NORM_EPS, in_index: Sequence[int] = (0, 1, 2, 3),
                 fuse_level: int = 0, dropout_ratio: float = 0.1, drop_path_rate: float = 0.0,
                 align_corners: bool = False):
        super().__init__()
        if block_types is None:  # window, dilated, window, ...
            block_types = ["window" if i % 2 == 0 else "dilated" for i in range(depth)]
        if len(block_types) != depth:
            raise ValueError(f"block_types {list(block_types)} does not have depth={depth} entries")
        self.in_index = tuple(in_index)
        self.fuse_level = fuse_level
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.conv_0 = nn.Conv2d(sum(in_channels[i] for i in self.in_index), channels, 3, padding=1)
        dpr = linspace(0.0, drop_path_rate, depth)
        self.decode_transformer = nn.ModuleList([
            HLGHeadLayer(channels, num_heads, Grouping(kind, window_size if kind == "window" else dilation_interval),
                         mlp_ratio, qkv_bias, norm_eps, drop_path=dpr[i])
            for i, kind in enumerate(block_types)
        ])
        self.syncbn_fc_0 = bn(channels)
        self.dropout = nn.Dropout2d(dropout_ratio)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor], out_size: Sequence[int] | None = None,
                grid: Sequence[int] | None = None) -> torch.Tensor:
        """(B, K, 4h, 4w) logits from the stage-1 grid (h, w); resized to ``out_size`` when given."""
        logits = self.forward_logits(feats)
        return resize(logits, out_size, self.align_corners) if out_size is not None else logits

    def forward_logits(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Four maps (B, C_i, h_i, w_i) -> logits (B, num_classes, 4h, 4w), (h, w) the ``fuse_level`` size."""
        size = feats[self.fuse_level].shape[-2:]
        x = torch.cat([resize(feats[i], size, self.align_corners) for i in self.in_index], dim=1)
        x = F.relu(conv_bn(self.conv_0, self.syncbn_fc_0, x), inplace=True)  # (B, channels, h, w)
        hw = (x.shape[-2], x.shape[-1])
        t = nchw_to_tokens(x)
        for layer in self.decode_transformer:
            t = layer(t, hw)
        x = self.conv_seg(self.dropout(tokens_to_nchw(t, hw)))
        return F.interpolate(x, size=(4 * hw[0], 4 * hw[1]), mode="bilinear", align_corners=self.align_corners)
