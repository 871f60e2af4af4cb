"""FLOP counts: the attention matmuls are counted whichever kernel runs them (PyTorch's FlopCounterMode has no
formula for the CPU flash-attention kernel), equal the closed-form formula, and `setr flops` and `setr benchmark`
agree. (Speed is measured in benchmarks/, never here.)"""
import json

import pytest
import torch

from setr.cli import main
from setr.complexity import count_flops, flop_counter, counter_result, segmentor_flops, build_on_meta, vit_flops
from setr.config import build_model
from setr.models.vit import SetrViT
from setr import presets

TINY = dict(img_size=(48, 64), patch_size=8, embed_dim=32, depth=3, num_heads=2, mlp_ratio=4.0)


def tiny_vit(device="cpu"):
    torch.manual_seed(0)
    with torch.device(device):
        return SetrViT(**TINY).eval()


def closed_form():
    return vit_flops(TINY["img_size"], TINY["patch_size"], TINY["embed_dim"], TINY["depth"], TINY["mlp_ratio"])


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_vit_count_equals_closed_form(device):
    x = torch.zeros(1, 3, *TINY["img_size"], device=device)
    got = count_flops(tiny_vit(device), x)
    want = closed_form()
    assert want["attention"] > 0
    assert got["flops"] == want["flops"]
    assert got["attention_flops"] == want["attention"]


def test_cpu_flash_kernel_is_counted_not_missed():
    """On the CPU, F.scaled_dot_product_attention runs the flash kernel, which PyTorch's counter alone misses."""
    from torch.utils.flop_counter import FlopCounterMode

    model, x = tiny_vit(), torch.zeros(1, 3, *TINY["img_size"])
    plain = FlopCounterMode(display=False)
    with torch.no_grad(), plain:
        model(x)
    ours = count_flops(model, x)
    assert "_scaled_dot_product_flash_attention_for_cpu" in ours["by_op"]
    assert ours["flops"] - plain.get_total_flops() == closed_form()["attention"]


def test_bf16_autocast_count_is_the_same():
    model, x = tiny_vit(), torch.zeros(1, 3, *TINY["img_size"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = count_flops(model, x)
    assert got["flops"] == closed_form()["flops"]


def test_training_step_counts_attention_backward():
    """Backward of the CPU flash kernel: 5 attention-sized matmuls (scores recomputed, dV, dP, dQ, dK)."""
    model = tiny_vit().train()
    x = torch.randn(2, 3, *TINY["img_size"])
    counter = flop_counter()
    with counter:
        sum(o.float().sum() for o in model(x)).backward()
    r = counter_result(counter)
    fwd_attention = 2 * closed_form()["attention"]  # batch 2
    assert r["by_op"]["_scaled_dot_product_flash_attention_for_cpu"] == fwd_attention
    assert r["by_op"]["_scaled_dot_product_flash_attention_for_cpu_backward"] == fwd_attention * 5 // 2


def test_segmentor_cpu_and_meta_counts_agree():
    preset = presets.get("setr_demo_pup_tiny_64x64_shapes")
    meta = segmentor_flops(build_on_meta(build_model, preset.model, with_aux=False), (64, 64))
    torch.manual_seed(0)
    cpu = segmentor_flops(build_model(preset.model, with_aux=False).eval(), (64, 64), device="cpu")
    assert meta["flops"] == cpu["flops"] and meta["attention_flops"] == cpu["attention_flops"] > 0


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_flops_and_benchmark_commands_agree(capsys, precision):
    """Every path counts the same work: attention by formula where PyTorch has none, int8 layers as the layers
    they replace."""
    name = "setr_demo_pup_tiny_64x64_shapes"
    assert main(["flops", name, "--shape", "64", "64", "--json"]) == 0
    flops = json.loads(capsys.readouterr().out)
    assert main(["benchmark", name, "--shape", "64", "64", "--runs", "1", "--precision", precision,
                 "--device", "cpu", "--json"]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert flops["attention_gflops"] > 0
    assert bench["gflops_per_step"] == pytest.approx(flops["gflops"], rel=1e-12)
    assert bench["attention_gflops_per_step"] == pytest.approx(flops["attention_gflops"], rel=1e-12)
