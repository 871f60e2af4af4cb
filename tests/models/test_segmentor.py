import pytest
import torch

from setr.config import build_model
from setr.models.segmentor import slide_windows

from helpers import tiny_config


def test_slide_windows_original_grid():
    # a Cityscapes image: 1025x2049, crop 768, stride 512 -> 2 x 4 windows
    wins = slide_windows(1025, 2049, (768, 768), (512, 512))
    assert len(wins) == 8
    assert sorted({w[0] for w in wins}) == [0, 257]
    assert sorted({w[2] for w in wins}) == [0, 512, 1024, 1281]
    assert all(w[1] - w[0] == 768 and w[3] - w[2] == 768 for w in wins)


@pytest.mark.parametrize("head", ["naive", "pup", "mla"])
def test_whole_inference_any_size(head):
    model = build_model(tiny_config(head)).eval()
    with torch.no_grad():
        out = model.whole_inference(torch.randn(1, 3, 45, 70))  # not a multiple of the patch, not square
    assert out.shape == (1, 4, 45, 70)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("head", ["naive", "pup", "mla"])
def test_forward_train_gives_every_head_at_input_size(head):
    cfg = tiny_config(head)
    model = build_model(cfg)
    outs = model.forward_train(torch.randn(2, 3, 32, 32))
    assert len(outs) == 1 + len(cfg.aux_heads)
    assert all(o.shape == (2, 4, 32, 32) for o in outs)


def test_slide_pads_images_smaller_than_the_crop():
    model = build_model(tiny_config("pup")).eval()
    with torch.no_grad():
        out = model.slide_inference(torch.randn(1, 3, 20, 50), crop=(32, 32), stride=(21, 21))
    assert out.shape == (1, 4, 20, 50)


def test_slide_equals_whole_when_one_window_covers_the_image():
    model = build_model(tiny_config("naive")).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.slide_inference(x, (32, 32), (21, 21)), model.whole_inference(x), atol=1e-6)


def test_batched_windows_match_one_at_a_time():
    model = build_model(tiny_config("pup")).eval()
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        a = model.slide_inference(x, (32, 32), (21, 21), window_batch=1)
        b = model.slide_inference(x, (32, 32), (21, 21), window_batch=4)
    assert torch.allclose(a, b, atol=1e-5)


def test_inference_probs_are_probabilities_and_unflip():
    model = build_model(tiny_config("naive")).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        plain = model.inference_probs(x, ori_hw=(32, 32))
        flipped = model.inference_probs(x.flip(3), ori_hw=(32, 32), flip=True)
        logits = model.inference_logits(x.flip(3), ori_hw=(32, 32))
    assert torch.allclose(plain.sum(1), torch.ones(1, 32, 32), atol=1e-5)
    # flipping is an exact symmetry of the pipeline only for a flip-equivariant net; check the un-flip instead
    torch.testing.assert_close(flipped, logits.softmax(1).flip(3), rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="use inference_probs"):
        old = model.inference(x, ori_hw=(32, 32))
    torch.testing.assert_close(old, plain, rtol=0, atol=0)


def test_unknown_mode_is_rejected():
    model = build_model(tiny_config("naive")).eval()
    with pytest.raises(ValueError, match="unknown inference mode"):
        model.inference_probs(torch.randn(1, 3, 32, 32), mode="tiles")
