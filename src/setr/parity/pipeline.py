"""Image-level golden cases (``setr_pipeline``): real photographs through the original's whole test pipeline.

The case names a preset and the ``--set`` list that narrows it; its ``test_pipeline`` and ``test_cfg`` are
turned into the ``model.test.*`` settings they mean, and every other field is either verified against the
model we build or declared informational. Then the user-facing entry point does the work:
``Segmenter.from_checkpoint(<state_dict saved as an original .pth>, preset=..., overrides=..., precision="fp32")
.segment(<image file>)``.
"""
from __future__ import annotations

import tempfile
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import SetrError
from .fields import INFO, check_fields, equals, one_of, unsupported

PROB_TOLERANCE = 1e-4  # max |probability - golden| at the stored pixels (the case README's tolerance)

_PROVENANCE = {k: INFO for k in ("name", "reference_repo", "mmcv", "original_config", "seed",
                                 "test_pipeline_changes")}


def is_pipeline_case(case: Mapping[str, Any]) -> bool:
    return isinstance(case.get("config"), Mapping) and "test_pipeline" in case["config"] and "results" in case


# ---------------------------------------------------------------------------------------------- pipeline
def pipeline_overrides(config: Mapping[str, Any]) -> list[str]:
    """The ``--set`` list that makes our test pipeline the case's ``test_pipeline`` + ``test_cfg`` (fails
    naming the field on any step, argument or value we do not implement)."""
    sets: list[str] = []
    steps = list(config["test_pipeline"])
    if not steps or not isinstance(steps[0], Mapping) or steps[0].get("type") != "LoadImageFromFile":
        raise unsupported("config.test_pipeline.0", "the pipeline must start with LoadImageFromFile")
    check_fields(steps[0], {"type": INFO, "to_float32": False, "color_type": "color",
                            "imdecode_backend": "cv2"}, "config.test_pipeline.0")
    if len(steps) != 2 or steps[1].get("type") != "MultiScaleFlipAug":
        raise unsupported("config.test_pipeline", "expected [LoadImageFromFile, MultiScaleFlipAug(...)]")
    aug = steps[1]
    where = "config.test_pipeline.1"
    check_fields(aug, {"type": INFO, "img_scale": INFO, "img_ratios": INFO, "flip": one_of(True, False),
                       "flip_direction": INFO, "transforms": INFO}, where)
    scale = aug.get("img_scale")
    if scale is None or isinstance(scale, list) and scale and isinstance(scale[0], (list, tuple)):
        raise unsupported(f"{where}.img_scale", f"value {scale!r}: one (long, short) scale is implemented")
    sets.append(f"model.test.img_scale={[int(s) for s in scale]}")
    ratios = aug.get("img_ratios")
    flip = bool(aug.get("flip", False))
    multi_view = flip or ratios is not None
    if isinstance(ratios, (int, float)):
        ratios = [ratios]
    directions = aug.get("flip_direction", "horizontal")
    directions = [directions] if isinstance(directions, str) else list(directions)
    for i, d in enumerate(directions):
        if d not in ("horizontal", "vertical"):
            raise unsupported(f"{where}.flip_direction.{i}", f"value {d!r} (horizontal or vertical)")
    sets += [f"model.test.aug={multi_view}", f"model.test.aug_flip={flip}",
             f"model.test.flip_directions={directions}"]
    if multi_view:
        sets.append(f"model.test.aug_ratios={[float(r) for r in (ratios or [1.0])]}")
    resize_mode = _transforms(aug.get("transforms", []), f"{where}.transforms", config, sets)
    sets.append(f"model.test.{'aug_resize_mode' if multi_view else 'resize_mode'}={resize_mode}")
    return sets


def _transforms(transforms, where: str, config: Mapping[str, Any], sets: list[str]) -> str:
    kinds = [t.get("type") for t in transforms]
    if kinds != ["Resize", "RandomFlip", "Normalize", "ImageToTensor", "Collect"]:
        raise unsupported(where, f"steps {kinds}: implemented is [Resize, RandomFlip, Normalize, ImageToTensor, "
                                 "Collect]")
    resize, _, norm, _, _ = transforms
    crop = tuple(config.get("test_cfg", {}).get("crop_size", ()))
    check_fields(resize, {"type": INFO, "keep_ratio": True, "setr_multi_scale": one_of(True, False),
                          "crop_size": equals(crop, "test_cfg.crop_size"), "dataset": "pascal_context"},
                 f"{where}.0")
    short_side = bool(resize.get("setr_multi_scale")) or resize.get("dataset") == "pascal_context"
    if resize.get("setr_multi_scale") and "crop_size" not in resize:
        raise unsupported(f"{where}.0.crop_size", "setr_multi_scale needs the crop size")
    check_fields(transforms[1], {"type": INFO}, f"{where}.1")
    check_fields(norm, {"type": INFO, "mean": INFO, "std": INFO, "to_rgb": True}, f"{where}.2")
    sets += [f"model.mean={[float(v) for v in norm['mean']]}", f"model.std={[float(v) for v in norm['std']]}"]
    check_fields(transforms[3], {"type": INFO, "keys": ["img"]}, f"{where}.3")
    check_fields(transforms[4], {"type": INFO, "keys": ["img"], "meta_keys": INFO}, f"{where}.4")
    return "short_side" if short_side else "keep_ratio"


def test_cfg_overrides(test_cfg: Mapping[str, Any]) -> list[str]:
    check_fields(test_cfg, {"mode": one_of("slide", "whole"), "crop_size": INFO, "stride": INFO},
                 "config.test_cfg")
    sets = [f"model.test.mode={test_cfg['mode']}"]
    for key in ("crop_size", "stride"):
        if key in test_cfg:
            v = test_cfg[key]
            sets.append(f"model.test.{key}={[int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]}")
    return sets


# ---------------------------------------------------------------------------------------------- model dict
def check_mmseg_model_cfg(m: Mapping[str, Any], cfg) -> None:
    """Verify the original's model dict against the ModelConfig we built from the preset + overrides."""
    bb, head = cfg.backbone, cfg.decode_head
    norm = {"type": one_of("SyncBN", "BN"), "requires_grad": INFO}  # eval: both are BatchNorm2d
    backbone_type = {"VisionTransformer": "vit", "VIT_MLA": "vit_mla"}
    kind = m.get("backbone", {}).get("type")
    if backbone_type.get(kind) != bb.type:
        raise unsupported("config.mmseg_model_cfg.backbone.type", f"{kind!r} differs from the preset's {bb.type!r}")
    backbone_spec = {
        "type": INFO, "model_name": INFO, "random_init": INFO, "drop_rate": INFO, "attn_drop_rate": INFO,
        "drop_path_rate": INFO, "norm_cfg": norm, "in_chans": 3, "pos_embed_interp": True, "qk_scale": None,
        "img_size": equals(bb.img_size[0], "model.backbone.img_size"),
        "patch_size": equals(bb.patch_size, "model.backbone.patch_size"),
        "embed_dim": equals(bb.embed_dim, "model.backbone.embed_dim"),
        "depth": equals(bb.depth, "model.backbone.depth"),
        "num_heads": equals(bb.num_heads, "model.backbone.num_heads"),
        "mlp_ratio": equals(bb.mlp_ratio, "model.backbone.mlp_ratio"),
        "qkv_bias": equals(bb.qkv_bias, "model.backbone.qkv_bias"),
        "num_classes": equals(cfg.num_classes, "model.num_classes"),
        "align_corners": equals(cfg.align_corners, "model.align_corners"),
        "mla_channels": equals(bb.mla_channels, "model.backbone.mla_channels"),
        "mla_index": equals(tuple(bb.mla_index or ()), "model.backbone.mla_index"),
    }
    if bb.img_size[0] != bb.img_size[1]:
        raise SetrError("model.backbone.img_size: the original's models are square")
    head_kind = {"VisionTransformerUpHead": ("naive", "pup"), "VIT_MLAHead": ("mla",)}
    h = m.get("decode_head", {})
    if head.type not in head_kind.get(h.get("type"), ()):
        raise unsupported("config.mmseg_model_cfg.decode_head.type",
                          f"{h.get('type')!r} differs from the preset's {head.type!r} head")
    head_spec = {
        "type": INFO, "in_channels": INFO, "channels": INFO,  # the unused conv_seg's width
        "norm_cfg": norm, "loss_decode": INFO, "upsampling_method": "bilinear", "dropout_ratio": INFO,
        "img_size": equals(bb.img_size[0], "model.backbone.img_size"),
        "embed_dim": equals(bb.embed_dim, "model.backbone.embed_dim"),
        "num_classes": equals(cfg.num_classes, "model.num_classes"),
        "align_corners": equals(cfg.align_corners, "model.align_corners"),
        "in_index": equals(head.in_index, "model.decode_head.in_index"),
        "head_channels": equals(head.channels, "model.decode_head.channels"),
        "num_conv": equals(2 if head.type == "naive" else 4, f"a {head.type} head"),
        "num_upsampe_layer": equals(1 if head.type == "naive" else 4, f"a {head.type} head"),
        "conv3x3_conv1x1": equals(head.first_kernel == 3, "model.decode_head.first_kernel == 3"),
        "mla_channels": equals(bb.mla_channels, "model.backbone.mla_channels"),
        "mlahead_channels": equals(head.mlahead_channels, "model.decode_head.mlahead_channels"),
    }
    check_fields(m, {"type": "EncoderDecoder", "backbone": backbone_spec, "decode_head": head_spec,
                     "auxiliary_head": INFO, "pretrained": None}, "config.mmseg_model_cfg")
    # auxiliary heads do not take part in inference


# ---------------------------------------------------------------------------------------------- the check
def _unpack(field: Mapping[str, Any], hw: tuple[int, int], bits: bool = False) -> np.ndarray:
    raw = zlib.decompress(field["zlib"])
    if bits:
        return np.unpackbits(np.frombuffer(raw, np.uint8))[: hw[0] * hw[1]].reshape(hw).astype(bool)
    return np.frombuffer(raw, np.dtype(field["dtype"])).reshape(tuple(field["shape"]))


def case_overrides(case: Mapping[str, Any]) -> list[str]:
    """Every setting of the case as ``--set`` strings (the preset's narrowing first, then the pipeline)."""
    c = case["config"]
    return [*c.get("setr_overrides", []), *test_cfg_overrides(c["test_cfg"]), *pipeline_overrides(c)]


def check_pipeline_case(case: Mapping[str, Any], device: str = "cpu", image_dir: str | Path | None = None):
    """Run every image of an image-level case through ``Segmenter`` and compare with the original."""
    from ..inference import Segmenter
    from .base import OutputCheck

    check_fields(case, {"config": INFO, "state_dict": INFO, "results": INFO, "readme": INFO}, "")
    c = case["config"]
    check_fields(c, {**_PROVENANCE, "num_classes": INFO, "sub": INFO, "margin": INFO, "mmseg_model_cfg": INFO,
                     "test_cfg": INFO, "test_pipeline": INFO, "flip_direction": INFO, "setr_preset": INFO,
                     "setr_overrides": INFO, "images": INFO}, "config")
    overrides = case_overrides(case)
    pipeline_dirs = pipeline_overrides(c)
    declared = c.get("flip_direction")
    if declared is not None:
        declared = [declared] if isinstance(declared, str) else list(declared)
        if f"model.test.flip_directions={declared}" not in pipeline_dirs:
            raise unsupported("config.flip_direction", f"{declared} differs from the pipeline's flip_direction")
    image_dir = Path(image_dir) if image_dir else None
    checks = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "original_checkpoint.pth"
        torch.save({"meta": {}, "state_dict": dict(case["state_dict"])}, weights)
        seg = Segmenter.from_checkpoint(weights, preset=c["setr_preset"], overrides=overrides, precision="fp32",
                                        device=device)
    if seg.cfg.num_classes != c["num_classes"]:
        raise unsupported("config.num_classes", f"{c['num_classes']} differs from the model's {seg.cfg.num_classes}")
    check_mmseg_model_cfg(c["mmseg_model_cfg"], seg.cfg)
    sub, margin = int(c["sub"]), float(c["margin"])
    for name in c["images"]:
        if name not in case["results"]:
            raise unsupported(f"config.images.{name}", "no results for this image")
        r = case["results"][name]
        where = f"results.{name}"
        check_fields(r, {"ori_hw": INFO, "views": INFO, "probs_sub": INFO, "pred": INFO, "confident": INFO,
                         "confident_fraction": INFO}, where)
        path = _image_path(name, image_dir)
        out = seg.segment(path)
        hw = tuple(out.labels.shape)
        if hw != tuple(r["ori_hw"]):
            raise SetrError(f"{path}: image is {hw}, the case says {tuple(r['ori_hw'])}")
        _check_views(seg.views(hw), r["views"], f"{where}.views")
        want = torch.as_tensor(r["probs_sub"]).double()
        got = out.probs[:, ::sub, ::sub].double().cpu()
        err = (got - want).abs().max().item() if got.shape == want.shape else float("inf")
        checks.append(OutputCheck(f"{name}.probs", err, PROB_TOLERANCE))
        pred = _unpack(r["pred"], hw)
        confident = _unpack(r["confident"], hw, bits=True)
        wrong = int(((out.labels != pred) & confident).sum())
        checks.append(OutputCheck(f"{name}.labels", float(wrong), 0.0,
                                  f"pixels with another label where the original is confident (margin > {margin})"))
    return checks


def _check_views(ours, theirs, where: str) -> None:
    if len(ours) != len(theirs):
        raise SetrError(f"{where}: the case has {len(theirs)} views, our pipeline makes {len(ours)}")
    for i, (v, t) in enumerate(zip(ours, theirs)):
        check_fields(t, {"img_shape": INFO, "flip": INFO, "flip_direction": INFO, "scale": INFO}, f"{where}.{i}")
        shape = tuple(t["img_shape"][:2])
        flip = t["flip_direction"] if t["flip"] else None
        if shape != tuple(v.size) or flip != v.flip:
            raise SetrError(f"{where}.{i}: the original's view is {shape} flip={flip}, ours {tuple(v.size)} "
                            f"flip={v.flip}")


def _image_path(name: str, image_dir: Path | None) -> Path:
    if image_dir is None:
        raise SetrError(f"image {name!r}: pass the folder holding <image>.png (the case's folder)")
    for suffix in (".png", ".jpg", ".jpeg"):
        if (image_dir / f"{name}{suffix}").is_file():
            return image_dir / f"{name}{suffix}"
    raise SetrError(f"{image_dir / name}.png: image of the case not found")
