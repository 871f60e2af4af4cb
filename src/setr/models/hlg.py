"""HLG (Hierarchical Local-Global) vision transformer, classification and dense (seg/det) modes.

Rebuilt from the authors' release; state-dict keys are the original's (``s0_conv``, ``block{1..4}.{i}.*``, ``norm``,
``head`` for classification, ``norm_out_{0,1,2}`` for the dense backbone).

Layout:

* stem ``s0_conv``: two conv3x3-BN-GELU (the first with stride 2)          -> stride 2, C0 = embed_dims[0]
* four stages; block 0 of each does the stride-2 downsampling (there is no patch-merging layer)
* stages 1-3 alternate *window* (even block index, 7x7 windows) and *dilated* (odd index, I x I interleaved
  groups) local-global blocks; stage 4 runs plain global MHSA
* classification: LN ``norm`` -> mean over tokens -> Linear ``head``
* dense: each of stages 1-3 ends with LN ``norm_out_{s}`` whose output is both returned and fed onwards; stage 4
  ends with ``norm``; four NCHW maps at strides 4, 8, 16, 32

Resolutions of the reference code's bugs that shape this file: every stride-2 step rounds up
(ceil), local blocks zero-pad right/bottom to a multiple of the group size with no attention mask, dilated
blocks partition into I x I groups, position biases handle rectangular grids, the global bias places key j of
the nG global tokens at raster position (j // W, j % W) of the query grid, and nothing is created on a fixed
device.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import DropPath

from ..io.weights import MODULE_PREFIX, strip_prefixes
from .weight_init import init_linear_and_norm

LAYER_NORM_EPS = 1e-6  # every model LayerNorm
DPB_LAYER_NORM_EPS = 1e-5  # the LayerNorms inside the dynamic position bias MLPs (PyTorch default)
BN_EPS = 1e-5

HLG_VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": dict(embed_dims=(64, 128, 256, 512), num_heads=(2, 4, 8, 16), depths=(2, 2, 6, 2)),
    "small": dict(embed_dims=(96, 192, 384, 768), num_heads=(3, 6, 12, 24), depths=(2, 2, 6, 2)),
    # released configs; the paper's 43 M row is not reproducible (see NOTES in setr/presets/hlg.py)
    "medium": dict(embed_dims=(96, 192, 384, 768), num_heads=(3, 6, 12, 24), depths=(2, 2, 14, 2)),
    # the Cityscapes-L depth, the only one matching the published 84 M / 15.9 G (other configs use 2,2,14,2)
    "large": dict(embed_dims=(128, 256, 512, 1024), num_heads=(4, 8, 16, 32), depths=(2, 2, 18, 2)),
}


# --------------------------------------------------------------------------------------------------------------
# dynamic position bias


class DynamicPosBias(nn.Module):
    """Per-pair MLP from a raw integer offset (dy, dx) to one bias per head (the non-residual variant).

    Linear(2 -> p), 2 x [LN, ReLU, Linear(p -> p)], LN, ReLU, Linear(p -> heads) with p = (dim // 4) // 4.
    """

    def __init__(self, dim: int, num_heads: int, eps: float = DPB_LAYER_NORM_EPS):
        super().__init__()
        pos_dim = (dim // 4) // 4
        self.num_heads = num_heads
        self.pos_proj = nn.Linear(2, pos_dim)
        self.pos1 = self._ln_relu_linear(pos_dim, pos_dim, eps)
        self.pos2 = self._ln_relu_linear(pos_dim, pos_dim, eps)
        self.pos3 = self._ln_relu_linear(pos_dim, num_heads, eps)

    @staticmethod
    def _ln_relu_linear(dim: int, out_dim: int, eps: float) -> nn.Sequential:
        return nn.Sequential(nn.LayerNorm(dim, eps=eps), nn.ReLU(inplace=True), nn.Linear(dim, out_dim))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        """(N, 2) float offsets -> (N, heads)."""
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))

    def bias(self, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """Integer offsets (Nq, Nk) -> bias (heads, Nq, Nk).

        The MLP runs once per distinct offset of the bounding box (a table, as the reference does), then the
        table is gathered; this keeps the cost independent of Nq * Nk.
        """
        y0, x0 = int(dy.min()), int(dx.min())
        ny, nx = int(dy.max()) - y0 + 1, int(dx.max()) - x0 + 1
        ys = torch.arange(y0, y0 + ny, device=dy.device)
        xs = torch.arange(x0, x0 + nx, device=dy.device)
        table = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)  # (ny * nx, 2)
        table = self(table.to(self.pos_proj.weight.dtype))  # (ny * nx, heads)
        index = (dy - y0) * nx + (dx - x0)  # (Nq, Nk)
        return table[index].permute(2, 0, 1)  # (heads, Nq, Nk)


def grid_coords(h: int, w: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-major (y, x) coordinates of an h x w grid, each (h * w,)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return ys.reshape(-1), xs.reshape(-1)


def relative_offsets(h: int, w: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ordinary relative offsets between all tokens of an h x w grid: dy, dx each (h*w, h*w), query minus key."""
    ys, xs = grid_coords(h, w, device)
    return ys[:, None] - ys[None, :], xs[:, None] - xs[None, :]


def global_token_offsets(hw: Sequence[int], num_groups: int,
                         device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone global-bias offsets, (H*W, nG) each: key j sits at raster position (j // W, j % W) of the query
    grid (the reference rule, which at 224 equals slicing the first nG columns of the H*W x H*W table)."""
    h, w = hw
    ys, xs = grid_coords(h, w, device)
    keys = torch.arange(num_groups, device=device)
    return ys[:, None] - (keys // w)[None, :], xs[:, None] - (keys % w)[None, :]


# --------------------------------------------------------------------------------------------------------------
# padding and grouping


def pad_to_multiple(m: torch.Tensor, multiple: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, Hp, Wp, C), zeros on the right and bottom up to a multiple of ``multiple``."""
    pad_h, pad_w = -m.shape[1] % multiple, -m.shape[2] % multiple
    if pad_h or pad_w:
        m = F.pad(m, (0, 0, 0, pad_w, 0, pad_h))
    return m


@dataclass(frozen=True)
class Grouping:
    """How a local block splits a padded (B, Hp, Wp, C) map into groups of tokens.

    ``window``: non-overlapping size x size windows, row-major over the window grid, tokens row-major inside.
    ``dilated``: size x size (= I x I) interleaved groups; group (r, s) holds pixels (r + I a, s + I b), groups
    row-major over (r, s), tokens row-major over (a, b).
    """

    kind: str
    size: int

    def __post_init__(self):
        if self.kind not in ("window", "dilated"):
            raise ValueError(f"unknown grouping {self.kind!r}")

    def token_grid(self, hp: int, wp: int) -> tuple[int, int]:
        """(Gh, Gw): the layout of the tokens inside one group."""
        return (self.size, self.size) if self.kind == "window" else (hp // self.size, wp // self.size)

    def group_grid(self, hp: int, wp: int) -> tuple[int, int]:
        """The layout of the groups themselves (nG = product)."""
        return (hp // self.size, wp // self.size) if self.kind == "window" else (self.size, self.size)

    def partition(self, m: torch.Tensor) -> torch.Tensor:
        """(B, Hp, Wp, C) -> (B * nG, Gh * Gw, C)."""
        b, hp, wp, c = m.shape
        s = self.size
        if self.kind == "window":
            m = m.view(b, hp // s, s, wp // s, s, c).permute(0, 1, 3, 2, 4, 5)  # (B, nh, nw, s, s, C)
        else:
            m = m.view(b, hp // s, s, wp // s, s, c).permute(0, 2, 4, 1, 3, 5)  # (B, r, s, a, b, C)
        return m.reshape(-1, m.shape[3] * m.shape[4], c)

    def reverse(self, groups: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
        """(B * nG, Gh * Gw, C) -> (B, Hp, Wp, C)."""
        c, s = groups.shape[-1], self.size
        if self.kind == "window":
            m = groups.view(-1, hp // s, wp // s, s, s, c).permute(0, 1, 3, 2, 4, 5)  # (B, nh, s, nw, s, C)
        else:
            m = groups.view(-1, s, s, hp // s, wp // s, c).permute(0, 3, 1, 4, 2, 5)  # (B, a, r, b, s, C)
        return m.reshape(-1, hp, wp, c)


def crop_tokens(m: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
    """(B, Hp, Wp, C) -> (B, H * W, C), dropping the padding."""
    h, w = hw
    return m[:, :h, :w].reshape(m.shape[0], h * w, m.shape[-1])


def tokens_to_nchw(x: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
    """(B, H * W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], hw[0], hw[1])


def nchw_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H * W, C)."""
    return x.flatten(2).transpose(1, 2)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C // heads)."""
    b, n, c = x.shape
    return x.view(b, n, num_heads, c // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


# --------------------------------------------------------------------------------------------------------------
# convolutional pieces


def conv_bn_gelu(in_chans: int, out_chans: int, stride: int, bn_eps: float = BN_EPS) -> nn.Sequential:
    """Bias-free conv3x3 -> BN -> GELU (one stem stage, keys ``0.weight``, ``1.*``)."""
    return nn.Sequential(nn.Conv2d(in_chans, out_chans, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(out_chans, eps=bn_eps), nn.GELU())


class DownProj(nn.Module):
    """Block-0 shortcut: grouped conv3x3 stride 2 (groups = C_in, bias) -> BN -> GELU, under ``proj``."""

    def __init__(self, in_dim: int, dim: int, bn_eps: float = BN_EPS):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_dim, dim, 3, 2, 1, groups=in_dim),
                                  nn.BatchNorm2d(dim, eps=bn_eps), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class DWMlp(nn.Module):
    """Conv FFN: 1x1 (C_in -> hidden) -> BN -> GELU -> dw3x3 (stride) -> BN -> GELU -> 1x1 (hidden -> C)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, stride: int = 1, drop: float = 0.0,
                 bn_eps: float = BN_EPS):
        super().__init__()
        self.fc1 = nn.Conv2d(in_dim, hidden_dim, 1)
        self.norm1 = nn.BatchNorm2d(hidden_dim, eps=bn_eps)
        self.fc2 = nn.Conv2d(hidden_dim, hidden_dim, 3, stride, 1, groups=hidden_dim)
        self.norm2 = nn.BatchNorm2d(hidden_dim, eps=bn_eps)
        self.fc3 = nn.Conv2d(hidden_dim, out_dim, 1)
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.norm1(self.fc1(x))))
        x = self.drop(self.act(self.norm2(self.fc2(x))))
        return self.drop(self.fc3(x))


def smooth_bottleneck(dim: int, bn_eps: float = BN_EPS) -> nn.Sequential:
    """Spatial-smoothing branch s(x): 1x1 (C -> C/4) BN GELU, 3x3 BN GELU, 1x1 (C/4 -> C) BN."""
    mid = dim // 4
    return nn.Sequential(
        nn.Conv2d(dim, mid, 1), nn.BatchNorm2d(mid, eps=bn_eps), nn.GELU(),
        nn.Conv2d(mid, mid, 3, padding=1), nn.BatchNorm2d(mid, eps=bn_eps), nn.GELU(),
        nn.Conv2d(mid, dim, 1), nn.BatchNorm2d(dim, eps=bn_eps),
    )


def spatial_smooth(smooth: nn.Module, m: torch.Tensor) -> torch.Tensor:
    """GELU(x + s(x)) on a (B, H, W, C) map (a GELU sits on the residual path)."""
    x = m.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W) contiguous as the original: train-mode BatchNorm on a
    # channels-last view takes another CPU kernel, whose float32 statistics put the RetinaNet training golden 40x further off
    return F.gelu(x + smooth(x)).permute(0, 2, 3, 1)


# --------------------------------------------------------------------------------------------------------------
# attention


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float,
              attn_drop: nn.Module | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v on (B, heads, N, d) tensors; bias broadcasts from (heads, Nq, Nk)."""
    attn = (q * scale) @ k.transpose(-2, -1) + bias
    attn = attn.softmax(dim=-1)
    if attn_drop is not None:
        attn = attn_drop(attn)
    return attn @ v


class GlobalAttention(nn.Module):
    """Attention from token queries to given keys/values, then ``proj``. Holds only ``proj`` (q/k/v live in
    the block, shared with the local step)."""

    def __init__(self, dim: int, num_heads: int, proj_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, C), k/v (B, Nk, C), bias (heads, Nq, Nk) -> (B, Nq, C)."""
        h = self.num_heads
        out = attention(split_heads(q, h), split_heads(k, h), split_heads(v, h), bias, self.scale, self.attn_drop)
        return self.proj_drop(self.proj(merge_heads(out)))


# --------------------------------------------------------------------------------------------------------------
# blocks


class _HLGBlockBase(nn.Module):
    """Step 1 shared by every block: conv FFN (+ downsample in block 0) on the input, post-LN on the branch."""

    downsample: bool
    down_proj: nn.Module
    mlp: DWMlp
    norm2: nn.LayerNorm
    drop_path: nn.Module

    def ffn(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, H_in * W_in, C_in) -> (B, H * W, C): shortcut(x) + DropPath(norm2(FFN(x)))."""
        m = tokens_to_nchw(x, hw)  # (B, C_in, H_in, W_in)
        y = self.mlp(m)  # (B, C, H, W), H = ceil(H_in / 2) in block 0
        hw = (y.shape[-2], y.shape[-1])
        shortcut = nchw_to_tokens(self.down_proj(m)) if self.downsample else x
        return shortcut + self.drop_path(self.norm2(nchw_to_tokens(y))), hw


class HLGLocalGlobalBlock(_HLGBlockBase):
    """Stage 1-3 block: conv FFN, then local attention inside windows or dilated groups, then global attention
    from every token to the per-group mean tokens.

    Reference maths kept as is: the local keys are the queries themselves, ``q`` and ``v`` serve both steps,
    ``k`` only the global tokens, there is no output projection in the local step and no drop path on it.
    """

    def __init__(self, in_dim: int, dim: int, num_heads: int, grouping: Grouping, downsample: bool = False,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, proj_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, norm_eps: float = LAYER_NORM_EPS,
                 dpb_eps: float = DPB_LAYER_NORM_EPS, bn_eps: float = BN_EPS):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.grouping = grouping
        self.downsample = downsample
        # registration order = the reference's state-dict order
        self.aux_q = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm0 = norm_layer(dim)
        self.h0_norm = norm_layer(dim)
        self.pos_local = DynamicPosBias(dim, num_heads, dpb_eps)
        self.spatial_smooth = nn.Sequential(smooth_bottleneck(dim, bn_eps))
        self.down_proj = DownProj(in_dim, dim, bn_eps) if downsample else nn.Identity()
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.pos_global = DynamicPosBias(dim, num_heads, dpb_eps)
        self.global_attn = GlobalAttention(dim, num_heads, proj_bias, attn_drop, drop)
        self.norm2 = norm_layer(dim)
        self.mlp = DWMlp(in_dim, int(mlp_ratio * in_dim), dim, 2 if downsample else 1, drop, bn_eps)
        self.norm1 = norm_layer(dim)  # here: LN on the local-attention output before aux_q
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def local_attention(self, groups: torch.Tensor, token_grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B * nG, n, C) -> (Q, O), both (B * nG, n, C): keys are the queries, O = softmax(QQ^T s + b) V."""
        u = self.norm0(groups)
        q, v = self.q(u), self.v(u)
        qh = split_heads(q, self.num_heads)
        bias = self.pos_local.bias(*relative_offsets(*token_grid, device=groups.device))  # (heads, n, n)
        out = attention(qh, qh, split_heads(v, self.num_heads), bias, self.scale)
        return q, merge_heads(out)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        x, hw = self.ffn(x, hw)  # (B, H * W, C)
        b, _, c = x.shape
        m = pad_to_multiple(x.view(b, hw[0], hw[1], c), self.grouping.size)  # (B, Hp, Wp, C), no mask
        hp, wp = m.shape[1:3]
        m = spatial_smooth(self.spatial_smooth, m)

        groups = self.grouping.partition(m)  # (B * nG, n, C)
        q, o = self.local_attention(groups, self.grouping.token_grid(hp, wp))
        groups = groups + o
        num_groups = groups.shape[0] // b
        g = self.h0_norm(groups.view(b, num_groups, -1, c).mean(2))  # (B, nG, C), padding counts in the mean

        x = crop_tokens(self.grouping.reverse(groups, hp, wp), hw)  # (B, H * W, C)
        q = crop_tokens(self.grouping.reverse(q, hp, wp), hw)
        o = crop_tokens(self.grouping.reverse(o, hp, wp), hw)
        q = q + nchw_to_tokens(self.aux_q(tokens_to_nchw(self.norm1(o), hw)))

        bias = self.pos_global.bias(*global_token_offsets(hw, num_groups, device=x.device))  # (heads, HW, nG)
        out = self.global_attn(q, self.k(g), self.v(g), bias)
        return x + self.drop_path(out), hw


class HLGGlobalBlock(_HLGBlockBase):
    """Stage 4 block: conv FFN, then full MHSA over all tokens with a relative DPB, post-LN ``norm1``."""

    def __init__(self, in_dim: int, dim: int, num_heads: int, downsample: bool = False, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, proj_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, norm_eps: float = LAYER_NORM_EPS, dpb_eps: float = DPB_LAYER_NORM_EPS,
                 bn_eps: float = BN_EPS):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)
        self.downsample = downsample
        self.down_proj = DownProj(in_dim, dim, bn_eps) if downsample else nn.Identity()
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.pos_global = DynamicPosBias(dim, num_heads, dpb_eps)
        self.global_attn = GlobalAttention(dim, num_heads, proj_bias, attn_drop, drop)
        self.norm2 = norm_layer(dim)
        self.mlp = DWMlp(in_dim, int(mlp_ratio * in_dim), dim, 2 if downsample else 1, drop, bn_eps)
        self.norm1 = norm_layer(dim)  # post-LN on the attention output
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        x, hw = self.ffn(x, hw)  # (B, H * W, C)
        bias = self.pos_global.bias(*relative_offsets(*hw, device=x.device))  # (heads, HW, HW)
        out = self.global_attn(self.q(x), self.k(x), self.v(x), bias)
        return x + self.drop_path(self.norm1(out)), hw


# --------------------------------------------------------------------------------------------------------------
# model


def linspace(start: float, end: float, steps: int) -> list[float]:
    """``torch.linspace(start, end, steps).tolist()`` in plain Python (works under a meta default device)."""
    if steps == 1:
        return [float(start)]
    return [start + (end - start) * i / (steps - 1) for i in range(steps)]


class HLG(nn.Module):
    """HLG backbone / classifier.

    ``dense=False``: ``forward`` returns logits (B, num_classes) (or the pooled features when num_classes is 0).
    ``dense=True``: ``forward`` returns four NCHW maps at strides 4, 8, 16, 32 with ``embed_dims`` channels;
    the stage norms ``norm_out_{0,1,2}`` exist only in this mode (absent from classification checkpoints: they
    keep their init, see :func:`load_hlg_state_dict`).
    """

    def __init__(self, embed_dims: Sequence[int] = (64, 128, 256, 512), num_heads: Sequence[int] = (2, 4, 8, 16),
                 depths: Sequence[int] = (2, 2, 6, 2), in_chans: int = 3, num_classes: int | None = 1000,
                 window_size: int = 7, dilation_intervals: Sequence[int] = (8, 4, 2, 1), mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, proj_bias: bool = True, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, dense: bool = False,
                 norm_eps: float = LAYER_NORM_EPS, dpb_eps: float = DPB_LAYER_NORM_EPS, bn_eps: float = BN_EPS,
                 grad_checkpointing: bool = False):
        super().__init__()
        if not (len(embed_dims) == len(num_heads) == len(depths) == len(dilation_intervals) == 4):
            raise ValueError("embed_dims, num_heads, depths and dilation_intervals need 4 entries each")
        if min(depths) < 1:
            raise ValueError(f"every stage needs at least one block, got depths {list(depths)}")
        self.embed_dims = tuple(int(d) for d in embed_dims)
        self.num_heads = tuple(int(h) for h in num_heads)
        self.depths = tuple(int(d) for d in depths)
        self.dilation_intervals = tuple(int(i) for i in dilation_intervals)
        self.window_size = window_size
        self.num_classes = int(num_classes or 0)
        self.dense = dense
        self.grad_checkpointing = grad_checkpointing
        self.num_features = self.embed_dims[-1]

        self.s0_conv = nn.Sequential(conv_bn_gelu(in_chans, self.embed_dims[0], 2, bn_eps),
                                     conv_bn_gelu(self.embed_dims[0], self.embed_dims[0], 1, bn_eps))
        dpr = linspace(0.0, drop_path_rate, sum(self.depths))  # rises linearly over all blocks
        common = dict(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_bias=proj_bias, drop=drop_rate,
                      attn_drop=attn_drop_rate, norm_eps=norm_eps, dpb_eps=dpb_eps, bn_eps=bn_eps)
        in_dim, cursor = self.embed_dims[0], 0
        for s in range(4):
            dim, blocks = self.embed_dims[s], []
            for i in range(self.depths[s]):
                kw = dict(in_dim=in_dim if i == 0 else dim, dim=dim, num_heads=self.num_heads[s],
                          downsample=i == 0, drop_path=dpr[cursor + i], **common)
                if s == 3:
                    blocks.append(HLGGlobalBlock(**kw))
                else:
                    grouping = Grouping("window", window_size) if i % 2 == 0 else \
                        Grouping("dilated", self.dilation_intervals[s])
                    blocks.append(HLGLocalGlobalBlock(grouping=grouping, **kw))
            self.add_module(f"block{s + 1}", nn.ModuleList(blocks))
            in_dim, cursor = dim, cursor + self.depths[s]
        self.norm = nn.LayerNorm(self.num_features, eps=norm_eps)
        if self.num_classes:
            self.head = nn.Linear(self.num_features, self.num_classes)
        if dense:
            for s in range(3):
                self.add_module(f"norm_out_{s}", nn.LayerNorm(self.embed_dims[s], eps=norm_eps))
        # timm's feature metadata: the four stage maps (``features_only`` / ``forward_intermediates``)
        self.feature_info = [dict(num_chs=self.embed_dims[s], reduction=2 ** (s + 2), module=f"block{s + 1}")
                             for s in range(4)]
        self.apply(init_linear_and_norm)

    @property
    def stages(self) -> tuple[nn.ModuleList, ...]:
        return self.block1, self.block2, self.block3, self.block4

    def stage_norm(self, s: int) -> nn.Module | None:
        """The LN after stage s (0-based): ``norm`` for the last, ``norm_out_s`` in dense mode, else none."""
        if s == 3:
            return self.norm
        return getattr(self, f"norm_out_{s}") if self.dense else None

    def _run_stage(self, stage: nn.ModuleList, x: torch.Tensor,
                   hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        for blk in stage:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x, hw = torch.utils.checkpoint.checkpoint(blk, x, hw, use_reentrant=False)
            else:
                x, hw = blk(x, hw)
        return x, hw

    def forward_stages(self, x: torch.Tensor) -> list[tuple[torch.Tensor, tuple[int, int]]]:
        """(B, 3, H, W) -> per stage: (normed tokens (B, h*w, C_s), (h, w)); h = ceil(H / 2^(s+2))."""
        x = self.s0_conv(x)  # (B, C0, ceil(H/2), ceil(W/2))
        hw = (x.shape[-2], x.shape[-1])
        x = nchw_to_tokens(x)
        outs = []
        for s, stage in enumerate(self.stages):
            x, hw = self._run_stage(stage, x, hw)
            norm = self.stage_norm(s)
            if norm is not None:
                x = norm(x)  # dense mode: the normed tensor also feeds the next stage
            outs.append((x, hw))
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> final normed tokens (B, h*w, C3)."""
        return self.forward_stages(x)[-1][0]

    def forward_dense(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> four maps (B, C_s, ceil(H / 2^(s+2)), ceil(W / 2^(s+2))), s = 0..3."""
        if not self.dense:
            raise RuntimeError("forward_dense needs a model built with dense=True (it owns norm_out_*)")
        return [tokens_to_nchw(t, hw) for t, hw in self.forward_stages(x)]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, N, C3) normed tokens -> mean over tokens -> (B, num_classes) logits."""
        x = x.mean(dim=1)
        if pre_logits or not self.num_classes:
            return x
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.dense:
            return self.forward_dense(x)
        return self.forward_head(self.forward_features(x))

    # ------------------------------------------------------------------ timm API (features_only, heads)
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def get_classifier(self) -> nn.Module:
        return self.head if self.num_classes else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new ``head`` for ``num_classes`` (0 removes it: ``forward`` returns the pooled features).
        Pooling is always the token mean; ``global_pool`` is accepted for timm's signature only."""
        if global_pool not in (None, "", "avg"):
            raise ValueError(f"HLG pools by the token mean only, got global_pool={global_pool!r}")
        self.num_classes = int(num_classes)
        if hasattr(self, "head"):
            del self.head
        if self.num_classes:
            self.head = nn.Linear(self.num_features, self.num_classes)
            init_linear_and_norm(self.head)

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False
                              ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's feature API: the stage maps selected by ``indices`` (None: all four; an int n: the last n;
        a sequence: those stages, negative from the end), each (B, C_s, ceil(H / 2^(s+2)), ceil(W / 2^(s+2)))
        (``output_fmt="NHWC"``: channels last). Dense models return their stage maps after ``norm_out_s`` (they
        are part of the forward path); the last map gets the final ``norm`` only with ``norm=True``. Returns the
        maps, or ``(forward_features(x), maps)`` unless ``intermediates_only``."""
        from timm.models._features import feature_take_indices

        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        stages = [st for st in self.stages if len(st)]  # prune_intermediate_layers empties the later stages
        take, max_index = feature_take_indices(len(stages), indices)
        if stop_early:
            stages = stages[:max_index + 1]
        x = self.s0_conv(x)
        hw = (x.shape[-2], x.shape[-1])
        x = nchw_to_tokens(x)
        intermediates = []
        last = 3
        for s, stage in enumerate(stages):
            x, hw = self._run_stage(stage, x, hw)
            if s < last and self.dense:
                x = self.stage_norm(s)(x)  # the dense stage norms feed the next stage
            if s in take:
                inter = self.norm(x) if (norm and s == last) else x
                inter = tokens_to_nchw(inter, hw)
                intermediates.append(inter.permute(0, 2, 3, 1) if output_fmt == "NHWC" else inter)
        if intermediates_only:
            return intermediates
        if len(stages) == 4:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last index wanted (and the final norm / head); returns the indices."""
        from timm.models._features import feature_take_indices

        take, max_index = feature_take_indices(4, indices)
        for s in range(max_index + 1, 4):
            setattr(self, f"block{s + 1}", nn.ModuleList())
            if self.dense and s < 3:
                setattr(self, f"norm_out_{s}", nn.Identity())
        if prune_norm or max_index < 3:
            self.norm = nn.Identity()
        if max_index < 3:
            self.num_features = self.embed_dims[max_index]
        if prune_head or max_index < 3:
            self.reset_classifier(0)
        return take

    # ------------------------------------------------------------------ pretrained folders (timm's hub format)
    def save_pretrained(self, save_directory: str, class_names: list[str] | None = None, **kwargs: Any):
        """Write ``config.json`` + ``model.safetensors`` in timm's hub format (``timm.create_model("hf-hub:...",
        pretrained=True)`` loads what this writes; ``push_to_hub=True, repo_id=...`` uploads the folder)."""
        from .hlg_timm import save_hlg_folder

        return save_hlg_folder(self, save_directory, class_names=class_names, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> "HLG":
        """An HLG from a timm-format folder or a Hugging Face Hub repo id (eval mode)."""
        from .hlg_timm import load_hlg_folder

        return load_hlg_folder(name_or_path, **kwargs)

    def push_to_hub(self, repo_id: str, *, token: str | None = None, private: bool | None = None,
                    commit_message: str | None = None, revision: str | None = None, **save_kwargs: Any) -> str:
        """Save to a temporary folder and upload it to ``repo_id`` on the Hugging Face Hub."""
        import tempfile

        from ..io.hub import upload_folder

        with tempfile.TemporaryDirectory(prefix="setr-push-") as tmp:
            self.save_pretrained(tmp, **save_kwargs)
            return upload_folder(tmp, repo_id, token=token, private=private, commit_message=commit_message,
                                 revision=revision)


# --------------------------------------------------------------------------------------------------------------
# construction from names and state dicts


def create_hlg(variant: str, **kwargs: Any) -> HLG:
    """``create_hlg("tiny", num_classes=1000)``; keyword arguments override the variant's."""
    try:
        arch = HLG_VARIANTS[variant.lower()]
    except KeyError:
        raise ValueError(f"unknown HLG variant {variant!r}; choose from {sorted(HLG_VARIANTS)}") from None
    return HLG(**{**arch, **kwargs})


_BLOCK_KEY = re.compile(r"^block([1-4])\.(\d+)\.")


def infer_depths(state_dict: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """Blocks per stage from ``block{s}.{i}.*`` keys (a ``module.`` / ``backbone.`` prefix is ignored)."""
    seen: list[set[int]] = [set(), set(), set(), set()]
    for key in state_dict:
        m = _BLOCK_KEY.match(_strip_prefix(key))
        if m:
            seen[int(m.group(1)) - 1].add(int(m.group(2)))
    for s, idx in enumerate(seen):
        if not idx or idx != set(range(len(idx))):
            raise ValueError(f"state dict has no contiguous block{s + 1}.* keys (found {sorted(idx)})")
    return tuple(len(i) for i in seen)  # type: ignore[return-value]


def infer_hlg_kwargs(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Architecture arguments recoverable from a checkpoint: depths, embed_dims, num_heads, num_classes, dense."""
    sd = {_strip_prefix(k): v for k, v in state_dict.items()}
    depths = infer_depths(sd)
    embed_dims = tuple(int(sd[f"block{s + 1}.0.norm2.weight"].shape[0]) for s in range(4))
    num_heads = tuple(int(sd[f"block{s + 1}.0.pos_global.pos3.2.weight"].shape[0]) for s in range(4))
    head = sd.get("head.weight")
    return dict(depths=depths, embed_dims=embed_dims, num_heads=num_heads,
                num_classes=int(head.shape[0]) if head is not None else 0,
                dense=any(k.startswith("norm_out_") for k in sd))


def _strip_prefix(key: str) -> str:
    return strip_prefixes(key, (MODULE_PREFIX, "backbone."))


def load_hlg_state_dict(model: HLG, state_dict: Mapping[str, Any]) -> None:
    """Load an original-format checkpoint strictly, except for the keys that may be absent: a dense model
    may miss ``norm_out_*`` (a classification checkpoint; they keep their init) and may ignore ``head.*``.
    Any other missing or unexpected key raises."""
    sd = {_strip_prefix(k): v for k, v in state_dict.items()}
    if model.dense and not model.num_classes:
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    result = model.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not (model.dense and k.startswith("norm_out_"))]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"HLG checkpoint mismatch: missing {missing}, unexpected {result.unexpected_keys}")
