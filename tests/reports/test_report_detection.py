"""The detection report on a tiny synthetic COCO set: per-class AP from COCOeval, the images with the most
missed or false boxes (greedy matching at IoU 0.5), drawn, and the JSON beside the page."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    from pycocotools.coco import COCO

    from setr.detection.synthetic import write_coco

    root = write_coco(tmp_path_factory.mktemp("coco"), n_train=0, n_val=4, size=64, num_classes=2, max_objects=2)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(root / "annotations" / "instances_val2017.json"))
    return root, gt


def as_result(ann, score=0.9, **change):
    r = {"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": list(ann["bbox"]), "score": score}
    r.update(change)
    return r


def test_perfect_detections(coco, tmp_path):
    from setr.reports.detection import write_detection_report

    root, gt = coco
    results = [as_result(a) for a in gt.dataset["annotations"]]
    page = write_detection_report(tmp_path / "rep", gt, results, root / "val2017", meta={"preset": "tiny"})
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["metrics"]["AP"] == pytest.approx(1.0) and rep["worst_images"] == []
    present = {a["category_id"] for a in gt.dataset["annotations"]}
    for row in rep["per_class"]:
        assert (row["AP"] == pytest.approx(1.0)) if row["id"] in present else row["AP"] is None
    html = page.read_text()
    assert html.count('class="class-row"') == 2 and "No missed or false box." in html


def test_missed_and_false_boxes(coco, tmp_path):
    from setr.reports.detection import coco_evaluate, write_detection_report

    root, gt = coco
    ids = sorted(gt.getImgIds())
    anns = {i: gt.loadAnns(gt.getAnnIds(imgIds=[i])) for i in ids}
    other = {1: 3, 3: 1}
    results = [as_result(a) for a in anns[ids[0]]]  # image 1: all found
    a = anns[ids[1]][0]
    results.append(as_result(a, category_id=other[a["category_id"]]))  # image 2: wrong class: 1 false + 1 missed
    x, y, w, h = anns[ids[2]][0]["bbox"]
    results.append(as_result(anns[ids[2]][0], bbox=[x + w * 0.8, y, w, h]))  # image 3: IoU < 0.5
    results.append(as_result(anns[ids[2]][0], score=0.1))  # below the shown threshold: not counted as found
    # image 4: nothing detected
    ev = coco_evaluate(gt, results)
    paths = {i: root / "val2017" / gt.imgs[i]["file_name"] for i in ids}
    page = write_detection_report(tmp_path / "rep", gt, results, paths, coco_eval=ev, worst=3)
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    per = {r["id"]: r for r in rep["images"]}
    n = {i: len(anns[i]) for i in ids}
    assert (per[ids[0]]["matched"], per[ids[0]]["false"], per[ids[0]]["missed"]) == (n[ids[0]], 0, 0)
    assert (per[ids[1]]["false"], per[ids[1]]["missed"]) == (1, n[ids[1]])
    assert (per[ids[2]]["false"], per[ids[2]]["missed"]) == (1, n[ids[2]])
    assert (per[ids[3]]["false"], per[ids[3]]["missed"]) == (0, n[ids[3]])
    bad = sorted(ids[1:], key=lambda i: (-(per[i]["false"] + per[i]["missed"]), i))
    assert rep["worst_images"] == [gt.imgs[i]["file_name"] for i in bad]
    # the per-class AP is COCOeval's own (precision averaged over IoU thresholds and recall points)
    k = ev.params.catIds.index(3)
    pr = ev.eval["precision"][:, :, k, 0, -1]
    row = next(r for r in rep["per_class"] if r["id"] == 3)
    assert row["AP"] == pytest.approx(float(pr[pr > -1].mean()))
    assert rep["metrics"]["AP"] == pytest.approx(max(ev.stats[0], 0.0))
    html = page.read_text()
    assert html.count('class="gallery-item"') == 3
    # the drawn picture: the missed box in orange at the image's own size
    import base64
    import io
    import re

    pictures = re.findall(r'class="gallery-item".*?src="data:image/png;base64,([^"]+)"', html)
    assert len(pictures) == 3
    for data in pictures:  # every one shows its missed boxes in orange, at the image's own size
        drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
        assert drawn.shape == (64, 64, 3) and (np.abs(drawn.astype(int) - (255, 153, 0)).sum(-1) == 0).any()
