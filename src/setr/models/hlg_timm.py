"""HLG image classifiers registered with timm: after ``import setr``, ``timm.create_model("hlg_tiny",
num_classes=10, drop_path_rate=0.1)`` works like any timm model (registry, default configs, feature info;
``features_only=True, out_indices=(1, 2, 3)`` returns the stage maps, ``model.forward_intermediates(x)`` too).

No pretrained weights are hosted; the authors' released ImageNet checkpoints load from a local file with
``load_hlg_checkpoint`` (or ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``),
with depths inferred from the checkpoint's keys when they differ from the variant's.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..errors import SetrError
from ..io.weights import strip_module_prefix, unwrap_state_dict
from .hlg import HLG, HLG_VARIANTS, infer_hlg_kwargs, load_hlg_state_dict


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {"url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.875,
            "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
            "first_conv": "s0_conv.0.0", "classifier": "head", "license": "mit", **kwargs}


default_cfgs = generate_default_cfgs({f"hlg_{v}": _cfg() for v in HLG_VARIANTS})


def checkpoint_filter_fn(state_dict: dict[str, Any], model: HLG) -> dict[str, Any]:
    """The authors' files wrap the weights in ``{'model': ...}``; a head of another class count is dropped."""
    if "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    out = strip_module_prefix(state_dict)
    head = out.get("head.weight")
    if head is not None and (not model.num_classes or head.shape[0] != model.num_classes):
        out = {k: v for k, v in out.items() if not k.startswith("head.")}
    return out


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> HLG:
    args = {**HLG_VARIANTS[variant], **kwargs}
    # features_only=True: timm's FeatureGetterNet over HLG.forward_intermediates (the four stage maps at
    # strides 4, 8, 16, 32; ``out_indices`` picks among them)
    return build_model_with_cfg(HLG, f"hlg_{variant}", pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                pretrained_strict=False,
                                feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls="getter"), **args)


@register_model
def hlg_tiny(pretrained: bool = False, **kwargs: Any) -> HLG:
    return _create("tiny", pretrained, **kwargs)


@register_model
def hlg_small(pretrained: bool = False, **kwargs: Any) -> HLG:
    return _create("small", pretrained, **kwargs)


@register_model
def hlg_medium(pretrained: bool = False, **kwargs: Any) -> HLG:
    return _create("medium", pretrained, **kwargs)


@register_model
def hlg_large(pretrained: bool = False, **kwargs: Any) -> HLG:
    return _create("large", pretrained, **kwargs)


def read_hlg_state_dict(path: str | os.PathLike, trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    from ..io.weights import read_state_dict

    # unwraps {'model': ...}, {'state_dict': ...} and module. prefixes; .pth read with weights_only=True
    return read_state_dict(path, trust_checkpoint)


def load_hlg_checkpoint(path: str | os.PathLike | Mapping[str, Any], variant: str | None = None,
                        trust_checkpoint: bool = False, source: str | None = None, **kwargs: Any) -> tuple[HLG, dict]:
    """Build the HLG a checkpoint holds and load it strictly. Depths, widths, heads and the class count come
    from the file's keys; ``variant`` is checked against the widths (a checkpoint of another variant is an
    error) and a depth difference is reported, not refused (Medium/Large were released with several depths).
    ``trust_checkpoint``: load pickled Python objects other than tensors too (unsafe: only for trusted files).
    ``path`` may also be a state dict already in memory (e.g. a training checkpoint's EMA weights); ``source``
    then names it in messages."""
    if isinstance(path, Mapping):
        state, path = path, source or "<state_dict>"
        sd = unwrap_state_dict(state, path)
    else:
        sd = read_hlg_state_dict(path, trust_checkpoint)
    try:
        arch = infer_hlg_kwargs(sd)
    except (KeyError, ValueError) as exc:
        raise SetrError(f"{path}: not an HLG checkpoint ({exc})") from None
    notes = []
    if variant is not None:
        want = HLG_VARIANTS[variant]
        if tuple(want["embed_dims"]) != arch["embed_dims"]:
            raise SetrError(f"{path}: checkpoint has widths {list(arch['embed_dims'])}, hlg_{variant} has "
                            f"{list(want['embed_dims'])}: it belongs to another variant")
        if tuple(want["depths"]) != arch["depths"]:
            notes.append(f"checkpoint depths {list(arch['depths'])} differ from hlg_{variant}'s "
                         f"{list(want['depths'])}; using the checkpoint's")
    model = HLG(embed_dims=arch["embed_dims"], num_heads=arch["num_heads"], depths=arch["depths"],
                num_classes=arch["num_classes"], dense=arch["dense"], **kwargs)
    try:
        load_hlg_state_dict(model, sd)
    except RuntimeError as exc:
        raise SetrError(f"{path}: {exc}") from None
    return model, {**arch, "notes": notes}
