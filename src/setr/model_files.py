"""Models as files: the weights of any checkpoint loaded into a built model, and our own model files.

Reading a file's bytes safely is :mod:`setr.io.weights`; this module maps what was read onto a model.

* Our format: ``<name>.safetensors`` (weights) with the ``ModelConfig`` as JSON in the file's metadata and in a
  ``<name>.json`` beside it, so a model is rebuilt from the file alone (``load_model``).
* Original SETR checkpoints (mmcv: ``{'meta', 'state_dict', 'optimizer'}``): keys are the same as ours; the unused
  ``*.conv_seg.*`` layers are dropped, a position embedding trained at another crop is resampled, and any other
  missing or unexpected key is an error that names them (no silent ``strict=False``).
* ImageNet ViT/DeiT weights for the backbone (``load_pretrained_backbone``): a local ``.pth``/``.bin``,
  ``.npz`` (JAX, through timm's loader) or ``.safetensors`` file in timm layout, or DeiT's ``{'model': ...}``,
  or a timm model name (downloaded by timm where the network allows). The position embedding is resampled
  exactly as the original (cls row kept, DeiT distillation row dropped, bilinear, align_corners=False);
  ``head.*``, ``head_dist.*``, ``dist_token`` and the final ``norm.*`` are dropped, as the original does.

Every ``.pth``/``.pt``/``.bin`` file is read by :func:`safe_torch_load`, with ``torch.load(weights_only=True)``:
tensors and plain Python values only, so a file cannot run code when it is opened. A file whose pickle needs
anything else is refused in one line; ``trust_checkpoint=True`` (``--trust-checkpoint`` on the command line)
loads it with ``weights_only=False``, which runs whatever code the file holds: only for files you trust.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .config import ModelConfig, build_model
from .errors import SetrError
from .io.atomic import atomic_write
from .io.weights import read_state_dict, unwrap_state_dict

FORMAT_KEY = "setr_config"
IGNORED_ORIGINAL_KEYS = (".conv_seg.",)
IGNORED_PRETRAINED_PREFIXES = ("head.", "head_dist.", "dist_token", "norm.", "fc_norm.", "pre_logits.")


# --------------------------------------------------------------------------- original SETR checkpoints
def convert_original_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Original SETR (mmseg 0.x) keys -> ours: drop ``conv_seg``; resample ``backbone.pos_embed`` if needed."""
    from .models.vit import resample_patch_pos_embed

    out = {k: v for k, v in state_dict.items() if not any(s in k for s in IGNORED_ORIGINAL_KEYS)}
    pe = out.get("backbone.pos_embed")
    target = getattr(model, "backbone", None)
    if pe is not None and target is not None and pe.shape != target.pos_embed.shape:
        out["backbone.pos_embed"] = resample_patch_pos_embed(pe, target.grid_size)
    return out


def check_keys(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
               allow_missing: tuple[str, ...] = ()) -> None:
    """Refuse missing / unexpected / mis-shaped keys with one line that names them."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not k.startswith(allow_missing)]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches ({_few(shapes)})")
    if problems:
        raise SetrError(f"{source}: checkpoint does not match the model: " + "; ".join(problems)
                        + ". Is it for another preset or class count?")


def _few(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def load_weights(model: nn.Module, path_or_state: str | os.PathLike | Mapping[str, torch.Tensor],
                             source: str | None = None, trust_checkpoint: bool = False) -> nn.Module:
    """Load a checkpoint's weights into ``model``, strictly: one of ours (``.safetensors``), an original SETR
    checkpoint (mmcv layout, or its ``state_dict``), a training state, or any state dict with our keys.
    ``trust_checkpoint``: see :func:`safe_torch_load` (unsafe)."""
    if isinstance(path_or_state, Mapping):
        sd, source = unwrap_state_dict(path_or_state, source or "<state_dict>"), source or "<state_dict>"
    else:
        sd, source = read_state_dict(path_or_state, trust_checkpoint), str(path_or_state)
    sd = convert_original_state_dict(sd, model)
    own = model.state_dict()
    if not any(k.startswith("auxiliary_head.") for k in own):  # inference-only model: aux weights not needed
        sd = {k: v for k, v in sd.items() if not k.startswith("auxiliary_head.")}
    check_keys(model, sd, source)
    model.load_state_dict(sd, strict=True)
    return model


# --------------------------------------------------------------------------- our own format
def save_model(model: nn.Module, cfg: ModelConfig, path: str | os.PathLike, extra_meta: Mapping[str, str] | None = None) -> Path:
    """Write ``path`` (.safetensors, atomically) and ``path.json`` (the config)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {FORMAT_KEY: cfg.to_json(), **(extra_meta or {})}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(cfg.to_json()))
    return path


def read_config(path: str | os.PathLike) -> ModelConfig | None:
    """The ModelConfig stored with one of our checkpoints, or None for foreign files."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception:  # noqa: BLE001
            raise SetrError(f"{path}: not a readable safetensors file") from None
        if FORMAT_KEY in meta:
            return ModelConfig.from_dict(json.loads(meta[FORMAT_KEY]))
    side = path.with_suffix(".json")
    if side.is_file() and side != path:
        return ModelConfig.from_dict(json.loads(side.read_text()))
    return None


_UNREAD = object()  # "the stored config has not been read yet"


def config_for(path: str | os.PathLike, preset_cfg: ModelConfig, stored=_UNREAD) -> ModelConfig:
    """The config to build for a checkpoint named with a preset: one of ours carries its own (class names,
    --set changes made at training time); it must still be the preset's kind of model. Foreign checkpoints
    use the preset's. ``stored``: :func:`read_config`'s answer when the caller has it already."""
    stored = read_config(path) if stored is _UNREAD else stored
    if stored is None:
        return preset_cfg
    a, b = stored.backbone, preset_cfg.backbone
    same_kind = (a.type == b.type and stored.decode_head.type == preset_cfg.decode_head.type)
    if not same_kind:
        raise SetrError(f"{path}: checkpoint holds a {a.type}/{stored.decode_head.type} model, the preset is "
                        f"{b.type}/{preset_cfg.decode_head.type}")
    return stored


def load_model(path: str | os.PathLike, cfg: ModelConfig | None = None, with_aux: bool = False,
               trust_checkpoint: bool = False, stored=_UNREAD) -> tuple[nn.Module, ModelConfig]:
    """Build and load a model from a checkpoint: ours (config inside) or an original one (``cfg`` required).
    ``.pth`` files are read with ``weights_only=True`` unless ``trust_checkpoint`` (unsafe). ``stored``:
    :func:`read_config`'s answer when the caller has it already (the file's header is then not read again)."""
    stored = read_config(path) if stored is _UNREAD else stored
    if cfg is None:
        cfg = stored
    if cfg is None:
        raise SetrError(f"{path}: no model config stored with this checkpoint; name the preset it belongs to")
    if stored is not None and cfg is not stored:
        _check_same_model(stored, cfg, path)
    sd = read_state_dict(path, trust_checkpoint)  # before building: a bad file fails fast, allocating nothing
    model = build_model(cfg, with_aux=with_aux)
    load_weights(model, sd, source=str(path))
    return model, cfg


# fields that change neither the weights' shapes nor their meaning
NON_ARCHITECTURAL = ("grad_checkpointing", "pretrained", "drop_rate", "attn_drop_rate", "drop_path_rate",
                     "loss_weight", "dropout_ratio")


def architecture(cfg: ModelConfig) -> dict:
    d = cfg.to_dict()
    strip = lambda x: {k: v for k, v in x.items() if k not in NON_ARCHITECTURAL}  # noqa: E731
    return {"num_classes": d["num_classes"], "backbone": strip(d["backbone"]), "decode_head": strip(d["decode_head"])}


def _check_same_model(stored: ModelConfig, cfg: ModelConfig, path) -> None:
    a, b = architecture(stored), architecture(cfg)
    diffs = [k for k in ("num_classes", "backbone", "decode_head") if a[k] != b[k]]
    if "num_classes" in diffs:
        raise SetrError(f"{path}: checkpoint is for {stored.num_classes} classes, the preset has {cfg.num_classes}")
    if diffs:
        raise SetrError(f"{path}: checkpoint was saved for another model ({', '.join(diffs)} differ from the preset)")


# --------------------------------------------------------------------------- ImageNet-pretrained backbones
def read_pretrained(source: str | os.PathLike, embed_dim: int | None = None,
                    trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    """timm-layout ViT/DeiT tensors from a local file or a timm model name."""
    path = Path(source)
    if path.suffix == ".npz":
        if not path.is_file():
            raise SetrError(f"{path}: pretrained weights file not found")
        return _read_npz_with_timm(path)
    if path.suffix in (".pth", ".pt", ".bin", ".safetensors") or path.exists():
        return read_state_dict(path, trust_checkpoint)
    return _read_timm_hub(str(source))


def _read_npz_with_timm(path: Path) -> dict[str, torch.Tensor]:
    """JAX .npz checkpoints through timm's own loader (into a timm ViT of the file's shape)."""
    import numpy as np
    import timm

    try:
        with np.load(path) as w:
            prefix = "opt/target/" if "opt/target/embedding/kernel" in w else ""
            kernel = w[f"{prefix}embedding/kernel"]  # (p, p, 3, C)
            pos = w[f"{prefix}Transformer/posembed_input/pos_embedding"]  # (1, 1 + g*g, C)
            depth = len({m.group(1) for k in w.files if (m := re.search(r"encoderblock_(\d+)/", k))})
            query = [k for k in w.files if k.endswith("MultiHeadDotProductAttention_1/query/kernel")]
            num_heads = w[query[0]].shape[1]  # (C, heads, head_dim)
    except (KeyError, IndexError, ValueError, OSError) as exc:
        raise SetrError(f"{path}: not a ViT .npz checkpoint in the JAX layout ({exc})") from None
    patch, embed = kernel.shape[0], kernel.shape[-1]
    grid = int((pos.shape[1] - 1) ** 0.5)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=grid * patch, patch_size=patch, embed_dim=embed, depth=depth, num_heads=num_heads, num_classes=0)
    model.load_pretrained(str(path))
    return model.state_dict()


def _read_timm_hub(name: str) -> dict[str, torch.Tensor]:
    import timm

    known = timm.list_models(pretrained=True)
    if name not in known and not any(k.startswith(name + ".") for k in known):
        raise SetrError(f"{name}: not a local file, and not a timm model name with pretrained weights")
    if name.split(".")[0] == "vit_large_patch16_384" and "." not in name:
        import warnings

        warnings.warn("timm's default vit_large_patch16_384 weights are not SETR's jx_vit_large_p16_384 file; "
                      "pass that .pth for the original initialisation", stacklevel=2)
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0)
    except Exception as exc:  # noqa: BLE001 - no network, hub errors, ...
        raise SetrError(f"{name}: could not fetch pretrained weights through timm ({type(exc).__name__}: {exc}); "
                        "download the file and pass its path instead") from None
    return model.state_dict()


def convert_pretrained_vit(state_dict: Mapping[str, torch.Tensor], backbone: nn.Module) -> dict[str, torch.Tensor]:
    """timm/DeiT ViT keys -> our backbone's keys, the position embedding resampled to the backbone's grid."""
    from .models.vit import resample_patch_pos_embed

    out = {k: v for k, v in state_dict.items() if not k.startswith(IGNORED_PRETRAINED_PREFIXES)}
    if "pos_embed" in out:
        out["pos_embed"] = resample_patch_pos_embed(out["pos_embed"], backbone.grid_size)
    return out


def load_pretrained_backbone(backbone: nn.Module, source: str | os.PathLike,
                             trust_checkpoint: bool = False) -> dict[str, list[str]]:
    """Initialise the ViT part of a backbone from ImageNet weights. Every ViT key must be present with its
    shape; the MLA norms and neck (never in ImageNet files) stay at their init. Returns what was left out.
    ``.pth`` files are read with ``weights_only=True`` unless ``trust_checkpoint`` (unsafe)."""
    raw = read_pretrained(source, trust_checkpoint=trust_checkpoint)
    if any(k.startswith(("backbone.", "decode_head.", "auxiliary_head.")) for k in raw):
        raise SetrError(f"{source}: a SETR segmentation checkpoint (backbone.* / decode_head.* keys), not ImageNet "
                        "backbone weights: start from it with --load-from instead of --pretrained")
    sd = convert_pretrained_vit(raw, backbone)
    own = backbone.state_dict()
    vit_keys = [k for k in own if not k.startswith(("mla.", "norm_"))]
    missing = [k for k in vit_keys if k not in sd]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in vit_keys
              if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or shapes:
        raise SetrError(f"{source}: pretrained weights do not fit this backbone: "
                        + "; ".join(p for p in (missing and f"missing {_few(missing)}",
                                                shapes and f"shape mismatch {_few(shapes)}") if p))
    unexpected = [k for k in sd if k not in own]
    backbone.load_state_dict({k: sd[k] for k in vit_keys}, strict=False)
    return {"unexpected": unexpected, "kept_init": [k for k in own if k not in vit_keys]}
