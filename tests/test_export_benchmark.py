"""ONNX export verified with onnxruntime; the benchmark command runs (speed itself is measured in benchmarks/)."""
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from setr.model_files import save_model
from setr.cli import main
from setr.config import build_model
from setr.errors import SetrError
from setr.overrides import apply_overrides
from setr import presets

from helpers import tiny_sets


@pytest.mark.parametrize("name", ["SETR_PUP_768x768_40k_cityscapes_bs_8", "SETR_MLA_512x512_160k_ade20k_bs_16"])
def test_onnx_export_matches_pytorch(tmp_path, capsys, name):
    preset = presets.get(name)
    apply_overrides(preset, tiny_sets(preset))
    model = build_model(preset.model, with_aux=False).eval()
    ckpt = save_model(model, preset.model, tmp_path / "m.safetensors")
    out = tmp_path / "m.onnx"
    assert main(["export", name, "-c", str(ckpt), "--onnx", str(out), "--shape", "64", "96", "--dynamic",
                 "--verify"]) == 0
    assert "max abs diff" in capsys.readouterr().out
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 64, 96)
    got = sess.run(None, {"img": x.numpy()})[0]
    with torch.no_grad():
        want = model.encode_decode(x).numpy()
    assert got.shape == (3, preset.model.num_classes, 64, 96)
    assert np.abs(got - want).max() <= 1e-4


def test_benchmark_command_reports_all_fields(capsys):
    preset = presets.get("SETR_PUP_768x768_40k_cityscapes_bs_8")
    sets = tiny_sets(preset)
    assert main(["benchmark", preset.name, "--shape", "64", "64", "--runs", "2", "--precision", "fp32",
                 "--json", "--set", *sets]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["median_s"] > 0 and r["images_per_s"] > 0 and r["gflops_per_step"] > 0
    assert 0 < r["fraction_of_matmul_peak"] and r["matmul_peak_tflops"] > 0 and "peak_memory_mb" in r
    assert main(["benchmark", preset.name, "--shape", "64", "64", "--runs", "2", "--train", "--batch-size", "2",
                 "--precision", "bf16", "--set", *sets]) == 0
    assert "train 64x64 batch 2 bf16" in capsys.readouterr().out


def test_bf16_predict_agrees_with_fp32():
    from setr.inference import Segmenter

    preset = presets.get("SETR_PUP_768x768_40k_cityscapes_bs_8")
    apply_overrides(preset, tiny_sets(preset) + ["model.test.mode=whole"])
    model = build_model(preset.model, with_aux=False)
    image = np.random.default_rng(0).integers(0, 255, (80, 120, 3), dtype=np.uint8)
    fp32 = Segmenter(model, preset.model, precision="fp32").predict_probs(image)
    bf16 = Segmenter(build_model(preset.model, with_aux=False).eval(), preset.model, precision="bf16")
    bf16.model.load_state_dict(model.state_dict())
    fast = bf16.predict_probs(image)
    assert fast.dtype == torch.float32 and bf16.window_batch == 8
    assert (fast - fp32).abs().max() < 0.05
    with pytest.raises(SetrError, match="fp16 is for GPUs"):
        Segmenter(model, preset.model, precision="fp16")
