"""One adapter per kind of model: what ``config.json`` says about a built model (``config_of``), the model a
config builds (``build``), an example input for it and the outputs compared when a conversion is checked.
Pretrained folders (:mod:`setr.hub`) and ``setr convert-weights`` (:mod:`setr.hub.convert`) go through these,
so each kind is handled in one place instead of a branch per kind in every function."""
from __future__ import annotations

import abc
import dataclasses
from typing import Any

import torch
from torch import nn

from ..errors import SetrError

FORMAT = "setr-pretrained-1"  # config.json of segmentation and detection folders (classification: timm's format)


class Adapter(abc.ABC):
    kind: str = ""

    @abc.abstractmethod
    def owns(self, obj: Any) -> bool:
        """Whether ``obj`` is a model of this kind."""

    @abc.abstractmethod
    def config_of(self, obj: Any, *, config: Any = None, preset: str | None = None,
                  class_names: list[str] | None = None, categories: list[dict] | None = None) -> tuple[nn.Module, dict]:
        """(the module whose weights are saved, the kind's part of ``config.json``)."""

    @abc.abstractmethod
    def build(self, conf: dict, with_aux: bool = False) -> nn.Module:
        """The model ``conf`` (a ``config.json``) describes, with fresh weights."""

    def example_input(self, conf: dict, size: tuple[int, int] | None, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(1, 3, *(size or (256, 256)), generator=generator)

    @abc.abstractmethod
    def outputs(self, model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        """The tensors compared when a conversion is checked."""


class SegmentationAdapter(Adapter):
    kind = "segmentation"

    def owns(self, obj: Any) -> bool:
        from ..inference import Segmenter
        from ..models.segmentor import EncoderDecoder

        return isinstance(obj, (Segmenter, EncoderDecoder))

    def config_of(self, obj, *, config=None, preset=None, class_names=None, categories=None):
        from ..config import ModelConfig
        from ..data.classes import classes_and_palette
        from ..inference import Segmenter
        from ..presets import Preset

        model = obj.model if isinstance(obj, Segmenter) else obj
        if isinstance(obj, Segmenter):
            preset = preset or getattr(obj, "preset", None)
            config = config or obj.cfg
        if config is None:
            raise SetrError("saving a segmentation model needs its config (a ModelConfig or a Preset)")
        if isinstance(config, Preset):
            preset, config = preset or config.name, config.model
        if not isinstance(config, ModelConfig):
            raise SetrError(f"segmentation config must be a ModelConfig or a Preset, got {type(config).__name__}")
        names, palette = classes_and_palette(config.dataset, config.num_classes, config.class_names)
        if isinstance(obj, Segmenter):
            names, palette = obj.class_names, obj.palette
        with_aux = len(getattr(model, "auxiliary_head", ())) > 0
        return model, {"kind": "segmentation", "preset": preset, "model": config.to_dict(), "with_aux": with_aux,
                       "class_names": list(names), "palette": [list(map(int, c)) for c in palette]}

    def build(self, conf, with_aux=False):
        from ..config import ModelConfig, build_model

        return build_model(ModelConfig.from_dict(conf["model"]), with_aux=with_aux)

    def example_input(self, conf, size, generator):
        crop = tuple(conf["model"]["test"]["crop_size"])
        size = size or (crop if crop and max(crop) <= 256 else (256, 256))
        return torch.randn(1, 3, *size, generator=generator)

    def outputs(self, model, x):
        return [model.encode_decode(x)]


class ClassificationAdapter(Adapter):
    """HLG classifiers; their folders are timm's hub format (:mod:`setr.models.hlg_timm`)."""

    kind = "classification"

    def owns(self, obj: Any) -> bool:
        from ..models.hlg import HLG

        return isinstance(obj, HLG)

    def config_of(self, obj, *, config=None, preset=None, class_names=None, categories=None):
        from ..models.hlg_timm import hlg_architecture, hlg_variant

        arch = hlg_architecture(obj)
        if class_names is not None and len(class_names) != arch["num_classes"]:
            raise SetrError(f"{len(class_names)} class names for a model with {arch['num_classes']} classes")
        return obj, {"kind": "classification", "preset": preset or hlg_variant(arch), "variant": hlg_variant(arch),
                     "model": arch, "class_names": list(class_names) if class_names else None}

    def build(self, conf, with_aux=False):
        import timm

        args = {k: tuple(v) if isinstance(v, list) else v for k, v in conf["model"].items()}
        return timm.create_model(conf.get("variant") or "hlg_tiny", **args)

    def example_input(self, conf, size, generator):
        return torch.randn(1, 3, *(size or (224, 224)), generator=generator)

    def outputs(self, model, x):
        return model.forward_dense(x) if model.dense else [model(x)]


class DetectionAdapter(Adapter):
    kind = "detection"

    def owns(self, obj: Any) -> bool:
        from ..detection.model import RetinaNetHLG

        return isinstance(obj, RetinaNetHLG)

    def config_of(self, obj, *, config=None, preset=None, class_names=None, categories=None):
        from ..presets import DetModelConfig, Preset

        if config is None:
            raise SetrError("saving a RetinaNet-HLG needs its config (a DetModelConfig or a detection Preset)")
        if isinstance(config, Preset):
            preset, config = preset or config.name, config.model
        if not isinstance(config, DetModelConfig):
            raise SetrError("detection config must be a DetModelConfig or a detection Preset, got "
                            f"{type(config).__name__}")
        num_classes = int(obj.num_classes)
        if categories is not None:
            categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]
            if len(categories) != num_classes:
                raise SetrError(f"{len(categories)} categories for a model with {num_classes} classes")
            class_names = [c["name"] for c in categories]
        elif class_names is not None and len(class_names) != num_classes:
            raise SetrError(f"{len(class_names)} class names for a model with {num_classes} classes")
        model_cfg = dataclasses.asdict(config)
        model_cfg["pretrained"] = None  # the weights are in the folder
        return obj, {"kind": "detection", "preset": preset, "model": model_cfg, "num_classes": num_classes,
                     "categories": categories, "class_names": list(class_names) if class_names else None}

    def build(self, conf, with_aux=False):
        from ..detection.model import build_retinanet_hlg
        from ..presets.detection import preset_from_dict

        det = preset_from_dict({"name": conf.get("preset") or "pretrained", "model": conf["model"]})
        det.model.pretrained = None
        return build_retinanet_hlg(det.model, int(conf["num_classes"]))

    def outputs(self, model, x):
        feats = model.extract_feat(x)
        cls_scores, bbox_preds = model.bbox_head(feats)
        return [*feats, *cls_scores, *bbox_preds]


ADAPTERS = {a.kind: a for a in (SegmentationAdapter(), ClassificationAdapter(), DetectionAdapter())}
KINDS = tuple(ADAPTERS)


def adapter_for(obj: Any) -> Adapter:
    for adapter in ADAPTERS.values():
        if adapter.owns(obj):
            return adapter
    raise SetrError(f"save_pretrained: cannot save a {type(obj).__name__} (expected a Segmenter, a segmentation "
                    "EncoderDecoder, an HLG or a RetinaNet-HLG)")
