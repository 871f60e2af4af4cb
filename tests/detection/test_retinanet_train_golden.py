"""The RetinaNet-HLG training golden cases (three AdamW iterations of the authors' mmdet 2.26 runner), checked
through the public entry point: ``check_case`` runs ``setr detect train`` on the case's batch written as a COCO
dataset (scripts/check_reference_case.py does the same)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

pytest.importorskip("pycocotools")

from setr.errors import SetrError  # noqa: E402
from setr.parity.check import check_case, load_case  # noqa: E402
from setr.parity.retinanet_train import validate_train_case  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "retinanet_hlg"
CASES = ["train_two_images.pt", "train_single_class_second.pt"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", CASES)
def test_training_golden(name):
    checks = check_case(load_case(FIXTURES / name), "cpu", image_dir=FIXTURES)
    bad = [f"{c.name}: {c.max_abs_err:.3e} > {c.tolerance:.1e} {c.note}" for c in checks if not c.ok]
    assert not bad, bad
    names = {c.name for c in checks}
    assert {"assign0.pos_inds", "assign1.pos_labels", "iter0.losses", "iter2.losses", "iter2.lr", "weight_decay",
            "final.params", "final.params_near", "final.bn_stats"} <= names


@pytest.fixture(scope="module")
def case():
    return load_case(FIXTURES / "train_single_class_second.pt")


@pytest.mark.parametrize("path,value,field", [
    (("optimizer", "type"), "SGD", "config.optimizer.type"),
    (("lr_config", "policy"), "cosine", "config.lr_config.policy"),
    (("model_cfg", "bbox_head", "loss_cls", "gamma"), 1.5, "config.model_cfg.bbox_head.loss_cls.gamma"),
    (("model_cfg", "train_cfg", "allowed_border"), 0, "config.model_cfg.train_cfg.allowed_border"),
    (("optimizer_config", "grad_clip"), {"max_norm": 35}, "config.optimizer_config.grad_clip"),
    (("train_pipeline", 3, "flip_ratio"), 0.5, "config.train_pipeline.3.flip_ratio"),
    (("model_cfg", "backbone", "drop_path_rate"), 0.1, "config.model_cfg.backbone.drop_path_rate"),
    (("brand_new_field",), 1, "config.brand_new_field"),
])
def test_unimplemented_values_fail_naming_the_field(case, path, value, field):
    c = copy.deepcopy({k: v for k, v in case.items() if k not in ("initial_state_dict", "final_state_dict")})
    target = c["config"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SetrError, match=field.replace(".", r"\.")):
        validate_train_case(c)


def test_boxes_a_coco_training_set_would_drop_are_named(case):
    c = {k: v for k, v in case.items() if k not in ("initial_state_dict", "final_state_dict")}
    c = copy.deepcopy(c)
    boxes = c["batch"]["images"][1]["gt_bboxes_input"]
    boxes[0, 2] = boxes[0, 0] + 0.5  # half a pixel wide
    with pytest.raises(SetrError, match=r"batch\.images\.1\.gt_bboxes_input"):
        validate_train_case(c)


def test_the_visible_case_validates(case):
    validate_train_case(case)  # raises on any field it does not implement
    assert case["config"]["runner_iters"] == [120, 121, 122] and torch.is_tensor(case["assignment"]["images"][1]["pos_inds"])
