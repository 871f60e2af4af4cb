"""setr.inference.Segmenter: loading a checkpoint reads its header once; overrides on our own checkpoints."""
import pytest
import torch

from setr import Segmenter, presets
from setr.config import build_model
from setr.errors import SetrError
from setr.model_files import save_model

DEMO = "setr_demo_pup_tiny_64x64_shapes"


@pytest.fixture
def ckpt(tmp_path):
    preset = presets.get(DEMO)
    return save_model(build_model(preset.model, with_aux=False), preset.model, tmp_path / "m.safetensors")


def test_checkpoint_header_is_read_once(ckpt, monkeypatch):
    import setr.model_files as model_files

    calls = []
    real = model_files.read_config
    monkeypatch.setattr(model_files, "read_config", lambda path: calls.append(path) or real(path))
    seg = Segmenter.from_checkpoint(ckpt, DEMO, overrides=["test.mode=slide"])
    assert calls == [ckpt] and seg.mode == "slide"
    calls.clear()
    Segmenter.from_checkpoint(ckpt)
    assert calls == [ckpt]


def test_overrides_on_our_checkpoint_are_checked_against_what_it_holds(ckpt):
    seg = Segmenter.from_checkpoint(ckpt, overrides=["test.img_scale=[48,48]"])
    assert seg.cfg.test.img_scale == (48, 48)
    with pytest.raises(SetrError, match="checkpoint is for 5 classes, the preset has 7"):
        Segmenter.from_checkpoint(ckpt, overrides=["model.num_classes=7"])
    with pytest.raises(SetrError, match="hlg_tiny is a classification preset"):
        Segmenter.from_checkpoint(ckpt, "hlg_tiny")


def test_segment_returns_probabilities_and_labels_at_the_image_size(ckpt):
    seg = Segmenter.from_checkpoint(ckpt, precision="fp32")
    image = torch.randint(0, 256, (50, 70, 3), dtype=torch.uint8).numpy()
    out = seg.segment(image)
    assert out.probs.shape == (5, 50, 70) and out.labels.shape == (50, 70)
    torch.testing.assert_close(out.probs.sum(0), torch.ones(50, 70), rtol=0, atol=1e-5)
    assert (out.probs.argmax(0).numpy() == out.labels).all()
