import pytest
import torch

from setr.config import BackboneConfig, build_backbone
from setr.models.vit import SetrViT, SetrViTMLA, resample_patch_pos_embed


def test_outputs_every_block_with_cls_token():
    vit = SetrViT(img_size=32, patch_size=8, embed_dim=16, depth=3, num_heads=2).eval()
    outs = vit(torch.randn(2, 3, 32, 32))
    assert len(outs) == 3
    assert all(o.shape == (2, 1 + 16, 16) for o in outs)


def test_no_final_norm_and_original_keys():
    vit = SetrViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2)
    keys = set(vit.state_dict())
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.1.attn.qkv.weight",
            "blocks.1.mlp.fc2.bias", "blocks.0.norm1.weight"} <= keys
    assert not any(k.startswith("norm.") for k in keys)
    assert vit.blocks[0].norm1.eps == 1e-6


def test_any_input_size_resamples_position_embedding():
    vit = SetrViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2).eval()
    outs = vit(torch.randn(1, 3, 48, 24))  # non-square, not the training size
    assert outs[-1].shape == (1, 1 + 6 * 3, 16)


def test_resample_is_bilinear_align_corners_false_and_keeps_cls_row():
    pe = torch.randn(1, 1 + 4 * 4, 8)
    out = resample_patch_pos_embed(pe, (8, 8))
    assert out.shape == (1, 65, 8)
    assert torch.equal(out[:, 0], pe[:, 0])
    grid = pe[:, 1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(grid, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(out[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 64, 8), atol=1e-6)


def test_deit_distillation_row_is_dropped():
    pe = torch.randn(1, 2 + 3 * 3, 4)  # [cls, dist, 3x3 patches]
    out = resample_patch_pos_embed(pe, (3, 3))
    assert torch.equal(out[:, 0], pe[:, 0])
    assert torch.equal(out[:, 1:], pe[:, 2:])


def test_mla_drops_cls_before_blocks():
    vit = SetrViTMLA(img_size=32, patch_size=8, embed_dim=16, depth=4, num_heads=2, mla_index=(0, 1, 2, 3),
                     mla_channels=8).eval()
    maps = vit(torch.randn(1, 3, 32, 32))
    assert [m.shape for m in maps] == [(1, 8, 4, 4)] * 4
    # the cls token never influences the output (reference quirk: dead weight)
    with torch.no_grad():
        before = vit(torch.ones(1, 3, 32, 32))[0].clone()
        vit.cls_token.add_(10.0)
        vit.pos_embed[:, 0].add_(10.0)
        after = vit(torch.ones(1, 3, 32, 32))[0]
    assert torch.equal(before, after)


def test_mla_index_must_have_four_levels():
    with pytest.raises(ValueError, match="4 blocks"):
        SetrViTMLA(img_size=32, patch_size=8, embed_dim=16, depth=4, num_heads=2, mla_index=(1, 2))


@pytest.mark.parametrize("name,embed,depth,heads,params", [
    ("vit_large", 1024, 24, 16, 305_458_176),  # CS 768 backbone, from the original's key manifest
    ("vit_base", 768, 12, 12, 87_416_064),
])
def test_real_sizes_on_meta(name, embed, depth, heads, params):
    with torch.device("meta"):
        vit = build_backbone(BackboneConfig(img_size=(768, 768), embed_dim=embed, depth=depth, num_heads=heads))
    assert sum(p.numel() for p in vit.parameters()) == params
    assert vit.pos_embed.shape == (1, 48 * 48 + 1, embed)


def test_keep_holds_only_the_block_outputs_the_heads_read():
    vit = SetrViT(img_size=(32, 32), patch_size=16, embed_dim=32, depth=4, num_heads=2).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        every = vit(x)
        kept = vit(x, keep=[1, -1])
    assert [o is None for o in kept] == [True, False, True, False]
    assert torch.equal(kept[1], every[1]) and torch.equal(kept[3], every[3])


def test_segmentor_asks_its_backbone_for_the_heads_blocks_only(monkeypatch):
    from tests.helpers import tiny_config
    from setr.config import build_model

    model = build_model(tiny_config(img_size=(64, 64)), with_aux=True).eval()
    asked = []
    forward = type(model.backbone).forward
    monkeypatch.setattr(type(model.backbone), "forward",
                        lambda self, x, keep=None: asked.append(keep) or forward(self, x, keep))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model.encode_decode(x)
        model.forward_train(x)
    assert asked == [[model.decode_head.in_index],
                     [model.decode_head.in_index] + [a.in_index for a in model.auxiliary_head]]
