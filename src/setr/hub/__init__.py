"""Pretrained folders, the layout the Hugging Face Hub and timm use: ``config.json`` + ``model.safetensors`` +
a ``README.md`` model card, for the three kinds of model in this package:

* ``segmentation``: a SETR / SETR-PUP-HLG ``EncoderDecoder`` (or a :class:`~setr.inference.Segmenter`);
  ``config.json`` holds the full ``ModelConfig`` (test pipeline included), the class names and palette and the
  preset it came from. ``model.safetensors`` also carries the config in its metadata, so the file alone is one of
  our ordinary checkpoints (``setr predict PRESET -c model.safetensors``).
* ``classification``: an HLG classifier in timm's own hub format (``timm.create_model("hf-hub:org/name",
  pretrained=True)`` loads it after ``import setr``; :mod:`setr.models.hlg_timm`).
* ``detection``: a RetinaNet-HLG: the detection model config, the categories.

``save_pretrained(model, folder)`` writes a folder; ``from_pretrained(folder_or_repo_id)`` rebuilds the model.
A name that is not a local folder is a Hub repo id (:func:`setr.io.hub.resolve_file`: the local cache first,
``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` never touch the network). What differs by kind is in one
adapter per kind (:mod:`setr.hub.adapters`); the card is :mod:`setr.hub.card`; ``setr convert-weights`` is
:mod:`setr.hub.convert`. Importing this module registers the segmentation formats behind the
``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` methods of ``EncoderDecoder`` and ``Segmenter``.
Nothing here unpickles: weights are safetensors, configs JSON.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SetrError
from ..io.hub import (CARD_NAME, CONFIG_NAME, HUB_KWARGS, WEIGHTS_NAME, check_hub_kwargs, register_kind,
                      resolve_file, save_safetensors, upload_folder)
from .adapters import ADAPTERS, FORMAT, KINDS, adapter_for

__all__ = ["Pretrained", "from_pretrained", "load_pretrained", "push_to_hub", "read_pretrained_config",
           "save_pretrained", "CONFIG_NAME", "WEIGHTS_NAME", "CARD_NAME", "FORMAT", "KINDS"]


@dataclass
class Pretrained:
    """What a pretrained folder holds, rebuilt: the model (eval mode), its ``config.json`` and where it was read."""

    kind: str
    model: nn.Module
    config: dict[str, Any]
    folder: Path


def describe(obj: Any, *, config: Any = None, preset: str | None = None, class_names: list[str] | None = None,
             categories: list[dict] | None = None, source: str | None = None) -> tuple[str, nn.Module, dict]:
    """(kind, model, config.json content) for something ``save_pretrained`` accepts."""
    from .._version import __version__

    adapter = adapter_for(obj)
    model, conf = adapter.config_of(obj, config=config, preset=preset, class_names=class_names,
                                    categories=categories)
    conf = {"format": FORMAT, "library": "setr", "setr_version": __version__, **conf}
    if source:
        conf["source"] = str(source)
    conf["num_parameters"] = sum(p.numel() for p in model.parameters())
    return adapter.kind, model, conf


def save_pretrained(obj: Any, save_directory: str | os.PathLike, *, config: Any = None, preset: str | None = None,
                    class_names: list[str] | None = None, categories: list[dict] | None = None,
                    source: str | None = None, push_to_hub: bool = False, repo_id: str | None = None,
                    **push_kwargs: Any) -> Path:
    """Write ``save_directory/{config.json, model.safetensors, README.md}`` for ``obj``:

    * a :class:`~setr.inference.Segmenter`, or an ``EncoderDecoder`` with ``config`` (a ``ModelConfig`` or a
      ``Preset``); auxiliary heads present in the model are saved too;
    * an :class:`~setr.models.hlg.HLG` (``class_names`` optional), in timm's hub format;
    * a RetinaNet-HLG with ``config`` (a ``DetModelConfig`` or a detection ``Preset``) and optionally its
      ``categories`` (COCO-style ``[{"id", "name"}, ...]``).

    ``preset`` names the preset the weights belong to (taken from ``config`` when it is a preset); ``source`` is
    recorded (e.g. the original checkpoint's file name). ``push_to_hub=True`` also uploads the folder to
    ``repo_id`` (``push_kwargs``: token, private, commit_message, revision). Returns the folder."""
    from ..io.atomic import atomic_write
    from ..model_files import FORMAT_KEY
    from .card import model_card

    kind, model, conf = describe(obj, config=config, preset=preset, class_names=class_names,
                                 categories=categories, source=source)
    folder = Path(save_directory)
    if folder.exists() and not folder.is_dir():
        raise SetrError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "classification":  # timm's own format (config.json, model.safetensors)
        from ..models.hlg_timm import save_hlg_folder

        save_hlg_folder(model, folder, class_names=class_names)
    else:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        meta = {"format": "pt", "setr_pretrained": json.dumps(conf)}
        if kind == "segmentation":  # the file alone is also one of our ordinary checkpoints
            meta[FORMAT_KEY] = json.dumps(conf["model"], indent=2)
        save_safetensors(tensors, folder / WEIGHTS_NAME, meta)
        atomic_write(folder / CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(conf, indent=2) + "\n"))
    card = model_card(conf, model, repo_id=repo_id)
    atomic_write(folder / CARD_NAME, lambda tmp: Path(tmp).write_text(card))
    if push_to_hub:
        if not repo_id:
            raise SetrError("push_to_hub needs repo_id ('org/name')")
        upload_folder(folder, repo_id, **push_kwargs)
    return folder


def push_to_hub(obj: Any, repo_id: str, *, token: str | None = None, private: bool | None = None,
                commit_message: str | None = None, revision: str | None = None, **save_kwargs: Any) -> str:
    """Save ``obj`` as a pretrained folder in a temporary directory and upload it to ``repo_id`` (created if
    missing). Returns the commit URL (huggingface_hub 0.19 returns the folder URL instead)."""
    with tempfile.TemporaryDirectory(prefix="setr-push-") as tmp:
        save_pretrained(obj, tmp, repo_id=repo_id, **save_kwargs)
        return upload_folder(tmp, repo_id, token=token, private=private, commit_message=commit_message,
                             revision=revision)


def read_pretrained_config(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> tuple[dict, Path]:
    """(config.json, its path); a timm-format HLG folder reads as kind ``classification``."""
    path = resolve_file(name_or_path, CONFIG_NAME, **hub_kwargs)
    try:
        conf = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SetrError(f"{path}: not a readable JSON config ({exc})") from None
    if isinstance(conf, dict) and str(conf.get("architecture", "")).startswith("hlg_"):
        return {**conf, "kind": "classification"}, path
    if not isinstance(conf, dict) or conf.get("format") != FORMAT or conf.get("kind") not in KINDS:
        raise SetrError(f"{path}: not a setr pretrained config (format {FORMAT!r} with a kind in {KINDS}, or "
                        "timm's config of an hlg_* model)")
    return conf, path


def load_pretrained(name_or_path: str | os.PathLike, *, kind: str | None = None, with_aux: bool = False,
                    device: str | torch.device = "cpu", **hub_kwargs: Any) -> Pretrained:
    """Rebuild the model of a pretrained folder or Hub repo id (``hub_kwargs``: revision, cache_dir,
    force_download, token, local_files_only). ``kind`` checks what the folder holds. Segmentation models are
    built without auxiliary heads unless ``with_aux`` (then the folder must hold them)."""
    check_hub_kwargs(hub_kwargs)
    conf, config_path = read_pretrained_config(name_or_path, **hub_kwargs)
    if kind is not None and conf["kind"] != kind:
        raise SetrError(f"{name_or_path}: holds a {conf['kind']} model, not a {kind} model")
    if conf["kind"] == "classification":
        from ..models.hlg_timm import load_hlg_folder

        model = load_hlg_folder(name_or_path, **hub_kwargs)
    else:
        from ..io.weights import read_state_dict
        from ..model_files import check_keys, load_weights

        model = ADAPTERS[conf["kind"]].build(conf, with_aux=with_aux)
        sd = read_state_dict(resolve_file(name_or_path, WEIGHTS_NAME, **hub_kwargs))
        if conf["kind"] == "segmentation":
            load_weights(model, sd, source=str(name_or_path))
        else:
            check_keys(model, sd, str(name_or_path))
            model.load_state_dict(sd, strict=True)
    model.setr_config = conf
    return Pretrained(conf["kind"], model.to(device).eval(), conf, config_path.parent)


def from_pretrained(name_or_path: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """The model of a pretrained folder or Hub repo id, in eval mode (``model.setr_config``: its config.json)."""
    return load_pretrained(name_or_path, **kwargs).model


def _segmenter_from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
    """``Segmenter.from_pretrained``: hub arguments go to the download, the rest to ``Segmenter``."""
    from ..config import ModelConfig

    hub = {k: kwargs.pop(k) for k in list(kwargs) if k in HUB_KWARGS}
    loaded = load_pretrained(name_or_path, kind="segmentation", **hub)
    seg = cls(loaded.model, ModelConfig.from_dict(loaded.config["model"]), **kwargs)
    if loaded.config.get("class_names"):
        seg.class_names = list(loaded.config["class_names"])
    if loaded.config.get("palette"):
        seg.palette = [tuple(int(v) for v in c) for c in loaded.config["palette"]]
    seg.preset = loaded.config.get("preset")
    return seg


def _detector_from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
    """``Detector.from_pretrained``: hub arguments go to the download, the rest (device, precision) to ``Detector``."""
    from ..presets.detection import preset_from_dict

    hub = {k: kwargs.pop(k) for k in list(kwargs) if k in HUB_KWARGS}
    loaded = load_pretrained(name_or_path, kind="detection", **hub)
    p = preset_from_dict({"name": loaded.config.get("preset") or "pretrained", "model": loaded.config["model"]})
    categories = loaded.config.get("categories")
    det = cls(loaded.model, p.model, categories=categories,
              class_names=None if categories else loaded.config.get("class_names"), **kwargs)
    det.preset = loaded.config.get("preset")
    return det


def _detector_save(det: Any, save_directory: str | os.PathLike, **kwargs: Any) -> Path:
    """``Detector.save_pretrained``: the network with the detector's config, categories and preset."""
    kwargs.setdefault("preset", det.preset)
    return save_pretrained(det.model, save_directory, config=det.cfg, categories=det.categories, **kwargs)


register_kind("segmentation", lambda model, folder, config=None, **kw: save_pretrained(model, folder, config=config, **kw),
              lambda cls, name, **kw: from_pretrained(name, kind="segmentation", **kw))
register_kind("segmenter", save_pretrained, _segmenter_from_pretrained)
register_kind("detector", _detector_save, _detector_from_pretrained)
