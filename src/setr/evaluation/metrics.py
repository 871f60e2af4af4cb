"""Segmentation metrics with the original definitions.

Per image: pixels whose ground truth is the ignore index are dropped; intersection, prediction and ground-truth
areas are counted per class. The areas are **summed over the whole dataset** (not averaged per image), then
aAcc = sum(intersect) / sum(area_gt); IoU_c = intersect_c / union_c; Acc_c = intersect_c / area_gt_c;
mIoU / mAcc = nanmean over classes (0/0 = NaN, excluded: a class absent from both ground truth and predictions;
a class predicted but absent from the ground truth has IoU 0, which counts, and Acc NaN, which does not).
Values are fractions.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch


@dataclass
class IoUAccumulator:
    num_classes: int
    ignore_index: int = 255
    intersect: np.ndarray = field(init=False)
    area_pred: np.ndarray = field(init=False)
    area_gt: np.ndarray = field(init=False)

    def __post_init__(self):
        self.intersect = np.zeros(self.num_classes, dtype=np.int64)
        self.area_pred = np.zeros(self.num_classes, dtype=np.int64)
        self.area_gt = np.zeros(self.num_classes, dtype=np.int64)

    def update(self, pred, gt) -> None:
        """Add one (H, W) prediction / ground-truth pair (numpy or torch, any integer dtype)."""
        pred = torch.as_tensor(np.asarray(pred) if not isinstance(pred, torch.Tensor) else pred).long().flatten()
        gt = torch.as_tensor(np.asarray(gt) if not isinstance(gt, torch.Tensor) else gt).long().flatten()
        if pred.shape != gt.shape:
            raise ValueError(f"prediction has {pred.numel()} pixels, ground truth {gt.numel()}")
        keep = gt != self.ignore_index
        pred, gt = pred[keep], gt[keep]
        # like the original's histogram: values outside 0..K-1 fall out of every bin
        k = self.num_classes
        inside_p = (pred >= 0) & (pred < k)
        inside_g = (gt >= 0) & (gt < k)
        hit = pred[(pred == gt) & inside_p]
        self.intersect += torch.bincount(hit, minlength=k)[:k].numpy()
        self.area_pred += torch.bincount(pred[inside_p], minlength=k)[:k].numpy()
        self.area_gt += torch.bincount(gt[inside_g], minlength=k)[:k].numpy()

    def merge(self, other: "IoUAccumulator") -> None:
        self.intersect += other.intersect
        self.area_pred += other.area_pred
        self.area_gt += other.area_gt

    def as_tensor(self) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.intersect, self.area_pred, self.area_gt]))

    def load_tensor(self, t: torch.Tensor) -> None:
        self.intersect, self.area_pred, self.area_gt = (x.numpy().astype(np.int64) for x in t.cpu())

    def compute(self, class_names: Sequence[str] | None = None) -> dict:
        union = self.area_pred + self.area_gt - self.intersect
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = self.intersect / union
            acc = self.intersect / self.area_gt
        total_gt = self.area_gt.sum()
        names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        return {
            "aAcc": float(self.intersect.sum() / total_gt) if total_gt else float("nan"),
            "mIoU": _nanmean(iou), "mAcc": _nanmean(acc),
            "per_class": [{"class": names[i], "IoU": _num(iou[i]), "Acc": _num(acc[i])} for i in range(self.num_classes)],
        }


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def _num(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def format_table(metrics: dict) -> str:
    """A per-class IoU / Acc table and the summary line (in %, as the original's log)."""
    lines = [f"{'class':<24} {'IoU':>7} {'Acc':>7}"]
    for row in metrics["per_class"]:
        iou = f"{row['IoU'] * 100:.2f}" if row["IoU"] is not None else "nan"
        acc = f"{row['Acc'] * 100:.2f}" if row["Acc"] is not None else "nan"
        lines.append(f"{row['class']:<24} {iou:>7} {acc:>7}")
    summary = f"aAcc {metrics['aAcc'] * 100:.2f}  mIoU {metrics['mIoU'] * 100:.2f}  mAcc {metrics['mAcc'] * 100:.2f}"
    precision = metrics.get("precision")
    if precision:  # the numbers depend on it: say which arithmetic produced them
        summary += f"  (precision {precision}"
        if precision != "fp32":
            summary += "; --precision fp32 gives the original arithmetic, as `setr demo` evaluates"
        summary += ")"
    lines.append(summary)
    return "\n".join(lines)


def to_json(metrics: dict) -> str:
    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(metrics), indent=2)
