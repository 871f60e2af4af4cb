"""Pretrained folders, the layout the Hugging Face Hub and timm use: ``config.json`` + ``model.safetensors`` +
a ``README.md`` model card, for the three kinds of model in this package:

* ``segmentation``: a SETR / SETR-PUP-HLG ``EncoderDecoder`` (or a :class:`~setr.inference.Segmenter`);
  ``config.json`` holds the full ``ModelConfig`` (test pipeline included), the class names and palette and the
  preset it came from. ``model.safetensors`` also carries the config in its metadata, so the file alone is one of
  our ordinary checkpoints (``setr predict PRESET -c model.safetensors``).
* ``classification``: an HLG classifier (or dense backbone): its architecture, timm data config, class names.
* ``detection``: a RetinaNet-HLG: the detection model config, the categories.

``save_pretrained(model, folder)`` writes a folder; ``from_pretrained(folder_or_repo_id)`` rebuilds the model.
A name that is not a local folder is a Hub repo id, resolved through ``huggingface_hub.hf_hub_download``: the
local cache first (``HF_HUB_CACHE`` / ``cache_dir``; ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` never
touch the network), then the Hub. ``push_to_hub`` writes the folder to a temporary directory and uploads it.
Nothing here unpickles: weights are safetensors, configs JSON.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .errors import SetrError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT = "setr-pretrained-1"
KINDS = ("segmentation", "classification", "detection")
PIPELINE_TAGS = {"segmentation": "image-segmentation", "classification": "image-classification",
                 "detection": "object-detection"}
HUB_KWARGS = ("revision", "cache_dir", "force_download", "token", "local_files_only")


@dataclass
class Pretrained:
    """What a pretrained folder holds, rebuilt: the model (eval mode), its ``config.json`` and where it was read."""

    kind: str
    model: nn.Module
    config: dict[str, Any]
    folder: Path


# --------------------------------------------------------------------------------------------------- saving
def save_pretrained(obj: Any, save_directory: str | os.PathLike, *, config: Any = None, preset: str | None = None,
                    class_names: list[str] | None = None, categories: list[dict] | None = None,
                    source: str | None = None, push_to_hub: bool = False, repo_id: str | None = None,
                    **push_kwargs: Any) -> Path:
    """Write ``save_directory/{config.json, model.safetensors, README.md}`` for ``obj``:

    * a :class:`~setr.inference.Segmenter`, or an ``EncoderDecoder`` with ``config`` (a ``ModelConfig`` or a
      ``Preset``); auxiliary heads present in the model are saved too;
    * an :class:`~setr.models.hlg.HLG` (``class_names`` optional);
    * a RetinaNet-HLG with ``config`` (a ``DetModelConfig`` or a ``DetectionPreset``) and optionally its
      ``categories`` (COCO-style ``[{"id", "name"}, ...]``).

    ``preset`` names the preset the weights belong to (taken from ``config`` when it is a preset); ``source`` is
    recorded (e.g. the original checkpoint's file name). ``push_to_hub=True`` also uploads the folder to
    ``repo_id`` (``push_kwargs``: token, private, commit_message, revision). Returns the folder."""
    kind, model, conf = describe(obj, config=config, preset=preset, class_names=class_names,
                                 categories=categories, source=source)
    folder = Path(save_directory)
    if folder.exists() and not folder.is_dir():
        raise SetrError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    from .io.atomic import atomic_write
    from .model_files import FORMAT_KEY

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "pt", "setr_pretrained": json.dumps(conf)}
    if kind == "segmentation":  # the file alone is also one of our ordinary checkpoints
        meta[FORMAT_KEY] = json.dumps(conf["model"], indent=2)
    _save_safetensors(tensors, folder / WEIGHTS_NAME, meta, atomic_write)
    atomic_write(folder / CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(conf, indent=2) + "\n"))
    card = model_card(conf, model, repo_id=repo_id)
    atomic_write(folder / CARD_NAME, lambda tmp: Path(tmp).write_text(card))
    if push_to_hub:
        if not repo_id:
            raise SetrError("push_to_hub needs repo_id ('org/name')")
        upload_folder(folder, repo_id, **push_kwargs)
    return folder


def _save_safetensors(tensors: dict[str, torch.Tensor], path: Path, meta: dict[str, str], atomic_write) -> None:
    from safetensors.torch import save_file

    try:
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    except RuntimeError as exc:  # tensors sharing memory: store independent copies
        if "share memory" not in str(exc):
            raise
        tensors = {k: v.clone() for k, v in tensors.items()}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def push_to_hub(obj: Any, repo_id: str, *, token: str | None = None, private: bool | None = None,
                commit_message: str | None = None, revision: str | None = None, **save_kwargs: Any) -> str:
    """Save ``obj`` as a pretrained folder in a temporary directory and upload it to ``repo_id`` (created if
    missing). Returns the commit URL (huggingface_hub 0.19 returns the folder URL instead)."""
    with tempfile.TemporaryDirectory(prefix="setr-push-") as tmp:
        save_pretrained(obj, tmp, repo_id=repo_id, **save_kwargs)
        return upload_folder(tmp, repo_id, token=token, private=private, commit_message=commit_message,
                             revision=revision)


def upload_folder(folder: str | os.PathLike, repo_id: str, *, token: str | None = None,
                  private: bool | None = None, commit_message: str | None = None,
                  revision: str | None = None) -> str:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    # private=None is "the account's default"; huggingface_hub < 0.27 would send it as null, so leave it out
    api.create_repo(repo_id, exist_ok=True, **({} if private is None else {"private": private}))
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                             commit_message=commit_message or "Upload setr pretrained model")
    return str(getattr(info, "commit_url", info))


# --------------------------------------------------------------------------------------------------- describing
def describe(obj: Any, *, config: Any = None, preset: str | None = None, class_names: list[str] | None = None,
             categories: list[dict] | None = None, source: str | None = None) -> tuple[str, nn.Module, dict]:
    """(kind, model, config.json content) for something ``save_pretrained`` accepts."""
    from ._version import __version__
    from .inference import Segmenter
    from .models.hlg import HLG
    from .models.segmentor import EncoderDecoder

    base = {"format": FORMAT, "library": "setr", "setr_version": __version__}
    if isinstance(obj, Segmenter):
        preset = preset or getattr(obj, "preset", None)
        conf = _segmentation_config(obj.model, config or obj.cfg, preset)
        conf["class_names"], conf["palette"] = list(obj.class_names), [list(map(int, c)) for c in obj.palette]
        model = obj.model
    elif isinstance(obj, EncoderDecoder):
        if config is None:
            raise SetrError("saving a segmentation model needs its config (a ModelConfig or a Preset)")
        conf, model = _segmentation_config(obj, config, preset), obj
    elif isinstance(obj, HLG):
        conf, model = _classification_config(obj, class_names, preset), obj
    elif _is_retinanet_hlg(obj):
        if config is None:
            raise SetrError("saving a RetinaNet-HLG needs its config (a DetModelConfig or a DetectionPreset)")
        conf, model = _detection_config(obj, config, preset, categories, class_names), obj
    else:
        raise SetrError(f"save_pretrained: cannot save a {type(obj).__name__} (expected a Segmenter, a "
                        "segmentation EncoderDecoder, an HLG or a RetinaNet-HLG)")
    conf = {**base, **conf}
    if source:
        conf["source"] = str(source)
    conf["num_parameters"] = sum(p.numel() for p in model.parameters())
    return conf["kind"], model, conf


def _segmentation_config(model: nn.Module, config: Any, preset: str | None) -> dict:
    from .config import ModelConfig
    from .data.classes import classes_and_palette
    from .presets.base import Preset

    if isinstance(config, Preset):
        preset, config = preset or config.name, config.model
    if not isinstance(config, ModelConfig):
        raise SetrError(f"segmentation config must be a ModelConfig or a Preset, got {type(config).__name__}")
    names, palette = classes_and_palette(config.dataset, config.num_classes, config.class_names)
    with_aux = len(getattr(model, "auxiliary_head", ())) > 0
    return {"kind": "segmentation", "preset": preset, "model": config.to_dict(), "with_aux": with_aux,
            "class_names": list(names), "palette": [list(map(int, c)) for c in palette]}


def hlg_architecture(model: nn.Module) -> dict[str, Any]:
    """The constructor arguments that shape an HLG's weights and outputs (read from the modules)."""
    blk = model.block1[0]
    first_ln = model.norm
    return {"embed_dims": list(model.embed_dims), "num_heads": list(model.num_heads), "depths": list(model.depths),
            "num_classes": int(model.num_classes), "dense": bool(model.dense),
            "window_size": int(model.window_size), "dilation_intervals": list(model.dilation_intervals),
            "mlp_ratio": blk.mlp.fc1.out_channels / blk.mlp.fc1.in_channels,
            "qkv_bias": blk.q.bias is not None, "proj_bias": blk.global_attn.proj.bias is not None,
            "in_chans": int(model.s0_conv[0][0].in_channels), "norm_eps": float(getattr(first_ln, "eps", 1e-6)),
            "dpb_eps": float(blk.pos_global.pos1[0].eps), "bn_eps": float(model.s0_conv[0][1].eps)}


def _classification_config(model: nn.Module, class_names: list[str] | None, preset: str | None) -> dict:
    from .models.hlg import HLG_VARIANTS

    arch = hlg_architecture(model)
    variant = next((f"hlg_{v}" for v, a in HLG_VARIANTS.items()
                    if list(a["embed_dims"]) == arch["embed_dims"] and list(a["depths"]) == arch["depths"]
                    and list(a["num_heads"]) == arch["num_heads"]), None)
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    data = {k: (list(cfg[k]) if isinstance(cfg.get(k), tuple) else cfg[k])
            for k in ("input_size", "crop_pct", "interpolation", "mean", "std") if k in cfg}
    if not data:
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        data = {"input_size": [3, 224, 224], "crop_pct": 0.875, "interpolation": "bicubic",
                "mean": list(IMAGENET_DEFAULT_MEAN), "std": list(IMAGENET_DEFAULT_STD)}
    if class_names is not None and len(class_names) != arch["num_classes"]:
        raise SetrError(f"{len(class_names)} class names for a model with {arch['num_classes']} classes")
    return {"kind": "classification", "preset": preset or variant, "architecture": "hlg", "variant": variant,
            "model": arch, "data": data, "class_names": list(class_names) if class_names else None}


def _is_retinanet_hlg(obj: Any) -> bool:
    from torchvision.models.detection import RetinaNet

    from .detection.model import HLGFPNBackbone

    return isinstance(obj, RetinaNet) and isinstance(obj.backbone, HLGFPNBackbone)


def _detection_config(model: nn.Module, config: Any, preset: str | None, categories: list[dict] | None,
                      class_names: list[str] | None) -> dict:
    from .presets.detection import DetectionPreset, DetModelConfig

    if isinstance(config, DetectionPreset):
        preset, config = preset or config.name, config.model
    if not isinstance(config, DetModelConfig):
        raise SetrError(f"detection config must be a DetModelConfig or a DetectionPreset, got {type(config).__name__}")
    num_classes = int(model.head.classification_head.num_classes)
    if categories is not None:
        categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]
        if len(categories) != num_classes:
            raise SetrError(f"{len(categories)} categories for a model with {num_classes} classes")
        class_names = [c["name"] for c in categories]
    elif class_names is not None and len(class_names) != num_classes:
        raise SetrError(f"{len(class_names)} class names for a model with {num_classes} classes")
    model_cfg = dataclasses.asdict(config)
    model_cfg["pretrained"] = None  # the weights are in the folder
    return {"kind": "detection", "preset": preset, "model": model_cfg, "num_classes": num_classes,
            "categories": categories, "class_names": list(class_names) if class_names else None}


# --------------------------------------------------------------------------------------------------- model card
def model_card(conf: Mapping[str, Any], model: nn.Module | None = None, repo_id: str | None = None) -> str:
    """README.md for a pretrained folder: Hub metadata, preset, parameters, the original's results row, licence
    note, how to load."""
    kind, preset = conf["kind"], conf.get("preset")
    where = repo_id or "PATH_OR_REPO_ID"
    title = preset or conf.get("variant") or f"setr {kind} model"
    params = conf.get("num_parameters") or (sum(p.numel() for p in model.parameters()) if model is not None else 0)
    tags = ["setr", "pytorch", "safetensors", "vision-transformer", kind]
    if kind != "segmentation" or str(conf["model"].get("backbone", {}).get("type")) == "hlg":
        tags.append("hlg")
    lines = ["---", "library_name: setr", "license: mit", f"pipeline_tag: {PIPELINE_TAGS[kind]}", "tags:"]
    lines += [f"- {t}" for t in tags]
    lines += ["---", "", f"# {title}", ""]
    lines += [_card_description(conf), "",
              "| | |", "|---|---|",
              f"| preset | {preset or '-'} |",
              f"| parameters | {params:,d} ({params / 1e6:.2f}M) |",
              f"| classes | {_num_classes(conf)} |"]
    if conf.get("source"):
        lines.append(f"| converted from | `{conf['source']}` |")
    lines += ["", *_results_section(conf), "## How to load", "", "```python", *_load_snippet(conf, where), "```", "",
              "With torch.hub (no install): "
              f"`torch.hub.load(\"<setr repo or folder>\", \"{_hub_entry(conf)}\", pretrained=\"{where}\")`.", "",
              "## Licence", "",
              "The setr code and the original SETR / HLG code are MIT-licensed. Weights trained on a dataset also "
              "fall under that dataset's terms (e.g. Cityscapes and ADE20K allow non-commercial research use "
              "only); check them before using these weights commercially.", ""]
    return "\n".join(lines)


def _num_classes(conf: Mapping[str, Any]) -> int:
    if conf["kind"] == "detection":
        return int(conf["num_classes"])
    return int(conf["model"]["num_classes"])


def _card_description(conf: Mapping[str, Any]) -> str:
    kind, m = conf["kind"], conf["model"]
    if kind == "segmentation":
        bb, head = m["backbone"], m["decode_head"]
        data = m.get("dataset") or "a custom dataset"
        return (f"Semantic segmentation: {bb['type']} backbone, {head['type']} decode head, {m['num_classes']} "
                f"classes ({data}), test mode {m['test']['mode']} with crop "
                f"{'x'.join(str(c) for c in m['test']['crop_size'])}. "
                "A SETR reimplementation for today's PyTorch (`pip install setr`), numerically identical to the "
                "original release (fudan-zvg/SETR).")
    if kind == "classification":
        return (f"Image classification with HLG ({conf.get('variant') or 'custom'}: dims {m['embed_dims']}, "
                f"depths {m['depths']}), {m['num_classes']} classes; a timm model after `import setr`.")
    return (f"Object detection: RetinaNet with an HLG-FPN backbone ({m['variant']}), {conf['num_classes']} "
            "classes, torchvision's RetinaNet.")


def _results_section(conf: Mapping[str, Any]) -> list[str]:
    preset = conf.get("preset")
    if not preset:
        return []
    if conf["kind"] == "segmentation":
        from .presets import get_preset

        try:
            p = get_preset(preset)
        except SetrError:
            return []
        if p.reported_miou is None:
            return ["## Results", "", "The original README gives no result for this configuration.", ""]
        ms_value = p.reported_ms_miou
        if ms_value is None and not p.name.endswith("_MS"):  # the ms+flip number sits on the _MS twin
            try:
                ms_value = get_preset(p.name + "_MS").reported_ms_miou
            except SetrError:
                pass
        ms = f"{ms_value:.2f}" if ms_value is not None else "-"
        return ["## Results (the original README's row)", "", "| preset | dataset | mIoU | ms+flip mIoU |",
                "|---|---|---|---|", f"| {p.name} | {p.dataset} | {p.reported_miou:.2f} | {ms} |", "",
                "These are the authors' numbers for their released weights, not a re-evaluation of this file.", ""]
    if conf["kind"] == "classification":
        from .presets import get_classifier_preset, is_classifier_preset

        if not is_classifier_preset(preset):
            return []
        p = get_classifier_preset(preset)
        return ["## Published model size (the HLG paper's row)", "", "| model | params | GFLOPs (MACs) at 224 |",
                "|---|---|---|", f"| {p.name} | {p.published_params_m}M | {p.published_gflops} |", "",
                *[f"Note: {n}" for n in p.notes], ""]
    return []


def _load_snippet(conf: Mapping[str, Any], where: str) -> list[str]:
    if conf["kind"] == "segmentation":
        return ["from setr import Segmenter, read_image", "", f'seg = Segmenter.from_pretrained("{where}")',
                'image = read_image("image.jpg")          # (H, W, 3) uint8 RGB',
                "labels = seg.predict(image)              # (H, W) class ids",
                "overlay = seg.overlay(image, labels)     # palette colours over the image"]
    if conf["kind"] == "classification":
        return ["import torch", "from setr.models.hlg import HLG", "",
                f'model = HLG.from_pretrained("{where}")', "logits = model(torch.randn(1, 3, 224, 224))"]
    return ["from setr.pretrained import from_pretrained", "",
            f'model = from_pretrained("{where}")    # torchvision RetinaNet, eval mode',
            "detections = model([image_tensor_0_to_1])  # [{'boxes', 'labels', 'scores'}]"]


def _hub_entry(conf: Mapping[str, Any]) -> str:
    if conf["kind"] == "classification":
        return "hlg"
    if conf["kind"] == "detection":
        return "retinanet_hlg"
    m = conf["model"]
    if m["backbone"]["type"] == "hlg":
        return "setr_pup_hlg"
    return {"naive": "setr_naive", "pup": "setr_pup", "mla": "setr_mla"}.get(m["decode_head"]["type"], "setr_pup")


# --------------------------------------------------------------------------------------------------- loading
def resolve_file(name_or_path: str | os.PathLike, filename: str, *, revision: str | None = None,
                 cache_dir: str | os.PathLike | None = None, force_download: bool = False,
                 token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """``filename`` of a local pretrained folder, or of a Hub repo (through huggingface_hub's cache)."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        path = local / filename
        if not path.is_file():
            raise SetrError(f"{local}: no {filename} in this folder (not a pretrained folder?)")
        return path
    if local.exists():
        raise SetrError(f"{local}: expected a pretrained folder (with {CONFIG_NAME} and {WEIGHTS_NAME}) or a "
                        "Hugging Face Hub repo id, got a file")
    from huggingface_hub import hf_hub_download

    from ._version import __version__

    try:
        return Path(hf_hub_download(repo_id=str(name_or_path), filename=filename, revision=revision,
                                    cache_dir=None if cache_dir is None else str(cache_dir),
                                    force_download=force_download, token=token, local_files_only=local_files_only,
                                    library_name="setr", library_version=__version__))
    except Exception as exc:  # noqa: BLE001 - hub errors: offline, missing repo/file/revision, invalid id
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise SetrError(f"{name_or_path}: not a local folder, and {filename} could not be had from the Hugging Face "
                        f"Hub or its cache ({type(exc).__name__}: {first})") from None


def read_pretrained_config(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> tuple[dict, Path]:
    path = resolve_file(name_or_path, CONFIG_NAME, **hub_kwargs)
    try:
        conf = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SetrError(f"{path}: not a readable JSON config ({exc})") from None
    if not isinstance(conf, dict) or conf.get("format") != FORMAT or conf.get("kind") not in KINDS:
        raise SetrError(f"{path}: not a setr pretrained config (format {FORMAT!r} with a kind in {KINDS})")
    return conf, path


def load_pretrained(name_or_path: str | os.PathLike, *, kind: str | None = None, with_aux: bool = False,
                    device: str | torch.device = "cpu", **hub_kwargs: Any) -> Pretrained:
    """Rebuild the model of a pretrained folder or Hub repo id (``hub_kwargs``: revision, cache_dir,
    force_download, token, local_files_only). ``kind`` checks what the folder holds. Segmentation models are
    built without auxiliary heads unless ``with_aux`` (then the folder must hold them)."""
    unknown = set(hub_kwargs) - set(HUB_KWARGS)
    if unknown:
        raise TypeError(f"unexpected arguments {sorted(unknown)}")
    conf, config_path = read_pretrained_config(name_or_path, **hub_kwargs)
    if kind is not None and conf["kind"] != kind:
        raise SetrError(f"{name_or_path}: holds a {conf['kind']} model, not a {kind} model")
    weights = resolve_file(name_or_path, WEIGHTS_NAME, **hub_kwargs)
    from .io.weights import read_state_dict
    from .model_files import check_keys

    source = str(name_or_path)
    if conf["kind"] == "segmentation":
        from .model_files import load_weights
        from .config import ModelConfig, build_model

        cfg = ModelConfig.from_dict(conf["model"])
        model = build_model(cfg, with_aux=with_aux)
        load_weights(model, read_state_dict(weights), source=source)
    else:
        sd = read_state_dict(weights)
        if conf["kind"] == "classification":
            from .models.hlg import HLG

            arch = dict(conf["model"])
            model = HLG(**{**arch, "embed_dims": tuple(arch["embed_dims"]), "num_heads": tuple(arch["num_heads"]),
                           "depths": tuple(arch["depths"]), "dilation_intervals": tuple(arch["dilation_intervals"])})
            data = conf.get("data") or {}
            model.pretrained_cfg = {**data, **{k: tuple(v) for k, v in data.items() if isinstance(v, list)},
                                    "num_classes": model.num_classes, "classifier": "head",
                                    "first_conv": "s0_conv.0.0"}
        else:
            from .detection.model import build_retinanet_hlg
            from .presets.detection import DetectionPreset

            det = DetectionPreset.from_dict({"name": conf.get("preset") or "pretrained", "model": conf["model"]})
            det.model.pretrained = None
            model = build_retinanet_hlg(det.model, int(conf["num_classes"]))
        check_keys(model, sd, source)
        model.load_state_dict(sd, strict=True)
    model.setr_config = conf
    return Pretrained(conf["kind"], model.to(device).eval(), conf, config_path.parent)


def from_pretrained(name_or_path: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """The model of a pretrained folder or Hub repo id, in eval mode (``model.setr_config``: its config.json)."""
    return load_pretrained(name_or_path, **kwargs).model


def segmenter_from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
    """``Segmenter.from_pretrained``: hub arguments go to the download, the rest to ``Segmenter``."""
    hub = {k: kwargs.pop(k) for k in list(kwargs) if k in HUB_KWARGS}
    loaded = load_pretrained(name_or_path, kind="segmentation", **hub)
    from .config import ModelConfig

    seg = cls(loaded.model, ModelConfig.from_dict(loaded.config["model"]), **kwargs)
    if loaded.config.get("class_names"):
        seg.class_names = list(loaded.config["class_names"])
    if loaded.config.get("palette"):
        seg.palette = [tuple(int(v) for v in c) for c in loaded.config["palette"]]
    seg.preset = loaded.config.get("preset")
    return seg


# --------------------------------------------------------------------------------------------------- conversion
@dataclass
class Conversion:
    kind: str
    folder: Path
    preset: str | None
    num_parameters: int
    max_abs_diff: float
    input_shape: tuple[int, ...]
    notes: list[str]

    def summary(self) -> str:
        lines = [f"wrote {self.folder} ({self.kind}, preset {self.preset or '-'}, {self.num_parameters:,d} "
                 f"parameters)"]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"reloaded from the folder: max abs difference {self.max_abs_diff:.3g} on a random "
                     f"{'x'.join(map(str, self.input_shape))} input")
        return "\n".join(lines)


def convert_weights(source: str | os.PathLike, out_dir: str | os.PathLike, *, preset: str | None = None,
                    class_names: list[str] | None = None, verify_size: tuple[int, int] | None = None,
                    trust_checkpoint: bool = False, ema: bool = False, seed: int = 0) -> Conversion:
    """A checkpoint -> a pretrained folder, verified by reloading it and comparing outputs on a random input.

    ``source``: an original SETR checkpoint (``preset`` names its configuration), an HLG ImageNet checkpoint
    (``preset`` = ``hlg_<variant>`` optional, checked against the file), or one of our checkpoints: a
    segmentation ``.safetensors`` / ``iter_N.pth``, a classification ``epoch_N.pth`` (``ema=True`` for its EMA
    weights) or a detection ``epoch_N.pth``. ``.pth`` files are read with ``weights_only=True``."""
    path = Path(source)
    if not path.is_file():
        raise SetrError(f"{path}: checkpoint file not found")
    kind, obj, save_kwargs, notes = _load_for_conversion(path, preset, class_names, trust_checkpoint, ema)
    folder = save_pretrained(obj, out_dir, source=path.name, **save_kwargs)
    loaded = load_pretrained(folder, kind=kind, with_aux=False)
    model = obj.model if kind == "segmentation" else obj
    diff, shape = _compare_outputs(kind, model, loaded.model, verify_size, seed)
    return Conversion(kind, folder, loaded.config.get("preset"), int(loaded.config["num_parameters"]), diff, shape,
                      notes)


def _preset_kind(name: str | None) -> str | None:
    if name is None:
        return None
    from .presets.detection import list_detection_presets
    from .presets import is_classifier_preset

    if name in list_detection_presets():
        return "detection"
    if is_classifier_preset(name):
        return "classification"
    return "segmentation"


def _load_for_conversion(path: Path, preset: str | None, class_names, trust: bool, ema: bool):
    """(kind, object to save, save_pretrained kwargs, notes)."""
    from .io.weights import read_state_dict, unwrap_state_dict
    from .model_files import read_config

    want = _preset_kind(preset)
    if path.suffix == ".safetensors":
        if read_config(path) is not None:  # one of our segmentation checkpoints
            return _segmentation_from_file(path, preset, trust)
        state: dict = {"state_dict": read_state_dict(path)}
    else:
        from .engine.state import read_checkpoint

        state = read_checkpoint(path, trust)
    meta = state.get("meta") if isinstance(state.get("meta"), dict) else {}
    if meta.get("format") == "setr-det-1" or want == "detection":
        return _detection_from_file(path, state, meta, preset, trust)
    if ("iteration" in meta and isinstance(meta.get("config"), dict)
            and meta.get("task", "segmentation") == "segmentation"):  # our segmentation training checkpoint
        return _segmentation_from_training(path, state, meta, preset)
    if ema:
        if "ema" not in state:
            raise SetrError(f"{path}: no EMA weights in this checkpoint")
        sd = unwrap_state_dict(state["ema"], path)
    else:
        sd = unwrap_state_dict(state, path)
    if any(k.startswith("decode_head.") for k in sd):  # an original SETR checkpoint (mmcv layout)
        if want != "segmentation":
            raise SetrError(f"{path}: an original SETR checkpoint: name its preset with --preset "
                            "(`setr presets` lists them)")
        return _segmentation_from_state(path, sd, preset)
    if any(k.startswith("head.classification_head.") for k in sd):
        raise SetrError(f"{path}: a RetinaNet checkpoint: name its detection preset with --preset")
    if any(k.startswith(("block1.0.", "backbone.block1.0.")) for k in sd):
        return _classification_from_state(path, sd, preset if want == "classification" else None,
                                           meta.get("model"), class_names)
    raise SetrError(f"{path}: not a checkpoint this command knows (SETR, HLG or RetinaNet-HLG weights)")


def _segmentation_from_file(path: Path, preset: str | None, trust: bool):
    from .inference import Segmenter

    seg = Segmenter.from_checkpoint(path, preset, trust_checkpoint=trust)
    seg.preset = preset
    return "segmentation", seg, {"preset": preset}, []


def _segmentation_from_training(path: Path, state: dict, meta: dict, preset: str | None):
    from .model_files import load_weights
    from .config import ModelConfig, build_model
    from .inference import Segmenter

    cfg = ModelConfig.from_dict(meta["config"]["model"])
    model = build_model(cfg, with_aux=False)
    load_weights(model, state["state_dict"], source=str(path))
    seg = Segmenter(model, cfg)
    seg.preset = preset or meta.get("preset")
    notes = [f"training checkpoint at iteration {meta['iteration']}; auxiliary heads and optimizer state dropped"]
    return "segmentation", seg, {"preset": seg.preset}, notes


def _segmentation_from_state(path: Path, sd: dict, preset: str):
    from .model_files import load_weights
    from .config import build_model
    from .inference import Segmenter
    from .presets import get_preset

    p = get_preset(preset)
    model = build_model(p.model, with_aux=False)
    load_weights(model, sd, source=str(path))
    seg = Segmenter(model, p.model)
    seg.preset = p.name
    return "segmentation", seg, {"preset": p.name}, ["original checkpoint: conv_seg and auxiliary heads dropped"]


def _classification_from_state(path: Path, sd: dict, preset: str | None, trained_as: str | None, class_names):
    from .models.hlg_timm import load_hlg_checkpoint

    variant = preset.lower().removeprefix("hlg_") if preset is not None else None
    model, arch = load_hlg_checkpoint(sd, variant, source=str(path))
    notes = list(arch["notes"])
    if trained_as:
        notes.append(f"trained as {trained_as}")
    return "classification", model.eval(), {"preset": preset, "class_names": class_names}, notes


def _detection_from_file(path: Path, state: dict, meta: dict, preset: str | None, trust: bool):
    from .detection.engine import load_detector
    from .presets.detection import DetectionPreset, get_detection_preset

    if isinstance(meta.get("config"), dict):
        p = DetectionPreset.from_dict(meta["config"])  # the trained configuration, overrides included
    elif preset is not None:
        p = get_detection_preset(preset)
    else:
        raise SetrError(f"{path}: a detection checkpoint without its config: name its preset with --preset")
    model, categories = load_detector(p, path, trust_checkpoint=trust)
    notes = [f"training checkpoint at epoch {meta['epoch']}"] if "epoch" in meta else []
    return "detection", model, {"config": p, "categories": categories}, notes


@torch.no_grad()
def _compare_outputs(kind: str, a: nn.Module, b: nn.Module, size: tuple[int, int] | None,
                     seed: int) -> tuple[float, tuple[int, ...]]:
    a, b = a.eval().cpu(), b.eval().cpu()
    gen = torch.Generator().manual_seed(seed)
    if kind == "classification":
        size = size or (224, 224)
    elif kind == "segmentation":
        crop = tuple(b.setr_config["model"]["test"]["crop_size"])
        size = size or (crop if crop and max(crop) <= 256 else (256, 256))
    else:
        size = size or (256, 256)
    x = torch.randn(1, 3, *size, generator=gen)
    if kind == "segmentation":
        outs = [a.encode_decode(x)], [b.encode_decode(x)]
    elif kind == "classification":
        outs = tuple(m.forward_dense(x) if m.dense else [m(x)] for m in (a, b))
    else:
        def run(m):
            feats = list(m.backbone(x).values())
            head = m.head(feats)
            return [*feats, head["cls_logits"], head["bbox_regression"]]
        outs = run(a), run(b)
    diff = max(float((p - q).abs().max()) for p, q in zip(*outs))
    return diff, tuple(x.shape)
