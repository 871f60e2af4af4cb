"""What several test modules share (import it: ``from helpers import tiny_config``): fixture paths, golden-case
lists that refuse to be empty, tiny model configs and --set lists, a free port. Fixtures stay in conftest.py."""
from __future__ import annotations

from pathlib import Path

from setr.config import BackboneConfig, HeadConfig, ModelConfig, TestConfig

ROOT = Path(__file__).resolve().parents[1]  # the repository
FIXTURES = ROOT / "tests" / "fixtures"


def golden_cases(folder: str, pattern: str = "*.pt") -> list[Path]:
    """The golden-case files of ``fixtures/<folder>``; none found is an error, not an empty parametrisation
    (which pytest would report as nothing to run)."""
    found = sorted((FIXTURES / folder).glob(pattern))
    if not found:
        raise FileNotFoundError(f"no {pattern} golden cases in {FIXTURES / folder}")
    return found


SETR_CASES = golden_cases("setr_reference")
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


def tiny_detector_model(preset: str = "retinanet_hlg_tiny_test", num_classes: int = 2):
    """A tiny RetinaNet-HLG (and its preset) whose class scores are 0.5 everywhere, so that every image gets
    detections."""
    import torch

    from setr import presets
    from setr.detection.model import build_retinanet_hlg

    p = presets.get(preset, "detection")
    p.model.pretrained = None
    torch.manual_seed(0)
    model = build_retinanet_hlg(p.model, num_classes)
    with torch.no_grad():
        model.bbox_head.retina_cls.bias.zero_()
    return model, p
