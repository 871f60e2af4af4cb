"""SETR-PUP-HLG segmentation presets: the HLG dense backbone, the HLG up-head and an FCN auxiliary head on
stage 3, with the original recipe (AdamW lr 6e-5, weight decay 0, heads x10, no decay on norms, linear warm-up
1500 iterations, poly power 1.0 to 0).

Gaps in the released configs, filled as follows: the ADE20K Small/Medium configs inherit a missing base file (the PUP-HLG
base with 150 classes is used); there is no valid ADE20K Large config (Large dims with the ADE20K Medium recipe).
The original README gives no numbers for these models, so no mIoU is reported.
"""
from __future__ import annotations

from ..config import BackboneConfig, HeadConfig, ModelConfig, TestConfig
from ..data.specs import DATASETS
from ..models.hlg import HLG_VARIANTS
from .base import DataConfig, Preset, TrainRecipe

# drop path per (variant, dataset), from the original configs
DROP_PATH = {("small", "cityscapes"): 0.1, ("medium", "cityscapes"): 0.3, ("large", "cityscapes"): 0.3,
             ("small", "ade20k"): 0.1, ("medium", "ade20k"): 0.1, ("large", "ade20k"): 0.1}
SCHEDULE = {"cityscapes": ("768x768_40k", 40000), "ade20k": ("512x512_160k", 160000)}


def setr_hlg_model(variant: str, dataset: str) -> ModelConfig:
    spec = DATASETS[dataset]
    arch = HLG_VARIANTS[variant]
    bb = BackboneConfig(type="hlg", img_size=spec.crop_size, embed_dims=tuple(arch["embed_dims"]),
                        stage_heads=tuple(arch["num_heads"]), depths=tuple(arch["depths"]),
                        drop_path_rate=DROP_PATH[(variant, dataset)], pretrained=f"hlg_{variant}")
    test = TestConfig("slide", spec.crop_size, spec.stride, img_scale=spec.img_scale, resize_mode=spec.test_resize)
    return ModelConfig(num_classes=spec.num_classes, backbone=bb,
                       decode_head=HeadConfig("hlg_up", channels=512, num_heads=16, dropout_ratio=0.1),
                       aux_heads=[HeadConfig("fcn", 2, channels=256, dropout_ratio=0.1, loss_weight=0.4)],
                       test=test, dataset=dataset)


def setr_hlg_presets() -> list[Preset]:
    presets = []
    for dataset, (tag, iters) in SCHEDULE.items():
        spec = DATASETS[dataset]
        for variant in ("small", "medium", "large"):
            notes = ["backbone initialised from the HLG ImageNet checkpoint (--pretrained FILE)"]
            if dataset == "ade20k" and variant != "large":
                notes.append("REF-BUG: the original config inherits a missing base file; the PUP-HLG base is used")
            if dataset == "ade20k" and variant == "large":
                notes.append("no valid original config (the file is a COCO detection config): Large dims with "
                             "the ADE20K Medium recipe")
            presets.append(Preset(
                name=f"setr_pup_hlg_{variant}_{tag}_{dataset}_bs_16", task="segmentation", family="setr_hlg", dataset=dataset,
                backbone_name=f"hlg_{variant}", head_name="PUP-HLG", model=setr_hlg_model(variant, dataset),
                train=TrainRecipe(iters=iters, batch_size=16, optimizer="adamw", lr=6e-5, head_lr_mult=10.0,
                                  weight_decay=0.0, poly_power=1.0, min_lr=0.0, warmup_iters=1500, warmup_ratio=1e-6,
                                  eval_interval=iters // 10, no_decay_key="norm"),
                data=DataConfig(dataset=dataset, img_scale=spec.img_scale, ratio_range=spec.ratio_range,
                                crop_size=spec.crop_size, workers=2),
                notes=tuple(notes)))
    return presets
