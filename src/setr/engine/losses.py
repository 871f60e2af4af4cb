"""Segmentation loss: pixel-wise cross-entropy, ignore index 255, summed over heads with their weights.

The loss of one head is the original's: the logits resized (bilinear) to the label map, then per-pixel
cross-entropy in fp32 with ignored pixels giving 0, averaged. It is computed piece by piece (rows of one image at
a time) by :class:`_UpsampledCrossEntropy`, which never holds the full-resolution logits, their fp32 copy or
their log-softmax (at 512x512 with 150 classes those were about 0.8 GB per head, 4 GB for SETR-PUP's five heads)
and forms the gradient in the same pass, keeping only a low-resolution fp32 map for the backward pass. The
numbers are the direct formula's up to float rounding (fp32: loss within 1e-7 relative, gradients within 1e-6;
tests/engine/test_losses.py, and the original trainer's goldens pass): each piece's upsampled rows are bit for bit
those of the whole map in the same layout, the channels-last resize PyTorch's CPU kernels run fastest differs from
the channels-first one by rounding, and sums run in another order. :func:`plain_seg_cross_entropy` is the direct
formula, kept as the reference the tests compare with.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch.profiler import record_function

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
    the target's size, ignored pixels giving 0.

    Piece by piece (:func:`_pieces`), in channels-last layout (classes innermost: PyTorch's fast CPU kernels for
    the bilinear resize, its backward and the log-softmax over the last dimension): the piece's rows upsampled,
    log-softmax, the target's entries picked. The gradient is formed in the same pass when one is needed (it is
    linear in the incoming gradient): (softmax - one-hot) at the valid pixels, mapped back through the resize
    (``upsample_bilinear2d_backward``) into a low-resolution fp32 map that is all the backward pass keeps."""

    @staticmethod
    def forward(ctx, logits, target, out_size, align_corners, want_grad):
        b, k, in_h, in_w = logits.shape
        rows, cols = target.shape[-2:]
        out_h, out_w = int(out_size[0]), int(out_size[1])
        resized = (out_h, out_w) != (in_h, in_w)
        plan = _pieces(in_h, out_h, rows, resized, align_corners, max(PIECE_ELEMENTS // (k * out_w), 1))
        total = torch.zeros((), dtype=torch.float64, device=logits.device)
        grad = None
        with torch.autocast(logits.device.type, enabled=False), record_function("setr::loss_forward"):
            x = logits.detach().float().contiguous(memory_format=torch.channels_last)
            if want_grad:
                grad = torch.zeros((b, in_h, in_w, k), dtype=torch.float32, device=logits.device)  # (B, h, w, K)
            for i in range(b):
                for a, bb, slice_h, off, r0, r1 in plan:
                    # the slice's rows, classes innermost: (1, slice_h, out_w, K)
                    if resized:
                        v = F.interpolate(x[i:i + 1, :, a:bb], size=(slice_h, out_w), mode="bilinear",
                                          align_corners=align_corners).permute(0, 2, 3, 1)
                    else:
                        v = x[i:i + 1, :, a:bb].permute(0, 2, 3, 1)
                    # the target on the slice's grid: 255 outside the piece's own rows and beyond the crop
                    t = torch.full(v.shape[:3], IGNORE_INDEX, dtype=target.dtype, device=target.device)
                    t[:, off:off + r1 - r0, :cols] = target[i:i + 1, r0:r1]
                    valid = (t != IGNORE_INDEX).unsqueeze(-1)
                    index = t.masked_fill(t == IGNORE_INDEX, 0).unsqueeze(-1)
                    lsm = torch.log_softmax(v, dim=-1)
                    del v
                    total -= lsm.gather(-1, index).masked_fill_(~valid, 0).sum(dtype=torch.float64)
                    if not want_grad:
                        continue
                    coef = valid.to(torch.float32)
                    p = lsm.exp_().mul_(coef).scatter_add_(-1, index, coef.neg_())  # (softmax - one-hot) x valid
                    if resized:
                        g = torch.ops.aten.upsample_bilinear2d_backward(
                            p.permute(0, 3, 1, 2), [slice_h, out_w], [1, k, bb - a, in_w], align_corners)
                        grad[i:i + 1, a:bb] += g.permute(0, 2, 3, 1)
                    else:
                        grad[i:i + 1, a:bb] += p
        ctx.save_for_backward(grad)
        return total.float()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return (grad * grad_out).permute(0, 3, 1, 2).contiguous(), None, None, None, None


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
    want_grad = torch.is_grad_enabled() and x.requires_grad  # else no gradient is formed (evaluation)
    total = _UpsampledCrossEntropy.apply(x, target, tuple(int(v) for v in out_size), logits.align_corners, want_grad)
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
