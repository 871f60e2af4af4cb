"""Detection presets: RetinaNet-HLG with the mmdet 1x multi-scale COCO recipe of the authors'
released detection configs.

``setr.presets.get("retinanet_hlg_small_fpn_mstrain_1x_coco")`` returns a fresh, mutable :class:`Preset` of task
``detection`` (``model``: :class:`DetModelConfig`, ``train``: :class:`DetTrainConfig`);
``setr.overrides.apply_overrides(preset, ["train.epochs=2", "model.fpn_channels=64"])`` edits it.
``retinanet_hlg_tiny_test`` is a very small model for tests and smoke runs.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import Preset


TRAIN_SHORT_SIDES = (640, 672, 704, 736, 768, 800)


@dataclass
class DetModelConfig:
    variant: str = "small"  # an HLG_VARIANTS name; the three fields below override it when set
    embed_dims: tuple[int, ...] | None = None
    num_heads: tuple[int, ...] | None = None
    depths: tuple[int, ...] | None = None
    drop_path_rate: float = 0.1
    pretrained: str | None = None  # ImageNet HLG checkpoint for the backbone (load_hlg_state_dict)
    fpn_channels: int = 256  # FPN out_channels (= the head's in_channels)
    head_channels: int | None = None  # RetinaHead feat_channels (None: fpn_channels, as the released configs)
    stacked_convs: int = 4  # RetinaHead conv3x3 + ReLU layers per branch
    octave_base_scale: float = 4.0
    scales_per_octave: int = 3
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.4
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    topk_candidates: int = 1000  # per level, before NMS (mmdet nms_pre)
    # "mmcv": the original's batched_nms (class-offset boxes in float32, one NMS); "torchvision": torchvision's
    # batched_nms (per class above 4000 boxes on the CPU: no offset rounding, so IoUs near the threshold can differ)
    nms_impl: str = "mmcv"
    train_min_sizes: tuple[int, ...] = TRAIN_SHORT_SIDES  # training scales (max_size, s): one drawn per IMAGE
    test_min_size: int = 800
    max_size: int = 1333
    size_divisible: int = 32


@dataclass
class DetTrainConfig:
    epochs: int = 12
    batch_size: int = 16  # global (2 per GPU x 8 in the reference)
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # engine.common.build_optimizer
    head_lr_mult: float = 1.0  # lr x this for parameters whose name contains "head" (the recipe: 1)
    no_decay_key: str | None = "norm"  # mmcv custom_keys {'norm': decay_mult}: a substring of the parameter NAME
    no_decay_mult: float = 0.0  # weight decay x this for those parameters
    milestones: tuple[int, ...] = (8, 11)  # epochs after which lr is multiplied by gamma
    gamma: float = 0.1
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    flip_prob: float = 0.5  # horizontal flip, drawn per image
    shuffle: bool = True  # a new permutation of the training images each epoch (False: file order)
    # the lr schedule's position at the first iteration, as mmcv's runner.iter / runner.epoch (continuing a run
    # that had already done this many iterations / epochs; the golden training checks start at runner iteration 498)
    schedule_iter_offset: int = 0
    schedule_epoch_offset: int = 0
    grad_clip: float | None = None  # the reference does not clip
    workers: int = 2
    keep_checkpoints: int = 0  # 0 keeps every checkpoint
    checkpoint_interval: int = 0  # iterations between checkpoints within an epoch (0: at epoch ends only)
    stop_at: int | None = None  # stop after this many iterations of the schedule (checkpointed; --resume goes on)
    eval_interval: int = 1  # COCO bbox evaluation on val2017 every N epochs (0: only after the last epoch)
    log_interval: int = 50  # iterations between train.log lines


def preset_from_dict(d: dict) -> Preset:
    """A detection preset from its ``to_dict()`` (a checkpoint's stored config); unknown keys are left out."""
    from ..overrides import dataclass_from_dict  # fits lists back to tuple fields

    return Preset(d["name"], "detection",
                  dataclass_from_dict(DetModelConfig, d.get("model", {}), ignore_unknown=True),
                  dataclass_from_dict(DetTrainConfig, d.get("train", {}), ignore_unknown=True),
                  family="retinanet_hlg", dataset="coco")



def _make(name: str, variant: str, drop_path: float, embed_dims=None, depths=None, num_heads=None):
    return Preset(name, "detection", DetModelConfig(variant=variant, embed_dims=embed_dims, depths=depths,
                                                    num_heads=num_heads, drop_path_rate=drop_path),
                  DetTrainConfig(), None, family="retinanet_hlg", dataset="coco", backbone_name=f"hlg_{variant}",
                  head_name="RetinaNet-FPN")


_PRESETS = {
    # the released detection configs: Small (2,2,6,2) dp 0.1; Medium (2,2,14,2) dp 0.3; Large dims 128..1024 with the detection
    # config's depths (2,2,14,2) (not the 2,2,18,2 of HLG_VARIANTS["large"]) and dp 0.3
    "retinanet_hlg_small_fpn_mstrain_1x_coco": lambda n: _make(n, "small", 0.1, depths=(2, 2, 6, 2)),
    "retinanet_hlg_medium_fpn_mstrain_1x_coco": lambda n: _make(n, "medium", 0.3, depths=(2, 2, 14, 2)),
    "retinanet_hlg_large_fpn_mstrain_1x_coco": lambda n: _make(n, "large", 0.3, embed_dims=(128, 256, 512, 1024),
                                                               depths=(2, 2, 14, 2)),
}


def _tiny(name: str) -> Preset:
    """A few-hundred-thousand-parameter model on ~128 px images, for tests and CPU smoke runs."""
    p = _make(name, "tiny", 0.0, embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))
    p.model.fpn_channels = 64
    p.model.train_min_sizes = (128,)
    p.model.test_min_size = 128
    p.model.max_size = 128
    p.train.batch_size = 4
    p.train.epochs = 8
    p.train.milestones = (6,)
    p.train.warmup_iters = 10
    p.train.lr = 5e-4  # 1e-3 diverges now and then at this size
    p.train.workers = 0
    p.train.eval_interval = 0
    p.train.log_interval = 10
    return p


_PRESETS["retinanet_hlg_tiny_test"] = _tiny


def detection_presets() -> list[Preset]:
    return [_PRESETS[name](name) for name in sorted(_PRESETS)]

