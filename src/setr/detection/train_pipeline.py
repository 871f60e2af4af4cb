"""The authors' detection TRAINING pipeline (mmdet 2.26 ``train_pipeline`` of the RetinaNet-HLG configs).

LoadImageFromFile -> LoadAnnotations -> Resize(img_scale list, multiscale_mode 'value', keep_ratio) ->
RandomFlip(0.5) -> Normalize(to_rgb) -> Pad(size_divisor 32) -> collate:

* the image is decoded as ``cv2.imread`` does (:func:`setr.io.images.read_image`, held as RGB: every step is per
  channel);
* ONE scale is drawn per IMAGE from the list (``numpy.random.randint``, as mmdet's ``Resize.random_select``), so
  two images of a batch usually get different sizes (torchvision's transform draws one per batch);
* keep-ratio resize with mmcv's sizes and cv2 INTER_LINEAR on uint8 (shared with the test pipeline:
  :func:`.pipeline.rescale`); ``scale_factor`` = float32 (w, h, w, h) from the actual sizes;
* gt boxes (float32 x1 y1 x2 y2, no +1) multiplied by ``scale_factor`` and clipped to the resized image;
* horizontal flip with probability ``flip_ratio`` per image: image mirrored, boxes ``x1' = w - x2, x2' = w - x1``
  (mmdet 2.x, no -1);
* normalisation and zero padding to a multiple of 32 (:func:`.pipeline.normalize`, :func:`.pipeline.pad_to_multiple`);
  a batch is zero-padded further to its largest image (:func:`.pipeline.collate`); each image keeps its own
  ``pad_shape`` (the anchors' valid flags use it).

The random draws come from NumPy's global generator, which :class:`setr.engine.sampler.SeededSamples` seeds per
sample from its position in the data stream (exact resume, any number of workers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .pipeline import (IMG_NORM_MEAN, IMG_NORM_STD, SIZE_DIVISOR, ImageMeta, collate, normalize, pad_to_multiple,
                       rescale)


@dataclass
class TrainSample:
    img: torch.Tensor  # (3, H, W) float32, normalised, padded to a multiple of 32
    gt_bboxes: torch.Tensor  # (n, 4) float32 in the resized (and flipped) image's pixels
    gt_labels: torch.Tensor  # (n,) int64, 0 .. C-1
    meta: ImageMeta


def train_scales(max_size: int, short_sides: Sequence[int]) -> list[tuple[int, int]]:
    """The config's ``img_scale`` list: (max_size, s) for every short side s."""
    return [(int(max_size), int(s)) for s in short_sides]


def scale_boxes(boxes: np.ndarray, scale_factor: np.ndarray, img_hw: Sequence[int]) -> np.ndarray:
    """mmdet ``Resize._resize_bboxes``: boxes * scale_factor (float32), x clipped to [0, w], y to [0, h]."""
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale_factor
    out[:, 0::2] = np.clip(out[:, 0::2], 0, img_hw[1])
    out[:, 1::2] = np.clip(out[:, 1::2], 0, img_hw[0])
    return out


def flip_boxes(boxes: np.ndarray, img_w: int) -> np.ndarray:
    """mmdet 2.x horizontal ``bbox_flip``: x1' = w - x2, x2' = w - x1."""
    out = boxes.copy()
    out[:, 0::4] = img_w - boxes[:, 2::4]
    out[:, 2::4] = img_w - boxes[:, 0::4]
    return out


def train_transform(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, img_scales: Sequence[Sequence[int]],
                    flip_ratio: float = 0.5, mean: Sequence[float] = IMG_NORM_MEAN, std: Sequence[float] = IMG_NORM_STD,
                    size_divisor: int = SIZE_DIVISOR, filename: str | None = None) -> TrainSample:
    """One (H, W, 3) uint8 RGB image and its boxes through the training pipeline (random draws from np.random)."""
    if not img_scales:
        raise ValueError("train_transform needs at least one img_scale")
    scale = img_scales[np.random.randint(len(img_scales))] if len(img_scales) > 1 else img_scales[0]
    h, w = img.shape[:2]
    resized, scale_factor = rescale(img, scale)
    nh, nw = resized.shape[:2]
    gt = scale_boxes(boxes, scale_factor, (nh, nw))
    flip = flip_ratio > 0 and np.random.rand() < flip_ratio
    if flip:
        resized = np.ascontiguousarray(resized[:, ::-1])
        gt = flip_boxes(gt, nw)
    x = pad_to_multiple(normalize(resized, mean, std), size_divisor)
    meta = ImageMeta(ori_shape=(h, w, 3), img_shape=(nh, nw, 3), pad_shape=(int(x.shape[-2]), int(x.shape[-1]), 3),
                     scale_factor=scale_factor, flip=bool(flip), flip_direction="horizontal" if flip else None,
                     filename=filename)
    return TrainSample(x, torch.from_numpy(gt), torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1),
                       meta)


class CocoTrainSamples(torch.utils.data.Dataset):
    """A :class:`.coco.CocoDetection` training split through :func:`train_transform`."""

    def __init__(self, dataset, img_scales: Sequence[Sequence[int]], flip_ratio: float = 0.5,
                 mean: Sequence[float] = IMG_NORM_MEAN, std: Sequence[float] = IMG_NORM_STD,
                 size_divisor: int = SIZE_DIVISOR):
        self.dataset = dataset
        self.img_scales = [tuple(int(v) for v in s) for s in img_scales]
        self.flip_ratio = float(flip_ratio)
        self.mean, self.std, self.size_divisor = mean, std, size_divisor

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> TrainSample:
        from ..io.images import read_image

        path = self.dataset.image_path(index)
        boxes, labels = self.dataset.annotations(index)
        return train_transform(read_image(path), boxes.numpy(), labels.numpy(), self.img_scales, self.flip_ratio,
                               self.mean, self.std, self.size_divisor, filename=str(path))


def collate_train(samples: Sequence[TrainSample]):
    """-> (images (B, 3, H, W) zero-padded to the largest, metas, gt_bboxes list, gt_labels list)."""
    metas = [s.meta for s in samples]
    images = collate([s.img for s in samples], metas)
    return images, metas, [s.gt_bboxes for s in samples], [s.gt_labels for s in samples]
