"""timm feature extraction for HLG (``features_only``, ``forward_intermediates``), checked the way timm's own
tests/test_models.py checks its models: channels and reductions from ``feature_info``, one map per entry, spatial
size at most ceil(size / reduction) + 1, no NaNs, ``forward_intermediates`` final output == ``forward_features``,
same output with grad checkpointing. Real sizes only on the meta device; forwards at small widths."""
import math

import pytest
import timm
import torch

import setr  # noqa: F401  (registers hlg_* with timm)
from setr.models.hlg import HLG, HLG_VARIANTS, tokens_to_nchw

VARIANTS = sorted(HLG_VARIANTS)
SMALL = dict(embed_dims=(16, 32, 64, 128), num_heads=(1, 2, 4, 8))


@pytest.mark.parametrize("variant", VARIANTS)
def test_feature_info_every_variant_real_size_on_meta(variant):
    with torch.device("meta"):
        model = timm.create_model(f"hlg_{variant}", features_only=True)
    dims = list(HLG_VARIANTS[variant]["embed_dims"])
    assert model.feature_info.channels() == dims
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.module_name() == ["block1", "block2", "block3", "block4"]
    assert not hasattr(model.model, "head")  # the classifier is pruned
    assert [len(s) for s in model.model.stages] == list(HLG_VARIANTS[variant]["depths"])

    with torch.device("meta"):
        picked = timm.create_model(f"hlg_{variant}", features_only=True, out_indices=(1, 2))
    assert picked.feature_info.channels() == dims[1:3]
    assert picked.feature_info.reduction() == [8, 16]
    assert len(picked.model.block4) == 0  # stages after the last wanted one are dropped


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("feature_cls", [None, "getter"])
def test_features_forward_every_variant(variant, feature_cls):
    """Each variant's depths, small widths; an input that is not a multiple of 32."""
    kw = dict(feature_cls=feature_cls) if feature_cls else {}
    torch.manual_seed(0)
    model = timm.create_model(f"hlg_{variant}", features_only=True, **SMALL, **kw).eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert channels == list(SMALL["embed_dims"]) and reductions == [4, 8, 16, 32]
    size = (40, 56)
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, *size))
    assert len(outputs) == len(channels) == 4
    for c, r, o in zip(channels, reductions, outputs, strict=True):
        assert o.shape == (2, c, math.ceil(size[0] / r), math.ceil(size[1] / r))  # HLG rounds every stride up
        assert not torch.isnan(o).any()


def test_forward_intermediates_as_timm_tests_it():
    torch.manual_seed(0)
    model = timm.create_model("hlg_tiny", **SMALL).eval()
    info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        output, intermediates = model.forward_intermediates(x, output_fmt="NCHW")
        assert len(intermediates) == len(info.channels()) == 4
        for c, r, o in zip(info.channels(), info.reduction(), intermediates, strict=True):
            assert o.shape[1] == c
            assert o.shape[2] <= math.ceil(48 / r) + 1 and o.shape[3] <= math.ceil(64 / r) + 1
        assert torch.allclose(output, model.forward_features(x))
        # the last map with the final norm is the classifier's token map
        normed = model.forward_intermediates(x, indices=[-1], norm=True, intermediates_only=True)
        assert len(normed) == 1
        torch.testing.assert_close(normed[0], tokens_to_nchw(output, normed[0].shape[-2:]), rtol=0, atol=0)
        nhwc = model.forward_intermediates(x, indices=2, output_fmt="NHWC", intermediates_only=True)
        assert [t.shape[-1] for t in nhwc] == [64, 128]
        torch.testing.assert_close(nhwc[0], intermediates[2].permute(0, 2, 3, 1), rtol=0, atol=0)
    model.set_grad_checkpointing()
    with torch.no_grad():
        output3, _ = model.forward_intermediates(x)
    assert torch.allclose(output, output3, rtol=1e-4, atol=1e-5)


def test_features_only_equals_the_full_models_stage_maps():
    """Weights of a classifier loaded into a features_only model give the classifier's own stage maps."""
    torch.manual_seed(0)
    full = timm.create_model("hlg_tiny", **SMALL, num_classes=7).eval()
    feats = timm.create_model("hlg_tiny", **SMALL, features_only=True, out_indices=(0, 2)).eval()
    result = feats.model.load_state_dict(full.state_dict(), strict=False)
    assert result.missing_keys == []
    assert all(k.startswith(("block4.", "norm.", "head.")) for k in result.unexpected_keys)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = full.forward_intermediates(x, intermediates_only=True)
        got = feats(x)
    assert len(got) == 2
    for g, w in zip(got, (want[0], want[2]), strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_dense_model_intermediates_are_its_dense_outputs():
    torch.manual_seed(0)
    model = HLG(**SMALL, depths=(1, 2, 1, 1), num_classes=0, dense=True).eval()
    x = torch.randn(2, 3, 50, 70)
    with torch.no_grad():
        dense = model.forward_dense(x)
        inter = model.forward_intermediates(x, norm=True, intermediates_only=True)
    for d, i in zip(dense, inter, strict=True):
        torch.testing.assert_close(i, d, rtol=0, atol=0)


def test_reset_classifier_and_state_dict_keys_unchanged():
    model = timm.create_model("hlg_tiny", **SMALL, num_classes=5).eval()
    keys = list(model.state_dict())
    assert keys == list(HLG(**SMALL, depths=HLG_VARIANTS["tiny"]["depths"], num_classes=5).state_dict())
    x = torch.randn(1, 3, 32, 32)
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), torch.nn.Identity)
    assert model(x).shape == (1, 128)
    model.reset_classifier(3)
    assert model(x).shape == (1, 3)
    with pytest.raises(ValueError):
        model.reset_classifier(3, global_pool="max")
