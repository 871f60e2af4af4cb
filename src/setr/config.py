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
    aug_resize_mode: str = "short_side"  # resize rule of the multi-scale views (the _MS configs' setr_multi_scale)
    # directions of the flipped views ("horizontal", "vertical"); every SETR config: horizontal only
    flip_directions: tuple[str, ...] = ("horizontal",)


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
        from .overrides import dataclass_from_dict

        d = dict(d)
        if d.get("class_names") is not None and len(d["class_names"]) != d.get("num_classes", len(d["class_names"])):
            d["class_names"] = None  # saved before names followed num_classes: the preset's list, not this model's
        return dataclass_from_dict(cls, d)


def validate_model_config(cfg: ModelConfig) -> None:
    """Refuse a config that cannot build or cannot run, before anything is built or loaded: one line naming the
    ``--set`` key and what was expected (``SetrError``)."""
    from .errors import SetrError

    def bad(key: str, value: Any, expected: str) -> SetrError:
        shown = list(value) if isinstance(value, tuple) else value
        return SetrError(f"--set model.{key}={json.dumps(shown) if not isinstance(shown, str) else shown}: {expected}")

    def whole(key: str, value: Any, minimum: int = 1) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise bad(key, value, f"expected a whole number >= {minimum}")

    def size_pair(key: str, value: Any) -> None:
        if (not isinstance(value, (tuple, list)) or len(value) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
            raise bad(key, value, "expected two whole numbers >= 1 (H, W)")

    def rate(key: str, value: Any) -> None:
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise bad(key, value, "expected a probability in [0, 1)")

    whole("num_classes", cfg.num_classes)
    if cfg.class_names is not None and len(cfg.class_names) != cfg.num_classes:
        raise bad("class_names", cfg.class_names, f"names {len(cfg.class_names)} classes, model.num_classes is "
                                                  f"{cfg.num_classes}")
    bb = cfg.backbone
    if bb.type not in BACKBONE_TYPES:
        raise bad("backbone.type", bb.type, f"expected one of {', '.join(BACKBONE_TYPES)}")
    size_pair("backbone.img_size", bb.img_size)
    for key in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
        rate(f"backbone.{key}", getattr(bb, key))
    if bb.type == "hlg":
        lists = {"embed_dims": bb.embed_dims, "stage_heads": bb.stage_heads, "depths": bb.depths}
        for key, value in lists.items():
            if value is None or len(value) != 4 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                                       for v in value):
                raise bad(f"backbone.{key}", value, "an 'hlg' backbone needs 4 whole numbers >= 1 (one per stage)")
        for i, (dim, heads) in enumerate(zip(bb.embed_dims, bb.stage_heads)):
            if dim % heads:
                raise bad("backbone.embed_dims", bb.embed_dims, f"stage {i} width {dim} is not divisible by its "
                                                                f"{heads} heads (model.backbone.stage_heads)")
    else:
        whole("backbone.patch_size", bb.patch_size)
        whole("backbone.embed_dim", bb.embed_dim)
        whole("backbone.depth", bb.depth)
        whole("backbone.num_heads", bb.num_heads)
        if bb.embed_dim % bb.num_heads:
            raise bad("backbone.embed_dim", bb.embed_dim, f"not divisible by model.backbone.num_heads={bb.num_heads}")
        if not isinstance(bb.mlp_ratio, (int, float)) or bb.mlp_ratio <= 0:
            raise bad("backbone.mlp_ratio", bb.mlp_ratio, "expected a number > 0")
        if any(s % bb.patch_size for s in bb.img_size):
            raise bad("backbone.img_size", bb.img_size, f"not a multiple of model.backbone.patch_size={bb.patch_size}")
        if bb.type == "vit_mla":
            whole("backbone.mla_channels", bb.mla_channels)
            index = bb.mla_index or (5, 11, 17, 23)
            if len(index) != 4 or any(not -bb.depth <= i < bb.depth for i in index):
                raise bad("backbone.mla_index", index, f"expected 4 block indices in 0..{bb.depth - 1} "
                                                       f"(model.backbone.depth={bb.depth})")
    heads = [("decode_head", cfg.decode_head)] + [(f"aux_heads.{i}", h) for i, h in enumerate(cfg.aux_heads)]
    for where, h in heads:
        if h.type not in HEAD_TYPES:
            raise bad(f"{where}.type", h.type, f"unknown head type {h.type!r}, expected one of {', '.join(HEAD_TYPES)}")
        needs = {"naive": "vit", "pup": "vit", "pup_aux": "vit", "mla": "vit_mla", "mla_aux": "vit_mla",
                 "hlg_up": "hlg", "fcn": "hlg"}[h.type]
        if bb.type != needs:
            raise bad(f"{where}.type", h.type, f"needs a '{needs}' backbone, model.backbone.type is '{bb.type}'")
        whole(f"{where}.channels", h.channels)
        whole(f"{where}.mlahead_channels", h.mlahead_channels)
        rate(f"{where}.dropout_ratio", h.dropout_ratio)
        if h.first_kernel not in (1, 3):
            raise bad(f"{where}.first_kernel", h.first_kernel, "expected 1 or 3")
        if h.type == "hlg_up":
            whole(f"{where}.num_heads", h.num_heads)
            if h.channels % h.num_heads:
                raise bad(f"{where}.channels", h.channels, f"not divisible by model.{where}.num_heads={h.num_heads}")
        levels = h.type in ("mla_aux", "fcn")  # index the 4 feature levels, not the blocks
        limit = 4 if levels else bb.depth
        if h.type not in ("mla", "hlg_up") and (isinstance(h.in_index, bool) or not isinstance(h.in_index, int)
                                               or not -limit <= h.in_index < limit):
            raise bad(f"{where}.in_index", h.in_index, f"out of range for "
                      f"{'the 4 feature levels' if levels else f'a backbone of depth {bb.depth}'}")
    t = cfg.test
    if t.mode not in ("slide", "whole"):
        raise bad("test.mode", t.mode, "expected slide or whole")
    size_pair("test.crop_size", t.crop_size)
    size_pair("test.stride", t.stride)
    if t.img_scale is not None:
        size_pair("test.img_scale", t.img_scale)
    if t.resize_mode not in ("keep_ratio", "short_side"):
        raise bad("test.resize_mode", t.resize_mode, "expected keep_ratio or short_side")
    if not t.aug_ratios or any(not isinstance(r, (int, float)) or r <= 0 for r in t.aug_ratios):
        raise bad("test.aug_ratios", t.aug_ratios, "expected one or more scale ratios > 0")
    for key in ("mean", "std"):
        value = getattr(cfg, key)
        if len(value) != 3 or (key == "std" and any(v <= 0 for v in value)):
            raise bad(key, value, "expected 3 numbers (R, G, B)" + (", each > 0" if key == "std" else ""))


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
                      channels=cfg.channels, align_corners=align_corners, has_cls_token=backbone.type == "vit",
                      img_size=tuple(backbone.img_size))
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
        return MLAHead(num_classes, backbone.mla_channels, cfg.mlahead_channels, align_corners,
                       img_size=tuple(backbone.img_size))
    if cfg.type == "mla_aux":
        return MLAAuxHead(cfg.in_index, num_classes, backbone.mla_channels, align_corners,
                          img_size=tuple(backbone.img_size))
    raise ValueError(f"unknown head type {cfg.type!r}: expected one of {HEAD_TYPES}")


def build_model(cfg: ModelConfig, with_aux: bool = True) -> nn.Module:
    """Build the segmentor a config describes (random init; load weights separately)."""
    from .models.segmentor import EncoderDecoder

    validate_model_config(cfg)
    backbone = build_backbone(cfg.backbone)
    decode_head = build_head(cfg.decode_head, cfg.backbone, cfg.num_classes, cfg.align_corners)
    aux = [build_head(h, cfg.backbone, cfg.num_classes, cfg.align_corners) for h in cfg.aux_heads] if with_aux else []
    return EncoderDecoder(backbone, decode_head, aux, cfg.num_classes, cfg.align_corners)
