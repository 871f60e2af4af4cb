"""Segmentation datasets in their real on-disk layouts.

| name | ``--data-root`` | images | labels |
|---|---|---|---|
| cityscapes | ``cityscapes/`` | ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` | ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` |
| ade20k | ``ADEChallengeData2016/`` (or its parent) | ``images/{training,validation}/*.jpg`` | ``annotations/.../*.png`` (0 = other -> ignored) |
| pascal_context | ``VOCdevkit/VOC2010/`` (or ``VOCdevkit/``) | ``JPEGImages/*.jpg`` listed in ``ImageSets/SegmentationContext/<split>.txt`` | ``SegmentationClassContext/*.png`` |
| folder | any folder | ``images/<split>/*`` | ``masks/<split>/<stem>.png``; ``classes.txt`` (one name per line) |

Labels are class ids (255 = ignore). A label outside the class range is an error naming the file and values.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import SetrError
from ..io.images import IMAGE_SUFFIXES, read_image
from .classes import classes_and_palette

SPLITS = {"cityscapes": {"train": "train", "val": "val", "test": "test"},
          "ade20k": {"train": "training", "val": "validation"},
          "pascal_context": {"train": "train", "val": "val"},
          "folder": {"train": "train", "val": "val", "test": "test"}}


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None
    name: str  # relative name used for outputs (e.g. "frankfurt_000000_000294_leftImg8bit")


def _need_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise SetrError(f"{path}: folder not found (expected the {layout} layout)")
    return path


def _pairs(images: list[Path], mask_for: Callable[[Path], Path], require_masks: bool) -> list[Sample]:
    samples = []
    for img in images:
        mask = mask_for(img)
        if not mask.is_file():
            if require_masks:
                raise SetrError(f"{img}: image has no label map (expected {mask})")
            mask = None
        samples.append(Sample(img, mask, img.stem))
    return samples


def cityscapes_samples(root: Path, split: str, require_masks: bool = True) -> list[Sample]:
    layout = "Cityscapes (leftImg8bit/ + gtFine/)"
    img_dir = _need_dir(root / "leftImg8bit" / split, layout)
    ann_dir = root / "gtFine" / split
    if require_masks:
        _need_dir(ann_dir, layout)
    images = sorted(img_dir.rglob("*_leftImg8bit.png"))
    return _pairs(images, lambda p: ann_dir / p.parent.name / p.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png"),
                  require_masks)


def ade20k_samples(root: Path, split: str, require_masks: bool = True) -> list[Sample]:
    if (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    layout = "ADE20K (ADEChallengeData2016/images, annotations)"
    img_dir = _need_dir(root / "images" / split, layout)
    ann_dir = root / "annotations" / split
    if require_masks:
        _need_dir(ann_dir, layout)
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return _pairs(images, lambda p: ann_dir / (p.stem + ".png"), require_masks)


def pascal_context_samples(root: Path, split: str, require_masks: bool = True) -> list[Sample]:
    if (root / "VOC2010").is_dir():
        root = root / "VOC2010"
    layout = "Pascal Context (VOC2010/JPEGImages, SegmentationClassContext, ImageSets/SegmentationContext)"
    img_dir = _need_dir(root / "JPEGImages", layout)
    ann_dir = root / "SegmentationClassContext"
    if require_masks:
        _need_dir(ann_dir, layout)
    split_file = root / "ImageSets" / "SegmentationContext" / f"{split}.txt"
    if not split_file.is_file():
        raise SetrError(f"{split_file}: split file not found (expected the {layout} layout)")
    names = [ln.strip() for ln in split_file.read_text().splitlines() if ln.strip()]
    images = [img_dir / f"{n}.jpg" for n in names]
    for img in images:
        if not img.is_file():
            raise SetrError(f"{img}: listed in {split_file.name} but not found")
    return _pairs(images, lambda p: ann_dir / (p.stem + ".png"), require_masks)


def folder_samples(root: Path, split: str, require_masks: bool = True) -> list[Sample]:
    layout = "folder dataset (images/<split>/, masks/<split>/, classes.txt)"
    img_dir = _need_dir(root / "images" / split, layout)
    mask_dir = root / "masks" / split
    if require_masks:
        _need_dir(mask_dir, layout)
    images = sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return _pairs(images, lambda p: mask_dir / p.relative_to(img_dir).with_suffix(".png"), require_masks)


def read_class_names(root: Path) -> list[str]:
    f = root / "classes.txt"
    if not f.is_file():
        raise SetrError(f"{f}: class-names file not found (one class name per line)")
    names = [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
    if not names:
        raise SetrError(f"{f}: no class names in the file")
    return names


LISTERS = {"cityscapes": cityscapes_samples, "ade20k": ade20k_samples, "pascal_context": pascal_context_samples,
           "folder": folder_samples}
REDUCE_ZERO_LABEL = {"ade20k": True}


class SegmentationDataset(torch.utils.data.Dataset):
    """Images and label maps; ``transform(img, mask, rng)`` makes the training sample. Indexing with
    ``(index, seed)`` draws that sample's augmentation from ``seed`` (deterministic, worker-independent)."""

    def __init__(self, samples: Sequence[Sample], num_classes: int, reduce_zero_label: bool = False,
                 transform=None, class_names: Sequence[str] | None = None, dataset: str | None = None,
                 root: Path | None = None):
        if not samples:
            raise SetrError(f"{root or 'dataset'}: no images found")
        self.samples = list(samples)
        self.num_classes = num_classes
        self.reduce_zero_label = reduce_zero_label
        self.transform = transform
        self.dataset = dataset
        self.root = root
        self.class_names, self.palette = classes_and_palette(dataset, num_classes, list(class_names or []) or None)

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB, decoded as the original did (OpenCV)."""
        return read_image(self.samples[i].image)

    def load_mask(self, i: int) -> np.ndarray:
        """(H, W) uint8 class ids with 255 = ignore (ADE20K: 0 -> 255, v -> v - 1)."""
        path = self.samples[i].mask
        if path is None:
            raise SetrError(f"{self.samples[i].image}: image has no label map")
        try:
            with Image.open(path) as im:
                mask = np.array(im)
        except Exception as exc:  # noqa: BLE001
            raise SetrError(f"{path}: not a readable label map ({type(exc).__name__})") from None
        if mask.ndim != 2:
            raise SetrError(f"{path}: label map must be single-channel class ids, got shape {mask.shape}")
        if mask.dtype != np.uint8:
            if mask.max() > 255 or mask.min() < 0:
                raise SetrError(f"{path}: label values {int(mask.min())}..{int(mask.max())} do not fit 0..255")
            mask = mask.astype(np.uint8)
        if self.reduce_zero_label:
            mask = mask.copy()
            mask[mask == 0] = 255
            mask = mask - 1
            mask[mask == 254] = 255
        bad = np.unique(mask[(mask >= self.num_classes) & (mask != 255)])
        if bad.size:
            shown = ", ".join(str(int(v) + (1 if self.reduce_zero_label else 0)) for v in bad[:8])
            raise SetrError(f"{path}: label values {shown} are outside the {self.num_classes} classes "
                            f"(0..{self.num_classes - 1 + (1 if self.reduce_zero_label else 0)}, 255 = ignore)")
        return mask

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        img, mask = self.load_image(index), self.load_mask(index)
        if img.shape[:2] != mask.shape:
            raise SetrError(f"{self.samples[index].mask}: label map is {mask.shape[1]}x{mask.shape[0]}, "
                            f"image is {img.shape[1]}x{img.shape[0]}")
        if self.transform is None:
            return {"img": torch.from_numpy(img.copy()).permute(2, 0, 1), "mask": torch.from_numpy(mask.copy()).long(),
                    "index": index}
        rng = np.random.default_rng(seed if seed is not None else index)
        x, m = self.transform(img, mask, rng)
        return {"img": x, "mask": m, "index": index}


def build_dataset(name: str, root: str | os.PathLike, split: str, num_classes: int | None = None,
                  transform=None, require_masks: bool = True) -> SegmentationDataset:
    """The ``split`` ("train" / "val" / "test") of dataset ``name`` under ``root``."""
    root = Path(root)
    if name not in LISTERS:
        raise SetrError(f"unknown dataset {name!r}: expected one of {', '.join(LISTERS)}")
    if not root.is_dir():
        raise SetrError(f"{root}: data root not found")
    sub = SPLITS[name].get(split)
    if sub is None:
        raise SetrError(f"dataset {name} has no {split!r} split")
    class_names = None
    if name == "folder":
        class_names = read_class_names(root)
        if num_classes is not None and num_classes != len(class_names):
            raise SetrError(f"{root / 'classes.txt'}: lists {len(class_names)} classes, the model has {num_classes}")
        num_classes = len(class_names)
    else:
        from .specs import DATASETS

        num_classes = num_classes or DATASETS[name].num_classes
    samples = LISTERS[name](root, sub, require_masks)
    return SegmentationDataset(samples, num_classes, REDUCE_ZERO_LABEL.get(name, False), transform,
                               class_names, name, root)
