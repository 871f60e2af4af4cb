"""The authors' RetinaNet test post-processing (mmdet 2.26 ``BaseDenseHead.get_bboxes`` with mmcv 1.x
``batched_nms``), per image:

1. per level: the (A*K, H, W) logits -> (H*W*A, K) (position-major, anchor, class), sigmoid;
2. ``filter_scores_and_topk``: FIRST every (anchor, class) pair with score > ``score_thr`` (strict), THEN the
   ``nms_pre`` highest of those by a descending sort; each kept pair brings its anchor and deltas;
3. delta decoding (``DeltaXYWHBBoxCoder``: dw/dh clamped to |log(16/1000)|, boxes clamped to [0, img_shape]);
4. all levels concatenated; with ``rescale`` the boxes are divided by the per-axis ``scale_factor`` BEFORE NMS;
5. ``batched_nms``: class-offset boxes (``boxes + label * (boxes.max() + 1)`` in the boxes' dtype) through one
   NMS (IoU > thr suppresses, torchvision's kernel, as mmcv's), or per class when there are ``split_thr`` or more
   candidates; then the first ``max_per_img``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

NMS_SPLIT_THR = 10000  # mmcv batched_nms: at or above this many boxes, NMS runs class by class
NMS_IMPLS = ("mmcv", "torchvision")


@dataclass
class PostprocessConfig:
    """mmdet's ``test_cfg`` for RetinaNet."""

    nms_pre: int = 1000
    score_thr: float = 0.05
    iou_threshold: float = 0.5
    max_per_img: int = 100
    split_thr: int = NMS_SPLIT_THR
    nms_impl: str = "mmcv"  # or "torchvision": torchvision.ops.batched_nms

    def __post_init__(self):
        if self.nms_impl not in NMS_IMPLS:
            from ..errors import SetrError

            raise SetrError(f"model.nms_impl {self.nms_impl!r}: expected one of {', '.join(NMS_IMPLS)}")


@dataclass
class LevelCounts:
    above_score_thr: int
    kept_topk: int


@dataclass
class ImageDetections:
    """``bboxes`` (N, 4) x1, y1, x2, y2 (original pixels with ``rescale``), ``scores`` (N,), ``labels`` (N,) int64,
    sorted by score; ``candidates``: per level, how many pairs passed the threshold and how many the top-k kept."""

    bboxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    candidates: list[LevelCounts] = field(default_factory=list)

    @property
    def det_bboxes(self) -> torch.Tensor:
        """(N, 5): boxes and score, as mmdet returns them."""
        return torch.cat([self.bboxes, self.scores[:, None]], 1)


def filter_scores_and_topk(scores: torch.Tensor, score_thr: float,
                           topk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(N, K) scores -> (kept scores, their labels, their row indices, number above the threshold): the pairs
    with score > ``score_thr``, then the ``topk`` highest by a descending sort (mmdet's order)."""
    valid = scores > score_thr
    kept_scores = scores[valid]
    idxs = torch.nonzero(valid)
    num = min(topk, idxs.size(0)) if topk > 0 else idxs.size(0)
    kept_scores, order = kept_scores.sort(descending=True)
    kept_scores = kept_scores[:num]
    rows, labels = idxs[order[:num]].unbind(dim=1)
    return kept_scores, labels, rows, int(idxs.size(0))


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float,
                split_thr: int = NMS_SPLIT_THR) -> tuple[torch.Tensor, torch.Tensor]:
    """mmcv 1.x ``batched_nms`` (class-aware): (kept scores, kept indices) sorted by decreasing score."""
    from torchvision.ops import nms

    max_coordinate = boxes.max()
    offsets = labels.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    boxes_for_nms = boxes + offsets[:, None]
    if boxes_for_nms.shape[0] < split_thr:
        keep = nms(boxes_for_nms, scores, iou_threshold)
        return scores[keep], keep
    total = torch.zeros_like(scores, dtype=torch.bool)
    for label in torch.unique(labels):
        mask = (labels == label).nonzero(as_tuple=False).view(-1)
        total[mask[nms(boxes_for_nms[mask], scores[mask], iou_threshold)]] = True
    keep = total.nonzero(as_tuple=False).view(-1)
    kept, order = scores[keep].sort(descending=True)
    return kept, keep[order]


def get_bboxes_single(cls_scores: Sequence[torch.Tensor], bbox_preds: Sequence[torch.Tensor],
                      mlvl_anchors: Sequence[torch.Tensor], img_shape: Sequence[int], scale_factor,
                      cfg: PostprocessConfig, decode: Callable[..., torch.Tensor], num_classes: int,
                      rescale: bool = True, with_nms: bool = True) -> ImageDetections:
    """One image: ``cls_scores[l]`` (A*K, H, W), ``bbox_preds[l]`` (A*4, H, W), ``mlvl_anchors[l]`` (H*W*A, 4);
    ``decode(anchors, deltas, max_shape=(h, w))`` is the box coder's decoding. ``with_nms=False`` returns the
    candidates (after the threshold and top-k) sorted by score, without NMS or the max_per_img cut."""
    mlvl_boxes, mlvl_scores, mlvl_labels, counts = [], [], [], []
    for cls_score, bbox_pred, anchors in zip(cls_scores, bbox_preds, mlvl_anchors):
        deltas = bbox_pred.permute(1, 2, 0).reshape(-1, 4)
        scores = cls_score.permute(1, 2, 0).reshape(-1, num_classes).sigmoid()
        scores, labels, rows, above = filter_scores_and_topk(scores, cfg.score_thr, cfg.nms_pre)
        counts.append(LevelCounts(above, int(scores.numel())))
        mlvl_boxes.append(decode(anchors[rows], deltas[rows], max_shape=tuple(img_shape[:2])))
        mlvl_scores.append(scores)
        mlvl_labels.append(labels)
    boxes = torch.cat(mlvl_boxes)
    if rescale:
        boxes = boxes / boxes.new_tensor(scale_factor)
    scores, labels = torch.cat(mlvl_scores), torch.cat(mlvl_labels)
    if not with_nms:
        scores, order = scores.sort(descending=True)
        return ImageDetections(boxes[order], scores, labels[order], counts)
    if boxes.numel() == 0:
        return ImageDetections(boxes.reshape(0, 4), scores, labels, counts)
    if cfg.nms_impl == "torchvision":
        from torchvision.ops import batched_nms as tv_batched_nms

        keep = tv_batched_nms(boxes, scores, labels, cfg.iou_threshold)
        kept_scores = scores[keep]
    else:
        kept_scores, keep = batched_nms(boxes, scores, labels, cfg.iou_threshold, cfg.split_thr)
    n = cfg.max_per_img
    return ImageDetections(boxes[keep][:n], kept_scores[:n], labels[keep][:n], counts)
