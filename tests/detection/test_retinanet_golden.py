"""RetinaNet-HLG inference golden cases computed by the authors' mmdet 2.26 code (tests/fixtures/retinanet_hlg):
through the public Detector (checker and an mmdet-format checkpoint file) and through the script."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from setr import Detector
from setr.errors import SetrError
from setr.parity.check import check_case, load_case
from setr.parity.fields import UnsupportedField

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "fixtures" / "retinanet_hlg"
INFER = ["infer_1333x800", "infer_667x400", "infer_batch2_1000x600"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_case():
    return load_case(CASES / "infer_667x400.pt")


@pytest.mark.parametrize("name", INFER)
def test_inference_case_through_detector(name):
    case = load_case(CASES / f"{name}.pt")
    checks = check_case(case, "cpu", image_dir=CASES)
    bad = [(c.name, c.max_abs_err, c.tolerance, c.note) for c in checks if not c.ok]
    assert not bad, bad
    names = {c.name for c in checks}
    for i in range(len(case["results"])):  # every kind of output was compared, for every photograph
        for what in ("img_shape", "scale_factor", "input.row_mean", "input.col_mean", "cls_scores[4]",
                     "bbox_preds[0]", "candidates[0]", "num_dets", "det_labels", "det_boxes", "det_scores"):
            assert f"img{i}.{what}" in names
    dets = {c.name: c for c in checks if c.name.endswith("det_boxes")}
    assert all(c.max_abs_err < 1e-2 for c in dets.values())


def test_script_checks_a_case():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_reference_case.py"),
                          str(CASES / "infer_667x400.pt")], capture_output=True, text=True, timeout=600,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "infer_667x400.pt: ok (62 outputs)" in out.stdout
    assert "img1.det_labels" in out.stdout and "FAIL" not in out.stdout


@pytest.mark.parametrize("edit,field", [
    (lambda c: c["config"].__setitem__("surprise", 1), "config.surprise"),
    (lambda c: c["config"]["model_cfg"]["neck"].__setitem__("add_extra_convs", "on_output"),
     "config.model_cfg.neck.add_extra_convs"),
    (lambda c: c["config"]["model_cfg"]["test_cfg"]["nms"].__setitem__("type", "soft_nms"),
     "config.model_cfg.test_cfg.nms.type"),
    (lambda c: c["config"]["test_pipeline"][1]["transforms"][2].__setitem__("to_rgb", False),
     "config.test_pipeline.1.transforms.2.to_rgb"),
    (lambda c: c["results"][0].__setitem__("flip", True), "results.0.flip"),
])
def test_checker_names_fields_it_does_not_implement(small_case, edit, field):
    case = {k: (copy.deepcopy(v) if k != "state_dict" else v) for k, v in small_case.items()}
    edit(case)
    with pytest.raises(UnsupportedField, match=f"unsupported fixture field {field.replace('.', '[.]')}"):
        check_case(case, "cpu", image_dir=CASES)


NARROW = ["model.embed_dims=[32,32,32,64]", "model.num_heads=[1,1,1,2]", "model.depths=[2,2,2,2]",
          "model.fpn_channels=16", "model.drop_path_rate=0"]


def test_mmdet_checkpoint_loads_and_predicts(small_case, tmp_path):
    """An mmdet checkpoint ({'state_dict', 'meta': {CLASSES, ...}}) through Detector.from_checkpoint with
    weights_only=True: the case's detections, in original-image pixels; a wrong key is named in one line."""
    from setr.detection.api import COCO_CLASSES

    ckpt = tmp_path / "retinanet_hlg_small.pth"
    meta = {"mmdet_version": "2.26.0", "CLASSES": COCO_CLASSES, "epoch": 12, "iter": 87960,
            "config": "model = dict(type='RetinaNet', ...)"}
    torch.save({"meta": meta, "state_dict": dict(small_case["state_dict"])}, ckpt)
    det = Detector.from_checkpoint(ckpt, preset="retinanet_hlg_small_fpn_mstrain_1x_coco",
                                   overrides=NARROW + ["model.test_min_size=400", "model.max_size=667"])
    assert det.class_names[0] == "person" and det.category_ids[:3] == [1, 2, 3] and det.category_ids[-1] == 90
    r = small_case["results"][1]
    got = det.predict(CASES / r["file"])
    assert len(got) == r["num_dets"] and torch.equal(got.labels, r["det_labels"])
    assert torch.allclose(got.boxes, r["det_bboxes"][:, :4], atol=1e-2)
    assert torch.allclose(got.scores, r["det_bboxes"][:, 4], atol=1e-5)

    bad = dict(small_case["state_dict"])
    bad.pop("neck.fpn_convs.4.conv.bias")
    bad["bbox_head.retina_reg.weight"] = bad["bbox_head.retina_reg.weight"][:8]
    torch.save({"meta": meta, "state_dict": bad}, ckpt)
    with pytest.raises(SetrError) as exc:
        Detector.from_checkpoint(ckpt, preset="retinanet_hlg_small_fpn_mstrain_1x_coco", overrides=NARROW)
    msg = str(exc.value)
    assert "\n" not in msg and "neck.fpn_convs.4.conv.bias" in msg and "bbox_head.retina_reg.weight" in msg
