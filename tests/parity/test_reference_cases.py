"""Parity with the original code on its golden cases (the acceptance contract)."""
import subprocess
import sys
from pathlib import Path

import pytest

from setr.config import build_model
from setr.parity.check import check_case, load_case
from setr.parity.setr import setr_config_from_reference

from helpers import ROOT, FIXTURES, SETR_CASES, golden_cases

HLG_CASES = [p for p in golden_cases("hlg_reference") if not p.stem.endswith("_trace")]



def test_fixture_set_is_complete():
    names = {p.stem for p in SETR_CASES}
    assert names == {f"{h}_{m}" for h in ("naive", "pup", "mla") for m in ("whole", "slide")}


@pytest.mark.parametrize("path", SETR_CASES, ids=lambda p: p.stem)
def test_setr_case_matches_original(path):
    checks = check_case(load_case(path))
    names = {c.name for c in checks}
    assert {"backbone_outs", "decode_head_out", "aux_head_outs", "whole_logits", "slide_logits", "slide_windows",
            "aug_fused_probs", "aug_pred"} <= names
    assert ("whole_pred" in names) or ("slide_pred" in names)
    for c in checks:
        assert c.ok, f"{c.name}: max abs err {c.max_abs_err} > {c.tolerance}"


def test_config_comes_from_the_case_not_the_file_name():
    case = load_case(SETR_CASES[0])
    cfg = setr_config_from_reference(case["config"])
    model = build_model(cfg)
    assert model.backbone.patch_size == case["config"]["backbone"]["patch_size"]
    assert len(model.backbone.blocks) == case["config"]["backbone"]["depth"]
    assert len(model.auxiliary_head) == len(case["config"]["aux_heads"])


def test_script_passes_on_all_cases_and_fails_on_corruption(tmp_path):
    script = ROOT / "scripts" / "check_reference_case.py"
    run = subprocess.run([sys.executable, str(script), *map(str, SETR_CASES)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("max_abs_err=") >= 6 * 8
    # a case whose expected output is perturbed beyond the tolerance must fail
    import torch

    case = load_case(SETR_CASES[0])
    case["outputs"]["whole_logits"] = case["outputs"]["whole_logits"] + 1e-3
    bad = tmp_path / "bad.pt"
    torch.save(case, bad)
    run = subprocess.run([sys.executable, str(script), str(bad)], capture_output=True, text=True)
    assert run.returncode == 1
    assert "FAIL whole_logits" in run.stdout


@pytest.mark.parametrize("path", HLG_CASES, ids=lambda p: p.stem)
def test_hlg_case_through_the_same_script(path):
    script = ROOT / "scripts" / "check_reference_case.py"
    run = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "max_abs_err=" in run.stdout


@pytest.mark.parametrize("edit, field", [
    (lambda c: c["config"].__setitem__("new_setting", 1), "config.new_setting"),
    (lambda c: c["config"]["backbone"].__setitem__("layer_norm_eps", 1e-5), "config.backbone.layer_norm_eps"),
    (lambda c: c["config"]["decode_head"].__setitem__("num_conv", 3), "config.decode_head.num_conv"),
    (lambda c: c["config"]["aux_heads"][0].__setitem__("upsampling_method", "deconv"),
     "config.aux_heads.0.upsampling_method"),
    (lambda c: c["inputs"]["aug_spec"][0].__setitem__("flip_direction", "diagonal"),
     "inputs.aug_spec.0.flip_direction"),
    (lambda c: c["outputs"].__setitem__("aug_logits", c["outputs"]["aug_pred"]), "outputs.aug_logits"),
])
def test_setr_checker_fails_naming_fields_it_does_not_implement(edit, field, tmp_path):
    import torch

    case = load_case(FIXTURES / "setr_reference" / "pup_slide.pt")
    edit(case)
    bad = tmp_path / "case.pt"
    torch.save(case, bad)
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_reference_case.py"), str(bad)],
                         capture_output=True, text=True)
    assert run.returncode == 1 and f"unsupported fixture field {field}:" in run.stdout, run.stdout + run.stderr


def test_aug_views_are_flipped_back_along_their_own_direction():
    """A vertically flipped view is un-flipped along the height (dim 2), a horizontal one along the width."""
    import torch

    from setr.parity.setr_fields import flip_of

    case = load_case(FIXTURES / "setr_reference" / "pup_whole.pt")
    model = build_model(setr_config_from_reference(case["config"])).eval()
    img = case["inputs"]["img"][:1].float()
    with torch.no_grad():
        plain = model.inference_probs(img, "whole", ori_hw=img.shape[-2:])
        back = model.inference_probs(img.flip(-2), "whole", ori_hw=img.shape[-2:], flip="vertical")
        wrong = model.inference_probs(img.flip(-2), "whole", ori_hw=img.shape[-2:], flip="horizontal")
    unflipped = model.inference_probs(img.flip(-2), "whole", ori_hw=img.shape[-2:]).flip(-2)
    assert torch.equal(back, unflipped) and back.shape == plain.shape
    assert flip_of({"flip": True, "flip_direction": "vertical"}) == "vertical"
    assert flip_of({"flip": False, "flip_direction": None}) is None
    # the model is not flip-invariant, so un-flipping along the wrong axis gives another map
    assert not torch.allclose(back, wrong, atol=1e-4)


def test_hlg_checker_fails_naming_fields_it_does_not_implement(tmp_path):
    import torch

    case = load_case(HLG_CASES[0])
    case["config"]["downsample_rounding"] = "floor(H/2)"
    bad = tmp_path / "case.pt"
    torch.save(case, bad)
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_reference_case.py"), str(bad)],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "unsupported fixture field config.downsample_rounding:" in run.stdout


def _original_pup_head(sd, tokens, grid):
    """The original VisionTransformerUpHead with num_conv=4 ('bilinear'), written out from its definition: LN,
    4 x (3x3 conv, BN, ReLU) with x2 upsamples after the first three, the 1x1 classifier, a last x2 upsample.
    Nothing resizes it to the image: that is the segmentor's job."""
    import torch.nn.functional as F

    def p(name):
        return sd[f"decode_head.{name}"]

    c = tokens.shape[-1]
    x = F.layer_norm(tokens, (c,), p("norm.weight"), p("norm.bias"), 1e-6)[:, 1:]
    x = x.transpose(1, 2).reshape(x.shape[0], c, *grid)
    for i in range(4):
        x = F.conv2d(x, p(f"conv_{i}.weight"), p(f"conv_{i}.bias"), padding=1)
        x = F.batch_norm(x, p(f"syncbn_fc_{i}.running_mean"), p(f"syncbn_fc_{i}.running_var"),
                         p(f"syncbn_fc_{i}.weight"), p(f"syncbn_fc_{i}.bias"), False, 0.0, 1e-5).relu()
        if i < 3:
            x = F.interpolate(x, size=x.shape[-1] * 2, mode="bilinear", align_corners=False)
    x = F.conv2d(x, p("conv_4.weight"), p("conv_4.bias"))
    return F.interpolate(x, size=x.shape[-1] * 2, mode="bilinear", align_corners=False)


def test_decode_head_out_is_compared_at_the_heads_own_size_pup_patch_8():
    """PUP upsamples the token grid 16x: with patch size 8 its own output is twice the image. A case built from
    the PUP fixture's config with patch 8 checks decode_head_out at that size, and the logits at the image's."""
    import copy

    import torch

    case = copy.deepcopy(load_case(next(p for p in SETR_CASES if p.stem == "pup_whole")))
    c = case["config"]
    for part in (c["backbone"], c["mmseg_model_cfg"]["backbone"]):
        part["patch_size"] = 8
        part["img_size"] = 32
    for h in [c["decode_head"], *c["aux_heads"]]:
        h["img_size"] = 32
    c["img_size"], c["test"]["crop_size"], c["test"]["stride"] = 32, [32, 32], [21, 21]
    torch.manual_seed(0)
    model = build_model(setr_config_from_reference(c)).eval()
    for m in model.modules():  # BN statistics away from the identity, as in the original's cases
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.backbone(img)
        want = _original_pup_head(sd, feats[c["decode_head"]["in_index"]], (4, 4))
        logits = torch.nn.functional.interpolate(want, size=(32, 32), mode="bilinear", align_corners=False)
    assert want.shape[-2:] == (64, 64)  # the head's own output: twice the image
    case.update(state_dict=sd, inputs={"img": img}, outputs={"decode_head_out": want, "whole_logits": logits})
    checks = {ch.name: ch for ch in check_case(case)}
    assert set(checks) == {"decode_head_out", "whole_logits"}
    for ch in checks.values():
        assert ch.ok, f"{ch.name}: max abs err {ch.max_abs_err} > {ch.tolerance}"
    # the same case with the head's output at the image size (the old comparison) must not pass
    case["outputs"]["decode_head_out"] = logits
    assert not {ch.name: ch for ch in check_case(case)}["decode_head_out"].ok
