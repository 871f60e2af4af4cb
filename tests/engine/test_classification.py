"""HLG ImageNet-style classification: timm integration, the published table, training, resume, DDP, errors."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import timm
import torch

import setr  # noqa: F401  (registers the HLG models with timm)
from setr.cli import main
from setr.data.synthetic import write_image_folder
from setr.engine.classification import ClassifyRecipe, train_classifier
from setr.models.hlg_timm import load_hlg_checkpoint
from setr.models.hlg import create_hlg

TINY = dict(embed_dims=(16, 32, 64, 128), num_heads=(1, 2, 4, 8), depths=(2, 2, 2, 2))
FAST = dict(img_size=64, workers=0, auto_augment="", reprob=0.0, mixup=0.0, cutmix=0.0, smoothing=0.0,
            drop_path=0.0, ema_decay=0.9, warmup_epochs=1, batch_size=16, base_lr=2e-3 * 512 / 16, crop_scale=(0.6, 1.0))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imagenet"), num_classes=4, n_train=16, n_val=8, size=64)


@pytest.mark.parametrize("name,params", [("hlg_tiny", 11_035_824), ("hlg_small", 24_273_004),
                                         ("hlg_medium", 39_978_412), ("hlg_large", 84_355_640)])
def test_timm_creates_the_variants(name, params):
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == params
    assert name in timm.list_models("hlg_*")
    assert model.pretrained_cfg["input_size"] == (3, 224, 224)


def test_timm_model_runs_with_custom_classes():
    model = timm.create_model("hlg_tiny", num_classes=7, drop_path_rate=0.1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 97, 130)).shape == (1, 7)


def test_info_reports_both_flop_conventions_next_to_published(capsys):
    assert main(["info", "hlg_tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"]["total"] == 11_035_824 and info["params"]["dense_backbone"] == 10_523_720
    assert info["published"] == {"params_m": 11, "gflops": 2.1, "note": info["published"]["note"]}
    # without the stem the count reproduces the published 2.1G (within the 1-2% the counters differ by)
    assert info["gmacs"]["without_stem"] == pytest.approx(2.186, rel=0.03)
    assert info["gmacs"]["with_stem"] == pytest.approx(2.674, rel=0.03)
    assert main(["info", "hlg_medium"]) == 0
    assert "not the published 43M" in capsys.readouterr().out


def test_checkpoint_depths_are_read_from_keys(tmp_path):
    model = create_hlg("large", depths=(2, 2, 14, 2), num_classes=5)
    torch.save({"model": model.state_dict()}, tmp_path / "hlg_large_14.pth")
    loaded, arch = load_hlg_checkpoint(tmp_path / "hlg_large_14.pth", "large")
    assert loaded.depths == (2, 2, 14, 2) and loaded.num_classes == 5
    assert "checkpoint depths [2, 2, 14, 2] differ from hlg_large's [2, 2, 18, 2]" in arch["notes"][0]
    from setr.errors import SetrError

    with pytest.raises(SetrError, match="belongs to another variant"):
        load_hlg_checkpoint(tmp_path / "hlg_large_14.pth", "tiny")


def test_training_rises_above_chance_and_resumes_exactly(folder, tmp_path):
    recipe = ClassifyRecipe(epochs=6, **FAST)
    result = train_classifier("hlg_tiny", folder, tmp_path / "a", recipe, model_kwargs=TINY, progress=False)
    assert result["best"]["top1"] > 40.0  # 4 classes: chance is 25%
    assert set(result["model"]) >= {"top1", "top5", "loss"} and "ema" in result
    # resume from the epoch-5 checkpoint in a fresh folder: the same weights at epoch 6
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "epoch_5.pth").write_bytes((tmp_path / "a" / "epoch_5.pth").read_bytes())
    train_classifier("hlg_tiny", folder, tmp_path / "b", recipe, model_kwargs=TINY, resume=True, progress=False)
    a = torch.load(tmp_path / "a" / "epoch_6.pth", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b" / "epoch_6.pth", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_full_recipe_with_mixup_runs(folder, tmp_path):
    recipe = ClassifyRecipe(epochs=1, warmup_epochs=1, batch_size=8, img_size=64, workers=0)  # RandAugment, Mixup...
    result = train_classifier("hlg_tiny", folder, tmp_path, recipe, model_kwargs=TINY, amp="bf16", progress=False)
    assert "top1" in result


def test_cli_train_and_test(folder, tmp_path, capsys):
    sets = [f"train.{k}={v!r}" if isinstance(v, str) else f"train.{k}={v}" for k, v in FAST.items()]
    work = tmp_path / "w"
    assert main(["classify", "train", "hlg_tiny", "--data-root", str(folder), "--work-dir", str(work),
                 "--epochs", "1", "--no-progress", "--set", *sets]) == 0
    assert "trained hlg_tiny for 1 epochs" in capsys.readouterr().out
    assert main(["classify", "test", "hlg_tiny", "-c", str(work / "epoch_1.pth"), "--data-root", str(folder),
                 "--img-size", "64", "--workers", "0", "--ema"]) == 0
    assert "top-1" in capsys.readouterr().out
    assert json.loads((work / "epoch_1_val_top1_ema.json").read_text())["images"] == 32  # --ema: its own file


def test_bad_inputs(folder, tmp_path, capsys):
    bad = tmp_path / "bad"
    (bad / "train" / "cat").mkdir(parents=True)
    assert main(["classify", "train", "hlg_tiny", "--data-root", str(bad), "--no-progress"]) == 1
    assert "train/cat: class folder has no images" in capsys.readouterr().err
    broken = write_image_folder(tmp_path / "broken", num_classes=2, n_train=4, n_val=2, size=32)
    (broken / "train" / "class_0" / "train_0_0000.png").write_bytes(b"not an image")
    recipe = ClassifyRecipe(epochs=1, **{**FAST, "batch_size": 8})
    from setr.errors import SetrError

    with pytest.raises(SetrError, match=r"train_0_0000\.png: unreadable image"):
        train_classifier("hlg_tiny", broken, tmp_path / "w", recipe, model_kwargs=TINY, progress=False)
    assert main(["classify", "train", "hlg_tiny", "--data-root", str(folder), "--set", "learning_rate=1"]) == 1
    assert "unknown key 'learning_rate'" in capsys.readouterr().err
    assert main(["classify", "train", "hlg_tiny", "--data-root", str(folder), "--set", "train.learning_rate=1"]) == 1
    assert "unknown key 'learning_rate' in train" in capsys.readouterr().err


def test_flat_set_keys_are_deprecated_spellings_of_train_keys(capsys):
    import argparse

    from setr.cli.common import preset_for

    args = argparse.Namespace(preset="hlg_tiny", set=["mixup=0", "train.cutmix=0.5", "model.variant=small"],
                              epochs=3, batch_size=16, batch_size_is_training=True)
    p = preset_for(args, "classification")
    assert (p.train.mixup, p.train.cutmix, p.train.epochs, p.train.batch_size) == (0, 0.5, 3, 16)
    assert p.model.variant == "small"
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["deprecated: --set mixup=0: write --set train.mixup=0"]


@pytest.mark.skipif(not shutil.which("taskset"), reason="needs taskset (util-linux) to give the run one CPU")
def test_pytorch_worker_warning_is_printed_once(tmp_path):
    """On one CPU with 2 workers PyTorch warns when each loader is made and again when it is iterated: once here."""
    folder = write_image_folder(tmp_path / "f", num_classes=2, n_train=4, n_val=2, size=32)
    sets = ["img_size=32", "workers=2", "auto_augment=", "reprob=0.0", "mixup=0.0", "cutmix=0.0", "batch_size=4"]
    r = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "setr", "classify", "train", "hlg_tiny",
                        "--data-root", str(folder), "--work-dir", str(tmp_path / "w"), "--epochs", "1",
                        "--no-progress", "--set", *sets], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("This DataLoader will create 2 worker processes in total") == 1, r.stderr[-3000:]
