import json

import numpy as np
import pytest
from PIL import Image

from setr.cli import main
from setr.evaluation.evaluate import evaluate_folders
from setr.evaluation.metrics import IoUAccumulator


def test_hand_computed_case_with_dataset_summed_areas():
    acc = IoUAccumulator(3)
    # image 1: gt [0,0,1,255], pred [0,1,1,2]; the ignored pixel is dropped
    acc.update(np.array([[0, 1], [1, 2]]), np.array([[0, 0], [1, 255]]))
    # image 2: gt [2,2], pred [2,0]
    acc.update(np.array([[2, 0]]), np.array([[2, 2]]))
    m = acc.compute()
    # intersect [1,1,1], pred [2,2,1], gt [2,1,2] -> union [3,2,2]
    assert m["aAcc"] == pytest.approx(3 / 5)
    assert [r["IoU"] for r in m["per_class"]] == pytest.approx([1 / 3, 1 / 2, 1 / 2])
    assert [r["Acc"] for r in m["per_class"]] == pytest.approx([1 / 2, 1, 1 / 2])
    assert m["mIoU"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
    # summed areas, not a mean of per-image IoUs
    per_image = IoUAccumulator(3)
    per_image.update(np.array([[2, 0]]), np.array([[2, 2]]))
    assert per_image.compute()["mIoU"] != m["mIoU"]


def test_nan_rules():
    acc = IoUAccumulator(4)
    acc.update(np.array([0, 0, 2]), np.array([0, 0, 1]))
    m = acc.compute()
    iou = [r["IoU"] for r in m["per_class"]]
    accs = [r["Acc"] for r in m["per_class"]]
    # class 2: predicted, absent from gt -> IoU 0 (counts), Acc NaN; class 3: absent everywhere -> NaN
    assert iou == [1.0, 0.0, 0.0, None] and accs == [1.0, 0.0, None, None]
    assert m["mIoU"] == pytest.approx(1 / 3) and m["mAcc"] == pytest.approx(1 / 2)


def test_evaluate_folders_and_cli(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    Image.fromarray(np.array([[0, 1], [1, 2]], np.uint8)).save(pred / "a.png")
    Image.fromarray(np.array([[1, 1], [2, 0]], np.uint8)).save(gt / "a.png")  # ADE-style: 0 = other
    m = evaluate_folders(pred, gt, 2, reduce_zero_label=True)
    # gt reduced: [[0,0],[1,255]]; pred [[0,1],[1,2]] -> class 0: i1 p1 g2; class 1: i1 p2 g1
    assert m["aAcc"] == pytest.approx(2 / 3) and m["mIoU"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert main(["evaluate", str(pred), str(gt), "--num-classes", "2", "--reduce-zero-label", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mIoU"] == pytest.approx(0.5) and out["num_images"] == 1
    (pred / "a.png").rename(pred / "b.png")
    assert main(["evaluate", str(pred), str(gt), "--num-classes", "2"]) == 1
    assert "no prediction named a.png" in capsys.readouterr().err


def test_evaluate_folders_on_a_cityscapes_gtfine_tree(tmp_path):
    from setr.data.synthetic import write_cityscapes

    root = write_cityscapes(tmp_path / "cs", n_train=1, n_val=2, size=(32, 64))
    gt = root / "gtFine" / "val"
    pred = tmp_path / "pred"
    pred.mkdir()
    for p in gt.rglob("*_labelTrainIds.png"):
        (pred / p.name.replace("_gtFine_labelTrainIds", "_leftImg8bit")).write_bytes(p.read_bytes())
    m = evaluate_folders(pred, gt, 19)  # _labelIds / _polygons files beside are not ground truth
    assert m["num_images"] == 2 and m["aAcc"] == pytest.approx(1.0)


def test_reduce_zero_label_keeps_ignored_pixels_ignored(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    Image.fromarray(np.array([[0, 1]], np.uint8)).save(pred / "a.png")
    Image.fromarray(np.array([[1, 255]], np.uint8)).save(gt / "a.png")
    m = evaluate_folders(pred, gt, 2, reduce_zero_label=True)
    assert m["per_class"][1]["IoU"] is None  # the 255 pixel stayed ignored: class 1 appears nowhere
