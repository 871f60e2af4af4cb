"""mmdet 2.x ``DeltaXYWHBBoxCoder``: boxes <-> (dx, dy, dw, dh) deltas relative to anchors.

encode: ``dx = (gx - px) / pw``, ``dy = (gy - py) / ph``, ``dw = log(gw / pw)``, ``dh = log(gh / ph)`` with centres
``(x1 + x2) * 0.5`` and sizes ``x2 - x1`` (no +1), then ``(delta - mean) / std``.

decode: ``delta * std + mean``; the centre moves by ``size * (dx, dy)``; ``dw, dh`` are clamped to
``+-|log(wh_ratio_clip)|`` (wh_ratio_clip 16/1000, so at most a 62.5x change of size) before ``exp``; corners
``centre -+ size * 0.5``; with ``max_shape`` (h, w) the x coordinates are clamped to [0, w] and y to [0, h].
The arithmetic is float32 in the original's order (torchvision's ``BoxCoder`` clamps at log(1000/16) too but
computes corners differently and does not clip).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

WH_RATIO_CLIP = 16 / 1000


class DeltaXYWHBBoxCoder:
    def __init__(self, target_means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
                 target_stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0), clip_border: bool = True):
        self.means = tuple(float(m) for m in target_means)
        self.stds = tuple(float(s) for s in target_stds)
        self.clip_border = bool(clip_border)

    def encode(self, anchors: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """(N, 4) anchors and their (N, 4) gt boxes -> (N, 4) float32 deltas."""
        if anchors.shape != gt.shape:
            raise ValueError(f"encode: {tuple(anchors.shape)} anchors vs {tuple(gt.shape)} boxes")
        p, g = anchors.float(), gt.float()
        px = (p[..., 0] + p[..., 2]) * 0.5
        py = (p[..., 1] + p[..., 3]) * 0.5
        pw = p[..., 2] - p[..., 0]
        ph = p[..., 3] - p[..., 1]
        gx = (g[..., 0] + g[..., 2]) * 0.5
        gy = (g[..., 1] + g[..., 3]) * 0.5
        gw = g[..., 2] - g[..., 0]
        gh = g[..., 3] - g[..., 1]
        deltas = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)
        means = deltas.new_tensor(self.means)
        stds = deltas.new_tensor(self.stds)
        return (deltas - means) / stds

    def decode(self, anchors: torch.Tensor, deltas: torch.Tensor, max_shape: Sequence[int] | None = None,
               wh_ratio_clip: float = WH_RATIO_CLIP) -> torch.Tensor:
        """(N, 4) anchors and (N, 4) deltas -> (N, 4) boxes x1 y1 x2 y2, clipped to ``max_shape`` (h, w[, c])."""
        if deltas.shape[-1] != 4 or anchors.shape != deltas.shape:
            raise ValueError(f"decode: {tuple(anchors.shape)} anchors vs {tuple(deltas.shape)} deltas")
        if deltas.shape[0] == 0:
            return deltas.clone()
        d = deltas * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        dxy, dwh = d[..., :2], d[..., 2:]
        pxy = (anchors[..., :2] + anchors[..., 2:]) * 0.5
        pwh = anchors[..., 2:] - anchors[..., :2]
        dxy_wh = pwh * dxy
        max_ratio = abs(math.log(wh_ratio_clip))
        dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
        gxy = pxy + dxy_wh
        gwh = pwh * dwh.exp()
        boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
        if self.clip_border and max_shape is not None:
            boxes[..., 0::2] = boxes[..., 0::2].clamp(min=0, max=float(max_shape[1]))
            boxes[..., 1::2] = boxes[..., 1::2].clamp(min=0, max=float(max_shape[0]))
        return boxes
