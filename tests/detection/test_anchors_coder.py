"""mmdet 2.x anchors and delta coder, against values computed by hand."""
from __future__ import annotations

import math

import pytest
import torch

from setr.detection.anchors import AnchorGenerator
from setr.detection.box_coder import DeltaXYWHBBoxCoder


def test_base_anchors_unrounded_ratio_major():
    gen = AnchorGenerator()
    assert gen.num_base_anchors == 9 and gen.strides == [8, 16, 32, 64, 128]
    base = gen.base_anchors[0]
    assert base.dtype == torch.float32 and base.shape == (9, 4)
    want = []
    for ratio in (0.5, 1.0, 2.0):  # ratio = h / w, ratio-major
        for k in range(3):
            scale = 4 * 2 ** (k / 3)
            w, h = 8 * scale / math.sqrt(ratio), 8 * scale * math.sqrt(ratio)
            want.append([-w / 2, -h / 2, w / 2, h / 2])
    torch.testing.assert_close(base.double(), torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-5)
    assert base[0, 0].item() != round(base[0, 0].item())  # not rounded to whole pixels (torchvision rounds)
    assert base[3].tolist() == [-16.0, -16.0, 16.0, 16.0]  # ratio 1, scale 4, stride 8


def test_grid_is_position_major_with_zero_centre_offset():
    gen = AnchorGenerator()
    anchors = gen.grid_anchors([(2, 3), (1, 2), (1, 1), (1, 1), (1, 1)])
    assert [a.shape[0] for a in anchors] == [2 * 3 * 9, 2 * 9, 9, 9, 9]
    lvl0 = anchors[0].reshape(2, 3, 9, 4)  # (y, x, anchor, 4)
    torch.testing.assert_close(lvl0[1, 2], gen.base_anchors[0] + torch.tensor([16.0, 8.0, 16.0, 8.0]))
    centres = (lvl0[..., :2] + lvl0[..., 2:]) / 2
    assert centres[1, 2, 3].tolist() == [16.0, 8.0]  # stride * position, no half-stride offset
    assert ((anchors[1].reshape(1, 2, 9, 4)[0, 1, 3]).tolist()) == [16 - 32.0, -32.0, 16 + 32.0, 32.0]


def test_valid_flags_follow_each_images_pad_shape():
    gen = AnchorGenerator()
    sizes = [(4, 6), (2, 3), (1, 2), (1, 1), (1, 1)]  # a batch of 32 x 48
    flags = gen.valid_flags(sizes, (24, 40, 3))  # this image is padded to 24 x 40 only
    lvl0 = flags[0].reshape(4, 6, 9)
    assert lvl0[:3, :5].all() and not lvl0[3].any() and not lvl0[:, 5].any()  # ceil(24/8)=3, ceil(40/8)=5
    lvl1 = flags[1].reshape(2, 3, 9)
    assert lvl1[:2, :3].all()  # ceil(24/16)=2, ceil(40/16)=3
    assert flags[2].all() and flags[4].all()


def test_encode_by_hand_and_round_trip():
    coder = DeltaXYWHBBoxCoder()
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 15.0, 15.0]])
    gt = torch.tensor([[2.0, 4.0, 12.0, 44.0], [5.0, 5.0, 15.0, 15.0]])
    deltas = coder.encode(anchors, gt)
    # anchor 0: centre (5, 10), size (10, 20); gt centre (7, 24), size (10, 40)
    torch.testing.assert_close(deltas[0], torch.tensor([0.2, 0.7, 0.0, math.log(2.0)]))
    assert deltas[1].tolist() == [0.0, 0.0, 0.0, 0.0]
    torch.testing.assert_close(coder.decode(anchors, deltas), gt)


def test_decode_clamps_ratio_and_clips_to_shape():
    coder = DeltaXYWHBBoxCoder()
    anchors = torch.tensor([[10.0, 10.0, 20.0, 20.0], [0.0, 0.0, 4.0, 4.0]])
    deltas = torch.tensor([[0.0, 0.0, 10.0, -10.0], [-3.0, 0.5, 0.0, 0.0]])
    boxes = coder.decode(anchors, deltas)
    max_ratio = abs(math.log(16 / 1000))  # dw, dh clamped to +-4.135: 62.5x at most
    w, h = 10 * math.exp(max_ratio), 10 * math.exp(-max_ratio)
    torch.testing.assert_close(boxes[0], torch.tensor([15 - w / 2, 15 - h / 2, 15 + w / 2, 15 + h / 2]))
    assert w == pytest.approx(625.0)
    torch.testing.assert_close(boxes[1], torch.tensor([-12.0, 2.0, -8.0, 6.0]))
    clipped = coder.decode(anchors, deltas, max_shape=(30, 100, 3))  # (h, w): x in [0, 100], y in [0, 30]
    torch.testing.assert_close(clipped[0], torch.tensor([0.0, 15 - h / 2, 100.0, 15 + h / 2]))
    assert clipped[1].tolist() == [0.0, 2.0, 0.0, 6.0]
    assert coder.decode(anchors[:0], deltas[:0]).shape == (0, 4)
