"""Every config of the original results tables is a preset; on the meta device, each maps key-for-key and
shape-for-shape onto the original's state dict, and its parameter counts equal the original's."""
import json

import pytest

from setr.complexity import build_on_meta, segmentor_param_counts
from setr.config import ModelConfig, build_model
from setr.errors import SetrError
from setr import presets

from helpers import MANIFEST

MANIFEST_DATA = json.loads(MANIFEST.read_text())
CONFIGS = MANIFEST_DATA["configs"]
# REF-BUG configs whose heads we fix to the backbone width (768, not the original's 1024)
HEAD_WIDTH_FIXED = {"SETR_PUP_DeiT_480x480_80k_pascal_context_bs_16", "SETR_PUP_DeiT_512x512_160k_ade20k_bs_16"}


def test_every_original_config_is_a_preset():
    original = {n[:-3] for n in CONFIGS} | {n[:-3] for n in MANIFEST_DATA["unparsable_configs"]}
    assert original == {p.name for p in presets.all_presets("segmentation") if p.family == "setr" and p.dataset != "folder"}
    assert len(original) == 50


@pytest.mark.parametrize("file_name", sorted(CONFIGS), ids=lambda n: n[:-3])
def test_keys_shapes_and_param_counts_match_the_original(file_name):
    entry = CONFIGS[file_name]
    name = file_name[:-3]
    model = build_on_meta(build_model, presets.get(name).model)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    ref = {k: v for k, v in MANIFEST_DATA["state_dicts"][entry["state_dict"]].items() if ".conv_seg." not in k}
    assert set(ours) == set(ref)
    mismatched = {k for k in ref if ours[k] != ref[k]}
    counts = segmentor_param_counts(model)
    pc = entry["param_counts"]
    conv_seg = pc["unused_conv_seg_params"]
    if name in HEAD_WIDTH_FIXED:
        # only the first layers of the heads differ, and only by the 1024 -> 768 input width
        assert mismatched and all(k.endswith(("norm.weight", "norm.bias", "conv_0.weight")) for k in mismatched)
        assert all(ours[k][-1 if "norm" in k else 1] == 768 for k in mismatched)
        assert counts["backbone"] == pc["backbone"]
        return
    assert not mismatched
    per_head_conv_seg = conv_seg // (1 + len(pc["auxiliary_heads"]))
    assert counts["backbone"] == pc["backbone"]
    assert counts["decode_head"] == pc["decode_head"] - per_head_conv_seg
    assert counts["aux_heads"] == pc["auxiliary_heads_total"] - per_head_conv_seg * len(pc["auxiliary_heads"])
    assert counts["total"] == pc["total"] - conv_seg
    assert counts["without_aux"] == pc["total_without_aux"] - per_head_conv_seg


def test_paper_parameter_counts_with_conv_seg():
    # paper Table 2 (T-Large, ADE20K, get_flops convention: aux heads + unused conv_seg included)
    for name, paper in [("SETR_Naive_512x512_160k_ade20k_bs_16", 305.67), ("SETR_PUP_512x512_160k_ade20k_bs_16", 318.31),
                        ("SETR_MLA_512x512_160k_ade20k_bs_16", 310.57)]:
        model = build_on_meta(build_model, presets.get(name).model)
        conv_seg = (1 + len(model.auxiliary_head)) * (512 * 150 + 150)
        assert round((segmentor_param_counts(model)["total"] + conv_seg) / 1e6, 2) == paper


def test_preset_details():
    p = presets.get("SETR_PUP_768x768_40k_cityscapes_bs_8")
    assert p.model.num_classes == 19 and p.model.backbone.img_size == (768, 768)
    assert [h.in_index for h in p.model.aux_heads] == [9, 14, 19, 23]
    assert p.train.lr == 0.01 and p.train.iters == 40000 and p.reported_miou == 78.39
    ms = presets.get("SETR_PUP_512x512_160k_ade20k_bs_16_MS")
    assert ms.model.test.aug and ms.model.test.aug_ratios == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert ms.reported_ms_miou == 50.09
    assert presets.get("SETR_MLA_512x512_160k_ade20k_bs_8_MS").model.test.aug_ratios == (0.5, 0.75, 1.0)
    deit_ms = presets.get("SETR_MLA_DeiT_480x480_80k_pascal_context_bs_16_MS")
    assert deit_ms.model.test.img_scale == (520, 520) and any("REF-BUG" in n for n in deit_ms.notes)
    assert presets.get("setr_pup_768x768_40k_cityscapes_bs_8.py").name == "SETR_PUP_768x768_40k_cityscapes_bs_8"


def test_unknown_preset_suggests_close_names():
    with pytest.raises(SetrError, match="did you mean SETR_PUP_768x768_40k_cityscapes_bs_8"):
        presets.get("SETR_PUP_768x768_40k_cityscape")


def test_presets_are_independent_copies():
    a = presets.get("SETR_PUP_768x768_40k_cityscapes_bs_8")
    a.model.num_classes = 3
    assert presets.get("SETR_PUP_768x768_40k_cityscapes_bs_8").model.num_classes == 19


@pytest.mark.parametrize("preset", presets.all_presets("segmentation")[:3], ids=lambda p: p.name)
def test_config_json_round_trip(preset):
    assert ModelConfig.from_dict(json.loads(preset.model.to_json())) == preset.model
