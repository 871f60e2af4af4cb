"""The original's train and test pipelines, with its OpenCV arithmetic.

Every resize is ``cv2.resize`` on the uint8 image (INTER_LINEAR, OpenCV's fixed-point weights) or label map
(INTER_NEAREST), at the size mmcv 1.2's ``imrescale`` computes; the photometric distortion converts to HSV and
back with ``cv2.cvtColor`` on uint8, in mmseg 0.x's order. The original worked on BGR images and converted to
RGB at normalisation; we decode to RGB at once (per-channel operations and HSV are the same either way).

Training: random keep-ratio resize with ratio in ``ratio_range`` -> random crop with ``cat_max_ratio`` ->
horizontal flip -> photometric distortion -> normalisation -> pad to the crop (image 0 after normalisation,
label 255). Randomness comes from a ``numpy.random.Generator`` passed in, so a sample's augmentation is a pure
function of its seed (which is what makes ``--resume`` exact, whatever the number of data-loader workers).

Test: keep-ratio resize to the test scale (or the SETR short-side rule), normalisation, optional flips.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..config import IMAGENET_MEAN, IMAGENET_STD

IGNORE_INDEX = 255


# ---- sizes (mmcv 1.2 ``rescale_size`` and SETR's ``setr_multi_scale`` rule) -----------------------------
def rescale_size(hw: tuple[int, int], scale: Sequence[float]) -> tuple[int, int]:
    """(h, w) after mmcv's keep-ratio rescale to ``scale``: the largest size whose long side is at most
    max(scale) and short side at most min(scale); each side is ``int(side * factor + 0.5)``."""
    h, w = hw
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def short_side_size(hw: tuple[int, int], scale: Sequence[float], min_short: int = 0) -> tuple[int, int]:
    """(h, w) under SETR's ``setr_multi_scale`` rule: the short side becomes min(scale), raised to
    ``min_short`` (the crop) when smaller; the long side follows the aspect ratio with no cap. Computed as the
    original did: a float target (new_h, new_w) handed to mmcv's keep-ratio rescale."""
    h, w = hw
    short = min_short if min(scale) < min_short else min(scale)
    target = (short * h / w, short) if h > w else (short, short * w / h)
    return rescale_size(hw, target)


def scaled_sizes(hw: tuple[int, int], img_scale: Sequence[int] | None, resize_mode: str = "keep_ratio",
               ratios: Sequence[float] | None = None, crop: int = 0) -> list[tuple[int, int]]:
    """Sizes the test pipeline resizes an (h, w) image to: one for single-scale, one per ratio for the
    multi-scale test (``MultiScaleFlipAug(img_ratios=...)``: scale (int(S0 * r), int(S1 * r))). ``resize_mode``
    "keep_ratio" is mmcv's keep-ratio rescale, "short_side" SETR's ``setr_multi_scale`` rule with ``crop``."""
    if not img_scale:
        if ratios is None:
            return [tuple(hw)]
        img_scale = (max(hw), min(hw))
    scales = [tuple(img_scale)] if ratios is None else [(int(img_scale[0] * r), int(img_scale[1] * r)) for r in ratios]
    if resize_mode == "short_side":
        return [short_side_size(hw, s, crop) for s in scales]
    if resize_mode == "keep_ratio":
        return [rescale_size(hw, s) for s in scales]
    from ..errors import SetrError

    raise SetrError(f"test resize mode {resize_mode!r}: expected 'keep_ratio' or 'short_side'")


# ---- OpenCV resizes on uint8 ----------------------------------------------------------------------------
def resize_image(img: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(H, W, C) uint8 -> (h, w, C) uint8 with ``cv2.resize`` INTER_LINEAR (mmcv ``imresize`` 'bilinear')."""
    if tuple(img.shape[:2]) == tuple(size):
        return img
    return cv2.resize(img, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)


def resize_labels(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(H, W) label map -> (h, w) with ``cv2.resize`` INTER_NEAREST (mmcv ``imrescale`` 'nearest')."""
    if tuple(mask.shape[:2]) == tuple(size):
        return mask
    return cv2.resize(mask, (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST)


def normalise_tensor(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """(..., 3, H, W) float on 0..255 -> normalised, as mmcv ``imnormalize``: (x - mean) * (1 / std)."""
    shape = (3, 1, 1)
    m = torch.tensor(mean, dtype=torch.float64).to(x.dtype).view(shape).to(x.device)
    s_inv = (1.0 / torch.tensor(std, dtype=torch.float64)).to(x.dtype).view(shape).to(x.device)
    return (x - m) * s_inv


def normalise(img: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32, normalised."""
    return normalise_tensor(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float(), mean, std)


def flip(x: np.ndarray | torch.Tensor, direction: str, channels_last: bool = True):
    """Flip an (H, W[, C]) array or a (..., H, W) tensor along ``direction`` ('horizontal' or 'vertical')."""
    if direction not in ("horizontal", "vertical"):
        raise ValueError(f"flip direction {direction!r}: expected 'horizontal' or 'vertical'")
    if isinstance(x, torch.Tensor):
        return x.flip(dims=(-1,) if direction == "horizontal" else (-2,))
    axis = (1 if direction == "horizontal" else 0) if channels_last else (-1 if direction == "horizontal" else -2)
    return np.ascontiguousarray(np.flip(x, axis=axis))


# ---- random crop ------------------------------------------------------------------------------------------
def random_crop_box(mask: np.ndarray | torch.Tensor, crop: tuple[int, int], cat_max_ratio: float,
                    rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop; with cat_max_ratio < 1, up to 10 tries for a crop where no single class
    covers more than that fraction of the labelled pixels (and more than one class is present)."""
    mask = np.asarray(mask)
    h, w = mask.shape[-2:]
    ch, cw = min(crop[0], h), min(crop[1], w)

    def draw():
        return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))

    top, left = draw()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            region = mask[top:top + ch, left:left + cw]
            counts = np.bincount(region[region != IGNORE_INDEX].ravel())
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
                break
            top, left = draw()
    return top, left, ch, cw


# ---- photometric distortion (mmseg 0.x, uint8, OpenCV HSV) ------------------------------------------------
def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """x * alpha + beta in float32, clipped to [0, 255] and truncated to uint8 (the original's ``convert``)."""
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(img: np.ndarray, rng: np.random.Generator, brightness_delta: int = 32,
                           contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5), hue_delta: int = 18) -> np.ndarray:
    """(H, W, 3) RGB uint8 -> uint8: brightness, contrast (before or after, chosen at random), saturation,
    hue; each with probability 0.5 and a uint8 round trip after it, HSV through ``cv2.cvtColor``."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    if rng.integers(2):
        img = _convert(img, beta=rng.uniform(-brightness_delta, brightness_delta))
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        img = _convert(img, alpha=rng.uniform(*contrast_range))
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 1] = _convert(hsv[:, :, 1], alpha=rng.uniform(*saturation_range))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int64) + int(rng.integers(-hue_delta, hue_delta))) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and rng.integers(2):
        img = _convert(img, alpha=rng.uniform(*contrast_range))
    return img


@dataclass
class TrainPipeline:
    crop_size: tuple[int, int]
    img_scale: tuple[int, int]
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    def __call__(self, img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, W, 3) uint8 RGB + (H, W) uint8 labels -> normalised (3, ch, cw) float, (ch, cw) int64."""
        img = np.ascontiguousarray(img, dtype=np.uint8)
        mask = np.ascontiguousarray(mask, dtype=np.uint8)
        ratio = rng.uniform(*self.ratio_range)
        target = (int(self.img_scale[0] * ratio), int(self.img_scale[1] * ratio))
        size = rescale_size(img.shape[:2], target)
        img, mask = resize_image(img, size), resize_labels(mask, size)
        top, left, ch, cw = random_crop_box(mask, self.crop_size, self.cat_max_ratio, rng)
        img, mask = img[top:top + ch, left:left + cw], mask[top:top + ch, left:left + cw]
        if rng.random() < self.flip_prob:
            img, mask = flip(img, "horizontal"), flip(mask, "horizontal")
        if self.photometric:
            img = photometric_distortion(img, rng)
        x = normalise(img, self.mean, self.std)
        t_mask = torch.from_numpy(np.ascontiguousarray(mask)).long()
        pad_h, pad_w = self.crop_size[0] - ch, self.crop_size[1] - cw
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
            t_mask = F.pad(t_mask, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
        return x, t_mask
