"""ViT / DeiT encoder as SETR uses it, built on timm's blocks.

Two flavours share one class:

* ``SetrViT`` (Naive / PUP): the cls token travels through every block; ``forward`` returns the output of
  *every* block as (B, 1 + N, C) with the cls token at index 0.
* ``SetrViTMLA`` (MLA): the cls token is concatenated and the position embedding added, then the cls token is
  dropped *before* the first block (reference quirk: cls_token and pos_embed[:, 0] are dead weights). The block
  outputs at ``mla_index`` each get their own LayerNorm and feed the MLA neck, whose four maps are returned.

Neither has a final LayerNorm (reference behaviour: each head normalises for itself). State-dict keys are the
original checkpoint's (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.i.*``, ``norm_i``, ``mla.*``).
Any input size works: the position embedding is resampled on the fly (bilinear, align_corners=False, the same
rule the original used once at load time), so images need not match ``img_size``.
"""
from __future__ import annotations

from functools import partial
from typing import Collection, Sequence

import torch
from torch import nn
import torch.nn.functional as F
from timm.layers import PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Attention, Block

from .heads.mla import MLANeck
from .weight_init import init_linear_and_norm

LAYER_NORM_EPS = 1e-6


def to_2tuple(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resample_patch_pos_embed(pos_embed: torch.Tensor, new_grid: tuple[int, int],
                             old_grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(1, P + g*g, C) -> (1, 1 + new_h*new_w, C).

    Keeps row 0 (the cls position), drops any other prefix rows (DeiT's distillation token) and resizes the
    last g*g rows as a grid with bilinear interpolation, align_corners=False, no antialiasing: the original's
    ``pos_embed_interp`` rule.
    """
    num_tokens = pos_embed.shape[1]
    if old_grid is None:
        g = int(num_tokens ** 0.5)
        while (g + 1) * (g + 1) <= num_tokens - 1:  # guard against float rounding
            g += 1
        old_grid = (g, g)
    num_patches = old_grid[0] * old_grid[1]
    cls_row, patch_rows = pos_embed[:, :1], pos_embed[:, num_tokens - num_patches:]
    if tuple(old_grid) == tuple(new_grid):
        return torch.cat([cls_row, patch_rows], dim=1)
    # align_corners left unset: timm hands None to F.interpolate, which is False for bilinear (and timm < 1.0.31
    # has no such argument)
    patch_rows = resample_abs_pos_embed(patch_rows, list(new_grid), list(old_grid), num_prefix_tokens=0,
                                        interpolation="bilinear", antialias=False)
    return torch.cat([cls_row, patch_rows], dim=1)


ATTENTION_KERNELS = ("sdpa", "math", "chunked")
CHUNK_QUERIES = 256


class SetrAttention(Attention):
    """timm's ``Attention`` (same parameters and keys) with a choice of attention kernel for inference.

    * ``sdpa`` (the default, and always in training): timm's own forward, ``F.scaled_dot_product_attention``,
      which picks the fused kernel of the device (the CPU flash kernel; flash / memory-efficient on CUDA). The fp32
      path is exactly timm's.
    * ``math``: ``softmax(q k^T * scale) v`` as two matmuls (bf16 under autocast: oneDNN / AMX on the CPU) with
      the softmax in fp32.
    * ``chunked``: ``math`` over blocks of ``CHUNK_QUERIES`` queries, so a block's scores stay in cache.

    ``benchmarks/cpu_fast_paths.py`` times the three; ``setr.precision.attention_kernel`` picks per device.
    """

    kernel = "sdpa"

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if (self.kernel == "sdpa" or self.training or any(a is not None for a in args)
                or any(v is not None and v is not False for v in kwargs.values())):  # masks: timm's own path
            return super().forward(x, *args, **kwargs)
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        out = _attention_matmuls(q * self.scale, k, v, CHUNK_QUERIES if self.kernel == "chunked" else n)
        out = out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
        norm = getattr(self, "norm", None)
        if norm is not None:
            out = norm(out)
        if getattr(self, "gate", None) is not None:
            out = out * self.gate(x).sigmoid()
        return self.proj_drop(self.proj(out))


def _attention_matmuls(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
    """softmax(q k^T) v for (B, heads, N, d) tensors, ``chunk`` queries at a time, softmax in fp32."""
    kt = k.transpose(-2, -1)
    n = q.shape[-2]
    if chunk >= n:
        scores = torch.matmul(q, kt)
        return torch.matmul(F.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype), v)
    parts = []
    for start in range(0, n, chunk):
        scores = torch.matmul(q[:, :, start:start + chunk], kt)
        parts.append(torch.matmul(F.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype), v))
    return torch.cat(parts, dim=2)


def set_attention_kernel(model: nn.Module, kernel: str) -> nn.Module:
    """Use ``kernel`` (one of ``ATTENTION_KERNELS``) in every SETR attention layer of ``model`` (inference only;
    training always runs ``sdpa``). Returns the model."""
    if kernel not in ATTENTION_KERNELS:
        raise ValueError(f"attention kernel must be one of {', '.join(ATTENTION_KERNELS)}, got {kernel!r}")
    for m in model.modules():
        if isinstance(m, SetrAttention):
            m.kernel = kernel
    return model


class SetrViT(nn.Module):
    """ViT encoder returning every block's tokens (cls token included)."""

    keeps_cls_token = True

    def __init__(self, img_size: int | Sequence[int] = 768, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 1024, depth: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, grad_checkpointing: bool = False):
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.grad_checkpointing = grad_checkpointing
        # (B, 3, H, W) -> (B, N, C), row-major tokens; any size accepted (floor division like the strided conv).
        self.patch_embed = PatchEmbed(img_size=self.img_size, patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim, strict_img_size=False)
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        norm_layer = partial(nn.LayerNorm, eps=LAYER_NORM_EPS)
        dpr = [drop_path_rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]  # linear 0 -> rate
        self.blocks = nn.ModuleList([
            Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                  proj_drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i], norm_layer=norm_layer)
            for i in range(depth)
        ])
        for blk in self.blocks:  # same parameters and keys; adds the choice of attention kernel
            blk.attn.__class__ = SetrAttention
        self.init_weights()

    def init_weights(self) -> None:
        """The original's init: trunc-normal(0.02) Linear weights, zero biases, LN (1, 0), trunc-normal tokens."""
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_linear_and_norm)

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        if grid == self.grid_size:
            return self.pos_embed
        return resample_patch_pos_embed(self.pos_embed, grid, self.grid_size)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, 3, H, W) -> tokens (B, 1 + N, C) with position embedding, and the token grid (h, w)."""
        grid = self.token_grid(x.shape[-2:])
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed_for(grid)
        return self.pos_drop(x), grid

    def run_blocks(self, x: torch.Tensor, keep: Collection[int] | None = None) -> list[torch.Tensor | None]:
        """Every block's output in order; with ``keep`` (block indices, negative from the end) only those, the
        others ``None`` (not held: 24 ViT-L block outputs at a 768 window are ~220 MB)."""
        depth = len(self.blocks)
        kept = None if keep is None else {int(i) % depth for i in keep}
        outs = []
        for i, blk in enumerate(self.blocks):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
            outs.append(x if kept is None or i in kept else None)
        return outs

    def token_grid(self, image_hw: Sequence[int]) -> tuple[int, int]:
        """The (h, w) token grid for an image of size (H, W)."""
        return image_hw[0] // self.patch_size, image_hw[1] // self.patch_size

    returns_block_outputs = True  # forward(x, keep=...) indexes block outputs (the MLA variant returns its neck's)

    def forward(self, x: torch.Tensor, keep: Collection[int] | None = None) -> list[torch.Tensor | None]:
        """Returns every block's output, each (B, 1 + N, C) with the cls token at index 0; with ``keep`` (the
        block indices the heads read) the other entries are ``None``."""
        tokens, _ = self.embed(x)
        return self.run_blocks(tokens, keep)


class SetrViTMLA(SetrViT):
    """ViT encoder + per-level LayerNorms + the MLA neck (stored under ``mla``, as in the original)."""

    keeps_cls_token = False
    returns_block_outputs = False  # its forward returns the four neck maps

    def __init__(self, mla_index: Sequence[int] = (5, 11, 17, 23), mla_channels: int = 256, **kwargs):
        super().__init__(**kwargs)
        if len(mla_index) != 4:
            raise ValueError(f"mla_index must name 4 blocks, got {list(mla_index)}")
        self.mla_index = tuple(int(i) for i in mla_index)
        self.mla_channels = mla_channels
        for i in range(4):
            self.add_module(f"norm_{i}", nn.LayerNorm(self.embed_dim, eps=LAYER_NORM_EPS))
        self.mla = MLANeck(self.embed_dim, mla_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Returns the four neck maps (P6, P12, P18, P24 for ViT-L), each (B, mla_channels, h, w)."""
        tokens, (h, w) = self.embed(x)
        tokens = tokens[:, 1:]  # reference quirk: the cls token is dropped before the first block
        outs = self.run_blocks(tokens, keep=self.mla_index)
        maps = []
        for level, idx in enumerate(self.mla_index):
            t = getattr(self, f"norm_{level}")(outs[idx])
            maps.append(t.transpose(1, 2).reshape(t.shape[0], self.embed_dim, h, w))  # (B, N, C) -> (B, C, h, w)
        return self.mla(maps)
