"""The original training and test pipelines, on torchvision's v2 functional ops where they fit.

Training (order matters, as in the original): random keep-ratio resize with ratio in ``ratio_range`` ->
random crop with ``cat_max_ratio`` -> horizontal flip (p=0.5) -> photometric distortion (uint8 semantics of the
original: additive brightness, multiplicative contrast before or after, OpenCV-style HSV saturation and hue)
-> ImageNet normalisation -> pad to the crop (image 0 after normalisation, label 255).
Randomness comes from a ``numpy.random.Generator`` passed in, so a sample's augmentation is a pure function of
its seed (which is what makes ``--resume`` exact, whatever the number of data-loader workers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..config import IMAGENET_MEAN, IMAGENET_STD

IGNORE_INDEX = 255


def rescale_size(hw: tuple[int, int], scale: tuple[int, int]) -> tuple[int, int]:
    """Keep-ratio size that fits (long, short) = ``scale`` (mmcv ``imrescale`` rounding)."""
    h, w = hw
    long_max, short_max = max(scale), min(scale)
    f = min(long_max / max(h, w), short_max / min(h, w))
    return int(h * f + 0.5), int(w * f + 0.5)


def resize_pair(img: torch.Tensor, mask: torch.Tensor | None, size: tuple[int, int]):
    """(3, H, W) uint8 image (bilinear) and (H, W) label map (nearest)."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img, mask
    img = TF.resize(img, list(size), interpolation=InterpolationMode.BILINEAR, antialias=False)
    if mask is not None:
        mask = TF.resize(mask[None], list(size), interpolation=InterpolationMode.NEAREST)[0]
    return img, mask


def random_crop_box(mask: torch.Tensor, crop: tuple[int, int], cat_max_ratio: float,
                    rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop; with cat_max_ratio < 1, up to 10 tries for a crop where no single class
    covers more than that fraction of the labelled pixels (and more than one class is present)."""
    h, w = mask.shape[-2:]
    ch, cw = min(crop[0], h), min(crop[1], w)

    def draw():
        return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))

    top, left = draw()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            region = mask[top:top + ch, left:left + cw]
            counts = torch.bincount(region[region != IGNORE_INDEX].flatten().long())
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max().item() / counts.sum().item() < cat_max_ratio:
                break
            top, left = draw()
    return top, left, ch, cw


# ---- photometric distortion, uint8 semantics -------------------------------------------------
def _rgb_to_hsv(img: np.ndarray) -> np.ndarray:
    """float RGB 0..255 -> OpenCV-style HSV (H in [0, 180), S and V in 0..255)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    v = img.max(-1)
    delta = v - img.min(-1)
    s = np.where(v > 0, delta / np.maximum(v, 1e-6) * 255.0, 0.0)
    safe = np.maximum(delta, 1e-6)
    hue = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = np.where(delta > 0, (hue * 30.0) % 180.0, 0.0)  # 60 degrees per unit, halved
    return np.stack([hue, s, v], -1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0] / 30.0, hsv[..., 1] / 255.0, hsv[..., 2]  # h in sextants [0, 6)
    i = np.floor(h) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    out = np.zeros_like(hsv)
    for k in range(6):
        out = np.where((i == k)[..., None], choices[k], out)
    return out


def _u8(x: np.ndarray) -> np.ndarray:
    """clip to [0, 255] then truncate, as the original's ``np.clip(...).astype(np.uint8)``."""
    return np.floor(np.clip(x, 0, 255))


def photometric_distortion(img: np.ndarray, rng: np.random.Generator, brightness_delta: int = 32,
                           contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5), hue_delta: int = 18) -> np.ndarray:
    """(H, W, 3) RGB uint8 -> uint8. Each op runs with p=0.5 and rounds/clips to uint8 after it."""
    x = img.astype(np.float32)
    if rng.integers(2):
        x = _u8(x + rng.uniform(-brightness_delta, brightness_delta))
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        x = _u8(x * rng.uniform(*contrast_range))
    if rng.integers(2):
        hsv = _rgb_to_hsv(x)
        hsv[..., 1] = _u8(hsv[..., 1] * rng.uniform(*saturation_range))
        x = np.clip(np.round(_hsv_to_rgb(hsv)), 0, 255)  # OpenCV's HSV -> BGR conversion rounds
    if rng.integers(2):
        hsv = _rgb_to_hsv(x)
        hsv[..., 0] = (np.round(hsv[..., 0]) + int(rng.integers(-hue_delta, hue_delta))) % 180
        x = np.clip(np.round(_hsv_to_rgb(hsv)), 0, 255)
    if not contrast_first and rng.integers(2):
        x = _u8(x * rng.uniform(*contrast_range))
    return x.astype(np.uint8)


def normalise(img: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    return TF.normalize(img.float(), list(mean), list(std))


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
        t_img = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
        t_mask = torch.from_numpy(np.array(mask, dtype=np.uint8))
        ratio = rng.uniform(*self.ratio_range)
        target = (int(self.img_scale[0] * ratio), int(self.img_scale[1] * ratio))
        t_img, t_mask = resize_pair(t_img, t_mask, rescale_size(tuple(t_img.shape[-2:]), target))
        top, left, ch, cw = random_crop_box(t_mask, self.crop_size, self.cat_max_ratio, rng)
        t_img, t_mask = TF.crop(t_img, top, left, ch, cw), TF.crop(t_mask, top, left, ch, cw)
        if rng.random() < self.flip_prob:
            t_img, t_mask = TF.horizontal_flip(t_img), TF.horizontal_flip(t_mask)
        if self.photometric:
            t_img = torch.from_numpy(photometric_distortion(t_img.permute(1, 2, 0).numpy(), rng)).permute(2, 0, 1)
        x = normalise(t_img, self.mean, self.std)
        pad_h, pad_w = self.crop_size[0] - ch, self.crop_size[1] - cw
        if pad_h or pad_w:
            x = TF.pad(x, [0, 0, pad_w, pad_h], fill=0.0)
            t_mask = TF.pad(t_mask[None], [0, 0, pad_w, pad_h], fill=IGNORE_INDEX)[0]
        return x, t_mask.long()
