"""Segmentation loss: pixel-wise cross-entropy, ignore index 255, summed over heads with their weights."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..data.transforms import IGNORE_INDEX


def seg_cross_entropy(logits: torch.Tensor, target: torch.Tensor, normalisation: str = "all_pixels") -> torch.Tensor:
    """``all_pixels`` (the original, mmseg 0.x): per-pixel CE with ignored pixels giving 0, averaged over *all*
    B*H*W pixels. ``valid_pixels``: averaged over the non-ignored pixels only (PyTorch's default)."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    per_pixel = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="none")
    if normalisation == "all_pixels":
        return per_pixel.mean()
    if normalisation == "valid_pixels":
        valid = (target != IGNORE_INDEX).sum().clamp_min(1)
        return per_pixel.sum() / valid
    raise ValueError(f"unknown loss normalisation {normalisation!r}: 'all_pixels' or 'valid_pixels'")


def segmentor_losses(outputs: Sequence[torch.Tensor], weights: Sequence[float], target: torch.Tensor,
                     normalisation: str = "all_pixels") -> dict[str, torch.Tensor]:
    """{'decode': ..., 'aux0': ..., ...} weighted losses; the total is their sum."""
    names = ["decode"] + [f"aux{i}" for i in range(len(outputs) - 1)]
    return {n: w * seg_cross_entropy(o, target, normalisation) for n, o, w in zip(names, outputs, weights)}


def pixel_accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy over all pixels, ignored ones in the denominator (the original's log-only acc_seg)."""
    return (logits.argmax(1) == target).float().mean().item()
