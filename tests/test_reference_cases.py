"""Parity with the original code on its golden cases (the acceptance contract)."""
import subprocess
import sys
from pathlib import Path

import pytest

from setr.config import build_model
from setr.reference import check_case, load_case, setr_config_from_reference

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
