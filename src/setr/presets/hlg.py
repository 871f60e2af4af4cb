"""HLG ImageNet classification presets: the four variants with the released recipe and the published table."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Preset

# published (params M, GFLOPs at 224) from the HLG paper's table
PUBLISHED = {"tiny": (11, 2.1), "small": (24, 4.7), "medium": (43, 9.0), "large": (84, 15.9)}
NOTES = {
    "medium": ("Medium as released has depths 2-2-14-2: 39.98M parameters, not the published 43M; no released "
               "configuration reproduces 43M / 9.0G (2-2-16-2 would give 43.90M)",),
    "large": ("Large uses stage-3 depth 18 (the Cityscapes-L config), the only depth matching the published "
              "84M / 15.9G; the classification yaml and detection configs say 14 (70.46M); checkpoints with "
              "either depth load, their depth is read from the keys",),
}


@dataclass
class ClassifyRecipe:
    epochs: int = 300
    warmup_epochs: int = 20
    batch_size: int = 1024  # global
    base_lr: float = 5e-4  # per 512 images: lr = base_lr * batch / 512
    warmup_lr: float = 5e-7
    min_lr: float = 5e-6
    weight_decay: float = 0.05
    clip_grad: float = 5.0
    drop_path: float = 0.2
    img_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area range (timm's default)
    crop_pct: float = 224 / 256
    interpolation: str = "bicubic"
    auto_augment: str = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    reprob: float = 0.25
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    ema_decay: float = 0.99996  # 0 disables the EMA
    workers: int = 8
    checkpoint_interval: int = 0  # iterations between checkpoints within an epoch (0: at epoch ends only)
    keep_checkpoints: int = 2  # newest checkpoints kept (0: all)
    stop_at: int | None = None  # stop after this many iterations of the schedule (checkpointed; --resume goes on)


@dataclass
class HLGModelConfig:
    """The classifier a classification preset builds: ``timm.create_model(f"hlg_{variant}")`` (the class count
    comes from the data)."""

    variant: str = "tiny"  # tiny, small, medium, large


def hlg_presets() -> list[Preset]:
    return [Preset(f"hlg_{v}", "classification", HLGModelConfig(v), ClassifyRecipe(drop_path=0.2), None,
                   family="hlg", dataset="imagenet", backbone_name=f"hlg_{v}", head_name="linear",
                   published_params_m=PUBLISHED[v][0], published_gflops=PUBLISHED[v][1], notes=NOTES.get(v, ()))
            for v in ("tiny", "small", "medium", "large")]
