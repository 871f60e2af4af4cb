"""Training end to end on generated data in the real layouts (tiny widths through --set)."""
import json

import pytest
import torch

from setr.cli import main
from setr.data.synthetic import WRITERS
from setr.engine.segmentation import train
from setr.errors import SetrError
from setr.overrides import apply_overrides
from setr import presets

from helpers import tiny_sets

ROOTS = {"cityscapes": "", "ade20k": "", "pascal_context": "VOCdevkit/VOC2010", "folder": ""}


@pytest.fixture(scope="session")
def data_roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    roots = {}
    for name, writer in WRITERS.items():
        root = writer(base / name, n_train=4, n_val=2, size=(64, 96))
        roots[name] = base / name if name != "pascal_context" else root
    return roots


def tiny(name, iters=2, **extra):
    preset = presets.get(name)
    apply_overrides(preset, tiny_sets(preset) + [f"train.iters={iters}", f"train.eval_interval={iters}"]
                    + [f"{k}={v}" for k, v in extra.items()])
    return preset


@pytest.mark.parametrize("name", [p.name for p in presets.all_presets("segmentation")])
def test_every_preset_trains_on_its_layout(name, data_roots, tmp_path):
    preset = tiny(name)
    result = train(preset, data_roots[preset.data.dataset], tmp_path, progress=False, validate=False)
    assert result.iterations == 2
    assert (tmp_path / "iter_2.pth").is_file() and (tmp_path / "final.safetensors").is_file()
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["name"] == name and saved["train"]["iters"] == 2


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_resume_continues_exactly(data_roots, tmp_path):
    name = "SETR_PUP_768x768_40k_cityscapes_bs_8"
    full = tiny(name, iters=6, **{"train.checkpoint_interval": 3})
    train(full, data_roots["cityscapes"], tmp_path / "full", progress=False, validate=False)
    # a second run resumes from the mid-way checkpoint in a fresh work dir
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "iter_3.pth").write_bytes((tmp_path / "full" / "iter_3.pth").read_bytes())
    resumed = tiny(name, iters=6, **{"train.checkpoint_interval": 3})
    result = train(resumed, data_roots["cityscapes"], tmp_path / "half", resume=True, progress=False, validate=False)
    assert result.iterations == 6
    a, b = weights(tmp_path / "full" / "iter_6.pth"), weights(tmp_path / "half" / "iter_6.pth")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "resumed from" in (tmp_path / "half" / "train.log").read_text()


def test_lr_schedule_and_head_multiplier(data_roots, tmp_path):
    preset = tiny("SETR_MLA_768x768_40k_cityscapes_bs_8", iters=4)
    train(preset, data_roots["cityscapes"], tmp_path, progress=False, validate=False)
    opt = torch.load(tmp_path / "iter_4.pth", weights_only=False)["optimizer"]
    groups = {g["name"]: g for g in opt["param_groups"]}
    assert groups["backbone"]["initial_lr"] == pytest.approx(0.002)
    assert groups["heads"]["initial_lr"] == pytest.approx(0.02)
    # lr of the last step (it = 3): (base - 1e-4) * (1 - 3/4) ** 0.9 + 1e-4
    assert groups["backbone"]["lr"] == pytest.approx((0.002 - 1e-4) * 0.25 ** 0.9 + 1e-4)
    n_backbone = len(groups["backbone"]["params"])
    sd = weights(tmp_path / "iter_4.pth")
    assert any(k.startswith("backbone.mla.") for k in sd)  # the MLA neck trains at the backbone lr
    assert n_backbone > 0


def test_validation_keeps_best_and_writes_metrics(data_roots, tmp_path):
    preset = tiny("SETR_Naive_512x512_160k_ade20k_bs_16", iters=2)
    result = train(preset, data_roots["ade20k"], tmp_path, progress=False)
    assert 0.0 <= result.metrics["mIoU"] <= 1.0
    assert (tmp_path / "best.safetensors").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best"]["iteration"] == 2 and len(metrics["per_class"]) == 150
    assert (tmp_path / "tb").is_dir() and "mIoU" in (tmp_path / "train.log").read_text()


def test_bad_overrides_and_resume_errors(data_roots, tmp_path, capsys):
    root = str(data_roots["cityscapes"])
    base = ["train", "SETR_PUP_768x768_40k_cityscapes_bs_8", "--data-root", root, "--work-dir", str(tmp_path),
            "--no-progress"]
    assert main(base + ["--set", "train.learning_rate=0.1"]) == 1
    assert "unknown key 'learning_rate' in train (known: iters, batch_size" in capsys.readouterr().err
    small = ["--set", *tiny_sets(presets.get("SETR_PUP_768x768_40k_cityscapes_bs_8")), "train.iters=1",
             "train.eval_interval=1"]
    assert main(base + ["--resume", "--no-validate"] + small) == 0  # no checkpoint yet: starts at 0, says so
    assert "--resume: no checkpoint in" in capsys.readouterr().err
    assert (tmp_path / "iter_1.pth").is_file()
    preset = tiny("SETR_Naive_768x768_40k_cityscapes_bs_8")
    train(preset, root, tmp_path / "naive", progress=False, validate=False)
    other = tiny("SETR_PUP_768x768_40k_cityscapes_bs_8")
    with pytest.raises(SetrError, match="checkpoint is from preset SETR_Naive_768x768_40k_cityscapes_bs_8"):
        train(other, root, tmp_path / "pup", resume=tmp_path / "naive" / "iter_2.pth", progress=False)
    assert main(["train", "SETR_PUP_768x768_40k_cityscapes_bs_8", "--data-root", str(tmp_path / "none"),
                 "--set", *tiny_sets(presets.get("SETR_PUP_768x768_40k_cityscapes_bs_8"))]) == 1
    assert "data root not found" in capsys.readouterr().err


def test_crop_larger_than_model_is_refused(data_roots, tmp_path):
    preset = tiny("SETR_PUP_768x768_40k_cityscapes_bs_8", **{"data.crop_size": "[96,96]"})
    with pytest.raises(SetrError, match=r"data.crop_size \[96, 96\] differs from model.backbone.img_size"):
        train(preset, data_roots["cityscapes"], tmp_path, progress=False)


def test_out_of_range_head_index(data_roots, tmp_path):
    preset = tiny("SETR_PUP_768x768_40k_cityscapes_bs_8", **{"model.decode_head.in_index": 23})
    with pytest.raises(SetrError, match=r"--set model.decode_head.in_index=23: out of range for a backbone of depth 4"):
        train(preset, data_roots["cityscapes"], tmp_path, progress=False)


def test_amp_bf16_trains(data_roots, tmp_path):
    preset = tiny("SETR_PUP_768x768_40k_cityscapes_bs_8")
    result = train(preset, data_roots["cityscapes"], tmp_path, amp="bf16", progress=False, validate=False)
    assert result.iterations == 2
    sd = weights(tmp_path / "iter_2.pth")
    assert all(v.dtype != torch.bfloat16 for v in sd.values())  # weights stay fp32 under autocast


def test_activation_checkpointing_gives_the_same_training(data_roots, tmp_path):
    plain = tiny("SETR_PUP_768x768_40k_cityscapes_bs_8")
    ckpt = tiny("SETR_PUP_768x768_40k_cityscapes_bs_8", **{"model.backbone.grad_checkpointing": "true"})
    train(plain, data_roots["cityscapes"], tmp_path / "a", progress=False, validate=False)
    train(ckpt, data_roots["cityscapes"], tmp_path / "b", progress=False, validate=False)
    a, b = weights(tmp_path / "a" / "iter_2.pth"), weights(tmp_path / "b" / "iter_2.pth")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_user_errors_in_overrides_are_one_line(data_roots, tmp_path, capsys):
    preset = presets.get("SETR_PUP_768x768_40k_cityscapes_bs_8")
    base = ["train", preset.name, "--data-root", str(data_roots["cityscapes"]), "--work-dir", str(tmp_path),
            "--no-progress", "--set", *tiny_sets(preset)]
    for bad, message in [("train.loss_normalisation=foo", "expected all_pixels or valid_pixels"),
                         ("model.decode_head.type=bogus", "bogus"),
                         ("model.aux_heads=[{'typ':'pup'}]", "unexpected keyword argument 'typ'"),
                         ("train.batch_size=0", "must be >= 1")]:
        assert main(base + [bad]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_evaluation_interval_is_independent_of_checkpoints(data_roots, tmp_path):
    preset = tiny("SETR_Naive_768x768_40k_cityscapes_bs_8", iters=4,
                  **{"train.checkpoint_interval": 4, "train.eval_interval": 2})
    train(preset, data_roots["cityscapes"], tmp_path, progress=False)
    log = (tmp_path / "train.log").read_text()
    assert "iter 2: aAcc" in log and "iter 4: aAcc" in log
    assert not (tmp_path / "iter_2.pth").exists() and (tmp_path / "iter_4.pth").exists()
