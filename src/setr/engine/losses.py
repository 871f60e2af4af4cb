"""Segmentation loss: pixel-wise cross-entropy, ignore index 255, summed over heads with their weights.

The loss of one head is the original's: the logits resized (bilinear) to the label map, then per-pixel
cross-entropy in fp32 with ignored pixels giving 0, averaged. It is computed piece by piece (rows of one image at
a time) by :class:`_UpsampledCrossEntropy`, which keeps only the head's own low-resolution logits and one
log-sum-exp per pixel for the backward pass, never the full-resolution logits, their fp32 copy or their
log-softmax (at 512x512 with 150 classes those were about 0.8 GB per head). The numbers are the same up to float
summation order: each piece's upsampled rows are bit for bit those of the whole map (see :func:`_pieces`).
:func:`plain_seg_cross_entropy` is the direct formula, kept as the reference the tests compare with.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..data.transforms import IGNORE_INDEX
from ..models.heads.common import DeferredLogits, deferred, resize

NORMALISATIONS = ("all_pixels", "valid_pixels")
PIECE_ELEMENTS = 1 << 22  # fp32 elements of one piece of a full-resolution logit map (16 MB)


def _check_normalisation(normalisation: str) -> None:
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown loss normalisation {normalisation!r}: 'all_pixels' or 'valid_pixels'")


def plain_seg_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                            normalisation: str = "all_pixels") -> torch.Tensor:
    """The direct formula (the full-resolution map and its fp32 copy in memory): the reference."""
    _check_normalisation(normalisation)
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    per_pixel = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="none")
    if normalisation == "all_pixels":
        return per_pixel.mean()
    valid = (target != IGNORE_INDEX).sum().clamp_min(1)
    return per_pixel.sum() / valid


def _pieces(in_h: int, out_h: int, rows: int, resized: bool, align_corners: bool, piece_rows: int):
    """Row pieces ``(a, b, slice_out_h, off, r0, r1)``: output rows ``[r0, r1)`` (of the first ``rows``) are rows
    ``[off, off + r1 - r0)`` of input rows ``[a, b)`` resized to ``slice_out_h`` rows.

    Exact pieces need an integer power-of-two scale ``s = out_h / in_h`` (``align_corners=False``): output row
    ``R`` then reads input rows ``floor(src)`` and ``floor(src) + 1`` (clamped), ``src = (R + 0.5) / s - 0.5``
    computed exactly in float, and a slice with one spare input row on each side (none at the borders, where the
    whole map clamps too) resized by the same ``s`` gives the same weights and rows. Otherwise one piece: the
    whole map."""
    if not resized:
        step = max(piece_rows, 1)
        return [(r0, min(r0 + step, rows), min(r0 + step, rows) - r0, 0, r0, min(r0 + step, rows))
                for r0 in range(0, rows, step)]
    s = out_h // in_h
    if align_corners or out_h != s * in_h or s & (s - 1):
        return [(0, in_h, out_h, 0, 0, rows)]
    k = max(piece_rows // s, 1)  # input rows per piece
    out = []
    for k0 in range(0, -(-rows // s), k):
        k1 = min(k0 + k, in_h)
        a, b = max(k0 - 1, 0), min(k1 + 1, in_h)
        out.append((a, b, s * (b - a), s * (k0 - a), s * k0, min(s * k1, rows)))
    return out


class _UpsampledCrossEntropy(torch.autograd.Function):
    """Sum over pixels of the fp32 cross-entropy of ``logits`` resized (bilinear) to ``out_size`` and cropped to
    the target's size, ignored pixels giving 0. Saves the low-resolution logits, the target and one log-sum-exp
    per pixel; the backward pass recomputes each piece's upsampled rows, forms (softmax - one-hot) x grad and
    maps it back through the resize (``upsample_bilinear2d_backward``)."""

    @staticmethod
    def forward(ctx, logits, target, out_size, align_corners):
        b, k, in_h, in_w = logits.shape
        rows, cols = target.shape[-2:]
        resized = (int(out_size[0]), int(out_size[1])) != (in_h, in_w)
        piece_rows = max(PIECE_ELEMENTS // (k * int(out_size[1])), 1)
        plan = _pieces(in_h, int(out_size[0]), rows, resized, align_corners, piece_rows)
        lse = torch.empty((b, rows, cols), dtype=torch.float32, device=logits.device)
        total = torch.zeros((), dtype=torch.float64, device=logits.device)
        with torch.autocast(logits.device.type, enabled=False):
            for i in range(b):
                for a, bb, slice_h, off, r0, r1 in plan:
                    up = _piece(logits, i, a, bb, slice_h, off, r1 - r0, cols, out_size, resized, align_corners)
                    t = target[i:i + 1, r0:r1]
                    valid = t != IGNORE_INDEX
                    piece_lse = torch.logsumexp(up, dim=1)
                    lse[i:i + 1, r0:r1] = piece_lse
                    picked = up.gather(1, t.masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
                    total += (piece_lse - picked).masked_fill_(~valid, 0).sum(dtype=torch.float64)
        ctx.save_for_backward(logits, target, lse)
        ctx.meta = (out_size, align_corners, resized, plan)
        return total.float()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        logits, target, lse = ctx.saved_tensors
        out_size, align_corners, resized, plan = ctx.meta
        b, k, in_h, in_w = logits.shape
        rows, cols = target.shape[-2:]
        out_w = int(out_size[1])
        grad = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device)
        with torch.autocast(logits.device.type, enabled=False):
            g = grad_out.float()
            for i in range(b):
                for a, bb, slice_h, off, r0, r1 in plan:
                    p = _piece(logits, i, a, bb, slice_h, off, r1 - r0, cols, out_size, resized, align_corners)
                    t = target[i:i + 1, r0:r1]
                    valid = t != IGNORE_INDEX
                    coef = valid.to(torch.float32).mul_(g).unsqueeze(1)  # (1, 1, R, cols)
                    p = p.sub_(lse[i:i + 1, r0:r1].unsqueeze(1)).exp_().mul_(coef)  # softmax x grad
                    p.scatter_add_(1, t.masked_fill(~valid, 0).unsqueeze(1), -coef)  # minus one-hot x grad
                    if not resized:
                        grad[i:i + 1, :, r0:r1, :cols] += p
                        continue
                    # the rows of this piece inside the resized slice (zero elsewhere), then back through it
                    full = F.pad(p, (0, out_w - cols, off, slice_h - off - (r1 - r0)))
                    grad[i:i + 1, :, a:bb] += torch.ops.aten.upsample_bilinear2d_backward(
                        full, [slice_h, out_w], [1, k, bb - a, in_w], align_corners)
        return grad.to(logits.dtype), None, None, None


def _piece(logits, i, a, b, slice_h, off, n_rows, cols, out_size, resized, align_corners) -> torch.Tensor:
    """fp32 rows ``[off, off + n_rows)`` (first ``cols`` columns) of image ``i``'s input rows ``[a, b)``
    resized to ``(slice_h, out_w)``."""
    x = logits[i:i + 1, :, a:b].float()
    if resized:
        x = F.interpolate(x, size=(slice_h, int(out_size[1])), mode="bilinear", align_corners=align_corners)
    return x[:, :, off:off + n_rows, :cols].contiguous()


def seg_cross_entropy(logits: torch.Tensor | DeferredLogits, target: torch.Tensor,
                      normalisation: str = "all_pixels") -> torch.Tensor:
    """``all_pixels`` (the original, mmseg 0.x): per-pixel CE with ignored pixels giving 0, averaged over *all*
    B*H*W pixels. ``valid_pixels``: averaged over the non-ignored pixels only (PyTorch's default).

    ``logits``: (B, K, h, w), resized (bilinear, ``align_corners=False``) to the target's (H, W) when they differ;
    or a head's :class:`DeferredLogits`, whose last resize (and crop) happens here, piece by piece."""
    _check_normalisation(normalisation)
    if isinstance(logits, DeferredLogits) and logits.out_size != tuple(target.shape[-2:]):
        logits = logits.materialise()  # made for another size: resized to the target's below, as a tensor is
    if not isinstance(logits, DeferredLogits):
        logits = deferred(logits, [target.shape[-2:]])
    x, sizes = logits.logits, logits.sizes
    for size in sizes[:-1]:  # all but the last resize as the head would (rare: the last is usually the only one)
        x = resize(x, size, logits.align_corners)
    out_size = sizes[-1] if sizes else tuple(x.shape[-2:])
    total = _UpsampledCrossEntropy.apply(x, target, tuple(int(v) for v in out_size), logits.align_corners)
    if normalisation == "all_pixels":
        return total / target.numel()
    return total / (target != IGNORE_INDEX).sum().clamp_min(1)


def segmentor_losses(outputs: Sequence[torch.Tensor | DeferredLogits], weights: Sequence[float],
                     target: torch.Tensor, normalisation: str = "all_pixels") -> dict[str, torch.Tensor]:
    """{'decode': ..., 'aux0': ..., ...} weighted losses; the total is their sum. ``outputs``: the heads' logits
    (``model(img, with_aux=True)``) or, leaner, their :class:`DeferredLogits` (``with_aux=True, defer=True``)."""
    names = ["decode"] + [f"aux{i}" for i in range(len(outputs) - 1)]
    return {n: w * seg_cross_entropy(o, target, normalisation) for n, o, w in zip(names, outputs, weights)}


def pixel_accuracy(logits: torch.Tensor | DeferredLogits, target: torch.Tensor) -> float:
    """Top-1 accuracy over all pixels, ignored ones in the denominator (the original's log-only acc_seg)."""
    with torch.no_grad():
        if isinstance(logits, DeferredLogits):
            logits = logits.materialise()
        return (logits.argmax(1) == target).float().mean().item()
