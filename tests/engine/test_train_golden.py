"""The original trainer's golden cases (tests/fixtures/setr_train/, see its README), checked through ``setr train``
as a user runs it: the fixture's batch as a folder dataset of PNGs, its initial weights as an original-format
``--load-from`` checkpoint, augmentation switched off by ``--set``, then the per-head losses and per-parameter
learning rates of every iteration (``metrics.jsonl``) and the final weights (the last checkpoint) compared."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from setr.cli import main
from setr.engine.state import read_checkpoint
from setr.parity.train import write_folder_dataset

from helpers import golden_cases

CASES = golden_cases("setr_train")


def run_case(case: dict, tmp_path: Path) -> Path:
    cfg = case["config"]
    data = write_folder_dataset(tmp_path / "data", case["batch"], cfg["class_names"])
    weights = tmp_path / "W.pth"
    torch.save({"state_dict": case["initial_state_dict"], "meta": {}}, weights)
    work = tmp_path / "work"
    size = cfg["img_size"]
    argv = ["train", cfg["setr_preset"], "--data-root", str(data), "--work-dir", str(work),
            "--load-from", str(weights), "--no-validate", "--no-progress", "--device", "cpu",
            "--set", *cfg["setr_overrides"],
            "data.dataset=folder", f"data.img_scale=[{size},{size}]", "data.ratio_range=[1,1]", "data.flip_prob=0",
            "data.photometric=false", "data.workers=0", f"train.batch_size={cfg['batch_size']}",
            f"train.iters={cfg['iters']}"]
    assert main(argv) == 0
    return work


def group_of(name: str) -> str:
    """The original's rule (paramwise_cfg custom_keys {'head': lr_mult 10}): a name containing "head"."""
    return "heads" if "head" in name else "backbone"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_setr_train_golden(path, tmp_path):
    torch.set_num_threads(1)
    case = torch.load(path, map_location="cpu", weights_only=False)
    work = run_case(case, tmp_path)

    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1, 2]
    for rec, want in zip(records, case["iterations"], strict=True):
        assert rec["iteration"] == want["iteration"]
        assert set(rec["losses"]) == set(want["losses"])
        for head, value in want["losses"].items():
            assert rec["losses"][head] == pytest.approx(value, rel=1e-5), (want["iteration"], head)
        assert rec["total_loss"] == pytest.approx(want["total_loss"], rel=1e-5)
        for name, lr in want["lr"].items():
            assert rec["lr"][group_of(name)] == pytest.approx(lr, rel=1e-9, abs=0), (want["iteration"], name)

    final = sorted(work.glob("iter_*.pth"), key=lambda p: int(p.stem.split("_")[1]))[-1]
    assert final.name == f"iter_{case['config']['iters']}.pth"
    got = read_checkpoint(final)["state_dict"]
    want = {k: v for k, v in case["final_state_dict"].items() if "conv_seg" not in k}
    assert set(want) == {k for k in got if "conv_seg" not in k}
    worst = []
    for k, w in want.items():
        g = got[k]
        assert g.shape == w.shape, k
        if not w.is_floating_point():
            assert torch.equal(g, w), k
            continue
        err = (g.double() - w.double()).abs().max().item()
        tol = 1e-4 * max(w.double().abs().max().item(), 1e-2)
        worst.append((err / tol, k))
        assert err <= tol and math.isfinite(err), f"{k}: max|got-want| {err:.3g} > {tol:.3g}"
    assert worst  # every tensor compared


def test_checker_script_runs_a_training_case():
    import subprocess
    import sys

    script = Path(__file__).parents[2] / "scripts" / "check_reference_case.py"
    run = subprocess.run([sys.executable, str(script), str(CASES[0])], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok   iter2.losses" in run.stdout and "ok   final_weights" in run.stdout


@pytest.mark.parametrize("edit, field", [
    (lambda c: c["config"]["optimizer"].__setitem__("nesterov", True), "config.optimizer.nesterov"),
    (lambda c: c["config"]["lr_config"].__setitem__("power", 1.0), "config.lr_config.power"),
    (lambda c: c["config"]["optimizer_config"].__setitem__("grad_clip", {"max_norm": 1}),
     "config.optimizer_config.grad_clip"),
    (lambda c: c["config"].__setitem__("warmup_iters", 10), "config.warmup_iters"),
    (lambda c: c["iterations"][0].__setitem__("grad_norm", 1.0), "iterations.0.grad_norm"),
])
def test_training_checker_fails_naming_fields_it_does_not_implement(edit, field):
    from setr.errors import SetrError
    from setr.parity.train import check_train_case

    case = torch.load(CASES[0], map_location="cpu", weights_only=False)
    edit(case)
    with pytest.raises(SetrError, match=f"unsupported fixture field {field.replace('.', '[.]')}:"):
        check_train_case(case)
