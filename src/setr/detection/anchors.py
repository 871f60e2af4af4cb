"""RetinaNet's anchors with mmdet 2.x ``AnchorGenerator`` semantics (the authors' detection code).

Per FPN level of stride ``s`` the base anchors are centred at (0, 0) (``center_offset`` 0) with side
``s * scale`` for the ``scales_per_octave`` scales ``octave_base_scale * 2 ** (k / scales_per_octave)`` and the
aspect ratios ``ratio = h / w``: ``h = s * sqrt(ratio) * scale``, ``w = s / sqrt(ratio) * scale``. They are NOT
rounded to whole pixels (torchvision's generator rounds them). Their order is ratio-major: index
``ratio_idx * scales_per_octave + scale_idx``. The grid puts them at ``(x * s, y * s)`` for every feature-map
position, position-major (row by row, then the anchors of one position), so the flat index of anchor ``a`` at
(y, x) is ``(y * W + x) * A + a``. Everything is computed in float32 in the original's order of operations, so the
anchors are bit-identical to mmdet's.

Valid flags: an anchor is valid when its position lies inside the image's OWN padded shape, i.e. ``y <
ceil(pad_h / s)`` and ``x < ceil(pad_w / s)`` (a batch padded to a larger image has invalid positions at its
bottom/right). RetinaNet's ``train_cfg.allowed_border = -1`` keeps every valid anchor, wherever its box lies.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

FPN_STRIDES = (8, 16, 32, 64, 128)


class AnchorGenerator:
    """mmdet's ``AnchorGenerator(octave_base_scale, scales_per_octave, ratios, strides)`` for square strides,
    ``scale_major=True``, no explicit centres and ``center_offset`` 0 (RetinaNet's settings)."""

    def __init__(self, strides: Sequence[int] = FPN_STRIDES, ratios: Sequence[float] = (0.5, 1.0, 2.0),
                 octave_base_scale: float = 4, scales_per_octave: int = 3, center_offset: float = 0.0):
        if not 0 <= center_offset <= 1:
            raise ValueError(f"center_offset {center_offset} must be in [0, 1]")
        self.strides = [int(s) for s in strides]
        self.ratios = torch.tensor([float(r) for r in ratios], dtype=torch.float32)
        # the scales in float64 (numpy), then float32, as the original builds them
        scales = np.array([2 ** (i / scales_per_octave) for i in range(scales_per_octave)]) * octave_base_scale
        self.scales = torch.tensor(scales, dtype=torch.float32)
        self.octave_base_scale = octave_base_scale
        self.scales_per_octave = int(scales_per_octave)
        self.center_offset = float(center_offset)
        self.base_anchors = [self._base_anchors(s) for s in self.strides]

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def num_base_anchors(self) -> int:
        """Anchors per feature-map position (9 for RetinaNet)."""
        return len(self.ratios) * len(self.scales)

    def _base_anchors(self, base_size: int) -> torch.Tensor:
        """(A, 4) x1 y1 x2 y2 of one position, ratio-major, in float32."""
        cx = self.center_offset * base_size
        cy = self.center_offset * base_size
        h_ratios = torch.sqrt(self.ratios)
        w_ratios = 1 / h_ratios
        ws = (base_size * w_ratios[:, None] * self.scales[None, :]).reshape(-1)
        hs = (base_size * h_ratios[:, None] * self.scales[None, :]).reshape(-1)
        return torch.stack([cx - 0.5 * ws, cy - 0.5 * hs, cx + 0.5 * ws, cy + 0.5 * hs], dim=-1)

    def level_anchors(self, featmap_size: Sequence[int], level: int, device=None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(H * W * A, 4) anchors of one level, position-major."""
        feat_h, feat_w = (int(v) for v in featmap_size)
        stride = self.strides[level]
        base = self.base_anchors[level].to(device=device, dtype=dtype)
        shift_x = torch.arange(feat_w, device=device).to(dtype) * stride
        shift_y = torch.arange(feat_h, device=device).to(dtype) * stride
        xx = shift_x.repeat(feat_h)
        yy = shift_y.reshape(-1, 1).repeat(1, feat_w).reshape(-1)
        shifts = torch.stack([xx, yy, xx, yy], dim=-1)
        return (base[None, :, :] + shifts[:, None, :]).reshape(-1, 4)

    def grid_anchors(self, featmap_sizes: Sequence[Sequence[int]], device=None,
                     dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """Per level: (H_l * W_l * A, 4) anchors (mmdet ``grid_priors``)."""
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(f"{len(featmap_sizes)} feature maps for {self.num_levels} anchor levels")
        return [self.level_anchors(size, i, device, dtype) for i, size in enumerate(featmap_sizes)]

    def valid_flags(self, featmap_sizes: Sequence[Sequence[int]], pad_shape: Sequence[int],
                    device=None) -> list[torch.Tensor]:
        """Per level: (H_l * W_l * A,) bool, True where the anchor's position lies inside ``pad_shape`` (h, w)
        of this image."""
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(f"{len(featmap_sizes)} feature maps for {self.num_levels} anchor levels")
        h, w = int(pad_shape[0]), int(pad_shape[1])
        out = []
        for stride, (feat_h, feat_w) in zip(self.strides, featmap_sizes):
            valid_h = min(math.ceil(h / stride), int(feat_h))
            valid_w = min(math.ceil(w / stride), int(feat_w))
            vx = torch.zeros(int(feat_w), dtype=torch.bool, device=device)
            vy = torch.zeros(int(feat_h), dtype=torch.bool, device=device)
            vx[:valid_w] = True
            vy[:valid_h] = True
            valid = vy[:, None] & vx[None, :]
            out.append(valid.reshape(-1, 1).expand(-1, self.num_base_anchors).reshape(-1))
        return out


def anchor_generator_from_config(cfg) -> AnchorGenerator:
    """The generator of a :class:`setr.presets.detection.DetModelConfig` (octave_base_scale, scales_per_octave,
    anchor_ratios; strides 8-128)."""
    return AnchorGenerator(FPN_STRIDES, tuple(cfg.anchor_ratios), cfg.octave_base_scale, cfg.scales_per_octave)
