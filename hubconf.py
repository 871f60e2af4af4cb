"""torch.hub entry points, one per preset family:

    import torch
    seg = torch.hub.load("path/to/setr", "setr_pup", preset="SETR_PUP_768x768_40k_cityscapes_bs_8",
                         weights="org/setr-pup-cityscapes", source="local")   # or source="github"
    seg = torch.hub.load("path/to/setr", "setr_pup", source="local", pretrained=False)   # random weights
    labels = seg.predict(image)                 # a setr.Segmenter; seg.model is the nn.Module

* ``setr_naive``, ``setr_pup``, ``setr_mla``: SETR with the Naive / PUP / MLA decoder (ViT-L, ViT-B, DeiT presets)
* ``setr_pup_hlg``: SETR-PUP-HLG segmentation
* ``hlg``: HLG image classifiers (a timm model)
* ``retinanet_hlg``: RetinaNet-HLG object detection (the network; ``setr.Detector`` adds the test pipeline)

Weights, as torchvision and timm take them: ``pretrained`` is a bool (``False``: random weights; ``True``: the
entry point's default published weights, which are not published yet: a one-line error says so);
``weights`` = a pretrained folder or Hugging Face Hub repo id (``setr convert-weights`` makes them);
``checkpoint`` = a checkpoint file (an original SETR ``.pth`` with its preset, or one of ours).
``setr presets`` lists the preset names.
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


def _weights(entry: str, pretrained, weights, checkpoint):
    """Check the weight arguments; a folder or repo id (``weights``), a file (``checkpoint``) or None."""
    if not isinstance(pretrained, bool):
        raise SetrError(f"{entry}: pretrained is True or False (as in torchvision and timm); give a folder or Hub "
                        f"repo id as weights={pretrained!r}")
    if pretrained:
        raise SetrError(f"{entry}: no default published weights yet: give weights= (a pretrained folder or Hub "
                        "repo id) or checkpoint= (a file), or pretrained=False for random weights")
    if weights is not None and checkpoint is not None:
        raise SetrError(f"{entry}: give weights (a folder or repo id) or checkpoint (a file), not both")


def _segmenter(entry: str, preset: str, pretrained: bool = False, weights=None, checkpoint=None,
               segmenter: bool = True, **kwargs):
    from setr import Segmenter, presets

    _weights(entry, pretrained, weights, checkpoint)
    if weights is not None:
        seg = Segmenter.from_pretrained(weights, **kwargs)
        head = seg.cfg.decode_head.type
    else:
        head = presets.get(preset, "segmentation").model.decode_head.type
        if head in _HEADS[entry]:
            seg = Segmenter.from_preset(preset, checkpoint, **kwargs)
            seg.preset = preset
    if head not in _HEADS[entry]:
        raise SetrError(f"{entry}: {weights or preset} is a {head} model; use the "
                        f"{next(k for k, v in _HEADS.items() if head in v)} entry point")
    return seg if segmenter else seg.model


def setr_naive(preset: str = "SETR_Naive_768x768_40k_cityscapes_bs_8", pretrained: bool = False, weights=None,
               checkpoint=None, segmenter: bool = True, **kwargs):
    """SETR-Naive (ViT-L/16, ViT-B/16 or DeiT-B/16 presets). Returns a ``setr.Segmenter`` (``segmenter=False``:
    the ``nn.Module``); ``kwargs`` go to the Segmenter (device, mode, precision, ...)."""
    return _segmenter("setr_naive", preset, pretrained, weights, checkpoint, segmenter, **kwargs)


def setr_pup(preset: str = "SETR_PUP_768x768_40k_cityscapes_bs_8", pretrained: bool = False, weights=None,
             checkpoint=None, segmenter: bool = True, **kwargs):
    """SETR-PUP (progressive upsampling). Returns a ``setr.Segmenter`` (``segmenter=False``: the ``nn.Module``)."""
    return _segmenter("setr_pup", preset, pretrained, weights, checkpoint, segmenter, **kwargs)


def setr_mla(preset: str = "SETR_MLA_768x768_40k_cityscapes_bs_8", pretrained: bool = False, weights=None,
             checkpoint=None, segmenter: bool = True, **kwargs):
    """SETR-MLA (multi-level feature aggregation). Returns a ``setr.Segmenter`` (``segmenter=False``: the
    ``nn.Module``)."""
    return _segmenter("setr_mla", preset, pretrained, weights, checkpoint, segmenter, **kwargs)


def setr_pup_hlg(preset: str = "setr_pup_hlg_small_768x768_40k_cityscapes_bs_16", pretrained: bool = False,
                 weights=None, checkpoint=None, segmenter: bool = True, **kwargs):
    """SETR-PUP-HLG (HLG backbone, HLG up-head). Returns a ``setr.Segmenter`` (``segmenter=False``: the
    ``nn.Module``)."""
    return _segmenter("setr_pup_hlg", preset, pretrained, weights, checkpoint, segmenter, **kwargs)


def hlg(variant: str = "hlg_small", pretrained: bool = False, weights=None, checkpoint=None, **kwargs):
    """An HLG classifier (timm model ``hlg_{tiny,small,medium,large}``; ``kwargs`` go to ``timm.create_model``,
    e.g. ``num_classes``, ``features_only=True``). ``weights``: a pretrained folder or repo id; ``checkpoint``:
    the authors' ImageNet ``.pth`` (depths read from the file)."""
    _weights("hlg", pretrained, weights, checkpoint)
    if weights is not None:
        from setr.models.hlg import HLG

        if kwargs:
            raise SetrError(f"hlg: options {sorted(kwargs)} cannot change a pretrained model")
        return HLG.from_pretrained(weights)
    if checkpoint is not None:
        from setr.models.hlg_timm import load_hlg_checkpoint

        return load_hlg_checkpoint(checkpoint, variant.removeprefix("hlg_"), **kwargs)[0]
    import timm

    return timm.create_model(variant if variant.startswith("hlg_") else f"hlg_{variant}", **kwargs)


def retinanet_hlg(preset: str = "retinanet_hlg_small_fpn_mstrain_1x_coco", num_classes: int = 80,
                  pretrained: bool = False, weights=None, checkpoint=None, device: str = "cpu"):
    """The RetinaNet-HLG network (``setr.detection.model.RetinaNetHLG``, eval mode; ``setr.Detector(model)`` adds
    the authors' test pipeline and post-processing). ``weights``: a pretrained folder or repo id;
    ``checkpoint``: the authors' mmdet checkpoint or one of ours (epoch_N.pth) for ``preset``."""
    _weights("retinanet_hlg", pretrained, weights, checkpoint)
    if weights is not None:
        from setr.hub import from_pretrained

        return from_pretrained(weights, kind="detection", device=device)
    if checkpoint is not None:
        from setr.detection.api import load_detector_checkpoint

        return load_detector_checkpoint(checkpoint, preset)[0].to(device).eval()
    from setr import presets
    from setr.detection.model import build_retinanet_hlg

    p = presets.get(preset, "detection")
    p.model.pretrained = None
    return build_retinanet_hlg(p.model, num_classes).to(device).eval()
