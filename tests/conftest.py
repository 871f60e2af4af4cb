from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from setr.config import BackboneConfig, HeadConfig, ModelConfig, TestConfig

FIXTURES = Path(__file__).parent / "fixtures"
SETR_CASES = sorted((FIXTURES / "setr_reference").glob("*.pt"))
MANIFEST = FIXTURES / "setr_reference" / "key_manifest.json"


def tiny_config(head: str = "pup", num_classes: int = 4, img_size=(32, 32), patch: int = 8, depth: int = 4,
                embed: int = 32, heads: int = 2, mode: str = "whole", dataset=None) -> ModelConfig:
    """A small model of any SETR family, for fast tests."""
    mla = head == "mla"
    bb = BackboneConfig(type="vit_mla" if mla else "vit", img_size=tuple(img_size), patch_size=patch,
                        embed_dim=embed, depth=depth, num_heads=heads,
                        mla_index=tuple(min(i, depth - 1) for i in range(4)) if mla else None, mla_channels=16)
    if head == "naive":
        main, aux = HeadConfig("naive", depth - 1, channels=16), [HeadConfig("naive", 1, channels=16, loss_weight=0.4)]
    elif head == "pup":
        main, aux = HeadConfig("pup", depth - 1, channels=16), [HeadConfig("pup_aux", 1, channels=16, loss_weight=0.4)]
    else:
        main = HeadConfig("mla", mlahead_channels=8)
        aux = [HeadConfig("mla_aux", i, loss_weight=0.4) for i in range(4)]
    crop = tuple(img_size)
    return ModelConfig(num_classes=num_classes, backbone=bb, decode_head=main, aux_heads=aux,
                       test=TestConfig(mode, crop, tuple(c * 2 // 3 for c in crop)), dataset=dataset)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test (restored after): two OpenMP threads on a shared 2-core box spin-wait
    badly (10-100x slower); one is fastest. Modules opt in with ``pytestmark = usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


if os.environ.get("PYTEST_XDIST_WORKER"):
    # two xdist workers on two cores: one intra-op thread each, or OpenMP oversubscription slows CPU work ~10x
    torch.set_num_threads(1)


def tiny_sets(preset, crop: int = 64, depth: int = 4) -> list[str]:
    """--set overrides that shrink any SETR preset to a few-second model on crop x crop images."""
    cfg = preset.model
    sets = [f"model.backbone.img_size=[{crop},{crop}]", f"data.crop_size=[{crop},{crop}]",
            f"data.img_scale=[{2 * crop},{crop}]", f"model.test.crop_size=[{crop},{crop}]",
            f"model.test.stride=[{crop * 2 // 3},{crop * 2 // 3}]", f"model.test.img_scale=[{2 * crop},{crop}]",
            "data.workers=0", "train.batch_size=2"]
    if cfg.backbone.type == "hlg":
        return sets + ["model.backbone.embed_dims=[16,32,64,128]", "model.backbone.stage_heads=[1,2,4,8]",
                       "model.backbone.depths=[2,2,2,2]", "model.decode_head.channels=32",
                       "model.decode_head.num_heads=2", "model.aux_heads.0.channels=16", "train.warmup_iters=1"]
    sets += ["model.backbone.embed_dim=32", f"model.backbone.depth={depth}", "model.backbone.num_heads=2"]
    if cfg.backbone.type == "vit_mla":
        sets += ["model.backbone.mla_index=[0,1,2,3]", "model.backbone.mla_channels=16",
                 "model.decode_head.mlahead_channels=8"]
    else:
        sets += [f"model.decode_head.in_index={depth - 1}", "model.decode_head.channels=16"]
        for i in range(len(cfg.aux_heads)):
            sets += [f"model.aux_heads.{i}.in_index={i % depth}", f"model.aux_heads.{i}.channels=16"]
    return sets


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now (for torchrun's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
