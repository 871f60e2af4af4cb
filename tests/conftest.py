from __future__ import annotations

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
                        mla_index=(0, 1, 2, 3) if mla else None, mla_channels=16)
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
