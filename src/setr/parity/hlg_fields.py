"""The fields of an HLG golden case (``hlg_reference``) and the values we implement; anything else fails
naming the field. The prose fields name semantics: only the wording of what we implement is accepted."""
from __future__ import annotations

from typing import Any, Mapping

from .fields import INFO, check_fields, one_of

_PADDING = ("zero pad right/bottom to multiple of 7 (window blocks) or of the interval (dilated blocks); "
            "no attention mask")
_DENSE = ("strides 4,8,16,32; channels = embed_dims; stage outputs LayerNorm-ed and the normed tensor feeds "
          "the next stage")

HLG = {
    "model": "HLG", "mode": one_of("classification", "dense_backbone"), "embed_dims": INFO, "num_heads": INFO,
    "depths": INFO, "in_chans": INFO, "num_classes": INFO, "window_size": INFO, "dilation_intervals": INFO,
    "stage4_global_self_attention": True, "mlp_ratio": INFO,
    "mlp_hidden_channels": "mlp_ratio * block_input_channels", "qkv_bias": INFO, "attn_proj_bias": INFO,
    "layernorm_eps": INFO, "dpb_layernorm_eps": INFO, "batchnorm_eps": INFO, "dpb_hidden_dim": "embed_dim // 16",
    "global_token_pooling": "mean", "drop_rate": INFO, "attn_drop_rate": INFO, "drop_path_rate": INFO,
    "dense_outputs": one_of(None, _DENSE), "classifier": one_of(None, "final LayerNorm -> mean over tokens -> Linear"),
    "padding": _PADDING, "downsample_rounding": "ceil(H/2)", "reference": INFO, "tolerance_hint": INFO,
}
HLG_UP_HEAD = {
    "model": "HLGUPHead", "in_channels": INFO, "channels": INFO, "num_heads": INFO, "depth": INFO,
    "window_size": INFO, "dilation_interval": INFO, "mlp_ratio": INFO, "qkv_bias": INFO, "layernorm_eps": INFO,
    "num_classes": INFO, "fuse_level": INFO, "block_types": INFO, "in_index": INFO, "align_corners": INFO,
    "output": "logits upsampled x4 to (4H, 4W), bilinear, align_corners=False",
    # the exact text the golden cases carry in this field (a plain value must be equal), not a pointer of ours
    "bias_semantics": "head 4-tuple rule, see specs/hlg.md", "reference": INFO,
}


def validate_hlg_case(case: Mapping[str, Any]) -> None:
    check_fields(case, {"config": INFO, "state_dict": INFO, "input": INFO, "output": INFO, "readme": INFO}, "")
    c = case["config"]
    check_fields(c, HLG if c.get("model") == "HLG" else HLG_UP_HEAD, "config")
    if c.get("model") == "HLG":
        dense = c.get("mode") == "dense_backbone"
        if dense != (c.get("dense_outputs") is not None) or dense == (c.get("classifier") is not None):
            from .fields import unsupported

            raise unsupported("config.mode", f"{c.get('mode')!r} does not agree with dense_outputs / classifier")
