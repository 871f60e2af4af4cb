"""The fields of a model-level SETR golden case (``setr_reference``) and the values we implement. Each field
is used to build or run the model, checked against what we build, or declared informational (provenance and
prose); anything else fails naming the field."""
from __future__ import annotations

from typing import Any, Mapping

from .fields import INFO, check_fields, one_of, unsupported

_EPS6 = one_of(1e-6)
_NORM = INFO  # a prose description of BatchNorm2d(eps=1e-5), which is what every head uses

_BACKBONE = {
    "type": one_of("vit", "vit_mla"), "reference_class": one_of("VisionTransformer", "VIT_MLA"),
    "img_size": INFO, "patch_size": INFO, "in_chans": 3, "embed_dim": INFO, "depth": INFO, "num_heads": INFO,
    "mlp_ratio": INFO, "qkv_bias": INFO, "qk_scale": None, "attn_scale": INFO, "layer_norm_eps": _EPS6,
    "act": "GELU (exact erf)", "pre_norm_blocks": True, "num_special_tokens": 1, "final_norm": None,
    "cls_token_handling": INFO, "outputs": INFO, "mla_index": INFO, "mla_channels": INFO,
    "mla_layer_norm_eps": _EPS6, "mla_norm": _NORM, "drop_rate": one_of(0.0), "attn_drop_rate": one_of(0.0),
    "drop_path_rate": one_of(0.0),
}

_TOKEN_HEAD = {  # naive / pup / pup_aux (VisionTransformerUpHead)
    "type": one_of("naive", "pup", "pup_aux"), "reference_class": "VisionTransformerUpHead", "in_index": INFO,
    "embed_dim": INFO, "layer_norm_eps": _EPS6, "head_channels": INFO, "num_conv": INFO,
    "num_upsample_layers": INFO, "conv3x3_conv1x1": one_of(True, False, None), "norm": _NORM,
    "upsampling_method": "bilinear", "align_corners": INFO, "img_size": INFO, "num_classes": INFO,
    "unused_conv_seg_in_channels": INFO,
}
_MLA_HEAD = {
    "type": "mla", "reference_class": "VIT_MLAHead", "in_index": INFO, "mla_channels": INFO,
    "mlahead_channels": INFO, "norm": _NORM, "branch_upsample": INFO, "cls_conv": INFO, "final_upsample": INFO,
    "align_corners": INFO, "img_size": INFO, "num_classes": INFO, "unused_conv_seg_in_channels": INFO,
}
_MLA_AUX = {
    "type": "mla_aux", "reference_class": "VIT_MLA_AUXIHead", "in_index": INFO, "in_channels": INFO,
    "convs": INFO, "align_corners": INFO, "img_size": INFO, "num_classes": INFO, "mla_channels": INFO,
    "norm": _NORM, "unused_conv_seg_in_channels": INFO,
}
# the structure each token head type has in the original configs
_TOKEN_SHAPES = {"naive": (2, 1), "pup": (4, 4), "pup_aux": (2, 2)}

CONFIG = {
    "name": INFO, "seed": INFO, "seed_config_file": INFO, "reference_repo": INFO, "weight_init": INFO,
    "narrowed_widths": INFO, "readme": INFO,
    "head_type": one_of("naive", "pup", "mla"), "num_classes": INFO, "align_corners": one_of(True, False),
    "backbone": _BACKBONE, "decode_head": INFO, "aux_heads": INFO,
    "test": {"mode": one_of("whole", "slide"), "crop_size": INFO, "stride": INFO, "note": INFO},
    "img_size": INFO, "slide_input_hw": INFO, "mmseg_model_cfg": INFO, "mmseg_test_cfg": INFO,
    "head_channels": INFO, "mla_channels": INFO, "mlahead_channels": INFO,
}
INPUTS = {"img": INFO, "img_slide": INFO, "aug_imgs": INFO, "aug_spec": INFO, "aug_ori_hw": INFO}
OUTPUTS = {k: INFO for k in ("backbone_outs", "decode_head_out", "aux_head_outs", "whole_logits", "whole_pred",
                             "slide_logits", "slide_windows", "slide_pred", "aug_fused_probs", "aug_pred")}


def _head(h: Mapping[str, Any], where: str) -> None:
    kind = h.get("type")
    if kind in _TOKEN_SHAPES:
        check_fields(h, _TOKEN_HEAD, where)
        convs, ups = _TOKEN_SHAPES[kind]
        if h.get("num_conv", convs) != convs:
            raise unsupported(f"{where}.num_conv", f"{h['num_conv']} ({kind} heads have {convs})")
        if h.get("num_upsample_layers", ups) != ups:
            raise unsupported(f"{where}.num_upsample_layers", f"{h['num_upsample_layers']} ({kind} heads have {ups})")
        if kind == "pup_aux" and h.get("conv3x3_conv1x1") is False:
            raise unsupported(f"{where}.conv3x3_conv1x1", "False (PUP aux heads are 3x3 + 1x1)")
    elif kind == "mla":
        check_fields(h, _MLA_HEAD, where)
    elif kind == "mla_aux":
        check_fields(h, _MLA_AUX, where)
        if h.get("in_channels") is not None and h.get("mla_channels") is not None \
                and h["in_channels"] != h["mla_channels"]:
            raise unsupported(f"{where}.in_channels", f"{h['in_channels']} (implemented: the MLA neck's width, "
                                                      f"{h['mla_channels']})")
    else:
        raise unsupported(f"{where}.type", f"value {kind!r} (naive, pup, pup_aux, mla, mla_aux)")


def validate_setr_case(case: Mapping[str, Any]) -> None:
    """Fail naming the field on anything in a SETR model-level case that the checker does not implement."""
    check_fields(case, {"config": INFO, "state_dict": INFO, "inputs": INPUTS, "outputs": OUTPUTS, "readme": INFO},
                 "")
    c = case["config"]
    check_fields(c, CONFIG, "config")
    _head(c["decode_head"], "config.decode_head")
    if c["decode_head"].get("type") != c["head_type"]:
        raise unsupported("config.decode_head.type", f"{c['decode_head'].get('type')!r} is not head_type "
                                                     f"{c['head_type']!r}")
    for i, h in enumerate(c.get("aux_heads", [])):
        _head(h, f"config.aux_heads.{i}")
    for i, spec in enumerate(case.get("inputs", {}).get("aug_spec", [])):
        where = f"inputs.aug_spec.{i}"
        check_fields(spec, {"scale": INFO, "flip": one_of(True, False),
                            "flip_direction": one_of("horizontal", "vertical", None), "hw": INFO}, where)
        if spec.get("flip") and spec.get("flip_direction") is None:
            raise unsupported(f"{where}.flip_direction", "a flipped view needs its direction")


def flip_of(spec: Mapping[str, Any]) -> str | None:
    """The direction an aug view was flipped in (None: not flipped)."""
    return (spec.get("flip_direction") or "horizontal") if spec.get("flip") else None
