"""The test post-processing's rules on hand-made inputs: strict score threshold before the top-k, mmcv's
class-aware NMS (strict IoU > thr, offset and per-class paths agree), rescaling, max_per_img; and the test
pipeline's sizes and scale factors."""
from __future__ import annotations

import numpy as np
import torch

from setr.detection.box_coder import DeltaXYWHBBoxCoder
from setr.detection.pipeline import collate, keep_ratio_size, pad_to_multiple, prepare_test_image
from setr.detection.postprocess import PostprocessConfig, batched_nms, filter_scores_and_topk, get_bboxes_single


def test_threshold_is_strict_and_comes_before_topk():
    scores = torch.tensor([[0.05, 0.2], [0.9, 0.051], [0.3, 0.04]])
    kept, labels, rows, above = filter_scores_and_topk(scores, 0.05, 2)
    assert above == 4  # 0.05 itself is not above the threshold
    assert kept.tolist() == [torch.tensor(0.9).item(), torch.tensor(0.3).item()]
    assert rows.tolist() == [1, 2] and labels.tolist() == [0, 0]


def test_batched_nms_is_class_aware_and_strict():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0],
                          [0.0, 0.0, 10.0, 20.0 / 3]])  # the last: IoU 2/3 with the first
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 1])
    kept, keep = batched_nms(boxes, scores, labels, 0.5)
    assert keep.tolist() == [0, 2] and torch.equal(kept, scores[[0, 2]])
    # IoU exactly 0.5 is not suppressed (IoU > thr suppresses)
    half = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]])
    _, keep = batched_nms(half, torch.tensor([0.9, 0.8]), torch.tensor([3, 3]), 0.5)
    assert keep.tolist() == [0, 1]
    # the per-class path (split_thr) keeps the same boxes in the same order
    rng = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=rng) * 50
    many = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=rng) * 20], 1)
    sc = torch.rand(200, generator=rng)
    lab = torch.randint(0, 4, (200,), generator=rng)
    a = batched_nms(many, sc, lab, 0.5)
    b = batched_nms(many, sc, lab, 0.5, split_thr=10)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])


def test_get_bboxes_single_rescales_and_cuts():
    num_classes, cfg = 2, PostprocessConfig(nms_pre=1000, score_thr=0.05, iou_threshold=0.5, max_per_img=2)
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0], [20.0, 0.0, 28.0, 8.0], [0.0, 20.0, 8.0, 28.0],
                            [20.0, 20.0, 28.0, 28.0]])  # one level, 2x2 positions, 1 anchor each
    logits = torch.full((num_classes, 2, 2), -10.0)
    logits[0, 0, 0], logits[1, 0, 1], logits[0, 1, 1] = 2.0, 1.0, 0.0
    deltas = torch.zeros(4, 2, 2)
    out = get_bboxes_single([logits], [deltas], [anchors], (30, 30, 3), np.array([2.0, 4.0, 2.0, 4.0], np.float32),
                            cfg, DeltaXYWHBBoxCoder().decode, num_classes)
    assert out.labels.tolist() == [0, 1]  # the third (score 0.5) is cut by max_per_img
    assert torch.allclose(out.scores, torch.sigmoid(torch.tensor([2.0, 1.0])))
    assert out.bboxes.tolist() == [[0.0, 0.0, 4.0, 2.0], [10.0, 0.0, 14.0, 2.0]]  # divided by (w, h, w, h)
    assert [(c.above_score_thr, c.kept_topk) for c in out.candidates] == [(3, 3)]


def test_pipeline_sizes_scale_factor_and_padding():
    assert keep_ratio_size((293, 451), (1000, 600)) == (600, 924)  # int(x * s + 0.5), mmcv's rule
    img = np.random.default_rng(0).integers(0, 256, (293, 451, 3), dtype=np.uint8)
    x, meta = prepare_test_image(img, (1000, 600))
    assert meta.img_shape == (600, 924, 3) and meta.pad_shape == (608, 928, 3) == (*x.shape[1:], 3)
    assert meta.scale_factor.dtype == np.float32
    assert meta.scale_factor.tolist() == np.array([924 / 451, 600 / 293] * 2, np.float32).tolist()
    assert torch.all(x[:, 600:] == 0) and torch.all(x[:, :, 924:] == 0)  # zeros after normalising
    y, _ = prepare_test_image(img[:100, :80], None)  # no resize: 100 x 80, padded to 128 x 96
    batch = collate([x, y])
    assert batch.shape == (2, 3, 608, 928) and torch.equal(batch[1, :, : y.shape[1], : y.shape[2]], y)
    assert pad_to_multiple(torch.zeros(3, 33, 64)).shape == (3, 64, 64)


def test_torchvision_nms_is_an_option():
    from setr.detection.api import Detector
    from setr.errors import SetrError

    rng = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=rng) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=rng) * 20], 1)
    scores, labels = torch.rand(300, generator=rng), torch.randint(0, 3, (300,), generator=rng)
    from torchvision.ops import batched_nms as tv

    assert set(tv(boxes, scores, labels, 0.5).tolist()) == set(batched_nms(boxes, scores, labels, 0.5)[1].tolist())
    det = Detector.from_preset("retinanet_hlg_tiny_test", num_classes=2, overrides=["model.nms_impl=torchvision"])
    assert det.test_cfg.nms_impl == "torchvision"
    import pytest

    with pytest.raises(SetrError, match="model.nms_impl 'fast'"):
        Detector.from_preset("retinanet_hlg_tiny_test", num_classes=2, overrides=["model.nms_impl=fast"])
