"""The fields of a RetinaNet-HLG inference golden case (``retinanet_hlg/infer_*.pt``) and the values we implement.
Each field is used to build or run the detector, compared with what we compute, or declared informational
(provenance, seeds, prose); anything else fails naming the field."""
from __future__ import annotations

from typing import Any, Mapping

from ..detection.model import FPN_STRIDES
from ..detection.pipeline import IMG_NORM_MEAN, IMG_NORM_STD
from .fields import INFO, check_fields, equals, one_of, unsupported

INFERENCE_KIND = "retinanet_hlg_inference"


def _positive_int(value: Any, path: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise unsupported(path, f"value {value!r} is not a positive integer")


def _int_list(n: int):
    def check(value: Any, path: str) -> None:
        if not isinstance(value, (list, tuple)) or len(value) != n or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise unsupported(path, f"value {value!r} is not {n} positive integers")
    return check


def _number(value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise unsupported(path, f"value {value!r} is not a number")


_BACKBONE = {
    "type": "HLGTransformer", "embed_dims": _int_list(4), "num_heads": _int_list(4), "depths": _int_list(4),
    "in_chans": 3, "qkv_bias": True, "drop_rate": one_of(0.0), "h0_att": False, "proj_dwconv": "convbn",
    "downsampling": ["c", "sc", "sc", "sc"], "h0_h1_method": "mean", "crs_interval": [8, 4, 2, 1],
    "dynamic_position_bias": True,
    # accepted and ignored by the original class (specs/hlg.md resolution 21), so nothing to implement
    "img_size": INFO, "patch_size": INFO, "mlp_ratios": INFO, "sr_ratios": INFO, "num_classes": INFO,
    "use_checkpoint": INFO,  # activation checkpointing: memory, not arithmetic
    "drop_path_rate": INFO,  # stochastic depth is off in eval mode
    "pretrained": INFO,  # the case's state_dict holds every weight
}
_ANCHORS = {"type": "AnchorGenerator", "octave_base_scale": _number, "scales_per_octave": _positive_int,
            "ratios": INFO, "strides": list(FPN_STRIDES)}
_CODER = {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0, 0.0, 0.0, 0.0], "target_stds": [1.0, 1.0, 1.0, 1.0]}
_HEAD = {
    "type": "RetinaHead", "num_classes": _positive_int, "in_channels": _positive_int, "stacked_convs": _positive_int,
    "feat_channels": _positive_int, "anchor_generator": _ANCHORS, "bbox_coder": _CODER,
    "loss_cls": INFO, "loss_bbox": INFO,  # training only: the inference case runs no loss
}
TEST_CFG = {"nms_pre": _positive_int, "min_bbox_size": one_of(0), "score_thr": _number,
            "nms": {"type": "nms", "iou_threshold": _number}, "max_per_img": _positive_int}
_NECK = {"type": "FPN", "in_channels": _int_list(4), "out_channels": _positive_int, "start_level": 1,
         "add_extra_convs": "on_input", "num_outs": len(FPN_STRIDES), "relu_before_extra_convs": False}
MODEL_CFG = {"type": "RetinaNet", "backbone": _BACKBONE, "neck": _NECK, "bbox_head": _HEAD,
             "train_cfg": INFO,  # the assigner settings of training: unused by inference
             "test_cfg": TEST_CFG, "pretrained": INFO}
_NORM = {"mean": equals(list(IMG_NORM_MEAN), "the pipeline's mean"),
         "std": equals(list(IMG_NORM_STD), "the pipeline's std"), "to_rgb": True}
CONFIG = {
    "name": INFO, "kind": INFERENCE_KIND, "reference": INFO, "original_config": INFO, "model_cfg": MODEL_CFG,
    "narrowing": INFO, "test_pipeline": INFO,  # checked step by step in validate_retinanet_case
    "img_scale": _int_list(2), "samples_per_gpu": _positive_int, "test_cfg": TEST_CFG, "img_norm_cfg": _NORM,
    "seeds": INFO, "init": INFO, "head_rule": INFO, "bn_calibration": INFO, "photographs": INFO,
    "subsampling": {"cls_scores_sub": INFO, "bbox_preds_sub": INFO, "cls_channel_step": _positive_int,
                    "level_steps": _int_list(len(FPN_STRIDES)), "bbox_level_steps": _int_list(len(FPN_STRIDES))},
    "notes": INFO, "notes_ref": INFO,
}
_DIGEST = {k: INFO for k in ("shape", "sha256_float32", "sum", "abs_sum", "sq_sum", "min", "max", "channel_mean",
                             "row_mean", "col_mean")}  # every one compared by the checker
RESULT = {
    "file": INFO, "photo": INFO, "crop": INFO, "meta_keys": INFO, "robustness": INFO,
    "min_gap_between_kept_scores": INFO,
    "flip": False, "flip_direction": one_of(None),
    # compared by the checker
    "ori_shape": INFO, "img_shape": INFO, "pad_shape": INFO, "batch_input_shape": INFO, "scale_factor": INFO,
    "input_digest": _DIGEST, "input_sub": INFO, "featmap_sizes": INFO, "cls_scores_sub": INFO,
    "bbox_preds_sub": INFO, "candidates": INFO, "det_bboxes": INFO, "det_labels": INFO, "num_dets": INFO,
}


def _pipeline(steps: Any, c: Mapping[str, Any]) -> None:
    where = "config.test_pipeline"
    if not isinstance(steps, (list, tuple)) or len(steps) != 2:
        raise unsupported(where, "expected [LoadImageFromFile, MultiScaleFlipAug]")
    check_fields(steps[0], {"type": "LoadImageFromFile", "to_float32": False, "color_type": "color"}, f"{where}.0")
    aug = {"type": "MultiScaleFlipAug", "img_scale": equals(tuple(c["img_scale"]), "config.img_scale"),
           "flip": False, "transforms": INFO}
    check_fields(steps[1], aug, f"{where}.1")
    specs = {
        "Resize": {"type": "Resize", "keep_ratio": True},
        "RandomFlip": {"type": "RandomFlip"},
        "Normalize": {"type": "Normalize", **_NORM},
        "Pad": {"type": "Pad", "size_divisor": _positive_int},
        "ImageToTensor": {"type": "ImageToTensor", "keys": ["img"]},
        "DefaultFormatBundle": {"type": "DefaultFormatBundle"},
        "Collect": {"type": "Collect", "keys": ["img"], "meta_keys": INFO},
    }
    order = [t.get("type") if isinstance(t, Mapping) else None for t in steps[1].get("transforms", [])]
    expected = ["Resize", "RandomFlip", "Normalize", "Pad", ("ImageToTensor", "DefaultFormatBundle"), "Collect"]
    if len(order) != len(expected) or not all(o == e or (isinstance(e, tuple) and o in e)
                                              for o, e in zip(order, expected)):
        raise unsupported(f"{where}.1.transforms", f"steps {order} (implemented: Resize, RandomFlip, Normalize, "
                                                    "Pad, ImageToTensor or DefaultFormatBundle, Collect)")
    for i, t in enumerate(steps[1]["transforms"]):
        check_fields(t, specs[t["type"]], f"{where}.1.transforms.{i}")


def validate_retinanet_case(case: Mapping[str, Any]) -> None:
    """Fail naming the field on anything in an inference case that the checker does not implement."""
    check_fields(case, {"config": INFO, "state_dict": INFO, "results": INFO, "readme": INFO}, "")
    c = case["config"]
    check_fields(c, CONFIG, "config")
    m = c["model_cfg"]
    if list(m["neck"]["in_channels"]) != list(m["backbone"]["embed_dims"]):
        raise unsupported("config.model_cfg.neck.in_channels", f"{m['neck']['in_channels']} differs from the "
                                                               f"backbone's embed_dims {m['backbone']['embed_dims']}")
    if m["bbox_head"]["in_channels"] != m["neck"]["out_channels"]:
        raise unsupported("config.model_cfg.bbox_head.in_channels", "differs from the FPN's out_channels")
    if dict(c["test_cfg"]) != dict(m["test_cfg"]):
        raise unsupported("config.test_cfg", "differs from config.model_cfg.test_cfg")
    _pipeline(c["test_pipeline"], c)
    if not isinstance(case["results"], (list, tuple)) or not case["results"]:
        raise unsupported("results", "expected a non-empty list")
    for i, r in enumerate(case["results"]):
        check_fields(r, RESULT, f"results.{i}")
