"""The built-in demo: a small SETR-PUP on the procedurally generated shapes dataset (``setr demo``).

Small enough to train on one CPU thread in about a minute (200 iterations), the same code path as every other
preset.
"""
from __future__ import annotations

from ..config import BackboneConfig, HeadConfig, ModelConfig, TestConfig
from ..data.synthetic import DEMO_CLASSES
from .base import DataConfig, Preset, TrainRecipe

DEMO_SIZE = 64


def demo_preset() -> Preset:
    k = len(DEMO_CLASSES)
    model = ModelConfig(
        num_classes=k,
        backbone=BackboneConfig(type="vit", img_size=(DEMO_SIZE, DEMO_SIZE), patch_size=8, embed_dim=96, depth=4,
                                num_heads=3),
        decode_head=HeadConfig("pup", 3, channels=48),
        aux_heads=[HeadConfig("pup_aux", 1, channels=32, loss_weight=0.4)],
        test=TestConfig("whole", (DEMO_SIZE, DEMO_SIZE), (42, 42)),
        dataset="folder", class_names=list(DEMO_CLASSES))
    return Preset(
        name="setr_demo_pup_tiny_64x64_shapes", task="segmentation", family="setr", dataset="folder", backbone_name="vit_tiny (random init)",
        head_name="PUP", model=model,
        # 200 iterations: mIoU 0.87 in about a minute of one CPU thread (150: 0.868, 300: 0.878, 1500 added little)
        train=TrainRecipe(iters=200, batch_size=8, lr=0.02, head_lr_mult=1.0, min_lr=1e-4, eval_interval=200,
                          loss_normalisation="all_pixels"),
        data=DataConfig(dataset="folder", img_scale=(DEMO_SIZE, DEMO_SIZE), ratio_range=(0.75, 1.5),
                        crop_size=(DEMO_SIZE, DEMO_SIZE), workers=0),
        notes=("built-in demo on generated data; not an original configuration",))
