"""``setr detect predict`` / ``detect test`` as a user types them, with an mmdet-format checkpoint: folders are
searched recursively, two inputs never share an output, results.bbox.json lists every detection in COCO's
results format, and the drawings are at the input's size."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from setr.cli import main
from setr.detection.model import build_retinanet_hlg
from setr import presets

TINY = "retinanet_hlg_tiny_test"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mmdet_checkpoint(tmp_path_factory):
    """A tiny RetinaNet-HLG saved the way mmcv's save_checkpoint does (state_dict + meta with CLASSES), with
    scores of 0.5 everywhere so that every image gets detections."""
    from helpers import tiny_detector_model

    model, _ = tiny_detector_model(TINY)
    path = tmp_path_factory.mktemp("ckpt") / "retinanet_tiny.pth"
    torch.save({"meta": {"mmdet_version": "2.26.0", "CLASSES": ("circle", "square"), "epoch": 1},
                "state_dict": model.state_dict()}, path)
    return path


def test_predict_recurses_and_names_without_collisions(mmdet_checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = tmp_path / "in"
    sizes = {"a/x.jpg": (64, 96), "b/x.jpg": (80, 48), "b/deeper/y.png": (50, 70)}
    for rel, (h, w) in sizes.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / rel)
    out = tmp_path / "out"
    assert main(["detect", "predict", TINY, str(root), "-c", str(mmdet_checkpoint), "--out", str(out),
                 "--score-thresh", "0.3", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "3 drawing(s) and results.bbox.json" in text
    drawings = {p.name for p in out.glob("*_boxes.jpg")}
    # a/x.jpg and b/x.jpg are named by their folders (the rule of `setr predict`): neither overwrites the other
    assert drawings == {"a_x_boxes.jpg", "b_x_boxes.jpg", "y_boxes.jpg"}
    for name, rel in (("a_x_boxes.jpg", "a/x.jpg"), ("b_x_boxes.jpg", "b/x.jpg"), ("y_boxes.jpg", "b/deeper/y.png")):
        with Image.open(out / name) as im:
            assert im.size == sizes[rel][::-1] and im.mode == "RGB"
    results = json.loads((out / "results.bbox.json").read_text())
    by_file = {}
    for r in results:
        assert set(r) == {"image_id", "category_id", "bbox", "score", "file_name"}
        assert r["category_id"] in (1, 2) and r["score"] > 0.05 and len(r["bbox"]) == 4
        by_file.setdefault(r["file_name"], set()).add(r["image_id"])
    assert set(by_file) == {str(root / rel) for rel in ("a/x.jpg", "b/deeper/y.png", "b/x.jpg")}
    assert sorted(i for ids in by_file.values() for i in ids) == [0, 1, 2]
    # the old spelling of the option still works, and the same image gives the same detections
    assert main(["detect", "predict", TINY, str(root / "a" / "x.jpg"), "--checkpoint", str(mmdet_checkpoint),
                 "--out", str(tmp_path / "again"), "--no-progress"]) == 0
    again = json.loads((tmp_path / "again" / "results.bbox.json").read_text())
    first = [dict(r, file_name=None) for r in results if r["file_name"].endswith("a/x.jpg")]
    assert [dict(r, file_name=None) for r in again] == first


def test_detect_test_with_an_mmdet_checkpoint(mmdet_checkpoint, tmp_path, capsys):
    pytest.importorskip("pycocotools")
    from setr.detection.synthetic import write_coco

    root = write_coco(tmp_path / "coco", n_train=2, n_val=3, size=96, num_classes=2, seed=0)
    res = tmp_path / "res.json"
    report = tmp_path / "report"
    metrics = tmp_path / "metrics.json"
    assert main(["detect", "test", TINY, "-c", str(mmdet_checkpoint), "--data-root", str(root), "--results", str(res),
                 "--json", str(metrics), "--no-progress", "--report", str(report), "--report-images", "2"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "AP50" in text and "precision fp32, batch 1" in text and f"report written to {report}" in text
    assert "--json PATH holds the metrics" in captured.err  # the old meaning of --json PATH (the detections) said
    scores = json.loads(metrics.read_text())
    assert scores["preset"] == TINY and 0 <= scores["AP50"] <= 1 and scores["num_detections"] > 0
    results = json.loads(res.read_text())
    assert len(results) == scores["num_detections"]
    # --json alone: the metrics on stdout, as `setr test --json` prints them
    assert main(["detect", "test", TINY, "-c", str(mmdet_checkpoint), "--data-root", str(root), "--json",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["AP50"] == scores["AP50"]
    page = json.loads((report / "report.json").read_text())
    assert [r["class"] for r in page["per_class"]] and len(page["per_class"]) == 2
    assert page["meta"]["preset"] == TINY and len(page["worst_images"]) <= 2
    assert len(page["images"]) == 3 and "report.html" in {p.name for p in report.iterdir()}
    # the report folder is never the data root
    assert main(["detect", "test", TINY, "-c", str(mmdet_checkpoint), "--data-root", str(root), "--no-progress",
                 "--report", str(root)]) == 1
    assert "--report" in capsys.readouterr().err
    assert results and {r["category_id"] for r in results} <= {1, 3}  # the dataset's COCO ids
    # a checkpoint for another class count is named in one line
    p = presets.get(TINY, "detection")
    p.model.pretrained = None
    bad = tmp_path / "three.pth"
    torch.save({"state_dict": build_retinanet_hlg(p.model, 3).state_dict()}, bad)
    assert main(["detect", "test", TINY, "-c", str(bad), "--data-root", str(root), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "three.pth: checkpoint has 3 classes" in err and len(err.strip().splitlines()) == 1


def test_convert_weights_of_an_mmdet_checkpoint(mmdet_checkpoint, tmp_path, capsys):
    from setr import Detector

    assert main(["convert-weights", str(mmdet_checkpoint), "--preset", TINY, "--out", str(tmp_path / "f"),
                 "--verify-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "mmdet 2.26.0 checkpoint" in out and "max abs difference 0" in out
    det = Detector.from_pretrained(tmp_path / "f")
    assert det.categories == [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    image = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    want = Detector.from_checkpoint(mmdet_checkpoint, TINY).predict(image)
    got = det.predict(image)
    assert len(got) > 0 and torch.equal(got.boxes, want.boxes) and torch.equal(got.labels, want.labels)
    assert main(["convert-weights", str(mmdet_checkpoint), "--out", str(tmp_path / "g")]) == 1
    assert "name its detection preset with --preset" in capsys.readouterr().err


def test_predict_never_touches_its_inputs(mmdet_checkpoint, tmp_path, capsys):
    """--out equal to the input folder is refused before any work; an --out inside it is left out of the inputs
    on a second run; weights are required and a weights file among the images is named."""
    rng = np.random.default_rng(1)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("p0.png", "p1.png"):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(photos / name)
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    assert main(["detect", "predict", TINY, str(photos), "-c", str(mmdet_checkpoint), "--out", str(photos),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "--out" in err and "is the input folder" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
    inside = photos / "pred"
    for _ in range(2):  # the second run must not read the first run's drawings as images
        assert main(["detect", "predict", TINY, str(photos), "-c", str(mmdet_checkpoint), "--out", str(inside),
                     "--no-progress"]) == 0
        assert "2 drawing(s)" in capsys.readouterr().out
    summary = json.loads((inside / "predict_summary.json").read_text())
    assert summary["outputs"] == {str(photos / "p0.png"): ["p0_boxes.jpg"], str(photos / "p1.png"): ["p1_boxes.jpg"]}
    assert sorted(p.name for p in inside.iterdir()) == ["p0_boxes.jpg", "p1_boxes.jpg", "predict_summary.json",
                                                         "results.bbox.json"]
    # no silent random weights; a checkpoint given where an image goes is named
    assert main(["detect", "predict", TINY, str(photos), "--out", str(tmp_path / "o")]) == 1
    assert "--random-weights" in capsys.readouterr().err
    assert main(["detect", "predict", TINY, str(mmdet_checkpoint), str(photos), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "retinanet_tiny.pth: a weights file, not an image: pass it with -c/--checkpoint" in err
    assert not (tmp_path / "o").exists()
