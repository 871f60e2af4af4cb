import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from setr.model_files import (load_model, load_weights, load_pretrained_backbone, read_config,
                              save_model)
from setr.config import build_model
from setr.errors import SetrError

from helpers import tiny_config


def original_checkpoint(model, num_classes=4):
    """An mmcv-format checkpoint as the original code writes it, unused conv_seg layers included."""
    sd = dict(model.state_dict())
    for prefix in ["decode_head"] + [f"auxiliary_head.{i}" for i in range(len(model.auxiliary_head))]:
        sd[f"{prefix}.conv_seg.weight"] = torch.randn(num_classes, 512, 1, 1)
        sd[f"{prefix}.conv_seg.bias"] = torch.randn(num_classes)
    return {"meta": {"CLASSES": ["a"] * num_classes, "PALETTE": [[0, 0, 0]] * num_classes},
            "state_dict": sd, "optimizer": {"state": {}}}


@pytest.mark.parametrize("head", ["naive", "pup", "mla"])
def test_original_checkpoint_loads_and_ignores_conv_seg(tmp_path, head):
    cfg = tiny_config(head)
    src = build_model(cfg).eval()
    path = tmp_path / "iter_40000.pth"
    torch.save(original_checkpoint(src), path)
    dst = load_weights(build_model(cfg).eval(), path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(src.encode_decode(x), dst.encode_decode(x))


def test_inference_model_skips_aux_weights(tmp_path):
    cfg = tiny_config("pup")
    path = tmp_path / "ckpt.pth"
    torch.save(original_checkpoint(build_model(cfg)), path)
    model = load_weights(build_model(cfg, with_aux=False), path)
    assert len(model.auxiliary_head) == 0


def test_checkpoint_for_another_model_names_the_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(original_checkpoint(build_model(tiny_config("naive"))), path)
    with pytest.raises(SetrError, match=r"other\.pth: checkpoint does not match the model: .*missing keys"):
        load_weights(build_model(tiny_config("pup")), path)


def test_checkpoint_for_another_class_count(tmp_path):
    path = tmp_path / "k7.pth"
    torch.save(original_checkpoint(build_model(tiny_config("pup", num_classes=7)), 7), path)
    with pytest.raises(SetrError, match="shape mismatch"):
        load_weights(build_model(tiny_config("pup", num_classes=4)), path)


def test_position_embedding_of_another_crop_is_resampled(tmp_path):
    src = build_model(tiny_config("pup", img_size=(48, 48)))
    path = tmp_path / "big.pth"
    torch.save(original_checkpoint(src), path)
    dst = load_weights(build_model(tiny_config("pup", img_size=(32, 32))), path)
    assert dst.backbone.pos_embed.shape == (1, 17, 32)


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("hello")
    with pytest.raises(SetrError, match=r"notes\.pth: not a PyTorch checkpoint"):
        load_weights(build_model(tiny_config("pup")), bad)
    with pytest.raises(SetrError, match="not found"):
        load_weights(build_model(tiny_config("pup")), tmp_path / "missing.pth")


def test_own_format_round_trip_rebuilds_from_the_file_alone(tmp_path):
    cfg = tiny_config("mla", dataset="ade20k")
    model = build_model(cfg, with_aux=False).eval()
    path = save_model(model, cfg, tmp_path / "model.safetensors")
    assert path.with_suffix(".json").is_file()
    (tmp_path / "model.json").unlink()  # the config also lives inside the safetensors metadata
    assert read_config(path) == cfg
    loaded, cfg2 = load_model(path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.encode_decode(x), loaded.eval().encode_decode(x))
    assert not list(tmp_path.glob("*.tmp"))


def test_own_checkpoint_with_wrong_preset_is_refused(tmp_path):
    cfg = tiny_config("pup")
    path = save_model(build_model(cfg, with_aux=False), cfg, tmp_path / "m.safetensors")
    with pytest.raises(SetrError, match="4 classes"):
        load_model(path, tiny_config("pup", num_classes=9))


# --------------------------------------------------------------------------- ImageNet weights
def timm_vit(**kw):
    return timm.models.vision_transformer.VisionTransformer(img_size=48, patch_size=8, embed_dim=32, depth=2,
                                                            num_heads=2, num_classes=10, **kw)


def backbone_of(head="pup"):
    return build_model(tiny_config(head, depth=2, img_size=(32, 32))).backbone


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_layout_pretrained_weights(tmp_path, suffix):
    vit = timm_vit()
    path = tmp_path / f"jx_vit{suffix}"
    sd = vit.state_dict()
    torch.save(sd, path) if suffix == ".pth" else save_file(sd, str(path))
    bb = backbone_of()
    report = load_pretrained_backbone(bb, path)
    assert "head.weight" in report["unexpected"] or not report["unexpected"]
    assert torch.equal(bb.blocks[1].attn.qkv.weight, sd["blocks.1.attn.qkv.weight"])
    assert bb.pos_embed.shape == (1, 17, 32)  # 6x6 grid resampled to 4x4
    assert torch.equal(bb.pos_embed[:, 0], sd["pos_embed"][:, 0])


def test_deit_distilled_checkpoint_with_model_key(tmp_path):
    deit = timm.models.deit.VisionTransformerDistilled(img_size=48, patch_size=8, embed_dim=32, depth=2,
                                                       num_heads=2, num_classes=10)
    sd = deit.state_dict()
    assert "dist_token" in sd and sd["pos_embed"].shape[1] == 2 + 36
    path = tmp_path / "deit_base_distilled_patch16_384-d0272ac0.pth"
    torch.save({"model": sd}, path)
    bb = backbone_of()
    load_pretrained_backbone(bb, path)
    assert torch.equal(bb.pos_embed[:, 0], sd["pos_embed"][:, 0])  # the cls row; the dist row is dropped
    grid = sd["pos_embed"][:, 2:].reshape(1, 6, 6, 32).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bilinear", align_corners=False)
    assert torch.allclose(bb.pos_embed[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 16, 32), atol=1e-6)


def write_jax_npz(vit, path):
    """A JAX/Flax-layout .npz of a timm ViT (the inverse of timm's loader), like Google's checkpoints."""
    sd = {k: v.detach().numpy() for k, v in vit.state_dict().items()}
    c = sd["cls_token"].shape[-1]
    heads = vit.blocks[0].attn.num_heads
    w = {"embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
         "embedding/bias": sd["patch_embed.proj.bias"], "cls": sd["cls_token"],
         "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
         "Transformer/encoder_norm/scale": sd["norm.weight"], "Transformer/encoder_norm/bias": sd["norm.bias"],
         "head/kernel": sd["head.weight"].T, "head/bias": sd["head.bias"]}
    for i in range(len(vit.blocks)):
        b, p = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        w[p + "LayerNorm_0/scale"], w[p + "LayerNorm_0/bias"] = sd[b + "norm1.weight"], sd[b + "norm1.bias"]
        w[p + "LayerNorm_2/scale"], w[p + "LayerNorm_2/bias"] = sd[b + "norm2.weight"], sd[b + "norm2.bias"]
        qkv_w, qkv_b = sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]
        for j, n in enumerate(("query", "key", "value")):
            w[p + f"MultiHeadDotProductAttention_1/{n}/kernel"] = qkv_w[j * c:(j + 1) * c].T.reshape(c, heads, -1)
            w[p + f"MultiHeadDotProductAttention_1/{n}/bias"] = qkv_b[j * c:(j + 1) * c].reshape(heads, -1)
        w[p + "MultiHeadDotProductAttention_1/out/kernel"] = sd[b + "attn.proj.weight"].T.reshape(heads, -1, c)
        w[p + "MultiHeadDotProductAttention_1/out/bias"] = sd[b + "attn.proj.bias"]
        for r in range(2):
            w[p + f"MlpBlock_3/Dense_{r}/kernel"] = sd[b + f"mlp.fc{r + 1}.weight"].T
            w[p + f"MlpBlock_3/Dense_{r}/bias"] = sd[b + f"mlp.fc{r + 1}.bias"]
    np.savez(path, **w)


def test_jax_npz_through_timm_loader(tmp_path):
    vit = timm_vit()
    path = tmp_path / "ViT-B_16.npz"
    write_jax_npz(vit, path)
    bb = backbone_of()
    load_pretrained_backbone(bb, path)
    assert torch.allclose(bb.blocks[1].attn.qkv.weight, vit.blocks[1].attn.qkv.weight)
    assert torch.allclose(bb.blocks[0].mlp.fc2.bias, vit.blocks[0].mlp.fc2.bias)


def test_mla_neck_keeps_its_init_and_wrong_width_is_refused(tmp_path):
    vit = timm_vit()
    path = tmp_path / "w.pth"
    torch.save(vit.state_dict(), path)
    report = load_pretrained_backbone(backbone_of("mla"), path)
    assert any(k.startswith("mla.") for k in report["kept_init"])
    wide = timm.models.vision_transformer.VisionTransformer(img_size=48, patch_size=8, embed_dim=48, depth=2,
                                                            num_heads=2)
    torch.save(wide.state_dict(), path)
    with pytest.raises(SetrError, match="shape mismatch"):
        load_pretrained_backbone(backbone_of(), path)


def test_unknown_hub_name_is_a_clear_error():
    with pytest.raises(SetrError, match="not a local file"):
        load_pretrained_backbone(backbone_of(), "no_such_model_name_xyz")
