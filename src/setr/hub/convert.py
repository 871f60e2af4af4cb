"""``setr convert-weights``: a checkpoint of any kind (original SETR, the authors' HLG, ours) -> a pretrained
folder, checked by reloading the folder and comparing outputs on a random input. Telling the formats apart
(``_load_for_conversion``) lives here and nowhere else."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import presets
from ..errors import SetrError
from . import load_pretrained, save_pretrained
from .adapters import ADAPTERS


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
    model, reloaded = (obj.model if kind == "segmentation" else obj), loaded.model
    if kind == "segmentation":  # the Segmenter's model runs prepared (BatchNorm folded): compare like with like
        from ..precision import prepare_for_inference

        reloaded = prepare_for_inference(reloaded, obj.precision, obj.device)
    diff, shape = _compare_outputs(ADAPTERS[kind], loaded.config, model, reloaded, verify_size, seed)
    preset = loaded.config.get("preset", save_kwargs.get("preset"))
    return Conversion(kind, folder, preset, sum(p.numel() for p in loaded.model.parameters()), diff, shape, notes)


def _preset_kind(name: str | None) -> str | None:
    return None if name is None else presets.task_of(name)


def _load_for_conversion(path: Path, preset: str | None, class_names, trust: bool, ema: bool):
    """(kind, object to save, save_pretrained kwargs, notes)."""
    from ..io.weights import read_state_dict, unwrap_state_dict
    from ..model_files import read_config

    want = _preset_kind(preset)
    if path.suffix == ".safetensors":
        if read_config(path) is not None:  # one of our segmentation checkpoints
            return _segmentation_from_file(path, preset, trust)
        state: dict = {"state_dict": read_state_dict(path)}
    else:
        from ..engine.state import read_checkpoint

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
    if any(k.startswith("bbox_head.retina_cls.") for k in sd):
        raise SetrError(f"{path}: a RetinaNet checkpoint: name its detection preset with --preset")
    if any(k.startswith(("block1.0.", "backbone.block1.0.")) for k in sd):
        return _classification_from_state(path, sd, preset if want == "classification" else None,
                                           meta.get("model"), class_names)
    raise SetrError(f"{path}: not a checkpoint this command knows (SETR, HLG or RetinaNet-HLG weights)")


def _segmentation_from_file(path: Path, preset: str | None, trust: bool):
    from ..inference import Segmenter

    seg = Segmenter.from_checkpoint(path, preset, trust_checkpoint=trust)
    seg.preset = preset
    return "segmentation", seg, {"preset": preset}, []


def _segmentation_from_training(path: Path, state: dict, meta: dict, preset: str | None):
    from ..model_files import load_weights
    from ..config import ModelConfig, build_model
    from ..inference import Segmenter

    cfg = ModelConfig.from_dict(meta["config"]["model"])
    model = build_model(cfg, with_aux=False)
    load_weights(model, state["state_dict"], source=str(path))
    seg = Segmenter(model, cfg)
    seg.preset = preset or meta.get("preset")
    notes = [f"training checkpoint at iteration {meta['iteration']}; auxiliary heads and optimizer state dropped"]
    return "segmentation", seg, {"preset": seg.preset}, notes


def _segmentation_from_state(path: Path, sd: dict, preset: str):
    from ..model_files import load_weights
    from ..config import build_model
    from ..inference import Segmenter
    p = presets.get(preset, "segmentation")
    model = build_model(p.model, with_aux=False)
    load_weights(model, sd, source=str(path))
    seg = Segmenter(model, p.model)
    seg.preset = p.name
    return "segmentation", seg, {"preset": p.name}, ["original checkpoint: conv_seg and auxiliary heads dropped"]


def _classification_from_state(path: Path, sd: dict, preset: str | None, trained_as: str | None, class_names):
    from ..models.hlg_timm import load_hlg_checkpoint

    variant = preset.lower().removeprefix("hlg_") if preset is not None else None
    model, arch = load_hlg_checkpoint(sd, variant, source=str(path))
    notes = list(arch["notes"])
    if trained_as:
        notes.append(f"trained as {trained_as}")
    return "classification", model.eval(), {"preset": preset, "class_names": class_names}, notes


def _detection_from_file(path: Path, state: dict, meta: dict, preset: str | None, trust: bool):
    from ..detection.api import categories_for, load_detector_checkpoint
    from ..presets.detection import preset_from_dict

    if isinstance(meta.get("config"), dict):
        p = preset_from_dict(meta["config"])  # the trained configuration, overrides included
    elif preset is not None:
        p = presets.get(preset, "detection")
    else:
        raise SetrError(f"{path}: a detection checkpoint without its config: name its preset with --preset")
    model, p, categories, class_names = load_detector_checkpoint(path, p, trust_checkpoint=trust)
    if categories is None and class_names is not None:
        categories = categories_for(class_names)
    notes = [f"training checkpoint at epoch {meta['epoch']}"] if "epoch" in meta else []
    if "mmdet_version" in meta:
        notes.insert(0, f"mmdet {meta['mmdet_version']} checkpoint (the authors' format)")
    return "detection", model, {"config": p, "categories": categories}, notes


@torch.no_grad()
def _compare_outputs(adapter, conf: dict, a: nn.Module, b: nn.Module, size: tuple[int, int] | None,
                     seed: int) -> tuple[float, tuple[int, ...]]:
    a, b = a.eval().cpu(), b.eval().cpu()
    x = adapter.example_input(conf, size, torch.Generator().manual_seed(seed))
    outs = adapter.outputs(a, x), adapter.outputs(b, x)
    if len(outs[0]) != len(outs[1]):
        raise SetrError(f"the reloaded model gives {len(outs[1])} outputs, the checkpoint's {len(outs[0])}")
    diff = max(float((p - q).abs().max()) for p, q in zip(*outs))
    return diff, tuple(x.shape)
