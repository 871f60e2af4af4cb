"""The training loss computed piece by piece (``seg_cross_entropy``) equals the direct formula
(``plain_seg_cross_entropy``: interpolate, fp32 copy, cross-entropy) in value and input gradient, for both
normalisations, with ignored pixels, for logits at the target's size, upsampled by powers of two (the pieces) and
by other factors (one piece); the heads' deferred logits give the same losses and gradients as their full
outputs; the trainer's optimiser is the fused SGD and steps exactly as the per-tensor loop."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from setr.config import build_model
from setr.engine import losses
from setr.engine.losses import plain_seg_cross_entropy, seg_cross_entropy, segmentor_losses
from setr.engine.common import build_optimizer
from setr.models.heads.common import deferred
from setr.overrides import apply_overrides
from setr import presets

from helpers import tiny_sets


def _target(b, h, w, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, k, (b, h, w), generator=g)
    t[:, :3] = 255  # a band, as padding leaves
    t[torch.rand(b, h, w, generator=g) < 0.1] = 255  # scattered ignored pixels
    return t


def _both(x, target, normalisation, lean_input=None):
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    want = plain_seg_cross_entropy(x1, target, normalisation)
    want.backward()
    got = seg_cross_entropy(x2 if lean_input is None else lean_input(x2), target, normalisation)
    got.backward()
    return want, got, x1.grad, x2.grad


@pytest.mark.parametrize("normalisation", ["all_pixels", "valid_pixels"])
@pytest.mark.parametrize("shape, out", [((8, 8), (32, 32)), ((10, 6), (40, 24)), ((16, 16), (16, 16)),
                                        ((8, 8), (24, 24)), ((7, 5), (30, 31))])
def test_pieces_equal_the_direct_formula(normalisation, shape, out, monkeypatch):
    monkeypatch.setattr(losses, "PIECE_ELEMENTS", 5 * 8 * out[1])  # several pieces even at these sizes
    torch.manual_seed(0)
    x = 3 * torch.randn(2, 5, *shape)
    want, got, g_want, g_got = _both(x, _target(2, *out, 5), normalisation)
    assert got.dtype == torch.float32 and got.shape == ()
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert torch.allclose(g_got, g_want, rtol=1e-5, atol=1e-6 * g_want.abs().max().item())


def test_every_pixel_ignored_gives_zero_and_no_gradient():
    x = torch.randn(1, 4, 4, 4, requires_grad=True)
    target = torch.full((1, 16, 16), 255)
    for normalisation in ("all_pixels", "valid_pixels"):
        loss = seg_cross_entropy(x, target, normalisation)
        loss.backward()
        assert loss.item() == 0 and x.grad.abs().max() == 0
        x.grad = None


def test_deferred_with_crop_and_two_resizes_equals_the_materialised_logits():
    """A padded input: the heads' logits cropped after their resizes; and a head with two resizes left."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, 6)
    target = _target(2, 45, 40, 5)
    for sizes in [((48, 48),), ((12, 12), (48, 48))]:
        d = lambda t: deferred(t, sizes)._replace(crop=(45, 40))  # noqa: E731
        want = x.clone().requires_grad_()
        loss_want = plain_seg_cross_entropy(d(want).materialise(), target)
        loss_want.backward()
        got = x.clone().requires_grad_()
        loss_got = seg_cross_entropy(d(got), target)
        loss_got.backward()
        assert loss_got.item() == pytest.approx(loss_want.item(), rel=1e-6)
        assert torch.allclose(got.grad, want.grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("scale", [2, 4])
def test_upsampled_pieces_are_bit_for_bit_the_whole_map(layout, scale):
    torch.manual_seed(0)
    x = torch.randn(1, 150, 32, 32).contiguous(memory_format=layout)
    full = F.interpolate(x, size=(32 * scale, 128), mode="bilinear", align_corners=False)
    for a, b, slice_h, off, r0, r1 in losses._pieces(32, 32 * scale, 32 * scale, True, False, 16):
        piece = F.interpolate(x[:, :, a:b], size=(slice_h, 128), mode="bilinear", align_corners=False)
        assert torch.equal(piece[:, :, off:off + r1 - r0], full[:, :, r0:r1])


def _tiny_model(name="SETR_PUP_768x768_40k_cityscapes_bs_8"):
    preset = presets.get(name)
    preset = apply_overrides(preset, tiny_sets(preset))
    torch.manual_seed(0)
    return preset, build_model(preset.model, with_aux=True).train()


VIT = ["SETR_PUP_768x768_40k_cityscapes_bs_8", "SETR_MLA_768x768_40k_cityscapes_bs_8",
       "SETR_Naive_768x768_40k_cityscapes_bs_8"]


# the preset's size, and one padded to the patch multiple; HLG's head has no deferred form (the generic path)
@pytest.mark.parametrize("name, size", [(n, s) for n in VIT for s in (None, (60, 44))]
                         + [("setr_pup_hlg_small_768x768_40k_cityscapes_bs_16", None)])
def test_deferred_heads_train_as_the_full_outputs(name, size):
    preset, model = _tiny_model(name)
    h, w = size or preset.model.backbone.img_size
    weights = [preset.model.decode_head.loss_weight] + [a.loss_weight for a in preset.model.aux_heads]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, h, w, generator=g)
    target = _target(2, h, w, preset.model.num_classes)
    results = []
    for defer, loss_fn in [(False, plain_seg_cross_entropy), (True, seg_cross_entropy)]:
        m = copy.deepcopy(model)
        torch.manual_seed(2)  # the same dropout / drop-path draws
        outs = m(x, with_aux=True, defer=defer)
        loss = sum(wt * loss_fn(o, target) for o, wt in zip(outs, weights, strict=True))
        loss.backward()
        results.append((loss.item(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None}))
    (l_plain, g_plain), (l_lean, g_lean) = results
    assert l_lean == pytest.approx(l_plain, rel=1e-6)
    assert set(g_lean) == set(g_plain)
    scale = max(g.abs().max().item() for g in g_plain.values())  # (conv biases before BN: ~0, only noise)
    for n, g_p in g_plain.items():
        assert torch.allclose(g_lean[n], g_p, rtol=1e-4, atol=1e-6 * scale), n
    # the materialised deferred logits are the heads' outputs, bit for bit
    with torch.no_grad():
        torch.manual_seed(2)
        full = model(x, with_aux=True)
        torch.manual_seed(2)
        lazy = model(x, with_aux=True, defer=True)
    assert all(torch.equal(f, d.materialise()) for f, d in zip(full, lazy, strict=True))


def test_segmentor_losses_takes_both_forms():
    preset, model = _tiny_model()
    h, w = preset.model.backbone.img_size
    x = torch.randn(2, 3, h, w)
    target = _target(2, h, w, preset.model.num_classes)
    weights = [1.0] + [0.4] * len(model.auxiliary_head)
    with torch.no_grad():
        a = segmentor_losses(model(x, with_aux=True), weights, target)
        b = segmentor_losses(model(x, with_aux=True, defer=True), weights, target)
    assert list(a) == list(b) == ["decode"] + [f"aux{i}" for i in range(len(weights) - 1)]
    assert all(a[k].item() == pytest.approx(b[k].item(), rel=1e-6) for k in a)


def test_trainer_optimizer_is_fused_sgd_and_steps_as_the_loop():
    preset, model = _tiny_model()
    opt = build_optimizer(model, preset.train)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["fused"] is True
    assert {g["name"] for g in opt.param_groups} == {"backbone", "heads"}
    loop_model = copy.deepcopy(model)
    from setr.engine.common import param_groups

    r = preset.train
    loop = torch.optim.SGD(param_groups(loop_model, r.lr, r.weight_decay, head_lr_mult=r.head_lr_mult,
                                        no_decay_key=r.no_decay_key),
                           lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay, foreach=False)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in zip(model.parameters(), loop_model.parameters(), strict=True):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        loop.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), loop_model.parameters(), strict=True))


def test_no_gradient_is_formed_without_grad_mode(monkeypatch):
    calls = []
    real = torch.ops.aten.upsample_bilinear2d_backward

    class Spy:
        def __call__(self, *a, **k):
            calls.append(1)
            return real(*a, **k)

    monkeypatch.setattr(torch.ops.aten, "upsample_bilinear2d_backward", Spy())
    x = torch.randn(2, 5, 8, 8, requires_grad=True)
    target = _target(2, 32, 32, 5)
    with torch.no_grad():
        loss = seg_cross_entropy(x, target)
    assert not calls and loss.item() == pytest.approx(plain_seg_cross_entropy(x, target).item(), rel=1e-6)
    seg_cross_entropy(x, target).backward()
    assert calls and x.grad is not None
