"""RetinaNet-HLG with the arithmetic of the authors' detector (their mmdetection 2.26 fork, ``hlg-detection/``).

Architecture only (no anchors, no decoding, no I/O): ``RetinaNetHLG(img)`` returns the raw head outputs per FPN
level, ``(cls_scores, bbox_preds)`` with shapes (B, A*K, H_l, W_l) and (B, A*4, H_l, W_l), A = 9 anchors per
position, K classes, channel = anchor * K + class and anchor * 4 + (dx, dy, dw, dh). Anchors and the box coder are
in :mod:`.anchors` / :mod:`.box_coder`, the test post-processing in :mod:`.postprocess`, the test pipeline in
:mod:`.pipeline`.

* ``backbone``: the dense :class:`~setr.models.hlg.HLG` (four maps, strides 4/8/16/32).
* ``neck``: mmdet's FPN with ``start_level=1`` (the stride-4 map is computed but unused), 1x1 lateral convs,
  top-down nearest upsampling to the exact size of the finer level, 3x3 output convs (bias, no activation),
  P6 = conv3x3/2 on the backbone's last map C5 (``add_extra_convs='on_input'``) and P7 = conv3x3/2 on P6 with
  no ReLU in between (``relu_before_extra_convs=False``).
* ``bbox_head``: ``stacked_convs`` x (conv3x3 + bias + ReLU) per branch (no norm), then ``retina_cls`` /
  ``retina_reg`` conv3x3, shared over the levels.

The module names are mmdet's, so the authors' checkpoint keys load as they are: ``backbone.*``,
``neck.lateral_convs.N.conv.*``, ``neck.fpn_convs.N.conv.*``, ``bbox_head.{cls,reg}_convs.N.conv.*``,
``bbox_head.retina_cls.*``, ``bbox_head.retina_reg.*``.

Initialisation follows mmdet's ``init_cfg``: the FPN convs Xavier-uniform with zero bias, the head convs
N(0, 0.01) with zero bias, and ``retina_cls.bias`` = -log((1 - 0.01) / 0.01) (prior probability 0.01).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SetrError
from ..models.hlg import HLG, HLG_VARIANTS, load_hlg_state_dict
from ..presets.detection import DetModelConfig

FPN_STRIDES = (8, 16, 32, 64, 128)
FPN_START_LEVEL = 1  # the stride-4 backbone map is unused
PRIOR_PROB = 0.01


class ConvModule(nn.Module):
    """mmcv's ``ConvModule`` without a norm: conv (with bias) and an optional ReLU; the weights sit at ``.conv``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 relu: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class FPN(nn.Module):
    """mmdet FPN: laterals on ``in_channels[start_level:]``, top-down nearest upsampling to the finer level's size,
    3x3 output convs; ``num_outs - used levels`` extra stride-2 convs, the first on the last backbone map."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, start_level: int = FPN_START_LEVEL,
                 num_outs: int = 5):
        super().__init__()
        self.in_channels = list(in_channels)
        self.start_level = start_level
        self.num_outs = num_outs
        used = self.in_channels[start_level:]
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1) for c in used)
        convs = [ConvModule(out_channels, out_channels, 3, padding=1) for _ in used]
        for i in range(num_outs - len(used)):  # 'on_input': the first extra conv reads the last backbone map
            convs.append(ConvModule(self.in_channels[-1] if i == 0 else out_channels, out_channels, 3, stride=2,
                                    padding=1))
        self.fpn_convs = nn.ModuleList(convs)

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                                              mode="nearest")
        used = len(laterals)
        outs = [self.fpn_convs[i](laterals[i]) for i in range(used)]
        if self.num_outs > used:
            outs.append(self.fpn_convs[used](inputs[-1]))  # P6 from C5
            for i in range(used + 1, self.num_outs):
                outs.append(self.fpn_convs[i](outs[-1]))  # P7 from P6, no ReLU in between
        return outs

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)


class RetinaHead(nn.Module):
    """mmdet ``RetinaHead``: per level, ``stacked_convs`` conv3x3+ReLU per branch, then ``retina_cls`` (A*K
    channels) and ``retina_reg`` (A*4 channels)."""

    def __init__(self, num_classes: int, in_channels: int, feat_channels: int = 256, stacked_convs: int = 4,
                 num_anchors: int = 9):
        super().__init__()
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.cls_convs = nn.ModuleList(ConvModule(in_channels if i == 0 else feat_channels, feat_channels, 3,
                                                  padding=1, relu=True) for i in range(stacked_convs))
        self.reg_convs = nn.ModuleList(ConvModule(in_channels if i == 0 else feat_channels, feat_channels, 3,
                                                  padding=1, relu=True) for i in range(stacked_convs))
        self.retina_cls = nn.Conv2d(feat_channels, num_anchors * num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(feat_channels, num_anchors * 4, 3, padding=1)

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls_feat, reg_feat = x, x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        return self.retina_cls(cls_feat), self.retina_reg(reg_feat)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        outs = [self.forward_single(x) for x in feats]
        return [o[0] for o in outs], [o[1] for o in outs]

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.retina_cls.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))


class RetinaNetHLG(nn.Module):
    """Dense HLG -> FPN (P3-P7) -> RetinaHead. ``forward(img)`` -> (cls_scores, bbox_preds), one per level."""

    def __init__(self, backbone: HLG, num_classes: int, cfg: DetModelConfig):
        super().__init__()
        if not backbone.dense:
            raise ValueError("RetinaNetHLG needs a dense HLG (dense=True)")
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.backbone = backbone
        self.neck = FPN(backbone.embed_dims, cfg.fpn_channels, FPN_START_LEVEL, len(FPN_STRIDES))
        num_anchors = cfg.scales_per_octave * len(cfg.anchor_ratios)
        self.bbox_head = RetinaHead(num_classes, cfg.fpn_channels, cfg.head_channels or cfg.fpn_channels,
                                    cfg.stacked_convs, num_anchors)
        self.neck.init_weights()
        self.bbox_head.init_weights()

    @property
    def strides(self) -> tuple[int, ...]:
        return FPN_STRIDES

    def extract_feat(self, img: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> the five FPN maps (strides 8..128)."""
        return self.neck(self.backbone(img))

    def forward(self, img: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return self.bbox_head(self.extract_feat(img))


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
                        trust_checkpoint: bool = False, **overrides: Any) -> RetinaNetHLG:
    """A :class:`RetinaNetHLG`.

    ``variant_or_kwargs``: an HLG variant name ("small"), a dict of HLG arguments (embed_dims, num_heads, depths,
    drop_path_rate, ...), or a :class:`DetModelConfig` (then ``cfg`` is ignored). ``cfg`` holds the detection
    settings (defaults: the released configs'); ``overrides`` set DetModelConfig fields. ``num_classes`` excludes
    background (sigmoid classifier; labels 0 .. num_classes - 1). ``pretrained``: an ImageNet HLG checkpoint path
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
    return RetinaNetHLG(hlg, num_classes, cfg)


def num_anchors_for(image_hw: tuple[int, int], cfg: DetModelConfig) -> int:
    """Anchors for a padded input of size image_hw: sum over levels of ceil(H/s) * ceil(W/s) * anchors per cell."""
    per = cfg.scales_per_octave * len(cfg.anchor_ratios)
    total = 0
    for s in FPN_STRIDES:
        total += math.ceil(image_hw[0] / s) * math.ceil(image_hw[1] / s) * per
    return total
