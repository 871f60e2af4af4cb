import numpy as np
import pytest
import torch

import cv2

from setr.data.transforms import (IGNORE_INDEX, TrainPipeline, photometric_distortion, random_crop_box,
                                  rescale_size, resize_image, resize_labels, short_side_size, scaled_sizes)


def test_rescale_size_keeps_ratio_with_mmcv_rounding():
    assert rescale_size((1024, 2048), (2049, 1025)) == (1025, 2049)
    assert rescale_size((480, 640), (2048, 512)) == (512, 683)
    assert rescale_size((100, 1000), (2048, 512)) == (205, 2048)  # long side capped
    assert rescale_size((500, 741), (2049, 1025)) == (1025, 1519)


def test_setr_short_side_rule_and_multi_scale_sizes():
    assert short_side_size((500, 741), (520, 520), 480) == (520, 771)
    assert short_side_size((611, 437), (520, 520), 480) == (727, 520)
    assert short_side_size((611, 437), (1024, 256), 512) == (716, 512)  # raised to the crop
    # ADE20K Naive _MS: ratios 0.5 / 0.75 / 1.0 of (2048, 512) all give short side 512
    assert scaled_sizes((611, 437), (2048, 512), "short_side", ratios=(0.5, 0.75, 1.0), crop=512) == [(716, 512)] * 3
    assert scaled_sizes((512, 512), (2048, 512), "keep_ratio") == [(512, 512)]
    assert scaled_sizes((30, 40), None) == [(30, 40)]


def test_resizes_are_opencv_on_uint8():
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    out = resize_image(img, (50, 71))
    assert out.dtype == np.uint8 and out.shape == (50, 71, 3)
    assert np.array_equal(out, cv2.resize(img, (71, 50), interpolation=cv2.INTER_LINEAR))
    mask = np.random.default_rng(1).integers(0, 5, (37, 53), dtype=np.uint8)
    assert np.array_equal(resize_labels(mask, (50, 71)), cv2.resize(mask, (71, 50), interpolation=cv2.INTER_NEAREST))
    assert set(np.unique(resize_labels(mask, (50, 71)))) <= set(range(5))  # nearest: no new label values


class ScriptedRng:
    """Returns scripted draws, so the order and meaning of each draw can be checked."""

    def __init__(self, ints, floats):
        self.ints, self.floats = list(ints), list(floats)

    def integers(self, *args):
        return self.ints.pop(0)

    def uniform(self, *args):
        return self.floats.pop(0)


def test_photometric_distortion_is_mmseg_order_with_opencv_hsv():
    img = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    # brightness on (+10.7), contrast last (mode 0), saturation on (x0.8), hue on (+5), contrast on (x1.3)
    out = photometric_distortion(img, ScriptedRng([1, 0, 1, 1, 5, 1], [10.7, 0.8, 1.3]))
    x = np.clip(img.astype(np.float32) + 10.7, 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1].astype(np.float32) * 0.8, 0, 255).astype(np.uint8)
    x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + 5) % 180
    x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    x = np.clip(x.astype(np.float32) * 1.3, 0, 255).astype(np.uint8)
    assert out.dtype == np.uint8 and np.array_equal(out, x)
    # contrast first (mode 1), everything else off: one multiplication, truncated
    out = photometric_distortion(img, ScriptedRng([0, 1, 1, 0, 0], [0.6]))
    assert np.array_equal(out, (img.astype(np.float32) * np.float32(0.6)).astype(np.uint8))


def test_photometric_is_deterministic_per_seed_and_stays_uint8():
    img = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    a = photometric_distortion(img, np.random.default_rng(5))
    b = photometric_distortion(img, np.random.default_rng(5))
    assert a.dtype == np.uint8 and np.array_equal(a, b)
    assert any(not np.array_equal(photometric_distortion(img, np.random.default_rng(s)), img) for s in range(5))


def test_cat_max_ratio_rejects_crops_dominated_by_one_class():
    mask = torch.zeros(100, 100, dtype=torch.uint8)
    mask[:, 80:] = 1  # class 1 only on the right
    # after 10 failed tries the last box is taken unchecked, so nearly (not strictly) all boxes pass
    hits = 0
    for s in range(30):
        top, left, h, w = random_crop_box(mask, (40, 40), 0.75, np.random.default_rng(s))
        frac = (mask[top:top + h, left:left + w] == 1).float().mean().item()
        hits += 0.25 < frac < 0.75
    assert hits >= 25


def test_train_pipeline_pads_with_mean_and_ignore():
    pipe = TrainPipeline(crop_size=(64, 64), img_scale=(32, 32), ratio_range=(1.0, 1.0), photometric=False,
                         flip_prob=0.0)
    img = np.full((20, 30, 3), 200, dtype=np.uint8)
    mask = np.ones((20, 30), dtype=np.uint8)
    x, m = pipe(img, mask, np.random.default_rng(0))
    assert x.shape == (3, 64, 64) and m.shape == (64, 64) and m.dtype == torch.int64
    h, w = rescale_size((20, 30), (32, 32))  # (21, 32)
    assert (m[:h, :w] == 1).all() and (m[h:] == IGNORE_INDEX).all() and (m[:, w:] == IGNORE_INDEX).all()
    assert (x[:, h:] == 0).all()  # 0 after normalisation = the mean colour
    assert torch.allclose(x[0, 0, 0], torch.tensor((200 - 123.675) / 58.395))


@pytest.mark.parametrize("seed", [1, 2])
def test_train_pipeline_is_a_function_of_the_seed(seed):
    pipe = TrainPipeline(crop_size=(32, 32), img_scale=(48, 48))
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    mask = np.random.default_rng(1).integers(0, 4, (40, 50), dtype=np.uint8)
    a = pipe(img, mask, np.random.default_rng(seed))
    b = pipe(img, mask, np.random.default_rng(seed))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
