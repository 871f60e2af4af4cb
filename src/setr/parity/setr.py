"""Golden SETR cases computed by the original code (``tests/fixtures/setr_reference/*.pt``): build the model a
case's ``config`` describes, load its original-format ``state_dict`` through the same converter users get, run
every output the case names and report the max abs error of each."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from ..model_files import load_weights
from ..config import BackboneConfig, HeadConfig, ModelConfig, TestConfig, build_model
from ..errors import SetrError
from .base import OutputCheck
from .setr_fields import flip_of, validate_setr_case

SETR_TOLERANCE = 2e-5

# reference widths that the original hard-codes; a fixture's config may narrow them
DEFAULT_HEAD_CHANNELS = 256
DEFAULT_MLA_CHANNELS = 256
DEFAULT_MLAHEAD_CHANNELS = 128


def setr_config_from_reference(c: Mapping[str, Any]) -> ModelConfig:
    """A SETR fixture's ``config`` -> ModelConfig (every field read from the config, none from the file name)."""
    bb = c["backbone"]
    head_dim = bb["embed_dim"] // bb["num_heads"]
    scale = bb.get("attn_scale")
    if bb.get("qk_scale") is not None or (scale is not None and abs(scale - head_dim ** -0.5) > 1e-12):
        raise SetrError(f"unsupported attention scale {scale} (only head_dim**-0.5 is implemented)")
    if bb.get("layer_norm_eps", 1e-6) != 1e-6:
        raise SetrError(f"unsupported LayerNorm eps {bb['layer_norm_eps']}")
    head_channels = c.get("head_channels") or DEFAULT_HEAD_CHANNELS
    mla_channels = c.get("mla_channels") or bb.get("mla_channels") or DEFAULT_MLA_CHANNELS
    mlahead_channels = c.get("mlahead_channels") or DEFAULT_MLAHEAD_CHANNELS
    backbone = BackboneConfig(
        type=bb["type"], img_size=_hw(bb["img_size"]), patch_size=bb["patch_size"], embed_dim=bb["embed_dim"],
        depth=bb["depth"], num_heads=bb["num_heads"], mlp_ratio=bb.get("mlp_ratio", 4.0),
        qkv_bias=bb.get("qkv_bias", True),
        mla_index=tuple(bb["mla_index"]) if bb.get("mla_index") is not None else None, mla_channels=mla_channels)

    def head(h: Mapping[str, Any], weight: float) -> HeadConfig:
        kind = h["type"]
        if kind == "naive" and h.get("num_upsample_layers", 1) != 1:
            raise SetrError(f"unsupported naive head with {h['num_upsample_layers']} upsample layers")
        first_kernel = 3 if (kind == "naive" and h.get("conv3x3_conv1x1")) else 1
        in_index = h.get("in_index")
        return HeadConfig(type=kind, in_index=in_index if isinstance(in_index, int) else -1,
                          channels=h.get("head_channels") or head_channels, first_kernel=first_kernel,
                          mlahead_channels=h.get("mlahead_channels") or mlahead_channels, loss_weight=weight)

    t = c.get("test", {})
    crop = _hw(t.get("crop_size", bb["img_size"]))
    return ModelConfig(
        num_classes=c["num_classes"], backbone=backbone, decode_head=head(c["decode_head"], 1.0),
        aux_heads=[head(h, 0.4) for h in c.get("aux_heads", [])], align_corners=bool(c.get("align_corners", False)),
        test=TestConfig(mode=t.get("mode", "whole"), crop_size=crop, stride=_hw(t.get("stride", crop))))


def _hw(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    if tuple(a.shape) != tuple(b.shape):
        return float("inf")
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def _label_mismatch(scores: torch.Tensor, want: torch.Tensor, tol: float) -> float:
    """Fraction of pixels whose argmax differs from the reference label map, not counting pixels where our
    scores for the two labels tie within ``tol`` (there float noise alone decides the argmax)."""
    got = scores.argmax(1)
    if tuple(got.shape) != tuple(want.shape):
        return float("inf")
    want = want.long()
    differ = got != want
    if differ.any():
        gap = scores.gather(1, got[:, None]) - scores.gather(1, want[:, None].clamp(0, scores.shape[1] - 1))
        differ &= gap[:, 0] > tol
    return differ.float().mean().item()


def _to(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, (list, tuple)):
        return [_to(v, device) for v in x]
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x


@torch.no_grad()
def check_setr_case(case: Mapping[str, Any], device: str = "cpu") -> list[OutputCheck]:
    validate_setr_case(case)
    cfg = setr_config_from_reference(case["config"])
    model = build_model(cfg).eval()
    load_weights(model, case["state_dict"], source=case["config"].get("name", "<case>"))
    model = model.to(device)
    inp, ref = _to(case["inputs"], device), _to(case["outputs"], device)
    img = inp["img"].float()
    tol = SETR_TOLERANCE
    checks: list[OutputCheck] = []

    def add(name: str, fn: Callable[[], torch.Tensor | list[torch.Tensor]]) -> None:
        if name not in ref:
            return
        got, want = fn(), ref[name]
        if isinstance(want, (list, tuple)):
            errs = [_max_err(g, w) for g, w in zip(got, want)]
            err = max(errs) if len(got) == len(want) else float("inf")
            checks.append(OutputCheck(name, err, tol, f"{len(want)} tensors"))
        else:
            checks.append(OutputCheck(name, _max_err(got, want), tol))

    feats = model.backbone(img)
    grid = model.backbone.token_grid(img.shape[-2:])
    size = img.shape[-2:]
    add("backbone_outs", lambda: feats)
    # each head's own output, at the head's natural size (PUP: 16x the token grid, not necessarily the image's)
    add("decode_head_out", lambda: model.decode_head(feats, grid=grid))
    add("aux_head_outs", lambda: [h(feats, grid=grid) for h in model.auxiliary_head])
    whole = model.whole_inference(img, ori_hw=size)
    add("whole_logits", lambda: whole)
    crop, stride = cfg.test.crop_size, cfg.test.stride
    if "img_slide" in inp:
        slide_img = inp["img_slide"].float()
        slide = model.slide_inference(slide_img, crop, stride, ori_hw=slide_img.shape[-2:])
        add("slide_logits", lambda: slide)
        if "slide_windows" in ref:
            from ..models.segmentor import slide_windows

            got = [list(w) for w in slide_windows(*slide_img.shape[-2:], crop, stride)]
            want = [[int(x) for x in w] for w in ref["slide_windows"]]
            checks.append(OutputCheck("slide_windows", 0.0 if got == want else float("inf"), 0.0))
    preds = {"whole_pred": lambda: whole, "slide_pred": lambda: slide}
    if "aug_imgs" in inp:
        flips = [flip_of(s) for s in inp["aug_spec"]]  # each view is flipped back along its own axis
        # the views arrive resized and flipped: the mean of their probabilities, flipped back, in order
        views = [model.inference_probs(x.float(), cfg.test.mode, crop, stride, tuple(inp["aug_ori_hw"]), flip)
                 for x, flip in zip(inp["aug_imgs"], flips, strict=True)]
        fused = sum(views[1:], views[0]) / len(views)
        add("aug_fused_probs", lambda: fused)
        preds["aug_pred"] = lambda: fused
    for name, scores in preds.items():
        if name in ref:
            checks.append(OutputCheck(name, _label_mismatch(scores(), ref[name], tol), 0.0,
                                      "fraction of pixels with another label (ties within tol not counted)"))
    return checks
