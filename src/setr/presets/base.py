"""The ``Preset``: one runnable configuration of the original results tables (model + recipe + test setup)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import ModelConfig


@dataclass
class TrainRecipe:
    iters: int = 40000
    batch_size: int = 8  # global batch (the original: samples_per_gpu x 8 GPUs)
    optimizer: str = "sgd"  # "sgd" (SETR) or "adamw" (SETR-PUP-HLG)
    lr: float = 0.01  # backbone; parameters whose name contains "head" get lr x head_lr_mult
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    poly_power: float = 0.9
    min_lr: float = 1e-4
    warmup_iters: int = 0  # linear warm-up from lr * warmup_ratio
    warmup_ratio: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)  # adamw
    no_decay_key: str | None = None  # parameters whose name contains it get no weight decay (HLG: "norm")
    eval_interval: int = 4000  # iters / 10 in the original
    checkpoint_interval: int | None = None  # None: the evaluation interval
    keep_checkpoints: int = 3  # iter_*.pth files kept (0: all)
    stop_at: int | None = None  # stop after this many iterations of the schedule (checkpointed; --resume goes on)
    loss_normalisation: str = "all_pixels"  # original: mean over all pixels incl. ignored; or "valid_pixels"


@dataclass
class DataConfig:
    dataset: str = "cityscapes"  # "cityscapes", "ade20k", "pascal_context" or "folder"
    img_scale: tuple[int, int] = (2049, 1025)  # (long, short) of the random resize
    ratio_range: tuple[float, float] = (0.5, 2.0)
    crop_size: tuple[int, int] = (768, 768)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    workers: int = 2  # data-loader processes per GPU / process


@dataclass
class Preset:
    name: str
    family: str  # "setr"
    dataset: str
    backbone_name: str  # e.g. "vit_large_patch16_384"
    head_name: str  # e.g. "PUP"
    model: ModelConfig
    train: TrainRecipe = field(default_factory=TrainRecipe)
    data: DataConfig = field(default_factory=DataConfig)
    reported_miou: float | None = None  # single-scale mIoU (%), original README
    reported_ms_miou: float | None = None  # ms+flip mIoU (%), original README
    notes: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "dataset": self.dataset, "crop": list(self.model.backbone.img_size),
                "backbone": self.backbone_name, "head": self.head_name, "iters": self.train.iters,
                "batch_size": self.train.batch_size, "reported_mIoU": self.reported_miou,
                "reported_ms_mIoU": self.reported_ms_miou, "multi_scale_test": self.model.test.aug}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
