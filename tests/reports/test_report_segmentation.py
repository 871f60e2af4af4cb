"""The segmentation evaluation report: its numbers (confusion matrix, per-image mIoU, the worst images) and the
`--report DIR` option of `setr test` and `setr evaluate`, through the command line."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from setr.cli import main
from setr.reports.segmentation import SegmentationReport, per_class_iou

pytestmark = pytest.mark.usefixtures("one_thread")

PALETTE = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]


def test_confusion_matrix_per_image_miou_and_worst_images():
    rep = SegmentationReport(3, ["a", "b", "c"], PALETTE, worst=2)
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    perfect = gt.copy()
    perfect[1, 2] = 0  # an ignored pixel: not counted, whatever its prediction
    assert rep.add("perfect", perfect, gt) == 1.0
    half = np.array([[0, 1, 1, 1], [2, 0, 7, 1]])  # the 7 lies on the ignored pixel
    # a: 1 hit of 2 gt + 2 predicted (1/3), b: 3 of 3 + 4 (3/4), c: 1 of 2 + 1 (1/2)
    assert rep.add("half", half, gt) == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert np.isnan(rep.add("all_ignored", np.zeros((2, 2)), np.full((2, 2), 255)))
    wrong = np.full((2, 4), 2)
    assert rep.add("wrong", wrong, gt) == pytest.approx((0 + 0 + 2 / 7) / 3)
    assert rep.confusion.tolist() == [[3, 1, 2], [0, 6, 3], [1, 0, 5]]  # rows: ground truth
    assert [e["name"] for e in rep.worst] == ["wrong", "half"]  # the two lowest, worst first; NaN never listed
    assert rep.worst[0]["gt"].shape == (2, 4) and rep.worst[0]["image"] is None
    iou = per_class_iou(rep.confusion)
    assert iou[0] == pytest.approx(3 / (6 + 4 - 3))
    outside = SegmentationReport(3, None, PALETTE)
    outside.add("x", np.array([[7, 1]]), np.array([[0, 1]]))  # a label outside the classes is in no cell
    assert outside.confusion.sum() == 1 and outside.confusion[1, 1] == 1


def test_large_images_are_kept_small():
    rep = SegmentationReport(2, None, PALETTE[:2], worst=1, max_side=64)
    gt = np.zeros((300, 200), dtype=np.uint8)
    gt[:, 100:] = 1
    image = np.zeros((300, 200, 3), dtype=np.uint8)
    rep.add("big", np.zeros_like(gt), gt, image)
    e = rep.worst[0]
    assert e["gt"].shape == (64, 43) and e["image"].shape == (64, 43, 3) and set(np.unique(e["gt"])) == {0, 1}


def _no_network_references(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must open offline"
    assert "<link" not in page and "<script src" not in page


def _tiny_demo_checkpoint(tmp_path):
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1]))
    from helpers import tiny_sets
    from setr.config import build_model
    from setr.model_files import save_model
    from setr.overrides import apply_overrides
    from setr.presets import get as get_preset

    name = "setr_demo_pup_tiny_64x64_shapes"
    preset = get_preset(name)
    apply_overrides(preset, tiny_sets(preset, crop=32, depth=2))
    return name, save_model(build_model(preset.model, with_aux=False), preset.model, tmp_path / "model.safetensors")


def test_setr_test_report(tmp_path, capsys):
    from setr.data.synthetic import write_folder

    root = write_folder(tmp_path / "data", n_train=1, n_val=4, size=(32, 48), num_classes=5)
    name, ckpt = _tiny_demo_checkpoint(tmp_path)
    out = tmp_path / "report"
    assert main(["test", name, "-c", str(ckpt), "--data-root", str(root), "--no-progress", "--precision", "fp32",
                 "--json", str(tmp_path / "m.json"), "--report", str(out), "--report-images", "3"]) == 0
    assert f"report written to {out / 'report.html'}" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "m.json").read_text())
    rep = json.loads((out / "report.json").read_text())
    assert rep["metrics"]["mIoU"] == metrics["mIoU"] and rep["metrics"]["per_class"] == metrics["per_class"]
    assert {k: rep["meta"][k] for k in ("preset", "precision", "mode", "augmentation", "num_images")} == {
        "preset": name, "precision": "fp32", "mode": "whole", "augmentation": "off", "num_images": 4}
    cm = np.array(rep["confusion_matrix"]["counts"])
    assert cm.shape == (5, 5) and cm.sum() == 4 * 32 * 48  # the shapes data ignores no pixel
    masks = [np.array(Image.open(p)) for p in sorted((root / "masks" / "val").glob("*.png"))]
    assert cm.sum(1).tolist() == np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=5).tolist()
    iou = per_class_iou(cm)  # the matrix agrees with the metrics
    for c, row in enumerate(metrics["per_class"]):
        assert (row["IoU"] is None and np.isnan(iou[c])) or row["IoU"] == pytest.approx(iou[c])
    assert len(rep["images"]) == 4 and len(rep["worst_images"]) == 3
    lows = sorted(r["mIoU"] for r in rep["images"])[:3]
    assert [r["mIoU"] for r in rep["worst_images"]] == lows
    page = (out / "report.html").read_text()
    _no_network_references(page)
    assert page.count('class="class-row"') == 5 and page.count('class="gallery-item"') == 3
    assert "setr_demo_pup_tiny_64x64_shapes" in page and str(ckpt) in page


def test_report_refuses_an_input_folder(tmp_path, capsys):
    from setr.data.synthetic import write_folder

    root = write_folder(tmp_path / "data", n_train=1, n_val=1, size=(32, 32))
    name, ckpt = _tiny_demo_checkpoint(tmp_path)
    assert main(["test", name, "-c", str(ckpt), "--data-root", str(root), "--report", str(root / "report")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"setr test: error: --report {root / 'report'}: lies inside the input folder --data-root "
                   f"{root}; write the report elsewhere")
    assert not (root / "report").exists()
    assert main(["test", name, "-c", str(ckpt), "--data-root", str(root), "--format-only", "--out", str(tmp_path / "o"),
                 "--report", str(tmp_path / "r")]) == 1
    assert capsys.readouterr().err.strip() == ("setr test: error: --report scores predictions against the ground "
                                               "truth: not with --format-only")


def test_setr_evaluate_report(tmp_path, capsys):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        gt = rng.integers(0, 3, (16, 20)).astype(np.uint8)
        gt[0, :5] = 255
        pred = gt.copy()
        pred[:, : 4 * i] = 2  # image 0 perfect, image 2 the worst
        Image.fromarray(gt).save(gt_dir / f"im{i}.png")
        Image.fromarray(np.where(gt == 255, 0, pred).astype(np.uint8)).save(pred_dir / f"im{i}.png")
    (tmp_path / "classes.txt").write_text("road\ncar\nsky\n")
    out = tmp_path / "rep"
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--num-classes", "3", "--classes",
                 str(tmp_path / "classes.txt"), "--report", str(out), "--report-images", "2"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["confusion_matrix"]["classes"] == ["road", "car", "sky"]
    assert np.array(rep["confusion_matrix"]["counts"]).sum() == 3 * (16 * 20 - 5)
    assert [r["name"] for r in rep["worst_images"]] == ["im2", "im1"] and rep["images"][-1]["mIoU"] == 1.0
    page = (out / "report.html").read_text()
    assert page.count('class="gallery-item"') == 2 and page.count('class="panel"') == 2 * 3  # no RGB image here
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--num-classes", "3", "--report", str(gt_dir)]) == 1
    assert capsys.readouterr().err.strip() == (f"setr evaluate: error: --report {gt_dir}: lies inside the input "
                                               f"folder GT_DIR {gt_dir}; write the report elsewhere")
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--num-classes", "3", "--report-images", "3"]) == 1
    assert capsys.readouterr().err.strip() == "setr evaluate: error: --report-images needs --report DIR"
