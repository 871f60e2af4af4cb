"""Golden HLG cases computed by the (patched) original code (``tests/fixtures/hlg_reference/*.pt``).

A case is a dict with ``config`` (neutral field names), ``state_dict`` (original keys), ``input`` (an image, or
the list of four backbone maps for the head) and ``output`` (a tensor or a list of tensors). Three kinds:
``config["model"] == "HLG"`` with ``mode`` ``classification`` or ``dense_backbone``, and ``"HLGUPHead"``.
The model is built from ``config`` alone, loaded strictly, run in eval mode in fp32, and every output is
compared with tolerance ``1e-4 * max|expected|``.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..errors import SetrError
from ..models.heads.hlg_up import HLGUPHead
from ..models.hlg import BN_EPS, DPB_LAYER_NORM_EPS, HLG, LAYER_NORM_EPS
from .base import OutputCheck
from .hlg_fields import validate_hlg_case

HLG_RELATIVE_TOLERANCE = 1e-4


def hlg_from_reference(c: Mapping[str, Any]) -> HLG:
    """An ``HLG`` case config -> model (classification or dense backbone)."""
    _require(c, "global_token_pooling", "mean")
    _require(c, "stage4_global_self_attention", True)
    mode = c.get("mode") or ("dense_backbone" if c.get("dense_outputs") else "classification")
    if mode not in ("classification", "dense_backbone"):
        raise SetrError(f"unknown HLG mode {mode!r}")
    return HLG(
        embed_dims=c["embed_dims"], num_heads=c["num_heads"], depths=c["depths"], in_chans=c.get("in_chans", 3),
        num_classes=c.get("num_classes") or 0, window_size=c.get("window_size", 7),
        dilation_intervals=c.get("dilation_intervals", (8, 4, 2, 1)), mlp_ratio=c.get("mlp_ratio", 4),
        qkv_bias=c.get("qkv_bias", True), proj_bias=c.get("attn_proj_bias", True),
        drop_rate=c.get("drop_rate") or 0.0, attn_drop_rate=c.get("attn_drop_rate") or 0.0,
        drop_path_rate=c.get("drop_path_rate") or 0.0, dense=mode == "dense_backbone",
        norm_eps=c.get("layernorm_eps", LAYER_NORM_EPS), dpb_eps=c.get("dpb_layernorm_eps", DPB_LAYER_NORM_EPS),
        bn_eps=c.get("batchnorm_eps", BN_EPS))


def hlg_up_head_from_reference(c: Mapping[str, Any]) -> HLGUPHead:
    """An ``HLGUPHead`` case config -> head."""
    in_channels = list(c["in_channels"])
    return HLGUPHead(
        in_channels=in_channels, num_classes=c["num_classes"], channels=c["channels"], num_heads=c["num_heads"],
        depth=c.get("depth", len(c.get("block_types") or [0, 0])), window_size=c.get("window_size", 7),
        dilation_interval=c.get("dilation_interval", 8), block_types=c.get("block_types"),
        mlp_ratio=c.get("mlp_ratio", 4), qkv_bias=c.get("qkv_bias", False),
        norm_eps=c.get("layernorm_eps", 1e-5), in_index=c.get("in_index", tuple(range(len(in_channels)))),
        fuse_level=c.get("fuse_level", 0), align_corners=bool(c.get("align_corners", False)))


def build_from_reference(c: Mapping[str, Any]) -> nn.Module:
    kind = c.get("model")
    if kind == "HLG":
        return hlg_from_reference(c)
    if kind == "HLGUPHead":
        return hlg_up_head_from_reference(c)
    raise SetrError(f"unknown HLG reference model {kind!r}")


@torch.no_grad()
def check_hlg_case(case: Mapping[str, Any], device: str = "cpu") -> list[OutputCheck]:
    validate_hlg_case(case)
    model = build_from_reference(case["config"]).eval()
    try:
        model.load_state_dict(case["state_dict"], strict=True)
    except RuntimeError as e:
        raise SetrError(f"{case['config'].get('model')} case: state dict does not match: {e}") from None
    model = model.to(device)
    inp = case["input"]
    inp = [t.float().to(device) for t in inp] if isinstance(inp, (list, tuple)) else inp.float().to(device)
    got, want = model(inp), case["output"]
    got = [g.cpu() for g in got] if isinstance(got, (list, tuple)) else got.cpu()
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return [OutputCheck("output", float("inf"), 0.0, f"expected {len(want)} tensors")]
        return [_check(f"output[{i}]", g, w) for i, (g, w) in enumerate(zip(got, want))]
    return [_check("output", got, want)]


def _check(name: str, got: torch.Tensor, want: torch.Tensor) -> OutputCheck:
    scale = want.double().abs().max().item() if want.numel() else 0.0
    tol = HLG_RELATIVE_TOLERANCE * scale
    if tuple(got.shape) != tuple(want.shape):
        return OutputCheck(name, float("inf"), tol, f"shape {tuple(got.shape)} != {tuple(want.shape)}")
    err = (got.double() - want.double()).abs().max().item() if want.numel() else 0.0
    rel = err / scale if scale else err
    return OutputCheck(name, err, tol, f"shape {tuple(want.shape)}, relative error {rel:.2e}")


def _require(c: Mapping[str, Any], key: str, value: Any) -> None:
    if key in c and c[key] is not None and c[key] != value:
        raise SetrError(f"unsupported HLG setting {key}={c[key]!r} (only {value!r} is implemented)")
