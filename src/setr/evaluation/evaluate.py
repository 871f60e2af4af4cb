"""Evaluate a segmentor on a dataset with the original test pipeline (one image at a time, as the original)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..data.datasets import SegmentationDataset
from ..dist import DistInfo, all_reduce_sum
from ..inference import Segmenter
from .metrics import IoUAccumulator


def evaluate(segmenter: Segmenter, dataset: SegmentationDataset, dist_info: DistInfo | None = None,
             progress: bool = True, show_dir: str | Path | None = None, formatter=None, on_image=None) -> dict:
    """mIoU / mAcc / aAcc over ``dataset`` (sharded across processes, areas summed).

    ``formatter(labels, sample)`` is called per image when given (submission files); ``show_dir`` gets overlays;
    ``on_image(name, labels, mask, image)`` sees each scored image (``setr test --report``).
    """
    info = dist_info or DistInfo()
    acc = IoUAccumulator(dataset.num_classes)
    indices = range(info.rank, len(dataset), info.world_size)
    has_masks = all(s.mask is not None for s in dataset.samples)
    if show_dir:
        Path(show_dir).mkdir(parents=True, exist_ok=True)
    for i in tqdm(indices, desc="eval", unit="img", disable=not (progress and info.is_main), leave=False):
        image = dataset.load_image(i)
        labels = segmenter.predict(image)
        if has_masks:
            mask = dataset.load_mask(i)
            acc.update(labels, mask)
            if on_image is not None:
                on_image(dataset.samples[i].name, labels, np.asarray(mask), image)
        if formatter is not None:
            formatter(labels, dataset.samples[i])
        if show_dir:
            Image.fromarray(segmenter.overlay(image, labels)).save(Path(show_dir) / f"{dataset.samples[i].name}.jpg")
    if not has_masks:
        return {}
    totals = all_reduce_sum(acc.as_tensor().to(info.device if info.distributed and info.device.type == "cuda"
                                                 else "cpu"), info)
    acc.load_tensor(totals)
    return acc.compute(dataset.class_names)


def _outside(labels: np.ndarray, num_classes: int, ignore_index: int | None) -> list[int]:
    values = np.unique(labels)
    return [int(v) for v in values if (v < 0 or v >= num_classes) and v != ignore_index]


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path, num_classes: int, reduce_zero_label: bool = False,
                     ignore_index: int = 255, class_names=None, ignore_out_of_range: bool = False,
                     on_image=None) -> dict:
    """Score a folder of prediction PNGs against a folder of ground-truth PNGs, matched by relative path
    (``<stem>.png``; Cityscapes ``*_gtFine_labelTrainIds.png`` ground truth matches ``*_leftImg8bit.png`` too).

    A label outside ``0..num_classes-1`` (other than ``ignore_index``) in either file is an error naming the file
    and the values, unless ``ignore_out_of_range`` (then such pixels count in no class, as the original did).
    ``on_image(name, pred, gt, None)`` sees each scored pair (``setr evaluate --report``)."""
    from ..errors import SetrError

    if num_classes < 1:
        raise SetrError(f"--num-classes {num_classes}: expected a whole number >= 1")
    if class_names is not None and len(class_names) != num_classes:
        raise SetrError(f"{len(class_names)} class names for --num-classes {num_classes}")
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for d in (pred_dir, gt_dir):
        if not d.is_dir():
            raise SetrError(f"{d}: folder not found")
    gts = sorted(gt_dir.rglob("*.png"))
    train_ids = [g for g in gts if g.name.endswith("_gtFine_labelTrainIds.png")]
    if train_ids:  # a Cityscapes gtFine tree also holds _color, _instanceIds and _labelIds files
        gts = train_ids
    if not gts:
        raise SetrError(f"{gt_dir}: no ground-truth PNG files")
    preds = {p.stem: p for p in pred_dir.rglob("*.png")}
    acc = IoUAccumulator(num_classes, ignore_index)
    matched = 0
    for gt_path in gts:
        stem = gt_path.stem
        candidates = [stem, stem.replace("_gtFine_labelTrainIds", "_leftImg8bit"), stem.replace("_gtFine_labelTrainIds", "")]
        pred_path = next((preds[c] for c in candidates if c in preds), None)
        if pred_path is None:
            raise SetrError(f"{gt_path}: no prediction named {stem}.png in {pred_dir}")
        gt = np.array(Image.open(gt_path))
        if reduce_zero_label:
            gt = gt.astype(np.int64)
            keep_ignored = gt == ignore_index
            gt[gt == 0] = ignore_index + 1
            gt = gt - 1
            gt[keep_ignored] = ignore_index
        pred = np.array(Image.open(pred_path))
        if pred.shape != gt.shape:
            raise SetrError(f"{pred_path}: prediction is {pred.shape[1]}x{pred.shape[0]}, ground truth "
                            f"{gt.shape[1]}x{gt.shape[0]}")
        if not ignore_out_of_range:
            shift = 1 if reduce_zero_label else 0
            valid = gt != ignore_index  # predictions at ignored pixels are not scored
            for what, path, labels, allowed in (
                    ("ground-truth", gt_path, gt[valid], f"{shift}..{num_classes - 1 + shift}, {ignore_index}"
                                                         f"{' and 0' if shift else ''} = ignore"),
                    ("predicted", pred_path, pred[valid], f"0..{num_classes - 1}")):
                found = _outside(labels, num_classes, None)
                if found:
                    shown = ", ".join(str(v + (shift if what == "ground-truth" else 0)) for v in found[:8])
                    raise SetrError(f"{path}: {what} label values {shown}{', ...' if len(found) > 8 else ''} are "
                                    f"outside --num-classes {num_classes} ({allowed}); pass --ignore-out-of-range "
                                    "to leave those pixels out of every class")
        acc.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(gt.astype(np.int64)))
        if on_image is not None:
            on_image(stem, pred, gt, None)
        matched += 1
    result = acc.compute(class_names)
    result["num_images"] = matched
    return result
