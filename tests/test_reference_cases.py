"""Parity with the original code on its golden cases (the acceptance contract)."""
import subprocess
import sys
from pathlib import Path

import pytest

from setr.config import build_model
from setr.parity.check import check_case, load_case
from setr.parity.setr import setr_config_from_reference

from conftest import FIXTURES, SETR_CASES

HLG_CASES = sorted(p for p in (FIXTURES / "hlg_reference").glob("*.pt") if not p.stem.endswith("_trace"))

ROOT = Path(__file__).resolve().parents[1]


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
        plain = model.inference(img, "whole", ori_hw=img.shape[-2:])
        back = model.inference(img.flip(-2), "whole", ori_hw=img.shape[-2:], flip="vertical")
        wrong = model.inference(img.flip(-2), "whole", ori_hw=img.shape[-2:], flip="horizontal")
    unflipped = model.inference(img.flip(-2), "whole", ori_hw=img.shape[-2:]).flip(-2)
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
