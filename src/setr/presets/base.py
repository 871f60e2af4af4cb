"""The ``Preset``: one runnable configuration, the same shape for the three tasks: ``name``, ``task``
(``segmentation``, ``classification`` or ``detection``), ``model`` (what is built), ``train`` (the recipe) and
``data`` (the training data pipeline; ``None`` where the recipe holds it), plus what describes it (dataset,
backbone, head, the published numbers, notes). ``--set section.key=value`` edits ``model``, ``train`` or
``data`` the same way for every task."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any



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


TASKS = ("segmentation", "classification", "detection")


@dataclass
class Preset:
    name: str
    task: str  # one of TASKS
    model: Any  # ModelConfig (segmentation), HLGModelConfig (classification), DetModelConfig (detection)
    train: Any  # TrainRecipe, ClassifyRecipe or DetTrainConfig
    data: Any = None  # DataConfig (segmentation); None where the recipe holds the data pipeline
    family: str = ""  # "setr", "setr_hlg", "hlg", "retinanet_hlg"
    dataset: str = ""
    backbone_name: str = ""  # e.g. "vit_large_patch16_384"
    head_name: str = ""  # e.g. "PUP"
    reported_miou: float | None = None  # single-scale mIoU (%), original README
    reported_ms_miou: float | None = None  # ms+flip mIoU (%), original README
    published_params_m: float | None = None  # HLG paper's table
    published_gflops: float | None = None
    notes: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        crop = getattr(getattr(self.model, "backbone", None), "img_size", None)
        return {"name": self.name, "task": self.task, "dataset": self.dataset,
                "crop": list(crop) if crop is not None else None, "backbone": self.backbone_name,
                "head": self.head_name, "iters": getattr(self.train, "iters", None),
                "epochs": getattr(self.train, "epochs", None), "batch_size": getattr(self.train, "batch_size", None),
                "reported_mIoU": self.reported_miou,
                "reported_ms_mIoU": self.reported_ms_miou,
                "multi_scale_test": getattr(getattr(self.model, "test", None), "aug", None)}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
