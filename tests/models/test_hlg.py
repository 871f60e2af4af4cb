import math
from pathlib import Path

import pytest
import torch

from setr.errors import SetrError
from setr.models.heads.hlg_up import HLGUPHead, head_global_offsets
from setr.models.hlg import (HLG, HLG_VARIANTS, Grouping, create_hlg, global_token_offsets, infer_depths,
                             infer_hlg_kwargs, load_hlg_state_dict, nchw_to_tokens, relative_offsets)
from setr.parity.hlg import build_from_reference, check_hlg_case

from helpers import golden_cases

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hlg_reference"
CASES = [p for p in golden_cases("hlg_reference") if not p.stem.endswith("_trace")]
RED16 = dict(embed_dims=(16, 32, 64, 128), num_heads=(1, 2, 4, 8), depths=(2, 2, 2, 2))
SMALL_DIMS = dict(embed_dims=(32, 32, 64, 64), num_heads=(2, 2, 2, 2), depths=(2, 2, 2, 1))


def load(name: str) -> dict:
    return torch.load(FIXTURES / name, map_location="cpu", weights_only=False)


def ceil_grid(hw, stride):
    return math.ceil(hw[0] / stride), math.ceil(hw[1] / stride)


# ---------------------------------------------------------------------------------------------------- goldens

def test_fixtures_present():
    assert {p.name for p in CASES} == {"cls_red16_224.pt", "dense_red16_192x256.pt", "seg_head_red64_48x64.pt"}


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden_case(path):
    checks = check_hlg_case(torch.load(path, map_location="cpu", weights_only=False))
    assert checks
    for c in checks:
        assert c.ok, c
        assert c.max_abs_err <= 1e-5 / 1e-4 * c.tolerance, c  # ~1e-6 relative in practice


def test_check_detects_a_wrong_output():
    case = load("cls_red16_224.pt")
    case["output"] = case["output"] + 1e-2 * case["output"].abs().max()
    assert not any(c.ok for c in check_hlg_case(case))


def test_trace_every_block():
    case, trace = load("cls_red16_224.pt"), load("cls_red16_224_trace.pt")
    model = build_from_reference(case["config"]).eval()
    model.load_state_dict(case["state_dict"], strict=True)
    with torch.no_grad():
        x = model.s0_conv(case["input"])
        torch.testing.assert_close(x, trace["stem"], atol=1e-5, rtol=0)
        hw, x = x.shape[-2:], nchw_to_tokens(x)
        for s, stage in enumerate(model.stages):
            for i, blk in enumerate(stage):
                x, hw = blk(x, hw)
                want = trace[f"block{s + 1}.{i}"]
                assert (x - want).abs().max() <= 1e-5 * want.abs().max(), f"block{s + 1}.{i}"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_state_dict_keys_and_order_are_the_originals(path):
    case = load(path.name)
    with torch.device("meta"):
        model = build_from_reference(case["config"])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in case["state_dict"].items()}
    assert list(ours) == list(theirs)
    assert ours == theirs


# ---------------------------------------------------------------------------------------------------- sizes

PARAMS = {  # 1000-class classifier at 224 (published 11 / 24 / 43? / 84 M)
    "tiny": (11_035_824, 10_523_720),
    "small": (24_273_004, 23_505_348),
    "medium": (39_978_412, 39_210_756),
    "large": (84_355_640, 83_332_432),
}


@pytest.mark.parametrize("variant", list(PARAMS))
def test_param_counts(variant):
    with torch.device("meta"):
        cls = create_hlg(variant, num_classes=1000)
        dense = create_hlg(variant, num_classes=0, dense=True)
    n_cls, n_dense = (sum(p.numel() for p in m.parameters()) for m in (cls, dense))
    assert (n_cls, n_dense) == PARAMS[variant]
    assert f"{n_cls / 1e6:.2f}" == {"tiny": "11.04", "small": "24.27", "medium": "39.98", "large": "84.36"}[variant]
    assert infer_depths(cls.state_dict()) == HLG_VARIANTS[variant]["depths"]
    if variant == "tiny":
        assert (len(cls.state_dict()), len(dense.state_dict())) == (958, 962)


def test_head_param_count():
    with torch.device("meta"):
        head = HLGUPHead(in_channels=(96, 192, 384, 768), num_classes=19, channels=512, num_heads=16)
    assert sum(p.numel() for p in head.parameters()) == 13_520_115  # spec: 13.52 M


def test_variants():
    assert HLG_VARIANTS["large"]["depths"] == (2, 2, 18, 2)
    assert HLG_VARIANTS["medium"]["depths"] == (2, 2, 14, 2)
    for arch in HLG_VARIANTS.values():
        assert all(d // h == 32 for d, h in zip(arch["embed_dims"], arch["num_heads"], strict=True))


@pytest.mark.parametrize("hw", [(97, 130), (33, 7), (16, 16)])
def test_odd_sizes_dense(hw):
    model = HLG(**SMALL_DIMS, num_classes=0, dense=True).eval()
    with torch.no_grad():
        maps = model(torch.randn(1, 3, *hw))
    assert [tuple(m.shape) for m in maps] == [
        (1, c, *ceil_grid(hw, 2 ** (s + 2))) for s, c in enumerate(SMALL_DIMS["embed_dims"])]
    assert all(torch.isfinite(m).all() for m in maps)


def test_odd_sizes_classification_and_head():
    model = HLG(**SMALL_DIMS, num_classes=5).eval()
    dense = HLG(**SMALL_DIMS, num_classes=0, dense=True).eval()
    head = HLGUPHead(in_channels=SMALL_DIMS["embed_dims"], num_classes=3, channels=32, num_heads=2).eval()
    x = torch.randn(2, 3, 97, 130)
    with torch.no_grad():
        assert model(x).shape == (2, 5)
        maps = dense(x)
        assert head(maps).shape == (2, 3, 4 * 25, 4 * 33)  # (4h, 4w) of the stride-4 map


def test_batch_items_are_independent():
    model = HLG(**SMALL_DIMS, num_classes=0, dense=True).eval()
    x = torch.randn(2, 3, 61, 45)
    with torch.no_grad():
        both = model(x)
        one = model(x[1:])
    for a, b in zip(both, one, strict=True):
        torch.testing.assert_close(a[1:], b, atol=1e-5, rtol=1e-5)


def test_train_mode_backward_with_drop_path():
    model = HLG(**SMALL_DIMS, num_classes=4, drop_path_rate=0.2, drop_rate=0.1).train()
    model(torch.randn(2, 3, 40, 52)).sum().backward()
    assert model.block1[0].q.weight.grad is not None


# ---------------------------------------------------------------------------------------------------- pieces

def test_dilated_grouping_holds_interleaved_pixels():
    hp, wp, interval = 8, 12, 4
    m = torch.arange(hp * wp).float().view(1, hp, wp, 1)
    g = Grouping("dilated", interval)
    groups = g.partition(m)
    assert groups.shape == (interval * interval, (hp // interval) * (wp // interval), 1)
    r, s = 1, 2  # group (r, s) is number r * I + s and holds pixels (r + I a, s + I b), row-major over (a, b)
    want = torch.tensor([(r + interval * a) * wp + s + interval * b
                         for a in range(hp // interval) for b in range(wp // interval)]).float()
    assert torch.equal(groups[r * interval + s, :, 0], want)
    assert torch.equal(g.reverse(groups, hp, wp), m)
    w = Grouping("window", 4)
    assert torch.equal(w.reverse(w.partition(m), hp, wp), m)
    second_window = torch.tensor([y * wp + 4 + x for y in range(4) for x in range(4)]).float()  # columns 4..7
    assert torch.equal(w.partition(m)[1, :, 0], second_window)


def test_global_bias_offsets_slice_the_full_table_at_224():
    dy, dx = global_token_offsets((56, 56), 64)
    full_dy, full_dx = relative_offsets(56, 56)
    assert torch.equal(dy, full_dy[:, :64]) and torch.equal(dx, full_dx[:, :64])


def test_head_global_offsets_rule():
    h, w, g2, g3 = 5, 6, 2, 3
    dy, dx = head_global_offsets((h, w), (g2, g3))
    y, x, u, v = 4, 1, 1, 2
    r = (y - u + g2 - 1) * (2 * g3 - 1) + (x - v + g3 - 1)
    assert (dy[y * w + x, u * g3 + v].item(), dx[y * w + x, u * g3 + v].item()) == (
        r // (2 * w - 1) - (h - 1), r % (2 * w - 1) - (w - 1))


def test_infer_depths_and_kwargs():
    sd = load("dense_red16_192x256.pt")["state_dict"]
    assert infer_depths(sd) == (2, 2, 2, 2)
    assert infer_depths({f"module.{k}": v for k, v in sd.items()}) == (2, 2, 2, 2)
    kw = infer_hlg_kwargs(sd)
    assert kw == dict(RED16, num_classes=0, dense=True)
    with torch.device("meta"):
        sd2 = HLG(embed_dims=(16, 32, 64, 128), num_heads=(1, 2, 4, 8), depths=(1, 3, 5, 2), num_classes=7).state_dict()
    assert infer_depths(sd2) == (1, 3, 5, 2)
    assert infer_hlg_kwargs(sd2)["num_classes"] == 7
    with pytest.raises(ValueError):
        infer_depths({k: v for k, v in sd.items() if not k.startswith("block4.")})


def test_classification_checkpoint_loads_into_dense_model():
    case = load("cls_red16_224.pt")
    dense = HLG(**RED16, num_classes=0, dense=True)
    load_hlg_state_dict(dense, case["state_dict"])  # norm_out_* keep their init, head.* is ignored
    assert torch.equal(dense.norm_out_0.weight, torch.ones(16))
    torch.testing.assert_close(dense.block4[1].q.weight, case["state_dict"]["block4.1.q.weight"])
    broken = {k: v for k, v in case["state_dict"].items() if k != "block2.1.k.weight"}
    with pytest.raises(RuntimeError, match="block2.1.k.weight"):
        load_hlg_state_dict(dense, broken)


def test_unsupported_setting_is_refused():
    cfg = dict(load("cls_red16_224.pt")["config"], global_token_pooling="max")
    with pytest.raises(SetrError):
        build_from_reference(cfg)
