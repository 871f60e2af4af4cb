"""`setr test`: metrics, per-class table, JSON, submission formats (checked with cityscapesscripts)."""
import json

import numpy as np
import pytest
from PIL import Image

from setr.model_files import save_model
from setr.cli import main
from setr.config import build_model
from setr.data.synthetic import write_ade20k, write_cityscapes
from setr.overrides import apply_overrides
from setr import presets

from helpers import tiny_sets


def tiny_checkpoint(name, path):
    preset = presets.get(name)
    sets = tiny_sets(preset)
    apply_overrides(preset, sets)
    model = build_model(preset.model, with_aux=False)
    return save_model(model, preset.model, path), sets


def test_cityscapes_format_matches_cityscapesscripts(tmp_path, capsys):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval

    root = write_cityscapes(tmp_path / "cs", n_train=1, n_val=3, size=(64, 128))
    name = "SETR_PUP_768x768_40k_cityscapes_bs_8"
    ckpt, sets = tiny_checkpoint(name, tmp_path / "model.safetensors")
    assert main(["test", name, "-c", str(ckpt), "--data-root", str(root), "--json", str(tmp_path / "m.json"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "road" in out and "bicycle" in out
    ours = json.loads((tmp_path / "m.json").read_text())
    assert set(ours) >= {"aAcc", "mIoU", "mAcc", "per_class"} and ours["num_images"] == 3

    sub = tmp_path / "submission"
    assert main(["test", name, "-c", str(ckpt), "--data-root", str(root), "--format-only", "--out", str(sub),
                 "--no-progress"]) == 0
    files = sorted(sub.glob("*.png"))
    assert [f.name for f in files] == sorted(p.name for p in (root / "leftImg8bit" / "val").rglob("*.png"))
    pred = Image.open(files[0])
    assert pred.mode == "P" and set(np.unique(np.array(pred))) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24,
                                                                    25, 26, 27, 28, 31, 32, 33}
    # the official pixel-level evaluation on the labelIds files gives the same mIoU
    args = cs_eval.args
    args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, True
    gts = sorted((root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    preds = [str(sub / g.name.replace("_gtFine_labelIds.png", "_leftImg8bit.png")) for g in gts]
    res = cs_eval.evaluateImgLists(preds, [str(g) for g in gts], args)
    assert res["averageScoreClasses"] == pytest.approx(ours["mIoU"], abs=1e-9)


def test_ade20k_format_is_value_plus_one_and_aug_test(tmp_path, capsys):
    root = write_ade20k(tmp_path / "ade", n_train=1, n_val=2)
    name = "SETR_MLA_512x512_160k_ade20k_bs_16_MS"
    ckpt, sets = tiny_checkpoint(name, tmp_path / "model.safetensors")
    sub = tmp_path / "sub"
    assert main(["test", name, "-c", str(ckpt), "--data-root", str(root), "--out", str(sub), "--no-progress",
                 "--show-dir", str(tmp_path / "show")]) == 0
    out = capsys.readouterr().out
    assert "wrote 2 prediction files" in out
    pngs = sorted(sub.glob("*.png"))
    assert len(pngs) == 2 and np.array(Image.open(pngs[0])).min() >= 1
    assert len(list((tmp_path / "show").glob("*.jpg"))) == 2
    metrics = json.loads(ckpt.with_name("model_val_metrics.json").read_text())
    assert metrics["aug"] is True  # the _MS preset tests with multi-scale + flip by default


def test_original_format_checkpoint_with_preset_and_set(tmp_path, capsys):
    import torch

    root = write_ade20k(tmp_path / "ade", n_train=1, n_val=1)
    name = "SETR_Naive_512x512_160k_ade20k_bs_16"
    preset = presets.get(name)
    sets = tiny_sets(preset)
    apply_overrides(preset, sets)
    torch.save({"state_dict": build_model(preset.model).state_dict()}, tmp_path / "iter_8.pth")
    model_sets = [s for s in sets if not s.startswith("train.")]  # setr test refuses train.* (no meaning there)
    assert main(["test", name, "-c", str(tmp_path / "iter_8.pth"), "--data-root", str(root), "--mode", "whole",
                 "--no-progress", "--set", *model_sets]) == 0
    assert (tmp_path / "iter_8_val_metrics.json").is_file()


def test_set_test_keys_are_honoured_for_our_checkpoints_and_match_predict(tmp_path, capsys):
    """`setr test --set test.*` on one of our checkpoints changes the test pipeline (it was dropped before), and
    gives the metrics `setr evaluate` gives on `setr predict`'s label maps with the same --set."""
    import torch

    from setr.data.synthetic import write_folder

    name = "setr_demo_pup_tiny_64x64_shapes"
    root = write_folder(tmp_path / "data", n_train=1, n_val=3, size=(64, 96), num_classes=5)
    torch.manual_seed(0)
    preset = presets.get(name)
    ckpt = save_model(build_model(preset.model, with_aux=False), preset.model, tmp_path / "model.safetensors")
    common = ["--precision", "fp32", "--device", "cpu", "--no-progress"]
    sets = ["--set", "test.img_scale=[40,40]", "test.mode=slide", "test.crop_size=[32,32]", "test.stride=[16,16]"]

    def test_metrics(*extra):
        out = tmp_path / f"m{len(list(tmp_path.glob('m*.json')))}.json"
        assert main(["test", name, "-c", str(ckpt), "--data-root", str(root), "--json", str(out), *common,
                     *extra]) == 0
        capsys.readouterr()
        return json.loads(out.read_text())

    def predict_then_evaluate(out, *extra):
        assert main(["predict", name, "-c", str(ckpt), str(root / "images" / "val"), "--out", str(out),
                     "--workers", "0", *common, *extra]) == 0
        capsys.readouterr()
        assert main(["evaluate", str(out), str(root / "masks" / "val"), "--num-classes", "5", "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    plain, with_set = test_metrics(), test_metrics(*sets)
    assert with_set["mode"] == "slide" and plain["mode"] == "whole"
    # the --set reached the test pipeline (compared as text: NaN entries of absent classes compare equal there)
    assert json.dumps(with_set["per_class"], sort_keys=True) != json.dumps(plain["per_class"], sort_keys=True)
    for got, want in ((predict_then_evaluate(tmp_path / "p_set", *sets), with_set),
                      (predict_then_evaluate(tmp_path / "p_plain"), plain)):
        assert got["mIoU"] == pytest.approx(want["mIoU"], abs=1e-12, nan_ok=True)
        assert got["aAcc"] == pytest.approx(want["aAcc"], abs=1e-12)


@pytest.mark.parametrize("option", ["--out", "--show-dir"])
def test_outputs_inside_the_data_root_are_refused_before_any_work(tmp_path, capsys, option):
    """Prediction files and overlays are named like the images: written inside the dataset they could replace it
    or be read back as part of it. One line, nothing created."""
    from setr.data.synthetic import write_folder

    root = write_folder(tmp_path / "data", n_train=1, n_val=1, size=(32, 32), num_classes=5)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    target = root / "images" / "val"
    assert main(["test", "setr_demo_pup_tiny_64x64_shapes", "-c", str(tmp_path / "missing.safetensors"),
                 "--data-root", str(root), option, str(target)]) == 1
    err = capsys.readouterr().err.strip()
    assert f"{option} {target}: lies inside --data-root {root}" in err and len(err.splitlines()) == 1
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_a_checkpoint_of_another_model_than_the_preset_is_named(tmp_path, capsys):
    """Our checkpoint's stored configuration wins over the preset's architecture, and setr test says so."""
    import torch

    from setr.data.synthetic import write_folder

    name = "setr_demo_pup_tiny_64x64_shapes"
    root = write_folder(tmp_path / "data", n_train=1, n_val=1, size=(32, 32), num_classes=5)
    preset = apply_overrides(presets.get(name), ["model.backbone.embed_dim=48"])
    torch.manual_seed(0)
    ckpt = save_model(build_model(preset.model, with_aux=False), preset.model, tmp_path / "other.safetensors")
    assert main(["test", name, "-c", str(ckpt), "--data-root", str(root), "--precision", "fp32", "--no-progress",
                 "--json", str(tmp_path / "m.json")]) == 0
    err = capsys.readouterr().err
    assert (f"warning: {ckpt} was trained as another model than preset {name} (backbone.embed_dim differ): "
            "testing with the checkpoint's own configuration") in err
