"""The inference fast paths: attention kernels, weights stored in the autocast dtype, int8 linear layers.
Correctness only (speed is measured in benchmarks/cpu_fast_paths.py)."""
import copy

import pytest
import torch
from torch import nn

from setr.config import build_model
from setr.errors import SetrError
from setr.inference import Segmenter
from setr.models.vit import SetrAttention, set_attention_kernel
from setr.precision import autocast, prepare_for_inference, resolve_precision
from setr import presets

DEMO = "setr_demo_pup_tiny_64x64_shapes"


def demo_model(seed=0):
    torch.manual_seed(seed)
    cfg = presets.get(DEMO).model
    model = build_model(cfg, with_aux=False).eval()
    with torch.no_grad():  # BN statistics away from the identity so every layer matters
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    return model, cfg


def logits(model, x, precision="fp32"):
    with torch.inference_mode(), autocast(precision, "cpu"):
        return model.encode_decode(x).float()


def test_vit_blocks_use_setr_attention_with_timm_keys():
    model, _ = demo_model()
    assert all(isinstance(b.attn, SetrAttention) for b in model.backbone.blocks)
    assert "backbone.blocks.0.attn.qkv.weight" in model.state_dict()


@pytest.mark.parametrize("kernel", ["math", "chunked"])
def test_attention_kernels_compute_the_same_function(kernel, monkeypatch):
    import setr.models.vit as vit

    monkeypatch.setattr(vit, "CHUNK_QUERIES", 16)  # several chunks over the 65 tokens of the demo model
    model, _ = demo_model()
    x = torch.randn(2, 3, 64, 64)
    want = logits(model, x)
    got = logits(set_attention_kernel(copy.deepcopy(model), kernel), x)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)


def test_training_always_runs_sdpa():
    model, _ = demo_model()
    set_attention_kernel(model, "math").train()
    x = torch.randn(2, 3, 64, 64)
    attn = model.backbone.blocks[0].attn
    tokens = torch.randn(2, 65, attn.qkv.in_features)
    assert torch.equal(attn(tokens), super(SetrAttention, attn).forward(tokens))
    with pytest.raises(ValueError, match="attention kernel"):
        set_attention_kernel(model, "fast")
    model(x)  # trains through sdpa


def test_bf16_path_stores_weights_in_bf16_with_identical_arithmetic():
    model, _ = demo_model()
    x = torch.randn(1, 3, 64, 64)
    reference = logits(copy.deepcopy(model).to(memory_format=torch.channels_last), x, "bf16")  # plain autocast
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fast = prepare_for_inference(copy.deepcopy(model), "bf16", "cpu")
    assert fast.backbone.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert fast.decode_head.conv_0.weight.dtype == torch.bfloat16
    assert torch.equal(logits(fast, x, "bf16"), reference)
    saved = fast.state_dict()  # still the full-precision weights: saving a prepared model stays exact
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[k], state[k]) and saved[k].dtype == state[k].dtype for k in state)


def randomise_batchnorm(model):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
        for name, p in model.named_parameters():
            if "syncbn" in name or ".1." in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def test_fp32_path_folds_head_batchnorm_keeping_the_weights():
    model, _ = demo_model()
    randomise_batchnorm(model)
    x = torch.randn(1, 3, 64, 64)
    want = logits(model, x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare_for_inference(model, "fp32", "cpu")
    assert prepared is model
    bns = [m for m in model.decode_head.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    calls = []
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in bns]
    got = logits(prepared, x)
    assert not calls  # the BatchNorms no longer run: folded into the convolutions
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5) and not torch.equal(got, torch.zeros_like(got))
    saved = model.state_dict()  # parameters, statistics and keys untouched
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in state)
    # the fold follows the weights: new statistics, new result; training mode runs the BatchNorm itself
    with torch.no_grad():
        model.decode_head.syncbn_fc_0.running_mean.add_(1.0)
    moved = logits(prepared, x)
    assert not torch.allclose(moved, want, atol=1e-3)
    reference = demo_model()[0]
    reference.load_state_dict(model.state_dict())
    assert torch.allclose(moved, logits(reference.eval(), x), atol=1e-5, rtol=1e-5)
    model.train()
    model.decode_head(model.backbone(x))  # train mode: BatchNorm runs (batch statistics), no error
    assert calls
    for h in hooks:
        h.remove()


def test_mla_head_folds_its_sequential_convolutions():
    from setr.precision import conv_bn_pairs

    model, _ = demo_model()
    assert len(conv_bn_pairs(model.decode_head)) == 4  # the demo's PUP head: conv_i -> syncbn_fc_i
    from setr.models.heads.common import ConvBNSequential, conv_bn_relu

    seq = ConvBNSequential(*conv_bn_relu(8, 8, 3), *conv_bn_relu(8, 8, 3)).eval()
    randomise_batchnorm(seq)
    assert [(c, b) for _, c, b in conv_bn_pairs(seq)] == [("0", "1"), ("3", "4")]
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        want = seq(x)
        prepare_for_inference(seq, "fp32", "cpu")
        assert torch.allclose(seq(x), want, atol=1e-5, rtol=1e-5)


def test_int8_path_quantizes_linear_layers_and_agrees_with_fp32():
    model, cfg = demo_model()
    with torch.no_grad():  # decisive logits (random heads give near-ties everywhere)
        model.decode_head.conv_4.weight.mul_(100)
    x = torch.randn(2, 3, 64, 64)
    want = logits(model, x)
    q = prepare_for_inference(copy.deepcopy(model), "int8", "cpu")
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    assert isinstance(q.backbone.blocks[0].attn.qkv, DynamicInt8Linear)
    assert isinstance(q.backbone.blocks[0].mlp.fc2, DynamicInt8Linear)
    from setr.precision import DynamicInt8Conv2d, has_int8_convolution

    head = q.decode_head
    if has_int8_convolution():  # x86 builds: the head's conv + BN pairs are int8 with the BN folded in
        assert all(isinstance(getattr(head, f"conv_{i}"), DynamicInt8Conv2d) for i in range(1, 4))
    assert type(head.conv_0) is nn.Conv2d  # the first reads the encoder's signed features: fp32, BN folded in
    assert all(isinstance(getattr(head, f"syncbn_fc_{i}"), nn.Identity) for i in range(4))
    assert isinstance(head.conv_4, nn.Conv2d)  # the classifier stays fp32
    assert isinstance(model.decode_head.conv_0, nn.Conv2d)  # the caller's model keeps its layers
    got = logits(q, x, "int8")
    assert got.shape == want.shape
    # int8 weights and activations: close, not equal
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    top2 = want.topk(2, dim=1).values
    confident = (top2[:, 0] - top2[:, 1]) > 0.1
    assert confident.float().mean() > 0.2
    assert (got.argmax(1) == want.argmax(1))[confident].float().mean() > 0.99


def test_int8_precision_is_cpu_inference_only(tmp_path):
    assert resolve_precision("int8", "cpu") == "int8"
    with pytest.raises(SetrError, match="int8 is for CPU inference"):
        resolve_precision("int8", "cuda")
    model, cfg = demo_model()
    seg = Segmenter(model, cfg, precision="int8")
    labels = seg.predict((torch.rand(40, 50, 3) * 255).to(torch.uint8).numpy())
    assert labels.shape == (40, 50)
    with pytest.raises(SetrError, match="int8"):
        seg.save_pretrained(tmp_path / "x")


def test_benchmark_refuses_int8_training(capsys):
    from setr.cli import main

    assert main(["benchmark", DEMO, "--train", "--precision", "int8", "--runs", "1"]) == 1
    assert "int8 is for inference" in capsys.readouterr().err


def test_hlg_models_are_not_precast():
    from setr.precision import precast_matmul_weights

    model = nn.Sequential(nn.Linear(4, 4))
    precast_matmul_weights(model, torch.bfloat16)  # not a SETR ViT model: left alone
    assert model[0].weight.dtype == torch.float32


def test_dynamic_int8_convolution_matches_fp32_at_every_pixel_borders_included():
    from setr.precision import DynamicInt8Conv2d, has_int8_convolution

    if not has_int8_convolution():
        pytest.skip("this PyTorch build has no oneDNN quantized convolution (non-x86)")
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 16, 3, padding=1)
    q = DynamicInt8Conv2d(conv)
    relu_input = torch.randn(1, 32, 12, 14).relu()
    signed_input = torch.randn(1, 32, 12, 14)
    with torch.no_grad():
        want, got = conv(relu_input), q(relu_input)
        assert got.shape == want.shape
        assert (got - want).abs().max() < 0.03 * want.abs().max()  # int8: close, not equal
        # exactly the int8 arithmetic, borders included: 7-bit input codes over [0, max] (no int16 overflow
        # without VNNI), int8 weights per channel
        x_scale = relu_input.max() / 127
        w_scale = conv.weight.abs().amax(dim=(1, 2, 3)) / 127
        x_int = torch.round(relu_input / x_scale).clamp(0, 127)
        w_int = torch.round(conv.weight / w_scale[:, None, None, None]).clamp(-128, 127)
        fake = nn.functional.conv2d(x_int * x_scale, w_int * w_scale[:, None, None, None], conv.bias, padding=1)
        assert torch.allclose(got, fake, atol=1e-4 * float(want.abs().max()), rtol=0)
        # inputs with negative values run fp32 (oneDNN pads the quantized input with the integer 0)
        assert torch.allclose(q(signed_input), conv(signed_input), atol=1e-5, rtol=1e-5)
