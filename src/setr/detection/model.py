"""RetinaNet-HLG (the authors' mmdet 1x configs) composed from torchvision's detection building blocks.

* backbone: the dense :class:`~setr.models.hlg.HLG`; stages 2-4 (strides 8/16/32) feed the FPN laterals
  (mmdet ``start_level=1``); the stride-4 map is computed (it feeds stage 2) but not used.
* neck: ``torchvision.ops.FeaturePyramidNetwork`` (256 channels) with ``LastLevelP6P7`` forced to read the
  stage-4 output C5 ('on_input'): P6 = conv3x3/2(C5), P7 = conv3x3/2(relu(P6)) -> strides 8..128.
  (torchvision's block switches to P5 when C5 happens to have the FPN width; we pin it to C5.)
* anchors: ``AnchorGenerator`` with sizes ``octave_base_scale * stride * 2**(k / scales_per_octave)``,
  k = 0..2, ratios 0.5/1/2 (9 anchors per location).
* head / loss / post-processing: torchvision ``RetinaNet`` / ``RetinaNetHead``: sigmoid focal loss
  (gamma 2, alpha 0.25, torchvision's fixed defaults), L1 box loss on deltas with BoxCoder weights (1,1,1,1)
  (``regression_head._loss_type = "l1"``), Matcher fg 0.5 / bg 0.4 with low-quality matches (= mmdet min_pos_iou 0),
  score 0.05, NMS 0.5, 100 detections, 1000 candidates per level.
* transform: ``GeneralizedRCNNTransform`` with ImageNet mean/std, short side drawn from ``train_min_sizes`` in
  training (one draw per batch), ``test_min_size`` in eval, long side <= ``max_size``, padding to 32.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Mapping

import torch
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

from ..errors import SetrError
from ..models.hlg import HLG, HLG_VARIANTS, load_hlg_state_dict
from ..presets.detection import DetModelConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FPN_STRIDES = (8, 16, 32, 64, 128)


class HLGBody(nn.Module):
    """Dense HLG -> OrderedDict {"0": C3, "1": C4, "2": C5} (strides 8, 16, 32)."""

    def __init__(self, hlg: HLG):
        super().__init__()
        if not hlg.dense:
            raise ValueError("HLGBody needs a dense HLG (dense=True)")
        self.hlg = hlg
        self.in_channels_list = list(hlg.embed_dims[1:])

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feats = self.hlg(x)[1:]
        return OrderedDict((str(i), f) for i, f in enumerate(feats))


class LastLevelP6P7FromC5(LastLevelP6P7):
    """torchvision's P6/P7 block, always fed by C5 (mmdet ``add_extra_convs='on_input'``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels)
        self.use_P5 = False


class HLGFPNBackbone(nn.Module):
    """HLG body + FPN; ``out_channels`` as torchvision's detectors expect."""

    def __init__(self, hlg: HLG, out_channels: int = 256):
        super().__init__()
        self.body = HLGBody(hlg)
        self.fpn = FeaturePyramidNetwork(self.body.in_channels_list, out_channels,
                                         extra_blocks=LastLevelP6P7FromC5(self.body.in_channels_list[-1], out_channels))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(self.body(x))


class DetTransform(GeneralizedRCNNTransform):
    """``GeneralizedRCNNTransform`` whose eval short side is ``test_min_size`` (the parent uses min_size[-1])."""

    def __init__(self, train_min_sizes, test_min_size: int, max_size: int, size_divisible: int = 32):
        super().__init__(tuple(train_min_sizes), max_size, list(IMAGENET_MEAN), list(IMAGENET_STD),
                         size_divisible=size_divisible)
        self.test_min_size = int(test_min_size)

    def resize(self, image, target=None):
        if self.training:
            return super().resize(image, target)
        train_sizes, self.min_size = self.min_size, (self.test_min_size,)
        try:
            return super().resize(image, target)
        finally:
            self.min_size = train_sizes


def anchor_sizes(cfg: DetModelConfig) -> tuple[tuple[float, ...], ...]:
    """Per FPN level: octave_base_scale * stride * 2 ** (k / scales_per_octave), k = 0 .. scales_per_octave - 1."""
    return tuple(tuple(cfg.octave_base_scale * s * 2 ** (k / cfg.scales_per_octave)
                       for k in range(cfg.scales_per_octave)) for s in FPN_STRIDES)


def hlg_kwargs(cfg: DetModelConfig) -> dict[str, Any]:
    if cfg.variant.lower() not in HLG_VARIANTS:
        raise ValueError(f"unknown HLG variant {cfg.variant!r}; choose from {sorted(HLG_VARIANTS)}")
    kw = dict(HLG_VARIANTS[cfg.variant.lower()])
    for key in ("embed_dims", "num_heads", "depths"):
        if getattr(cfg, key) is not None:
            kw[key] = tuple(getattr(cfg, key))
    return kw


def build_retinanet_hlg(variant_or_kwargs: str | Mapping[str, Any] | DetModelConfig, num_classes: int,
                        cfg: DetModelConfig | None = None, pretrained: str | None = None,
                        trust_checkpoint: bool = False, **overrides: Any) -> RetinaNet:
    """A torchvision ``RetinaNet`` with an HLG-FPN backbone.

    ``variant_or_kwargs``: an HLG variant name ("small"), a dict of HLG arguments (embed_dims, num_heads, depths,
    drop_path_rate, ...), or a :class:`DetModelConfig` (then ``cfg`` is ignored). ``cfg`` holds the detection
    settings (defaults: the released configs'); ``overrides`` set DetModelConfig fields. ``num_classes`` excludes background
    (sigmoid classifier; labels are 0 .. num_classes - 1). ``pretrained``: an ImageNet HLG checkpoint path
    (.pth read with ``weights_only=True`` unless ``trust_checkpoint``, which is unsafe; or .safetensors).
    """
    hlg_extra: dict[str, Any] = {}
    if isinstance(variant_or_kwargs, DetModelConfig):
        cfg = variant_or_kwargs
    elif isinstance(variant_or_kwargs, str):
        cfg = DetModelConfig(**{**(cfg.__dict__ if cfg else {}), "variant": variant_or_kwargs})
    else:
        base = dict(variant_or_kwargs)
        cfg = DetModelConfig(**(cfg.__dict__ if cfg else {}))
        cfg.variant = base.pop("variant", cfg.variant)
        for key in ("embed_dims", "num_heads", "depths", "drop_path_rate"):
            if key in base:
                setattr(cfg, key, base.pop(key))
        hlg_extra = base
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"build_retinanet_hlg: unknown option {k!r}")
        setattr(cfg, k, v)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")

    hlg = HLG(**{**hlg_kwargs(cfg), **hlg_extra, "num_classes": 0, "dense": True,
                 "drop_path_rate": cfg.drop_path_rate})
    weights = pretrained or cfg.pretrained
    if weights:
        from ..io.weights import read_state_dict

        state = read_state_dict(weights, trust_checkpoint)  # unwraps {'model': ...} / {'state_dict': ...}
        try:
            load_hlg_state_dict(hlg, state)
        except RuntimeError as exc:
            raise SetrError(f"{weights}: {exc}") from None
    backbone = HLGFPNBackbone(hlg, cfg.fpn_channels)
    anchors = AnchorGenerator(anchor_sizes(cfg), (tuple(cfg.anchor_ratios),) * len(FPN_STRIDES))
    head = RetinaNetHead(cfg.fpn_channels, anchors.num_anchors_per_location()[0], num_classes)
    head.regression_head._loss_type = "l1"  # L1 on the (1,1,1,1)-weighted deltas (torchvision's default, pinned)
    model = RetinaNet(backbone, num_classes, anchor_generator=anchors, head=head,
                      score_thresh=cfg.score_thresh, nms_thresh=cfg.nms_thresh,
                      detections_per_img=cfg.detections_per_img, fg_iou_thresh=cfg.fg_iou_thresh,
                      bg_iou_thresh=cfg.bg_iou_thresh, topk_candidates=cfg.topk_candidates)
    # the released configs' transform: multi-scale short side in training, a fixed one in test
    model.transform = DetTransform(cfg.train_min_sizes, cfg.test_min_size, cfg.max_size, cfg.size_divisible)
    return model


def num_anchors_for(image_hw: tuple[int, int], cfg: DetModelConfig) -> int:
    """Anchors for a padded input of size image_hw: sum over levels of ceil(H/s) * ceil(W/s) * anchors per cell."""
    per = cfg.scales_per_octave * len(cfg.anchor_ratios)
    total = 0
    for s in FPN_STRIDES:
        total += math.ceil(image_hw[0] / s) * math.ceil(image_hw[1] / s) * per
    return total
