"""One convention for every command group (setr.cli.common): a preset name typed into another task's command
names the command that owns it, -c/--checkpoint everywhere (the old positional spelling works with a one-line
notice), --json [PATH], --batch-size, dotted --set; `setr presets` / `setr info` know every task; torch.hub's
``pretrained`` is a bool."""
import importlib.util
import json
from pathlib import Path

import pytest

from setr import presets
from setr.cli import main
from setr.errors import SetrError

ROOT = Path(__file__).resolve().parents[2]


def err_lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


@pytest.mark.parametrize("argv, owner", [
    (["predict", "hlg_tiny", "x.jpg", "--out", "o"], "hlg_tiny is a classification preset: use `setr classify ...`"),
    (["train", "retinanet_hlg_tiny_test", "--data-root", "d"],
     "retinanet_hlg_tiny_test is a detection preset: use `setr detect ...`"),
    (["classify", "train", "SETR_PUP_768x768_40k_cityscapes_bs_8", "--data-root", "d"],
     "SETR_PUP_768x768_40k_cityscapes_bs_8 is a segmentation preset: use `setr train / test / predict ...`"),
    (["test", "hlg_small", "-c", "c.pth", "--data-root", "d"], "hlg_small is a classification preset"),
])
def test_a_preset_of_another_task_names_its_command(argv, owner, capsys):
    assert main(argv) == 1
    lines = err_lines(capsys)
    assert len(lines) == 1 and owner in lines[0], lines


def test_one_lookup_knows_every_task():
    assert presets.task_of("HLG_TINY") == "classification"
    assert presets.get("retinanet_hlg_tiny_test").task == "detection"
    for task in presets.TASKS:
        for name in presets.names(task):
            p = presets.get(name, task)
            assert (p.name, p.task) == (name, task) and p.model is not None and p.train is not None
    with pytest.raises(SetrError, match="did you mean hlg_tiny"):
        presets.get("hlg_tinyy", "classification")


def test_set_reaches_only_the_preset_sections():
    p = presets.with_overrides("hlg_tiny", ["train.epochs=2", "model.variant=small"])
    assert (p.train.epochs, p.model.variant) == (2, "small")
    with pytest.raises(SetrError, match=r"--set name: unknown key 'name': a key is section.name"):
        presets.with_overrides("hlg_tiny", ["name=x"])
    d = presets.with_overrides("retinanet_hlg_tiny_test", ["train.lr=0.002", "model.fpn_channels=32"])
    assert (d.train.lr, d.model.fpn_channels) == (0.002, 32)


def test_presets_and_info_cover_every_task(capsys, tmp_path):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for header, name in (("segmentation (setr train / test / predict):", "SETR_PUP_768x768_40k_cityscapes_bs_8"),
                         ("classification (setr classify):", "hlg_large"),
                         ("detection (setr detect):", "retinanet_hlg_small_fpn_mstrain_1x_coco")):
        assert header in out and name in out
    assert main(["presets", "--task", "detection", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["task"] for r in rows} == {"detection"} and len(rows) == len(presets.names("detection"))
    # --json alone: stdout; --json PATH: that file
    assert main(["info", "retinanet_hlg_tiny_test", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["task"] == "detection" and info["params"]["total"] == sum(
        info["params"][k] for k in ("backbone", "fpn", "head"))
    assert set(info) >= {"model", "train", "data"}
    assert main(["info", "hlg_tiny", "--json", str(tmp_path / "i.json")]) == 0
    assert json.loads((tmp_path / "i.json").read_text())["train"]["epochs"] == 300


def test_old_spellings_work_with_one_notice(tmp_path, capsys):
    # positional checkpoint: the same refusal as with -c, after a one-line notice
    assert main(["test", "setr_demo_pup_tiny_64x64_shapes", str(tmp_path / "none.safetensors"),
                 "--data-root", str(tmp_path)]) == 1
    lines = err_lines(capsys)
    assert lines[0] == ("deprecated: `setr test PRESET CKPT`: write `setr test PRESET -c CKPT`") and len(lines) == 2
    assert main(["test", "setr_demo_pup_tiny_64x64_shapes", "b", "-c", "a", "--data-root", str(tmp_path)]) == 1
    assert "give the checkpoint once" in err_lines(capsys)[0]
    assert main(["classify", "test", "hlg_tiny", "--data-root", str(tmp_path)]) == 1
    assert err_lines(capsys) == ["setr classify: error: setr classify test needs the checkpoint: -c/--checkpoint FILE"]
    # benchmark --batch: --batch-size
    assert main(["benchmark", "setr_demo_pup_tiny_64x64_shapes", "--batch", "2", "--runs", "1", "--precision",
                 "fp32", "--device", "cpu", "--json"]) == 0
    assert err_lines(capsys) == ["deprecated: --batch 2: write --batch-size 2"]


def _hubconf():
    spec = importlib.util.spec_from_file_location("setr_hubconf_conventions", ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_torch_hub_pretrained_is_a_bool():
    import torch

    seg = torch.hub.load(str(ROOT), "setr_pup", "setr_demo_pup_tiny_64x64_shapes", source="local", pretrained=False)
    assert seg.cfg.decode_head.type == "pup"
    hub = _hubconf()
    with pytest.raises(SetrError, match="no default published weights yet"):
        hub.setr_pup(pretrained=True)
    with pytest.raises(SetrError, match=r"pretrained is True or False .* weights='org/x'"):
        hub.setr_pup(pretrained="org/x")
