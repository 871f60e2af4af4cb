"""RetinaNet's training losses with mmdet 2.x's arithmetic and normalisation (``AnchorHead.loss``).

* Targets per image: :func:`.assigner.image_targets` over the anchors of all levels.
* ONE batch-wide normaliser: ``avg_factor = sum_i max(num_pos_i, 1)`` over the images of the batch (per process:
  mmdet 2.x does not all-reduce it). torchvision normalises each image by its own positives and averages images.
* Per level, over the whole batch: the sigmoid focal loss (gamma 2, alpha 0.25) summed over every (anchor, class)
  with the anchor's label weight (1 for positives and negatives, 0 for ignored and invalid anchors), and the L1
  loss of the raw deltas against the encoded targets summed over the 4 coordinates of the positives; each divided
  by ``avg_factor + float32 eps`` (mmdet ``weight_reduce_loss``). The levels' losses are summed by the caller.

The focal loss is mmdet's ``py_sigmoid_focal_loss`` formula in its order of operations:
``pt = (1 - p) * t + p * (1 - t)``, ``w = (alpha * t + (1 - alpha) * (1 - t)) * pt ** gamma``,
``loss = BCE_with_logits(x, t) * w``. ``torchvision.ops.sigmoid_focal_loss`` is the same function but forms
``1 - p_t`` as ``1 - (1 - p)`` for negatives, which loses float32 digits for small p, so it is not used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .anchors import AnchorGenerator
from .assigner import ImageTargets, MaxIoUAssigner, image_targets
from .box_coder import DeltaXYWHBBoxCoder

FLOAT32_EPS = torch.finfo(torch.float32).eps


def sigmoid_focal_loss_sum(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                           gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """Sum of mmdet's sigmoid focal loss: ``logits`` (M, C), ``labels`` (M,) in 0..C (C = background: all
    targets 0), ``weights`` (M,) per anchor."""
    num_classes = logits.shape[1]
    # mmdet's one_hot(labels, C + 1)[:, :C] as floats, without the (M, C + 1) int64 intermediate
    target = torch.zeros_like(logits)
    fg = (labels >= 0) & (labels < num_classes)
    target[fg.nonzero(as_tuple=True)[0], labels[fg]] = 1.0
    p = logits.sigmoid()
    pt = (1 - p) * target + p * (1 - target)
    focal_weight = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * focal_weight
    return (loss * weights.reshape(-1, 1)).sum()


def l1_loss_sum(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum of ``|pred - target| * weights`` (mmdet ``l1_loss`` with element weights)."""
    if target.numel() == 0:
        return pred.sum() * 0
    return ((pred - target).abs() * weights).sum()


@dataclass
class RetinaLossConfig:
    num_classes: int
    gamma: float = 2.0
    alpha: float = 0.25
    cls_weight: float = 1.0
    bbox_weight: float = 1.0


@dataclass
class BatchTargets:
    images: list[ImageTargets]
    avg_factor: int  # sum_i max(num_pos_i, 1)
    level_sizes: list[int]  # anchors per level


def batch_targets(featmap_sizes: Sequence[Sequence[int]], img_metas: Sequence[dict], gt_bboxes, gt_labels,
                  num_classes: int, generator: AnchorGenerator, assigner: MaxIoUAssigner,
                  coder: DeltaXYWHBBoxCoder, device=None) -> BatchTargets:
    """Targets of every image of the batch (valid flags from each image's own ``pad_shape``)."""
    levels = generator.grid_anchors(featmap_sizes, device=device)
    anchors = torch.cat(levels)
    images = []
    for meta, boxes, labels in zip(img_metas, gt_bboxes, gt_labels):
        valid = torch.cat(generator.valid_flags(featmap_sizes, meta["pad_shape"], device=device))
        images.append(image_targets(anchors, valid, boxes, labels, num_classes, assigner, coder))
    avg = sum(max(t.num_pos, 1) for t in images)
    return BatchTargets(images, avg, [lv.shape[0] for lv in levels])


def retina_losses(cls_scores: Sequence[torch.Tensor], bbox_preds: Sequence[torch.Tensor], targets: BatchTargets,
                  cfg: RetinaLossConfig) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-level (loss_cls, loss_bbox) lists, each normalised by the batch's one ``avg_factor``.
    ``cls_scores[l]`` (B, A*C, H, W), ``bbox_preds[l]`` (B, A*4, H, W): channel = anchor * C + class."""
    denom = targets.avg_factor + FLOAT32_EPS
    losses_cls, losses_bbox = [], []
    start = 0
    for cls, reg, n in zip(cls_scores, bbox_preds, targets.level_sizes):
        sl = slice(start, start + n)
        start += n
        labels = torch.cat([t.labels[sl] for t in targets.images])
        label_w = torch.cat([t.label_weights[sl] for t in targets.images])
        box_t = torch.cat([t.bbox_targets[sl] for t in targets.images])
        box_w = torch.cat([t.bbox_weights[sl] for t in targets.images])
        logits = cls.permute(0, 2, 3, 1).reshape(-1, cfg.num_classes)
        deltas = reg.permute(0, 2, 3, 1).reshape(-1, 4)
        loss_cls = sigmoid_focal_loss_sum(logits, labels, label_w, cfg.gamma, cfg.alpha) / denom
        loss_bbox = l1_loss_sum(deltas, box_t, box_w) / denom
        losses_cls.append(cfg.cls_weight * loss_cls)
        losses_bbox.append(cfg.bbox_weight * loss_bbox)
    return losses_cls, losses_bbox
