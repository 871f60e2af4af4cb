"""Segmenter.predict's array inputs: uint8 0..255, floats in 0..1 (scaled) or 0..255, anything else one line."""
import numpy as np
import pytest
import torch

from setr import Segmenter
from setr.errors import SetrError

DEMO = "setr_demo_pup_tiny_64x64_shapes"


@pytest.fixture(scope="module")
def seg():
    torch.manual_seed(0)
    return Segmenter.from_preset(DEMO, precision="fp32")


def test_float_images_in_0_1_are_scaled_and_0_255_taken_as_they_are(seg):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    expected = seg.predict(image)
    assert len(np.unique(expected)) > 1  # random weights on a random image: several classes, a real comparison
    for dtype in (np.float32, np.float64):
        assert np.array_equal(seg.predict((image / 255.0).astype(dtype)), expected)  # 0..1
        assert np.array_equal(seg.predict(image.astype(dtype)), expected)  # 0..255
    assert np.array_equal(seg.predict(image.astype(np.int64)), expected)


@pytest.mark.parametrize("make,message", [
    (lambda im: im.astype(np.float32) - 10, "image of float32 has values -10..245: expected 0..1 (float) or 0..255"),
    (lambda im: im.astype(np.uint16) * 4, "image of uint16 has values 0..1020: expected 0..1 (float) or 0..255"),
    (lambda im: np.where(im > 128, np.nan, im / 255.0), "image of float64 holds NaN or infinite values"),
    (lambda im: im.astype(bool), "expected an (H, W, 3) RGB image of uint8 (0..255) or float (0..1) values, got bool"),
])
def test_other_values_are_refused_in_one_line(seg, make, message):
    image = np.arange(40 * 48 * 3).reshape(40, 48, 3) % 256
    with pytest.raises(SetrError) as exc:
        seg.predict(make(image.astype(np.uint8)))
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
