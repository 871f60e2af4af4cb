"""RetinaNet-HLG training pieces with mmdet 2.26 semantics, against hand-computed values: the MaxIoU assigner,
the focal and L1 losses with their batch-wide normaliser, the training pipeline, the schedule, the optimiser's
parameter groups."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from setr.detection.anchors import AnchorGenerator
from setr.detection.assigner import MaxIoUAssigner, image_targets
from setr.detection.box_coder import DeltaXYWHBBoxCoder
from setr.detection.losses import (FLOAT32_EPS, RetinaLossConfig, batch_targets, retina_losses,
                                   sigmoid_focal_loss_sum)
from setr.detection.train_pipeline import flip_boxes, scale_boxes, train_transform
from setr.engine.common import build_optimizer
from setr.engine.schedule import step_lr, step_warmup_lr


def test_assigner_thresholds_and_low_quality_ties_go_to_that_gt():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0],    # IoU 1 with gt 0 -> positive
                            [0.0, 0.0, 10.0, 20.0],    # IoU 0.5 with gt 0 -> positive (>= 0.5)
                            [0.0, 0.0, 10.0, 22.0],    # IoU 10/22 = 0.4545 -> ignored
                            [0.0, 0.0, 10.0, 25.0],    # IoU 0.4 -> ignored (neg needs < 0.4)
                            [50.0, 50.0, 60.0, 60.0],  # IoU 0 with every gt -> negative
                            [100.0, 0.0, 140.0, 40.0],  # gt 1's best (IoU 1/16), tied with the next
                            [130.0, 0.0, 170.0, 40.0]])
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [130.0, 0.0, 140.0, 10.0]])
    got = MaxIoUAssigner(0.5, 0.4, 0.0).assign(anchors, gts)
    assert got.tolist() == [1, 1, -1, -1, 0, 2, 2]  # both max-IoU ties of gt 1 are assigned to it
    # a later gt with the same best anchor takes it over (gts in order, later ones win)
    twin = MaxIoUAssigner().assign(anchors[:1], torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]))
    assert twin.tolist() == [2]
    assert MaxIoUAssigner().assign(anchors, gts[:0]).tolist() == [0] * 7  # no gt: all negative


def test_image_targets_skip_invalid_anchors_and_encode():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    valid = torch.tensor([False, True, True])  # the first lies outside the image's pad_shape
    gts, labels = torch.tensor([[1.0, 1.0, 11.0, 11.0]]), torch.tensor([7])
    t = image_targets(anchors, valid, gts, labels, 80, MaxIoUAssigner(), DeltaXYWHBBoxCoder())
    assert t.num_valid == 2 and t.pos_inds.tolist() == [0] and t.neg_inds.tolist() == [1]  # into valid anchors
    assert t.labels.tolist() == [80, 7, 80] and t.label_weights.tolist() == [0.0, 1.0, 1.0]
    torch.testing.assert_close(t.bbox_targets[1], torch.tensor([0.1, 0.1, 0.0, 0.0]))
    assert t.bbox_weights.sum().item() == 4.0


def test_focal_loss_is_mmdets_formula():
    logits = torch.tensor([[2.0, -1.0], [0.5, -3.0]])
    labels = torch.tensor([1, 2])  # anchor 0: class 1; anchor 1: background (2 = num_classes)
    weights = torch.tensor([1.0, 0.5])
    total = 0.0
    for i in range(2):
        for c in range(2):
            x, t = logits[i, c].item(), float(labels[i].item() == c)
            p = 1 / (1 + math.exp(-x))
            pt = (1 - p) * t + p * (1 - t)
            bce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
            total += weights[i].item() * (0.25 * t + 0.75 * (1 - t)) * pt ** 2 * bce
    assert sigmoid_focal_loss_sum(logits, labels, weights).item() == pytest.approx(total, rel=1e-6)


def test_losses_use_one_batch_wide_avg_factor():
    gen = AnchorGenerator(strides=(8, 16, 32, 64, 128))
    sizes = [(4, 4), (2, 2), (1, 1), (1, 1), (1, 1)]
    metas = [{"pad_shape": (32, 32, 3)}, {"pad_shape": (32, 32, 3)}]
    gts = [torch.tensor([[-16.0, -16.0, 16.0, 16.0], [0.0, 0.0, 20.0, 30.0]]), torch.zeros(0, 4)]
    labels = [torch.tensor([3, 1]), torch.zeros(0, dtype=torch.long)]
    t = batch_targets(sizes, metas, gts, labels, 4, gen, MaxIoUAssigner(), DeltaXYWHBBoxCoder())
    assert t.images[1].num_pos == 0
    assert t.avg_factor == t.images[0].num_pos + 1  # sum_i max(num_pos_i, 1): the empty image counts 1
    torch.manual_seed(0)
    cls = [torch.randn(2, 9 * 4, h, w) for h, w in sizes]
    reg = [torch.randn(2, 9 * 4, h, w) for h, w in sizes]
    lc, lb = retina_losses(cls, reg, t, RetinaLossConfig(4))
    # level 0 by hand: anchors (y, x, a) flattened per image, the batch concatenated
    labels0 = torch.cat([im.labels[:144] for im in t.images])
    weights0 = torch.cat([im.label_weights[:144] for im in t.images])
    logits0 = cls[0].permute(0, 2, 3, 1).reshape(-1, 4)
    want = sigmoid_focal_loss_sum(logits0, labels0, weights0) / (t.avg_factor + FLOAT32_EPS)
    torch.testing.assert_close(lc[0], want)
    deltas0 = reg[0].permute(0, 2, 3, 1).reshape(-1, 4)
    tgt0 = torch.cat([im.bbox_targets[:144] for im in t.images])
    w0 = torch.cat([im.bbox_weights[:144] for im in t.images])
    torch.testing.assert_close(lb[0], ((deltas0 - tgt0).abs() * w0).sum() / (t.avg_factor + FLOAT32_EPS))
    assert w0.sum() > 0  # the level has positives, so the L1 term is exercised


def test_train_transform_scales_clips_and_flips_boxes():
    img = np.zeros((100, 200, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 20.0, 210.0, 60.0]], dtype=np.float32)
    np.random.seed(0)
    s = train_transform(img, boxes, np.array([4]), [(400, 150)], flip_ratio=0.0)
    assert s.meta.img_shape == (150, 300, 3) and s.meta.pad_shape == (160, 320, 3)
    assert s.gt_bboxes.tolist() == [[15.0, 30.0, 300.0, 90.0]]  # x 1.5, x2 clipped to the width 300
    assert s.img.shape == (3, 160, 320) and s.img[:, 150:].abs().sum() == 0  # zero padding after normalising
    flipped = flip_boxes(scale_boxes(boxes, np.full(4, 1.5, np.float32), (150, 300)), 300)
    assert flipped.tolist() == [[0.0, 30.0, 285.0, 90.0]]  # x1' = w - x2, x2' = w - x1
    s2 = train_transform(img, boxes, np.array([4]), [(400, 150)], flip_ratio=1.0)
    assert s2.meta.flip and s2.gt_bboxes.tolist() == flipped.tolist()
    # one scale per image from the list
    picks = {train_transform(img, boxes, np.array([4]), [(400, 150), (400, 50)], 0.0).meta.img_shape[0]
             for _ in range(20)}
    assert picks == {150, 50}


def test_step_schedule_with_linear_warmup_by_iteration():
    base = 1e-4
    assert step_warmup_lr(base, 498, 0, (8, 11), 0.1, 500, 0.001) == base * (1 - (1 - 498 / 500) * 0.999)
    assert step_warmup_lr(base, 498, 0, (8, 11), 0.1, 500, 0.001) == 9.960040000000001e-05  # the golden's lr
    assert step_warmup_lr(base, 500, 0, (8, 11), 0.1, 500, 0.001) == base  # restored exactly at 500
    assert step_lr(base, 7, (8, 11)) == base and step_lr(base, 8, (8, 11)) == base * 0.1
    assert step_lr(base, 11, (8, 11)) == base * 0.1 ** 2
    assert step_warmup_lr(base, 10, 9, (8, 11), 0.1, 500, 0.001) == pytest.approx(base * 0.1 * (1 - 0.98 * 0.999))


class _Named(nn.Module):
    def __init__(self):
        super().__init__()
        self.s0_conv = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))  # index-named BN: keeps decay
        self.norm1 = nn.LayerNorm(4)  # name contains "norm": no decay
        self.bbox_head = nn.Linear(4, 2)


def test_adamw_groups_decay_by_parameter_name():
    from setr.presets.detection import DetTrainConfig

    model = _Named()
    opt = build_optimizer(model, DetTrainConfig())
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.999)
    by_id = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    got = {n: by_id[id(p)] for n, p in model.named_parameters()}
    assert got["s0_conv.1.weight"] == 1e-4 and got["s0_conv.1.bias"] == 1e-4 and got["s0_conv.0.bias"] == 1e-4
    assert got["norm1.weight"] == 0.0 and got["norm1.bias"] == 0.0
    assert got["bbox_head.weight"] == 1e-4
    assert {g["lr"] for g in opt.param_groups} == {1e-4}  # head_lr_mult 1 in the detection recipe


def test_training_split_reads_boxes_as_mmdet(tmp_path):
    pytest.importorskip("pycocotools")
    import json

    import cv2

    from setr.detection.coco import CocoDetection

    (tmp_path / "train2017").mkdir()
    (tmp_path / "annotations").mkdir()
    cv2.imwrite(str(tmp_path / "train2017" / "a.png"), np.zeros((48, 64, 3), np.uint8))
    boxes = [[-10.0, -10.0, 40.0, 40.0],  # crosses the border: kept unclipped (the pipeline clips after resizing)
             [5.0, 5.0, 0.5, 10.0],  # under 1 px wide: dropped
             [100.0, 10.0, 20.0, 20.0],  # misses the image: dropped
             [60.0, 40.0, 20.0, 20.0]]  # partly inside: kept unclipped
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": b[2] * b[3],
                             "iscrowd": 0} for i, b in enumerate(boxes)],
            "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="dropped 2 boxes outside the image or under 1 px"):
        ds = CocoDetection(tmp_path, "train", train=True)
    got, labels = ds.annotations(0)
    assert got.tolist() == [[-10.0, -10.0, 30.0, 30.0], [60.0, 40.0, 80.0, 60.0]] and labels.tolist() == [0, 0]
