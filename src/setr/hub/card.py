"""The ``README.md`` model card of a pretrained folder: Hub metadata, preset, parameters, the original's results
row, licence note, how to load."""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from .. import presets
from ..errors import SetrError

PIPELINE_TAGS = {"segmentation": "image-segmentation", "classification": "image-classification",
                 "detection": "object-detection"}


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
              f"`torch.hub.load(\"<setr repo or folder>\", \"{_hub_entry(conf)}\", weights=\"{where}\")`.", "",
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
            "classes, with the arithmetic of the authors' mmdetection 2.26 detector (test pipeline and "
            "post-processing included).")


def _results_section(conf: Mapping[str, Any]) -> list[str]:
    preset = conf.get("preset")
    if not preset:
        return []
    if conf["kind"] == "segmentation":
        try:
            p = presets.get(preset, "segmentation")
        except SetrError:
            return []
        if p.reported_miou is None:
            return ["## Results", "", "The original README gives no result for this configuration.", ""]
        ms_value = p.reported_ms_miou
        if ms_value is None and not p.name.endswith("_MS"):  # the ms+flip number sits on the _MS twin
            try:
                ms_value = presets.get(p.name + "_MS", "segmentation").reported_ms_miou
            except SetrError:
                pass
        ms = f"{ms_value:.2f}" if ms_value is not None else "-"
        return ["## Results (the original README's row)", "", "| preset | dataset | mIoU | ms+flip mIoU |",
                "|---|---|---|---|", f"| {p.name} | {p.dataset} | {p.reported_miou:.2f} | {ms} |", "",
                "These are the authors' numbers for their released weights, not a re-evaluation of this file.", ""]
    if conf["kind"] == "classification":
        if preset not in presets.names("classification"):
            return []
        p = presets.get(preset, "classification")
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
        return ["import setr, timm, torch", "",
                f'model = timm.create_model("hf-hub:{where}", pretrained=True)   # or setr.models.hlg.HLG.from_pretrained',
                "logits = model(torch.randn(1, 3, 224, 224))"]
    return ["from setr import Detector", "",
            f'det = Detector.from_pretrained("{where}")',
            'dets = det.predict("image.jpg")   # boxes (x1, y1, x2, y2 in the image\'s pixels), scores, labels']


def _hub_entry(conf: Mapping[str, Any]) -> str:
    if conf["kind"] == "classification":
        return "hlg"
    if conf["kind"] == "detection":
        return "retinanet_hlg"
    m = conf["model"]
    if m["backbone"]["type"] == "hlg":
        return "setr_pup_hlg"
    return {"naive": "setr_naive", "pup": "setr_pup", "mla": "setr_mla"}.get(m["decode_head"]["type"], "setr_pup")
