"""Encoder-decoder segmentor: backbone + decode head + auxiliary heads, with the original's inference modes.

* ``whole``: one forward over the image; beyond the original, any size works (the image is padded on the
  bottom/right to a multiple of the patch size and the position embedding is resampled on the fly).
* ``slide``: square windows on the original grid (``h_grids = max(H - crop + stride - 1, 0) // stride + 1``,
  the last window flush with the edge); window **logits** are summed and divided by the coverage count.
  Beyond the original, images smaller than the crop are padded instead of crashing.
* ``inference_probs``: a view's **softmax probabilities** at the original size, flipped back; the multi-scale
  + flip test (``setr.inference.Segmenter``) sums them over the views in order and divides by their number.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..io.hub import HubMixin
from .heads.common import deferred, resize


def slide_windows(height: int, width: int, crop: Sequence[int], stride: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """Windows [y1, y2, x1, x2] in the original's order (row-major), the last row/column flush with the edge."""
    ch, cw = crop
    sh, sw = stride
    h_grids = max(height - ch + sh - 1, 0) // sh + 1
    w_grids = max(width - cw + sw - 1, 0) // sw + 1
    windows = []
    for i in range(h_grids):
        for j in range(w_grids):
            y2 = min(i * sh + ch, height)
            x2 = min(j * sw + cw, width)
            windows.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return windows


class EncoderDecoder(HubMixin, nn.Module):
    """Backbone + decode head (+ auxiliary heads for training). ``save_pretrained(folder, config=ModelConfig or
    Preset)``, ``from_pretrained(folder or repo id)`` and ``push_to_hub`` come from :class:`setr.io.hub.HubMixin`
    (the folder format: :mod:`setr.hub`)."""

    _hub_kind = "segmentation"

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, auxiliary_head: Sequence[nn.Module] = (),
                 num_classes: int | None = None, align_corners: bool = False):
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.auxiliary_head = nn.ModuleList(auxiliary_head)
        self.num_classes = num_classes if num_classes is not None else decode_head.num_classes
        self.align_corners = align_corners

    # ------------------------------------------------------------------ forward passes
    def _pad_to_patch_multiple(self, img: torch.Tensor) -> torch.Tensor:
        p = getattr(self.backbone, "patch_size", 1)  # ViT: a multiple of the patch; HLG takes any size
        h, w = img.shape[-2:]
        ph, pw = (-h) % p, (-w) % p
        return F.pad(img, (0, pw, 0, ph)) if (ph or pw) else img

    def _heads(self, img: torch.Tensor, with_aux: bool, defer: bool = False) -> list:
        """Logits of the decode head (and aux heads) at the size of ``img``, each (B, K, H, W); with ``defer``
        each as :class:`DeferredLogits` (its last resizes left to the training loss)."""
        h, w = img.shape[-2:]
        padded = self._pad_to_patch_multiple(img)
        heads = [self.decode_head, *self.auxiliary_head] if with_aux else [self.decode_head]
        wanted = [getattr(head, "in_index", None) for head in heads]
        if getattr(self.backbone, "returns_block_outputs", False) and all(isinstance(i, int) for i in wanted):
            feats = self.backbone(padded, keep=wanted)  # only the block outputs the heads read are held
        else:
            feats = self.backbone(padded)
        grid = self.backbone.token_grid(padded.shape[-2:]) if hasattr(self.backbone, "token_grid") else None
        size = padded.shape[-2:]
        if defer:
            outs = [head(feats, out_size=size, grid=grid, defer=True) if getattr(head, "can_defer", False)
                    else deferred(head(feats, out_size=size, grid=grid), ()) for head in heads]
            return [o._replace(crop=(h, w)) if tuple(size) != (h, w) else o for o in outs]
        outs = [head(feats, out_size=size, grid=grid).contiguous() for head in heads]  # (heads may run channels-last)
        return [o[..., :h, :w] if tuple(size) != (h, w) else o for o in outs]

    def encode_decode(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised image -> (B, K, H, W) decode-head logits."""
        return self._heads(img, with_aux=False)[0]

    def forward(self, img: torch.Tensor, with_aux: bool = False, defer: bool = False):
        """Decode-head logits; with ``with_aux`` (training) the list [decode, aux_0, ...] at the input size; with
        ``defer`` too, as :class:`DeferredLogits` (what :func:`setr.engine.losses.segmentor_losses` takes to
        upsample the logits piece by piece inside the loss)."""
        return self.forward_train(img, defer) if with_aux else self.encode_decode(img)

    def forward_train(self, img: torch.Tensor, defer: bool = False) -> list:
        """Logits of the decode head followed by every auxiliary head, each at the input size (``defer``: as
        :class:`DeferredLogits`, whose ``materialise()`` gives those logits)."""
        return self._heads(img, with_aux=True, defer=defer)

    # ------------------------------------------------------------------ inference
    def whole_inference(self, img: torch.Tensor, ori_hw: Sequence[int] | None = None) -> torch.Tensor:
        logits = self.encode_decode(img)
        return resize(logits, ori_hw, self.align_corners) if ori_hw is not None else logits

    def slide_inference(self, img: torch.Tensor, crop: Sequence[int], stride: Sequence[int],
                        ori_hw: Sequence[int] | None = None, window_batch: int = 1,
                        on_windows: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Average of window logits over the image, then resized to ``ori_hw``. ``window_batch`` windows go
        through the network together (1 reproduces the original's order of operations exactly)."""
        b, _, h, w = img.shape
        ch, cw = crop
        # beyond the original: an image smaller than the crop is padded (bottom/right) instead of crashing
        pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
        if pad_h or pad_w:
            img = F.pad(img, (0, pad_w, 0, pad_h))
        hp, wp = img.shape[-2:]
        windows = slide_windows(hp, wp, crop, stride)
        preds = img.new_zeros((b, self.num_classes, hp, wp), dtype=torch.float32)  # fp32 sums under autocast too
        count = img.new_zeros((1, 1, hp, wp), dtype=torch.float32)
        for start in range(0, len(windows), window_batch):
            group = windows[start:start + window_batch]
            crops = torch.cat([img[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in group], dim=0)
            logits = self.encode_decode(crops).split(b, dim=0)
            for (y1, y2, x1, x2), logit in zip(group, logits):
                preds[:, :, y1:y2, x1:x2] += logit.float()
                count[:, :, y1:y2, x1:x2] += 1
            if on_windows is not None:  # progress within a large image: (windows done, windows in all)
                on_windows(start + len(group), len(windows))
        logits = preds.div_(count)[:, :, :h, :w]  # in place: the same values as preds / count, no second map
        return resize(logits, ori_hw, self.align_corners) if ori_hw is not None else logits

    def inference_logits(self, img: torch.Tensor, mode: str = "whole", crop: Sequence[int] | None = None,
                         stride: Sequence[int] | None = None, ori_hw: Sequence[int] | None = None,
                         window_batch: int = 1, on_windows: Callable[[int, int], None] | None = None) -> torch.Tensor:
        if mode == "whole":
            return self.whole_inference(img, ori_hw)
        if mode == "slide":
            if crop is None or stride is None:
                raise ValueError("slide inference needs crop and stride")
            return self.slide_inference(img, crop, stride, ori_hw, window_batch, on_windows)
        raise ValueError(f"unknown inference mode {mode!r}: expected 'whole' or 'slide'")

    def inference_probs(self, img: torch.Tensor, mode: str = "whole", crop: Sequence[int] | None = None,
                        stride: Sequence[int] | None = None, ori_hw: Sequence[int] | None = None,
                        flip: bool | str | None = None, window_batch: int = 1,
                        on_windows: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Softmax probabilities at ``ori_hw``. ``flip`` names the direction the input was flipped in
        ("horizontal" or ``True``, "vertical"); the map is flipped back along that same axis."""
        logits = self.inference_logits(img, mode, crop, stride, ori_hw, window_batch, on_windows)
        probs = F.softmax(logits.float(), dim=1)  # fp32 probabilities whatever the compute precision
        if flip is True or flip == "horizontal":
            return probs.flip(dims=(3,))
        if flip == "vertical":
            return probs.flip(dims=(2,))
        if flip:
            raise ValueError(f"flip direction {flip!r}: expected 'horizontal' or 'vertical'")
        return probs

    def inference(self, *args, **kwargs) -> torch.Tensor:
        """Deprecated name of :meth:`inference_probs` (it returns probabilities, not logits); kept for one
        release."""
        import warnings

        warnings.warn("EncoderDecoder.inference is deprecated: use inference_probs (it returns softmax "
                      "probabilities)", DeprecationWarning, stacklevel=2)
        return self.inference_probs(*args, **kwargs)
