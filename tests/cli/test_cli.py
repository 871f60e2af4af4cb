import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from setr.cli import main
from setr.config import build_model
from setr.errors import SetrError
from setr.inference import Segmenter
from setr import presets

from helpers import tiny_config


def run_cli(*args):
    """The installed console script, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "setr", *args], capture_output=True, text=True)


def write_image(path, h=40, w=60, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_presets_lists_names_datasets_and_miou(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "SETR_PUP_768x768_40k_cityscapes_bs_8" in out and "78.39" in out
    assert main(["presets", "--dataset", "ade20k", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["dataset"] for r in rows} == {"ade20k"}
    assert len([r for r in rows if r["name"].startswith("SETR_")]) == 12 and len(rows) == 15  # + 3 PUP-HLG
    assert main(["presets", "--dataset", "folder"]) == 0
    assert "setr_demo_pup_tiny_64x64_shapes" in capsys.readouterr().out


def test_info_json_param_counts(capsys):
    assert main(["info", "SETR_Naive_768x768_40k_cityscapes_bs_8", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # the original's manifest: total 306,576,536 incl. 4 unused conv_seg layers of 9,747 params each
    assert info["params"] == {"total": 306_576_536 - 38_988, "without_aux": 305_737_766 - 9_747,
                              "backbone": 305_458_176, "decode_head": 279_590 - 9_747,
                              "aux_heads": 838_770 - 3 * 9_747}


def test_flops_counts_attention(capsys):
    assert main(["flops", "SETR_Naive_Base_768x768_40k_cityscapes_bs_8", "--shape", "384", "384", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    n, c, depth = 24 * 24 + 1, 768, 12
    attention = 2 * (2 * n * n * c) * depth / 1e9  # q@k^T and attn@v
    assert out["attention_gflops"] == pytest.approx(attention, rel=1e-6)
    linear = 2 * n * 12 * c * c * depth / 1e9
    assert out["gflops"] > linear + attention


def test_unknown_preset_is_one_line_without_traceback():
    r = run_cli("info", "SETR_PUP_768x768_40k_cityscape")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "did you mean SETR_PUP_768x768_40k_cityscapes_bs_8" in r.stderr


def test_predict_bad_inputs(tmp_path, capsys):
    preset = "SETR_Naive_Base_768x768_40k_cityscapes_bs_8"
    assert main(["predict", preset, str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")]) == 1
    assert "nope.jpg: no such file or folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", preset, str(empty), "--out", str(tmp_path / "o")]) == 1
    assert "folder contains no images" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    small = build_model(tiny_config("naive"))
    ckpt = tmp_path / "other.pth"
    torch.save({"state_dict": small.state_dict()}, ckpt)
    assert main(["predict", preset, str(bad), "-c", str(ckpt), "--out", str(tmp_path / "o")]) == 1
    assert "checkpoint does not match the model" in capsys.readouterr().err
    text = tmp_path / "weights.pth"
    text.write_text("garbage")
    assert main(["predict", preset, str(bad), "-c", str(text), "--out", str(tmp_path / "o")]) == 1
    assert "not a PyTorch checkpoint" in capsys.readouterr().err


def test_segmenter_api_tiny(tmp_path):
    cfg = tiny_config("pup", dataset="ade20k", num_classes=150)
    seg = Segmenter(build_model(cfg, with_aux=False), cfg, mode="slide")
    image = np.asarray(Image.open(write_image(tmp_path / "a.png", 50, 70)))
    labels = seg.predict(image)
    assert labels.shape == (50, 70) and labels.dtype == np.uint8 and labels.max() < 150
    assert seg.predict(tmp_path / "a.png").tolist() == labels.tolist()
    over = seg.overlay(image, labels)
    assert over.shape == image.shape
    seg.aug = True
    assert seg.predict(image).shape == (50, 70)
    with pytest.raises(SetrError, match="RGB image"):
        seg.predict(np.zeros((4, 4)))
    seg.aug = False
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        write_image(tmp_path / d / "same.png", 30, 40)
    written = seg.predict_files([tmp_path / "a", tmp_path / "b"], tmp_path / "out", progress=False)
    assert [p.name for p in written] == ["a_same.png", "b_same.png"]  # a shared stem: both get their folder


def test_predict_end_to_end_real_vit_b_original_checkpoint(tmp_path):
    """The real-size ViT-B preset, weights in the original mmcv format, images in a folder and a file."""
    preset = presets.get("SETR_Naive_Base_768x768_40k_cityscapes_bs_8")
    model = build_model(preset.model)
    sd = dict(model.state_dict())
    sd["decode_head.conv_seg.weight"] = torch.zeros(19, 512, 1, 1)
    sd["decode_head.conv_seg.bias"] = torch.zeros(19)
    ckpt = tmp_path / "setr_naive_base_iter_40000.pth"
    torch.save({"meta": {"CLASSES": list(range(19))}, "state_dict": sd, "optimizer": {}}, ckpt)
    del model, sd
    images = tmp_path / "imgs"
    images.mkdir()
    write_image(images / "street.jpg", 120, 120, seed=1)  # square: the Cityscapes test scale makes it 1025x1025
    single = write_image(tmp_path / "single.png", 90, 90, seed=2)
    out = tmp_path / "pred"
    r = run_cli("predict", preset.name, str(images), str(single), "-c", str(ckpt), "--out", str(out),
                "--mode", "whole", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "wrote 2 label maps" in r.stdout and "mode=whole" in r.stdout
    for stem, (h, w) in (("street", (120, 120)), ("single", (90, 90))):
        labels = np.asarray(Image.open(out / f"{stem}.png"))
        assert labels.shape == (h, w) and labels.max() < 19
        overlay = Image.open(out / f"{stem}_overlay.jpg")
        assert overlay.size == (w, h) and overlay.mode == "RGB"


def test_own_checkpoint_keeps_its_config_under_the_preset_name(tmp_path, capsys):
    from setr.model_files import save_model
    from setr.overrides import apply_overrides

    from helpers import tiny_sets

    preset = presets.get("SETR_PUP_768x768_40k_cityscapes_bs_8")
    apply_overrides(preset, tiny_sets(preset) + ["model.num_classes=5", "model.backbone.grad_checkpointing=true",
                                                 "model.dataset=folder", "model.class_names=['a','b','c','d','e']"])
    ckpt = save_model(build_model(preset.model, with_aux=False), preset.model, tmp_path / "m.safetensors")
    write_image(tmp_path / "x.png", 40, 50)
    assert main(["predict", preset.name, str(tmp_path / "x.png"), "-c", str(ckpt), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    assert np.asarray(Image.open(tmp_path / "o" / "x.png")).max() < 5
    with pytest.raises(SystemExit):
        main(["predict", preset.name, str(tmp_path / "x.png"), "--out", str(tmp_path / "o"), "--window-batch", "0"])
    mla = presets.get("SETR_MLA_768x768_40k_cityscapes_bs_8").name
    assert main(["predict", mla, str(tmp_path / "x.png"), "-c", str(ckpt), "--out", str(tmp_path / "o")]) == 1
    assert "checkpoint holds a vit/pup model, the preset is vit_mla/mla" in capsys.readouterr().err
