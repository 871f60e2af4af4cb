"""HLG image classifiers registered with timm: after ``import setr``, ``timm.create_model("hlg_tiny",
num_classes=10, drop_path_rate=0.1)`` works like any timm model (registry, default configs, feature info;
``features_only=True, out_indices=(1, 2, 3)`` returns the stage maps, ``model.forward_intermediates(x)`` too).

No pretrained weights are hosted; the authors' released ImageNet checkpoints load from a local file with
``load_hlg_checkpoint`` (or ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``),
with depths inferred from the checkpoint's keys when they differ from the variant's.

Pretrained folders of HLG classifiers are timm's own hub format (``config.json`` with ``architecture``,
``num_classes``, ``model_args``, ``pretrained_cfg``; ``model.safetensors`` with timm's key names):
``HLG.save_pretrained`` / ``push_to_hub`` write them, and besides ``HLG.from_pretrained`` they load with
``timm.create_model("hf-hub:org/name", pretrained=True)`` or ``timm.create_model("local-dir:FOLDER",
pretrained=True)`` after ``import setr``.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..errors import SetrError
from ..io.weights import strip_module_prefix, unwrap_state_dict
from .hlg import HLG, HLG_VARIANTS, infer_hlg_kwargs, load_hlg_state_dict


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {"url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.875,
            "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
            "first_conv": "s0_conv.0.0", "classifier": "head", "license": "mit", **kwargs}


default_cfgs = generate_default_cfgs({f"hlg_{v}": _cfg() for v in HLG_VARIANTS})


def checkpoint_filter_fn(state_dict: dict[str, Any], model: HLG) -> dict[str, Any]:
    """The authors' files wrap the weights in ``{'model': ...}``; a head of another class count is dropped."""
    if "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    out = strip_module_prefix(state_dict)
    head = out.get("head.weight")
    if head is not None and (not model.num_classes or head.shape[0] != model.num_classes):
        out = {k: v for k, v in out.items() if not k.startswith("head.")}
    return out


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> HLG:
    args = {**HLG_VARIANTS[variant], **kwargs}
    # features_only=True: timm's FeatureGetterNet over HLG.forward_intermediates (the four stage maps at
    # strides 4, 8, 16, 32; ``out_indices`` picks among them)
    return build_model_with_cfg(HLG, f"hlg_{variant}", pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                pretrained_strict=False,
                                feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls="getter"), **args)


@register_model
def hlg_tiny(pretrained: bool = False, **kwargs: Any) -> HLG:
    return _create("tiny", pretrained, **kwargs)


@register_model
def hlg_small(pretrained: bool = False, **kwargs: Any) -> HLG:
    return _create("small", pretrained, **kwargs)


@register_model
def hlg_medium(pretrained: bool = False, **kwargs: Any) -> HLG:
    return _create("medium", pretrained, **kwargs)


@register_model
def hlg_large(pretrained: bool = False, **kwargs: Any) -> HLG:
    return _create("large", pretrained, **kwargs)


def load_hlg_checkpoint(path: str | os.PathLike | Mapping[str, Any], variant: str | None = None,
                        trust_checkpoint: bool = False, source: str | None = None, **kwargs: Any) -> tuple[HLG, dict]:
    """Build the HLG a checkpoint holds and load it strictly. Depths, widths, heads and the class count come
    from the file's keys; ``variant`` is checked against the widths (a checkpoint of another variant is an
    error) and a depth difference is reported, not refused (Medium/Large were released with several depths).
    ``trust_checkpoint``: load pickled Python objects other than tensors too (unsafe: only for trusted files).
    ``path`` may also be a state dict already in memory (e.g. a training checkpoint's EMA weights); ``source``
    then names it in messages."""
    if isinstance(path, Mapping):
        state, path = path, source or "<state_dict>"
        sd = unwrap_state_dict(state, path)
    else:
        from ..io.weights import read_state_dict

        # unwraps {'model': ...}, {'state_dict': ...} and module. prefixes; .pth read with weights_only=True
        sd = read_state_dict(path, trust_checkpoint)
    try:
        arch = infer_hlg_kwargs(sd)
    except (KeyError, ValueError) as exc:
        raise SetrError(f"{path}: not an HLG checkpoint ({exc})") from None
    notes = []
    if variant is not None:
        want = HLG_VARIANTS[variant]
        if tuple(want["embed_dims"]) != arch["embed_dims"]:
            raise SetrError(f"{path}: checkpoint has widths {list(arch['embed_dims'])}, hlg_{variant} has "
                            f"{list(want['embed_dims'])}: it belongs to another variant")
        if tuple(want["depths"]) != arch["depths"]:
            notes.append(f"checkpoint depths {list(arch['depths'])} differ from hlg_{variant}'s "
                         f"{list(want['depths'])}; using the checkpoint's")
    model = HLG(embed_dims=arch["embed_dims"], num_heads=arch["num_heads"], depths=arch["depths"],
                num_classes=arch["num_classes"], dense=arch["dense"], **kwargs)
    try:
        load_hlg_state_dict(model, sd)
    except RuntimeError as exc:
        raise SetrError(f"{path}: {exc}") from None
    return model, {**arch, "notes": notes}


# --------------------------------------------------------------------------------------------------------------
# pretrained folders in timm's hub format

def hlg_architecture(model: HLG) -> dict[str, Any]:
    """The constructor arguments that shape an HLG's weights and outputs (read from the modules)."""
    blk = model.block1[0]
    return {"embed_dims": list(model.embed_dims), "num_heads": list(model.num_heads), "depths": list(model.depths),
            "num_classes": int(model.num_classes), "dense": bool(model.dense),
            "window_size": int(model.window_size), "dilation_intervals": list(model.dilation_intervals),
            "mlp_ratio": blk.mlp.fc1.out_channels / blk.mlp.fc1.in_channels,
            "qkv_bias": blk.q.bias is not None, "proj_bias": blk.global_attn.proj.bias is not None,
            "in_chans": int(model.s0_conv[0][0].in_channels), "norm_eps": float(getattr(model.norm, "eps", 1e-6)),
            "dpb_eps": float(blk.pos_global.pos1[0].eps), "bn_eps": float(model.s0_conv[0][1].eps)}


def hlg_variant(arch: Mapping[str, Any]) -> str | None:
    """``hlg_<variant>`` whose widths, heads and depths ``arch`` has, or None."""
    return next((f"hlg_{v}" for v, a in HLG_VARIANTS.items()
                 if list(a["embed_dims"]) == list(arch["embed_dims"]) and list(a["depths"]) == list(arch["depths"])
                 and list(a["num_heads"]) == list(arch["num_heads"])), None)


def save_hlg_folder(model: HLG, save_directory: str | os.PathLike, *, class_names: list[str] | None = None,
                    push_to_hub: bool = False, repo_id: str | None = None, **push_kwargs: Any):
    """Write ``config.json`` + ``model.safetensors`` in timm's hub format (timm's own ``save_for_hf``): the
    architecture name, every constructor argument that shapes the weights (``model_args``, so other depths load
    too), the data config and ``label_names``. ``push_to_hub=True`` uploads the folder to ``repo_id``."""
    from pathlib import Path

    from timm.models._hub import generate_readme, save_for_hf

    from ..io.hub import upload_folder

    arch = hlg_architecture(model)
    if class_names is not None and len(class_names) != arch["num_classes"]:
        raise SetrError(f"{len(class_names)} class names for a model with {arch['num_classes']} classes")
    name = hlg_variant(arch) or "hlg_tiny"  # model_args carry every shape, so any registered name rebuilds it
    cfg = {**_cfg(), **dict(getattr(model, "pretrained_cfg", None) or {}), "architecture": name,
           "num_classes": arch["num_classes"]}
    if class_names is not None:
        cfg["label_names"] = list(class_names)
    folder = Path(save_directory)
    if folder.exists() and not folder.is_dir():
        raise SetrError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    model.pretrained_cfg = cfg
    save_for_hf(model, str(folder), model_args=arch, safe_serialization=True)
    params = sum(p.numel() for p in model.parameters())
    card = generate_readme({"license": "mit", "description": (
        f"HLG image classifier ({name if hlg_variant(arch) else 'custom dims'}, depths {arch['depths']}), "
        f"{arch['num_classes']} classes. Load with `import setr, timm; timm.create_model(\"hf-hub:"
        f"{repo_id or 'ORG/NAME'}\", pretrained=True)`."),
        "details": {"Model Type": "Image classification", "Params (M)": round(params / 1e6, 2)}},
        repo_id or name)
    (folder / "README.md").write_text(card)
    if push_to_hub:
        if not repo_id:
            raise SetrError("push_to_hub needs repo_id ('org/name')")
        upload_folder(folder, repo_id, **push_kwargs)
    return folder


def read_hlg_folder_config(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> tuple[dict, Any]:
    """(config.json, its path) of a timm-format HLG folder or Hub repo; anything else is one line."""
    import json

    from ..io.hub import CONFIG_NAME, resolve_file

    path = resolve_file(name_or_path, CONFIG_NAME, **hub_kwargs)
    try:
        conf = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SetrError(f"{path}: not a readable JSON config ({exc})") from None
    if not (isinstance(conf, dict) and str(conf.get("architecture", "")).startswith("hlg_")):
        raise SetrError(f"{path}: not an HLG classifier folder (timm's config.json with an hlg_* architecture)")
    return conf, path


def load_hlg_folder(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> HLG:
    """The HLG of a timm-format folder or Hub repo id, loaded strictly, in eval mode (``hub_kwargs``: revision,
    cache_dir, force_download, token, local_files_only)."""
    import timm

    from ..io.hub import WEIGHTS_NAME, check_hub_kwargs, resolve_file
    from ..io.weights import read_state_dict

    check_hub_kwargs(hub_kwargs)
    conf, _ = read_hlg_folder_config(name_or_path, **hub_kwargs)
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in (conf.get("model_args") or {}).items()}
    pretrained_cfg = {k: tuple(v) if isinstance(v, list) and k != "label_names" else v
                      for k, v in (conf.get("pretrained_cfg") or {}).items()}
    args.setdefault("num_classes", conf.get("num_classes", 1000))
    model = timm.create_model(conf["architecture"], pretrained=False, **args)
    model.pretrained_cfg = {**model.pretrained_cfg, **pretrained_cfg}
    sd = read_state_dict(resolve_file(name_or_path, WEIGHTS_NAME, **hub_kwargs))
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise SetrError(f"{name_or_path}: weights do not match the config's model ({first})") from None
    return model.eval()
