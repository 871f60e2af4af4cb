"""Model configuration: plain, printable, JSON-serialisable dataclasses, and ``build_model``.

One path through the package: preset name -> ``ModelConfig`` -> ``build_model`` -> weights -> inference/training.
The same config is saved next to every checkpoint, so any checkpoint rebuilds its model on its own.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from torch import nn

# ImageNet mean/std in RGB on 0..255 pixels (the original's normalisation, not ViT's 0.5/0.5).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

HEAD_TYPES = ("naive", "pup", "pup_aux", "mla", "mla_aux", "hlg_up", "fcn")
BACKBONE_TYPES = ("vit", "vit_mla", "hlg")


@dataclass
class BackboneConfig:
    type: str = "vit"  # "vit" (Naive / PUP), "vit_mla" (MLA: cls token dropped before the blocks + neck), "hlg"
    img_size: tuple[int, int] = (768, 768)  # the training crop; the stored position embedding's grid
    patch_size: int = 16
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    mla_index: tuple[int, ...] | None = None
    mla_channels: int = 256
    pretrained: str | None = None  # ImageNet weights it was initialised from (a timm name), for the record
    grad_checkpointing: bool = False
    # HLG only: per-stage widths, heads and depths (embed_dim / depth / num_heads above are unused)
    embed_dims: tuple[int, ...] | None = None
    stage_heads: tuple[int, ...] | None = None
    depths: tuple[int, ...] | None = None


@dataclass
class HeadConfig:
    type: str = "naive"  # one of HEAD_TYPES
    in_index: int = -1  # backbone output (block for naive/pup/pup_aux, neck level for mla_aux)
    channels: int = 256  # hidden width of naive/pup/pup_aux heads (original literal 256)
    first_kernel: int = 1  # naive: 1 (conv3x3_conv1x1=False, every SETR config) or 3
    mlahead_channels: int = 128  # mla: branch width (original 128)
    loss_weight: float = 1.0
    num_heads: int = 16  # hlg_up: attention heads of the head blocks
    dropout_ratio: float = 0.1  # hlg_up / fcn: Dropout2d before the classifier (SETR's own heads have none)


@dataclass
class TestConfig:
    mode: str = "slide"  # "slide" or "whole"
    crop_size: tuple[int, int] = (768, 768)
    stride: tuple[int, int] = (512, 512)
    img_scale: tuple[int, int] | None = None  # (long, short) test resize; None keeps the image size
    resize_mode: str = "keep_ratio"  # "keep_ratio" (fit inside img_scale) or "short_side" (short = img_scale[1])
    aug: bool = False  # multi-scale + flip by default (the _MS presets)
    aug_ratios: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    aug_flip: bool = True


@dataclass
class ModelConfig:
    num_classes: int = 19
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    decode_head: HeadConfig = field(default_factory=HeadConfig)
    aux_heads: list[HeadConfig] = field(default_factory=list)
    align_corners: bool = False
    test: TestConfig = field(default_factory=TestConfig)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dataset: str | None = None  # names the class list / palette ("cityscapes", "ade20k", "pascal_context")
    class_names: list[str] | None = None  # custom datasets

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        bb = dict(d.pop("backbone", {}))
        for key in ("img_size", "mla_index", "embed_dims", "stage_heads", "depths"):
            if bb.get(key) is not None:
                bb[key] = _as_tuple(bb[key])
        test = dict(d.pop("test", {}))
        for key in ("crop_size", "stride", "img_scale"):
            if test.get(key) is not None:
                test[key] = _as_tuple(test[key])
        if "aug_ratios" in test:
            test["aug_ratios"] = tuple(float(r) for r in test["aug_ratios"])
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(backbone=BackboneConfig(**bb), decode_head=HeadConfig(**d.pop("decode_head", {})),
                   aux_heads=[HeadConfig(**h) for h in d.pop("aux_heads", [])], test=TestConfig(**test), **d)


def _as_tuple(v: Any) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v, v)
    return tuple(int(x) for x in v)


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    from .models.vit import SetrViT, SetrViTMLA

    kwargs = dict(img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
                  num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, drop_rate=cfg.drop_rate,
                  attn_drop_rate=cfg.attn_drop_rate, drop_path_rate=cfg.drop_path_rate,
                  grad_checkpointing=cfg.grad_checkpointing)
    if cfg.type == "hlg":
        from .models.hlg import HLG

        if not (cfg.embed_dims and cfg.stage_heads and cfg.depths):
            raise ValueError("an 'hlg' backbone needs embed_dims, stage_heads and depths")
        return HLG(embed_dims=cfg.embed_dims, num_heads=cfg.stage_heads, depths=cfg.depths, num_classes=0,
                   dense=True, drop_rate=cfg.drop_rate, attn_drop_rate=cfg.attn_drop_rate,
                   drop_path_rate=cfg.drop_path_rate, grad_checkpointing=cfg.grad_checkpointing)
    if cfg.type == "vit":
        return SetrViT(**kwargs)
    if cfg.type == "vit_mla":
        return SetrViTMLA(mla_index=cfg.mla_index or (5, 11, 17, 23), mla_channels=cfg.mla_channels, **kwargs)
    raise ValueError(f"unknown backbone type {cfg.type!r}: expected one of {BACKBONE_TYPES}")


def build_head(cfg: HeadConfig, backbone: BackboneConfig, num_classes: int, align_corners: bool) -> nn.Module:
    from .models.heads import MLAAuxHead, MLAHead, NaiveHead, PUPAuxHead, PUPHead

    if cfg.type in ("hlg_up", "fcn") and backbone.type != "hlg":
        raise ValueError(f"a {cfg.type!r} head needs an 'hlg' backbone, not {backbone.type!r}")
    if cfg.type == "hlg_up":
        from .models.heads.hlg_up import HLGUPHead

        return HLGUPHead(in_channels=backbone.embed_dims, num_classes=num_classes, channels=cfg.channels,
                         num_heads=cfg.num_heads, dropout_ratio=cfg.dropout_ratio, align_corners=align_corners)
    if cfg.type == "fcn":
        from .models.heads.fcn import FCNHead

        return FCNHead(cfg.in_index, backbone.embed_dims[cfg.in_index], num_classes, cfg.channels,
                       dropout_ratio=cfg.dropout_ratio, align_corners=align_corners)
    token_head = dict(in_index=cfg.in_index, embed_dim=backbone.embed_dim, num_classes=num_classes,
                      channels=cfg.channels, align_corners=align_corners, has_cls_token=backbone.type == "vit")
    if cfg.type in ("naive", "pup", "pup_aux") and backbone.type != "vit":
        raise ValueError(f"a {cfg.type!r} head needs a 'vit' backbone, not {backbone.type!r}")
    if cfg.type in ("mla", "mla_aux") and backbone.type != "vit_mla":
        raise ValueError(f"an {cfg.type!r} head needs a 'vit_mla' backbone, not {backbone.type!r}")
    if cfg.type == "naive":
        return NaiveHead(first_kernel=cfg.first_kernel, **token_head)
    if cfg.type == "pup":
        return PUPHead(**token_head)
    if cfg.type == "pup_aux":
        return PUPAuxHead(**token_head)
    if cfg.type == "mla":
        return MLAHead(num_classes, backbone.mla_channels, cfg.mlahead_channels, align_corners)
    if cfg.type == "mla_aux":
        return MLAAuxHead(cfg.in_index, num_classes, backbone.mla_channels, align_corners)
    raise ValueError(f"unknown head type {cfg.type!r}: expected one of {HEAD_TYPES}")


def build_model(cfg: ModelConfig, with_aux: bool = True) -> nn.Module:
    """Build the segmentor a config describes (random init; load weights separately)."""
    from .models.segmentor import EncoderDecoder

    backbone = build_backbone(cfg.backbone)
    decode_head = build_head(cfg.decode_head, cfg.backbone, cfg.num_classes, cfg.align_corners)
    aux = [build_head(h, cfg.backbone, cfg.num_classes, cfg.align_corners) for h in cfg.aux_heads] if with_aux else []
    return EncoderDecoder(backbone, decode_head, aux, cfg.num_classes, cfg.align_corners)
