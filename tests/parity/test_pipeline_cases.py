"""Image-level golden cases (tests/fixtures/setr_pipeline, computed by the original code): real photographs
through the original's whole test pipeline, checked through the entry points users call."""
from __future__ import annotations

import copy
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from setr import Segmenter
from setr.cli import main
from setr.errors import SetrError
from setr.parity.pipeline import check_pipeline_case

from helpers import ROOT

CASES = ROOT / "tests" / "fixtures" / "setr_pipeline"
NAMES = ["pascal_context_pup_slide", "cityscapes_mla_slide", "ade20k_naive_ms_hvflip"]


def load(name: str) -> dict:
    return torch.load(CASES / f"{name}.pt", map_location="cpu", weights_only=False)  # our own test data


def unpack(field, hw, bits=False):
    raw = zlib.decompress(field["zlib"])
    if bits:
        return np.unpackbits(np.frombuffer(raw, np.uint8))[: hw[0] * hw[1]].reshape(hw).astype(bool)
    return np.frombuffer(raw, np.dtype(field["dtype"])).reshape(tuple(field["shape"]))


def original_checkpoint(case: dict, tmp_path: Path) -> Path:
    path = tmp_path / "original.pth"
    torch.save({"meta": {}, "state_dict": case["state_dict"]}, path)
    return path


@pytest.mark.parametrize("name", NAMES)
def test_segmenter_reproduces_the_original_from_file_to_label_map(name, tmp_path):
    """As a user calls it: an original checkpoint, the preset, --set strings, fp32 on the CPU."""
    case = load(name)
    c = case["config"]
    overrides = list(c["setr_overrides"])
    if list(c["flip_direction"]) != ["horizontal"]:
        overrides.append(f"test.flip_directions={list(c['flip_direction'])}")
    seg = Segmenter.from_checkpoint(original_checkpoint(case, tmp_path), preset=c["setr_preset"],
                                    overrides=overrides, precision="fp32", device="cpu")
    for image in c["images"]:
        r = case["results"][image]
        out = seg.segment(CASES / f"{image}.png")
        hw = tuple(r["ori_hw"])
        assert out.probs.shape == (c["num_classes"], *hw) and out.labels.shape == hw
        assert len(seg.views(hw)) == len(r["views"])
        err = (out.probs[:, ::c["sub"], ::c["sub"]] - r["probs_sub"]).abs().max().item()
        assert err <= 1e-4, f"{image}: max |p - golden| = {err}"
        confident = unpack(r["confident"], hw, bits=True)
        assert not ((out.labels != unpack(r["pred"], hw)) & confident).any()
        assert torch.equal(out.probs, seg.predict_probs(CASES / f"{image}.png"))


def test_vertical_flip_views_follow_the_original_order():
    case = load("ade20k_naive_ms_hvflip")
    seg = Segmenter.from_preset(case["config"]["setr_preset"], overrides=[
        *case["config"]["setr_overrides"], "model.test.flip_directions=[horizontal,vertical]"])
    hw = tuple(case["results"]["hubble_portrait"]["ori_hw"])
    views = [(v.size, v.flip) for v in seg.views(hw)]
    want = [(tuple(v["img_shape"][:2]), v["flip_direction"] if v["flip"] else None)
            for v in case["results"]["hubble_portrait"]["views"]]
    assert views == want and len(views) == 12


def test_flip_direction_must_be_known():
    with pytest.raises(SetrError, match="flip_directions"):
        Segmenter.from_preset("setr_demo_pup_tiny_64x64_shapes", overrides=["model.test.flip_directions=[diagonal]"])


def test_checker_script_passes_a_case_and_names_each_output():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_reference_case.py"),
                          str(CASES / "pascal_context_pup_slide.pt")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok   camera.probs" in out.stdout and "ok   hubble_portrait.labels" in out.stdout


@pytest.mark.parametrize("edit, field", [
    (lambda c: c["config"].__setitem__("new_setting", 1), "config.new_setting"),
    (lambda c: c["config"]["test_pipeline"][1].__setitem__("flip_direction", ["diagonal"]),
     "config.test_pipeline.1.flip_direction.0"),
    (lambda c: c["config"]["test_pipeline"][1]["transforms"][0].__setitem__("keep_ratio", False),
     "config.test_pipeline.1.transforms.0.keep_ratio"),
    (lambda c: c["config"]["test_pipeline"][1]["transforms"][2].__setitem__("to_rgb", False),
     "config.test_pipeline.1.transforms.2.to_rgb"),
    (lambda c: c["config"]["test_pipeline"][1]["transforms"].insert(1, {"type": "Pad", "size": (8, 8)}),
     "config.test_pipeline.1.transforms"),
    (lambda c: c["config"]["test_cfg"].__setitem__("mode", "sliding"), "config.test_cfg.mode"),
    (lambda c: c["config"]["mmseg_model_cfg"]["backbone"].__setitem__("embed_dim", 64),
     "config.mmseg_model_cfg.backbone.embed_dim"),
    (lambda c: c["results"]["camera"].__setitem__("extra", 0), "results.camera.extra"),
])
def test_checker_fails_naming_any_field_it_does_not_implement(edit, field):
    case = load("pascal_context_pup_slide")
    case["config"]["images"] = ["camera"]
    case = copy.deepcopy(case)
    edit(case)
    with pytest.raises(SetrError, match=f"fixture field {field.replace('.', '[.]')}[:]"):
        check_pipeline_case(case, image_dir=CASES)


def test_predict_cli_fp32_equals_the_original_label_map(tmp_path, capsys):
    case = load("pascal_context_pup_slide")
    c = case["config"]
    ckpt = original_checkpoint(case, tmp_path)
    code = main(["predict", c["setr_preset"], str(CASES / "camera.png"), "-c", str(ckpt), "--out",
                 str(tmp_path / "out"), "--precision", "fp32", "--no-progress", "--set", *c["setr_overrides"]])
    assert code == 0
    labels = np.asarray(Image.open(tmp_path / "out" / "camera.png"))
    r = case["results"]["camera"]
    hw = tuple(r["ori_hw"])
    assert labels.shape == hw
    confident = unpack(r["confident"], hw, bits=True)
    assert not ((labels != unpack(r["pred"], hw)) & confident).any()
    assert (labels == unpack(r["pred"], hw)).mean() > 0.999


def test_a_much_larger_image_than_the_test_scale_warns(tmp_path, capsys):
    """The demo preset keeps the image size (whole mode): a photo 20x its crop side is slow; say so."""
    Image.fromarray(np.full((640, 700, 3), 90, np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "small.png")
    code = main(["predict", "setr_demo_pup_tiny_64x64_shapes", str(tmp_path / "small.png"), "--out",
                 str(tmp_path / "o1"), "--no-progress", "--random-weights"])
    assert code == 0 and "much larger" not in capsys.readouterr().err
    code = main(["predict", "setr_demo_pup_tiny_64x64_shapes", str(tmp_path / "big.png"), "--out",
                 str(tmp_path / "o2"), "--no-progress", "--random-weights"])
    err = capsys.readouterr().err
    assert code == 0 and "image 700x640 is much larger than this preset expects" in err and "--mode slide" in err


def test_window_progress_on_a_large_image_in_slide_mode():
    seg = Segmenter.from_preset("setr_demo_pup_tiny_64x64_shapes", mode="slide")
    seg.progress = True
    calls = []
    image = np.full((600, 520, 3), 90, np.uint8)
    on_windows = seg._warn_if_large(image, seg.views(image.shape[:2]))
    assert on_windows is not None
    on_windows.close()
    seg.model.slide_inference(torch.zeros(1, 3, 128, 128), (64, 64), (42, 42),
                              on_windows=lambda n, total: calls.append((n, total)))
    assert calls[-1] == (9, 9) and [c[0] for c in calls] == list(range(1, 10))
