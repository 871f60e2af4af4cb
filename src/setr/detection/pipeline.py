"""The authors' detection test pipeline (mmdet 2.26 / mmcv 1.x), with its OpenCV arithmetic.

LoadImageFromFile -> Resize(keep_ratio) -> Normalize(to_rgb) -> Pad(size_divisor=32) -> collate:

* decoding as ``cv2.imread(IMREAD_COLOR)`` (:func:`setr.io.images.read_image`; we hold RGB where the original held
  BGR and converted at Normalize: every step below is per channel, so the numbers are the same);
* keep-ratio resize to ``img_scale`` = (long, short) bounds: factor min(long / max(h, w), short / min(h, w)), each
  side ``int(side * factor + 0.5)``, ``cv2.resize`` INTER_LINEAR on the uint8 image (mmcv ``imrescale``);
* ``scale_factor`` = float32 (w_scale, h_scale, w_scale, h_scale) with w_scale = new_w / w, h_scale = new_h / h,
  from the sizes actually produced (mmdet ``Resize``);
* normalisation ``(x - mean) * (1 / std)`` in float32 (mmcv ``imnormalize``), then zero padding at the bottom and
  right to a multiple of 32, so the padding is 0 in normalised space;
* a batch is zero-padded further to its largest image (mmcv ``collate``).

The resize / normalise / pad functions are shared with the training pipeline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.transforms import rescale_size, resize_image

IMG_NORM_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255 (the config's img_norm_cfg)
IMG_NORM_STD = (58.395, 57.12, 57.375)
SIZE_DIVISOR = 32


@dataclass
class ImageMeta:
    """What mmdet's pipeline records per image: shapes as (h, w, 3), ``scale_factor`` (w, h, w, h) float32."""

    ori_shape: tuple[int, int, int]
    img_shape: tuple[int, int, int]
    pad_shape: tuple[int, int, int]
    scale_factor: np.ndarray
    batch_input_shape: tuple[int, int] | None = None
    flip: bool = False
    flip_direction: str | None = None
    filename: str | None = None
    extra: dict = field(default_factory=dict)


def keep_ratio_size(hw: tuple[int, int], img_scale: Sequence[int]) -> tuple[int, int]:
    """(new_h, new_w) of mmcv's keep-ratio rescale of an (h, w) image to ``img_scale`` (long, short)."""
    return rescale_size(hw, img_scale)


def rescale(img: np.ndarray, img_scale: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 -> (resized uint8 image, float32 scale_factor (w, h, w, h)), as mmdet ``Resize``."""
    h, w = img.shape[:2]
    out = resize_image(img, keep_ratio_size((h, w), img_scale))
    return out, scale_factor_of((h, w), out.shape[:2])


def scale_factor_of(ori_hw: Sequence[int], new_hw: Sequence[int]) -> np.ndarray:
    w_scale, h_scale = new_hw[1] / ori_hw[1], new_hw[0] / ori_hw[0]
    return np.array([w_scale, h_scale, w_scale, h_scale], dtype=np.float32)


def normalize(img: np.ndarray, mean: Sequence[float] = IMG_NORM_MEAN,
              std: Sequence[float] = IMG_NORM_STD) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 (x - mean) * (1 / std). mmdet's ``Normalize`` holds mean and std
    as float32 arrays and mmcv applies them as float64 (1 / std taken in float64); the result is rounded to
    float32 once, which reproduces the original's normalised input bit for bit."""
    mean64 = torch.from_numpy(np.asarray(mean, dtype=np.float32).astype(np.float64)).view(3, 1, 1)
    std_inv64 = 1.0 / torch.from_numpy(np.asarray(std, dtype=np.float32).astype(np.float64)).view(3, 1, 1)
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).double()
    return ((x - mean64) * std_inv64).float()


def pad_to_multiple(x: torch.Tensor, divisor: int = SIZE_DIVISOR, value: float = 0.0) -> torch.Tensor:
    """(..., H, W) -> zero-padded at the bottom/right to ceil(H / d) * d, ceil(W / d) * d (mmcv
    ``impad_to_multiple``)."""
    h, w = x.shape[-2:]
    ph, pw = math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor
    return pad_to(x, (ph, pw), value)


def pad_to(x: torch.Tensor, hw: Sequence[int], value: float = 0.0) -> torch.Tensor:
    h, w = x.shape[-2:]
    if (h, w) == tuple(hw):
        return x
    return F.pad(x, (0, int(hw[1]) - w, 0, int(hw[0]) - h), value=value)


def collate(images: Sequence[torch.Tensor], metas: Sequence[ImageMeta] | None = None) -> torch.Tensor:
    """Stack (3, h_i, w_i) tensors zero-padded to the largest h and w (mmcv ``collate``); sets each meta's
    ``batch_input_shape``."""
    H = max(int(t.shape[-2]) for t in images)
    W = max(int(t.shape[-1]) for t in images)
    for m in metas or ():
        m.batch_input_shape = (H, W)
    return torch.stack([pad_to(t, (H, W)) for t in images])


def prepare_test_image(img: np.ndarray, img_scale: Sequence[int] | None, mean: Sequence[float] = IMG_NORM_MEAN,
                       std: Sequence[float] = IMG_NORM_STD,
                       size_divisor: int = SIZE_DIVISOR) -> tuple[torch.Tensor, ImageMeta]:
    """One RGB uint8 image through Resize, Normalize and Pad -> ((3, H, W) float32, its meta)."""
    h, w = img.shape[:2]
    if img_scale:
        resized, scale_factor = rescale(img, img_scale)
    else:
        resized, scale_factor = img, scale_factor_of((h, w), (h, w))
    x = pad_to_multiple(normalize(resized, mean, std), size_divisor)
    nh, nw = resized.shape[:2]
    meta = ImageMeta(ori_shape=(h, w, 3), img_shape=(nh, nw, 3), pad_shape=(int(x.shape[-2]), int(x.shape[-1]), 3),
                     scale_factor=scale_factor)
    return x, meta


def make_test_batch(images: Sequence[np.ndarray], img_scale: Sequence[int] | None,
               mean: Sequence[float] = IMG_NORM_MEAN, std: Sequence[float] = IMG_NORM_STD,
               size_divisor: int = SIZE_DIVISOR) -> tuple[torch.Tensor, list[ImageMeta]]:
    """RGB uint8 images -> (the collated (B, 3, H, W) batch, their metas)."""
    prepared = [prepare_test_image(im, img_scale, mean, std, size_divisor) for im in images]
    metas = [m for _, m in prepared]
    return collate([x for x, _ in prepared], metas), metas
