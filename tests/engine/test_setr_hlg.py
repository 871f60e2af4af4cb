"""SETR-PUP-HLG: presets, sizes, any-size inference, ImageNet initialisation, the AdamW/warm-up recipe."""
import pytest
import torch

from setr.complexity import build_on_meta, segmentor_param_counts
from setr.config import build_model
from setr.engine.schedule import poly_lr
from setr.engine.common import param_groups
from setr.engine.segmentation import train
from setr.models.hlg import create_hlg
from setr.overrides import apply_overrides
from setr import presets

from helpers import tiny_sets

NAMES = [f"setr_pup_hlg_{v}_{t}_bs_16" for t in ("768x768_40k_cityscapes", "512x512_160k_ade20k")
         for v in ("small", "medium", "large")]


def test_presets_and_sizes():
    assert set(NAMES) <= {p.name for p in presets.all_presets("segmentation")}
    p = presets.get("setr_pup_hlg_small_768x768_40k_cityscapes_bs_16")
    counts = segmentor_param_counts(build_on_meta(build_model, p.model))
    assert counts["backbone"] == 23_505_348  # the dense Small backbone (the original's count)
    assert counts["decode_head"] == 13_520_115  # HLGUPHead, S/M inputs, 512 channels, 19 classes
    assert p.train.optimizer == "adamw" and p.train.lr == 6e-5 and p.train.warmup_iters == 1500
    assert p.model.aux_heads[0].type == "fcn" and p.model.aux_heads[0].in_index == 2
    large = presets.get("setr_pup_hlg_large_512x512_160k_ade20k_bs_16")
    assert large.model.backbone.embed_dims == (128, 256, 512, 1024) and any("no valid" in n for n in large.notes)


def tiny_model(name="setr_pup_hlg_small_768x768_40k_cityscapes_bs_16"):
    p = presets.get(name)
    apply_overrides(p, tiny_sets(p) + ["train.iters=2", "train.eval_interval=2"])
    return p


def test_any_size_inference():
    p = tiny_model()
    model = build_model(p.model).eval()
    with torch.no_grad():
        out = model.whole_inference(torch.randn(1, 3, 45, 70))
        slide = model.slide_inference(torch.randn(1, 3, 70, 130), (64, 64), (42, 42))
    assert out.shape == (1, 19, 45, 70) and slide.shape == (1, 19, 70, 130)
    outs = build_model(p.model).forward_train(torch.randn(2, 3, 64, 64))
    assert [o.shape for o in outs] == [(2, 19, 64, 64)] * 2


def test_imagenet_checkpoint_initialises_the_backbone(tmp_path):
    p = tiny_model()
    cls = create_hlg("small", embed_dims=(16, 32, 64, 128), num_heads=(1, 2, 4, 8), depths=(2, 2, 2, 2),
                     num_classes=1000)
    torch.save({"model": cls.state_dict()}, tmp_path / "hlg_small_imagenet.pth")
    from setr.data.synthetic import write_cityscapes

    root = write_cityscapes(tmp_path / "cs", n_train=2, n_val=1, size=(64, 96))
    train(p, root, tmp_path / "w", pretrained=str(tmp_path / "hlg_small_imagenet.pth"), progress=False,
          validate=False)
    assert "HLG backbone initialised from" in (tmp_path / "w" / "train.log").read_text()


def test_recipe_groups_and_warmup():
    p = tiny_model()
    model = build_model(p.model)
    groups = {g["name"]: g for g in param_groups(model, 6e-5, 0.01, head_lr_mult=10.0, no_decay_key="norm")}
    assert groups["heads"]["lr"] == pytest.approx(6e-4) and groups["backbone"]["lr"] == pytest.approx(6e-5)
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["backbone"]["weight_decay"] == 0.01
    # linear warm-up from lr * 1e-6 over 1500 iterations, then poly (power 1) to 0
    assert poly_lr(6e-5, 0, 40000, 1.0, 0.0, 1500, 1e-6) == pytest.approx(6e-5 * 1e-6)
    assert poly_lr(6e-5, 750, 40000, 1.0, 0.0, 1500, 1e-6) == pytest.approx(6e-5 * (1 - 750 / 40000) * (0.5 + 0.5e-6))
    assert poly_lr(6e-5, 20000, 40000, 1.0, 0.0, 1500, 1e-6) == pytest.approx(3e-5)
