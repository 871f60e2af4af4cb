"""torch.hub entry points, one per preset family:

    import torch
    seg = torch.hub.load("path/to/setr", "setr_pup", preset="SETR_PUP_768x768_40k_cityscapes_bs_8",
                         pretrained="org/setr-pup-cityscapes", source="local")   # or source="github"
    labels = seg.predict(image)                 # a setr.Segmenter; seg.model is the nn.Module

* ``setr_naive``, ``setr_pup``, ``setr_mla``: SETR with the Naive / PUP / MLA decoder (ViT-L, ViT-B, DeiT presets)
* ``setr_pup_hlg``: SETR-PUP-HLG segmentation
* ``hlg``: HLG image classifiers (a timm model)
* ``retinanet_hlg``: RetinaNet-HLG object detection (the network; ``setr.Detector`` adds the test pipeline)

Weights: ``pretrained`` = a pretrained folder or Hugging Face Hub repo id (``setr convert-weights`` makes them);
``checkpoint`` = a checkpoint file (an original SETR ``.pth`` with its preset, or one of ours). Without either
the model has random weights. ``setr presets`` lists the preset names.
"""
import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub", "numpy", "PIL", "cv2"]

try:
    import setr  # noqa: F401
except ImportError:  # a checkout that is not pip-installed: use its src/ folder
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from setr.errors import SetrError  # noqa: E402

_HEADS = {"setr_naive": ("naive",), "setr_pup": ("pup",), "setr_mla": ("mla",), "setr_pup_hlg": ("hlg_up",)}


def _segmenter(entry: str, preset: str, pretrained=None, checkpoint=None, segmenter: bool = True, **kwargs):
    from setr import Segmenter
    from setr.presets import get_preset

    if pretrained is not None and checkpoint is not None:
        raise SetrError(f"{entry}: give pretrained (a folder or repo id) or checkpoint (a file), not both")
    if pretrained is not None:
        seg = Segmenter.from_pretrained(pretrained, **kwargs)
        head = seg.cfg.decode_head.type
    else:
        head = get_preset(preset).model.decode_head.type
        if head in _HEADS[entry]:
            seg = Segmenter.from_preset(preset, checkpoint, **kwargs)
            seg.preset = preset
    if head not in _HEADS[entry]:
        raise SetrError(f"{entry}: {pretrained or preset} is a {head} model; use the "
                        f"{next(k for k, v in _HEADS.items() if head in v)} entry point")
    return seg if segmenter else seg.model


def setr_naive(preset: str = "SETR_Naive_768x768_40k_cityscapes_bs_8", pretrained=None, checkpoint=None,
               segmenter: bool = True, **kwargs):
    """SETR-Naive (ViT-L/16, ViT-B/16 or DeiT-B/16 presets). Returns a ``setr.Segmenter`` (``segmenter=False``:
    the ``nn.Module``); ``kwargs`` go to the Segmenter (device, mode, precision, ...)."""
    return _segmenter("setr_naive", preset, pretrained, checkpoint, segmenter, **kwargs)


def setr_pup(preset: str = "SETR_PUP_768x768_40k_cityscapes_bs_8", pretrained=None, checkpoint=None,
             segmenter: bool = True, **kwargs):
    """SETR-PUP (progressive upsampling). Returns a ``setr.Segmenter`` (``segmenter=False``: the ``nn.Module``)."""
    return _segmenter("setr_pup", preset, pretrained, checkpoint, segmenter, **kwargs)


def setr_mla(preset: str = "SETR_MLA_768x768_40k_cityscapes_bs_8", pretrained=None, checkpoint=None,
             segmenter: bool = True, **kwargs):
    """SETR-MLA (multi-level feature aggregation). Returns a ``setr.Segmenter`` (``segmenter=False``: the
    ``nn.Module``)."""
    return _segmenter("setr_mla", preset, pretrained, checkpoint, segmenter, **kwargs)


def setr_pup_hlg(preset: str = "setr_pup_hlg_small_768x768_40k_cityscapes_bs_16", pretrained=None,
                 checkpoint=None, segmenter: bool = True, **kwargs):
    """SETR-PUP-HLG (HLG backbone, HLG up-head). Returns a ``setr.Segmenter`` (``segmenter=False``: the
    ``nn.Module``)."""
    return _segmenter("setr_pup_hlg", preset, pretrained, checkpoint, segmenter, **kwargs)


def hlg(variant: str = "hlg_small", pretrained=None, checkpoint=None, **kwargs):
    """An HLG classifier (timm model ``hlg_{tiny,small,medium,large}``; ``kwargs`` go to ``timm.create_model``,
    e.g. ``num_classes``, ``features_only=True``). ``pretrained``: a pretrained folder or repo id; ``checkpoint``:
    the authors' ImageNet ``.pth`` (depths read from the file)."""
    if pretrained is not None:
        from setr.models.hlg import HLG

        if kwargs:
            raise SetrError(f"hlg: options {sorted(kwargs)} cannot change a pretrained model")
        return HLG.from_pretrained(pretrained)
    if checkpoint is not None:
        from setr.models.classifier import load_hlg_checkpoint

        return load_hlg_checkpoint(checkpoint, variant.removeprefix("hlg_"), **kwargs)[0]
    import timm

    return timm.create_model(variant if variant.startswith("hlg_") else f"hlg_{variant}", **kwargs)


def retinanet_hlg(preset: str = "retinanet_hlg_small_fpn_mstrain_1x_coco", num_classes: int = 80, pretrained=None,
                  checkpoint=None, device: str = "cpu"):
    """The RetinaNet-HLG network (``setr.detection.model.RetinaNetHLG``, eval mode; ``setr.Detector(model)`` adds
    the authors' test pipeline and post-processing). ``pretrained``: a pretrained folder or repo id;
    ``checkpoint``: the authors' mmdet checkpoint or one of ours (epoch_N.pth) for ``preset``."""
    if pretrained is not None:
        from setr.pretrained import from_pretrained

        return from_pretrained(pretrained, kind="detection", device=device)
    if checkpoint is not None:
        from setr.detection.api import load_detector_checkpoint

        return load_detector_checkpoint(checkpoint, preset)[0].to(device)
    from setr.detection.model import build_retinanet_hlg
    from setr.presets.detection import get_detection_preset

    p = get_detection_preset(preset)
    p.model.pretrained = None
    return build_retinanet_hlg(p.model, num_classes).to(device).eval()
