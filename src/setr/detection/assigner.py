"""Training targets of RetinaNet as mmdet 2.x computes them: ``MaxIoUAssigner`` + ``PseudoSampler`` per image.

For one image (``AnchorHead._get_targets_single``):

* only the VALID anchors take part (positions inside the image's own ``pad_shape``; RetinaNet's
  ``allowed_border = -1`` adds no border test). Invalid anchors get label weight 0: they are neither positive nor
  negative, and their label is the background index ``num_classes``;
* IoU of every gt with every valid anchor: ``torchvision.ops.box_iou``, the same arithmetic as mmdet's
  ``bbox_overlaps`` (no +1; mmdet's ``max(union, 1e-6)`` never acts on anchors, whose area is far larger);
* an anchor whose best IoU is in [0, neg_iou_thr) is negative (0), >= pos_iou_thr positive (its best gt: the
  first one on ties, ``max`` over gts), in between ignored (-1);
* low-quality matches: for each gt in order, when its best IoU over the anchors is >= ``min_pos_iou`` (0 here:
  always), EVERY anchor with exactly that IoU is assigned to THAT gt (``gt_max_assign_all``; a later gt wins);
* positives: label = the gt's class, box target = the encoded deltas (``DeltaXYWHBBoxCoder``), weights 1;
  negatives: label ``num_classes`` (background), label weight 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from .box_coder import DeltaXYWHBBoxCoder


class MaxIoUAssigner:
    """mmdet's ``MaxIoUAssigner`` with float thresholds, no ignored gts (``ignore_iof_thr`` -1)."""

    def __init__(self, pos_iou_thr: float = 0.5, neg_iou_thr: float = 0.4, min_pos_iou: float = 0.0,
                 gt_max_assign_all: bool = True, match_low_quality: bool = True):
        self.pos_iou_thr = float(pos_iou_thr)
        self.neg_iou_thr = float(neg_iou_thr)
        self.min_pos_iou = float(min_pos_iou)
        self.gt_max_assign_all = bool(gt_max_assign_all)
        self.match_low_quality = bool(match_low_quality)

    def assign(self, anchors: torch.Tensor, gt_bboxes: torch.Tensor) -> torch.Tensor:
        """(n,) long: -1 ignored, 0 negative, k + 1 assigned to gt k."""
        n, k = anchors.shape[0], gt_bboxes.shape[0]
        assigned = torch.full((n,), -1, dtype=torch.long, device=anchors.device)
        if n == 0:
            return assigned
        if k == 0:
            return assigned.zero_()
        overlaps = box_iou(gt_bboxes, anchors)  # (k, n)
        max_overlaps, argmax = overlaps.max(dim=0)
        gt_max_overlaps, gt_argmax = overlaps.max(dim=1)
        assigned[(max_overlaps >= 0) & (max_overlaps < self.neg_iou_thr)] = 0
        pos = max_overlaps >= self.pos_iou_thr
        assigned[pos] = argmax[pos] + 1
        if self.match_low_quality:
            for i in range(k):
                if gt_max_overlaps[i] >= self.min_pos_iou:
                    if self.gt_max_assign_all:
                        assigned[overlaps[i] == gt_max_overlaps[i]] = i + 1
                    else:
                        assigned[gt_argmax[i]] = i + 1
        return assigned


@dataclass
class ImageTargets:
    """Targets over ALL anchors of one image (the levels concatenated), as mmdet unmaps them."""

    labels: torch.Tensor  # (N,) long, num_classes = background
    label_weights: torch.Tensor  # (N,) float32: 1 for positives and negatives, 0 for ignored and invalid
    bbox_targets: torch.Tensor  # (N, 4) float32 encoded deltas (0 except positives)
    bbox_weights: torch.Tensor  # (N, 4) float32
    pos_inds: torch.Tensor  # positives, indices into the VALID anchors (mmdet's ``sampling_result.pos_inds``)
    neg_inds: torch.Tensor  # negatives, likewise
    valid_inds: torch.Tensor  # (num_valid,) the valid anchors' indices into the N anchors

    @property
    def num_valid(self) -> int:
        return int(self.valid_inds.numel())

    @property
    def num_pos(self) -> int:
        return int(self.pos_inds.numel())

    @property
    def num_neg(self) -> int:
        return int(self.neg_inds.numel())


def image_targets(anchors: torch.Tensor, valid: torch.Tensor, gt_bboxes: torch.Tensor, gt_labels: torch.Tensor,
                  num_classes: int, assigner: MaxIoUAssigner, coder: DeltaXYWHBBoxCoder) -> ImageTargets:
    """mmdet ``AnchorHead._get_targets_single`` with the PseudoSampler and ``unmap_outputs``: ``anchors`` (N, 4)
    and ``valid`` (N,) bool over all levels, gts in the padded input's pixels."""
    n = anchors.shape[0]
    inside = valid.nonzero(as_tuple=False).squeeze(1)
    sub = anchors[inside]
    gt_bboxes = gt_bboxes.to(anchors)
    assigned = assigner.assign(sub, gt_bboxes)
    pos = (assigned > 0).nonzero(as_tuple=False).squeeze(1)
    neg = (assigned == 0).nonzero(as_tuple=False).squeeze(1)
    labels = torch.full((n,), num_classes, dtype=torch.long, device=anchors.device)
    label_weights = anchors.new_zeros(n)
    bbox_targets = anchors.new_zeros(n, 4)
    bbox_weights = anchors.new_zeros(n, 4)
    pos_all, neg_all = inside[pos], inside[neg]
    if pos.numel():
        gt_idx = assigned[pos] - 1
        bbox_targets[pos_all] = coder.encode(sub[pos], gt_bboxes[gt_idx])
        bbox_weights[pos_all] = 1.0
        labels[pos_all] = gt_labels.to(anchors.device)[gt_idx]
        label_weights[pos_all] = 1.0
    if neg.numel():
        label_weights[neg_all] = 1.0
    return ImageTargets(labels, label_weights, bbox_targets, bbox_weights, pos, neg, inside)
