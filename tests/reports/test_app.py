"""`setr app`: the demo page's server on 127.0.0.1 (what /predict answers for an image and for a file that is
not one) and the command as a user starts and stops it."""
from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from setr.app import HOST, SegmentationDemo, default_examples, make_server

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_segmenter():
    from helpers import tiny_config
    from setr.config import build_model
    from setr.inference import Segmenter

    cfg = tiny_config("naive", num_classes=3, img_size=(32, 32), depth=2)
    return Segmenter(build_model(cfg, with_aux=False), cfg, device="cpu", precision="fp32")


@pytest.fixture
def server():
    demo = SegmentationDemo(tiny_segmenter(), default_examples(2, 48), title="tiny")
    srv = make_server(demo, 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{srv.server_port}/", demo
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def png_bytes(h, w):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def post(url, data, name, query=""):
    req = urllib.request.Request(url + "predict" + query, data=data, headers={"X-Filename": name}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def decode_uri(uri):
    import base64

    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_predict_answers_the_image_size_and_the_legend(server):
    url, demo = server
    status, res = post(url, png_bytes(37, 53), "photo.png")
    assert status == 200 and (res["width"], res["height"]) == (53, 37)
    mask = decode_uri(res["mask"])
    assert mask.shape == (37, 53, 3) and decode_uri(res["image"]).shape == (37, 53, 3)
    labels = np.asarray(demo.segmenter.predict(decode_uri(res["image"])))
    ids, counts = np.unique(labels, return_counts=True)
    assert sorted(r["id"] for r in res["legend"]) == ids.tolist()
    assert sum(r["share"] for r in res["legend"]) == pytest.approx(1.0)
    shares = [r["share"] for r in res["legend"]]
    assert shares == sorted(shares, reverse=True) and res["legend"][0]["class"] == demo.segmenter.class_names[
        res["legend"][0]["id"]]
    colour = tuple(int(res["legend"][0]["colour"][i:i + 2], 16) for i in (1, 3, 5))
    assert (mask[labels == res["legend"][0]["id"]] == colour).all()


def test_not_an_image_is_one_clear_message(server):
    url, _ = server
    status, res = post(url, b"name,value\n1,2\n", "table.csv")
    assert status == 400 and res == {"error": "table.csv: not a readable image (not an image OpenCV or Pillow can "
                                              "decode)"}
    status, res = post(url, b"", "empty.png")
    assert status == 400 and res["error"] == "empty.png: empty file, expected an image (PNG, JPEG, ...)"


def test_page_and_examples(server):
    url, _ = server
    with urllib.request.urlopen(url, timeout=10) as r:
        page = r.read().decode()
    assert "<title>tiny</title>" in page and 'id="opacity"' in page and "http" not in page.split("<script>")[1]
    with urllib.request.urlopen(url + "examples", timeout=10) as r:
        assert json.loads(r.read()) == ["shapes_0.png", "shapes_1.png"]
    with urllib.request.urlopen(url + "example/1", timeout=10) as r:
        assert Image.open(io.BytesIO(r.read())).size == (48, 48)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + "example/2", timeout=10)
    assert e.value.code == 404


def test_the_command_serves_on_loopback(tmp_path, monkeypatch, capsys):
    import setr.app
    from setr.cli import main
    from setr.config import build_model
    from setr.model_files import save_model

    seg = tiny_segmenter()
    ckpt = save_model(build_model(seg.cfg, with_aux=False), seg.cfg, tmp_path / "m.safetensors")
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "one.png").write_bytes(png_bytes(20, 30))
    started, servers = threading.Event(), []

    def make(demo, port):  # the command's own server, kept so that the test can stop it
        servers.append(make_server(demo, port))
        started.set()
        return servers[0]

    monkeypatch.setattr(setr.app, "make_server", make)
    result = []
    thread = threading.Thread(target=lambda: result.append(
        main(["app", "-c", str(ckpt), "--port", "0", "--examples", str(tmp_path / "ex")])), daemon=True)
    thread.start()
    assert started.wait(60)
    srv = servers[0]
    try:
        assert srv.server_address[0] == "127.0.0.1"
        url = f"http://127.0.0.1:{srv.server_port}/"
        with urllib.request.urlopen(url + "examples", timeout=10) as r:
            assert json.loads(r.read()) == ["one.png"]
        status, res = post(url, png_bytes(20, 30), "x.png")
        assert status == 200 and (res["width"], res["height"]) == (30, 20)
    finally:
        srv.shutdown()
        thread.join(10)
    assert result == [0]
    assert capsys.readouterr().out.startswith(f"serving {ckpt} on http://127.0.0.1:{srv.server_port}/ (device cpu")


def test_the_command_needs_a_model(capsys):
    from setr.cli import main

    assert main(["app"]) == 1
    assert capsys.readouterr().err.strip() == ("setr app: error: which model? give a pretrained folder or Hub repo "
                                               "id, or --preset NAME -c CHECKPOINT")


def test_the_command_takes_a_pretrained_folder(tmp_path, capsys):
    import argparse

    from setr.cli.app import _load
    from setr.cli import main

    seg = tiny_segmenter()
    seg.save_pretrained(tmp_path / "folder")
    args = argparse.Namespace(model=str(tmp_path / "folder"), checkpoint=None, preset=None, set=[], device=None,
                              precision="fp32", window_batch=None, random_weights=False, score_thresh=None,
                              trust_checkpoint=False)
    kind, loaded, what = _load(args)
    assert kind == "segmentation" and what == str(tmp_path / "folder") and str(loaded.device) == "cpu"
    assert loaded.cfg.num_classes == 3
    assert main(["app", str(tmp_path / "folder"), "--preset", "setr_demo_pup_tiny_64x64_shapes"]) == 1
    assert capsys.readouterr().err.strip() == ("setr app: error: give either MODEL (a pretrained folder or Hub repo "
                                               "id) or --preset/--checkpoint, not both")


# ------------------------------------------------------------------------------------------------ the detector
DET_PRESET = "retinanet_hlg_tiny_test"


def tiny_detector_model():
    from helpers import tiny_detector_model as build

    return build(DET_PRESET)


def tiny_detector():
    from setr.detection.api import Detector

    model, p = tiny_detector_model()
    return Detector(model, p.model, device="cpu", precision="fp32", class_names=["circle", "square"])


@pytest.fixture(scope="module")
def det_checkpoint(tmp_path_factory):
    import torch

    model, _ = tiny_detector_model()
    path = tmp_path_factory.mktemp("det") / "retinanet_tiny.pth"
    torch.save({"meta": {"mmdet_version": "2.26.0", "CLASSES": ("circle", "square")},
                "state_dict": model.state_dict()}, path)
    return path


def test_detection_demo_boxes_labels_scores():
    from setr.app import DetectionDemo
    from setr.errors import SetrError

    det = tiny_detector()
    demo = DetectionDemo(det, default_examples(1, 48), title="tiny detector")
    calls = []
    predict = det.predict
    det.predict = lambda image: calls.append(image.shape) or predict(image)
    data = png_bytes(40, 60)
    res = demo.predict(data, "photo.png")
    original = np.asarray(Image.open(io.BytesIO(data)))
    drawn = decode_uri(res["image"])
    assert (res["width"], res["height"]) == (60, 40) and drawn.shape == (40, 60, 3)
    assert res["score_thresh"] == 0.3 and res["detections"] and res["total"] >= len(res["detections"])
    assert (drawn != original).any()  # the boxes are drawn over the picture
    expected = predict(original).above(0.3)
    assert len(res["detections"]) == len(expected)
    for row, box, score, label in zip(res["detections"], expected.boxes.tolist(), expected.scores.tolist(),
                                      expected.labels.tolist()):
        assert row["label"] == label and row["class"] == ["circle", "square"][label]
        assert row["score"] == pytest.approx(score) and 0.3 <= row["score"] < 0.6
        assert row["box"] == pytest.approx(box, abs=0.05)
        assert 0 <= row["box"][0] <= row["box"][2] <= 60 and 0 <= row["box"][1] <= row["box"][3] <= 40
    # moving the threshold redraws from the kept detections, without running the model again
    high = demo.predict(data, "photo.png", {"score_thresh": "0.6"})
    assert high["detections"] == [] and high["total"] == res["total"] and len(calls) == 1
    assert (decode_uri(high["image"]) == original).all()  # nothing above 0.6: the picture as it is
    with pytest.raises(SetrError, match=r"^score_thresh='2': expected a number from 0 to 1$"):
        demo.predict(data, "photo.png", {"score_thresh": "2"})
    with pytest.raises(SetrError, match=r"^notes.txt: not a readable image"):
        demo.predict(b"just some words", "notes.txt")
    page = demo.page()
    assert "<title>tiny detector</title>" in page and 'id="threshold"' in page and 'value="30"' in page
    assert 'id="opacity"' not in page and "http" not in page.split("<script>")[1]


def test_detection_server_non_image_and_threshold(tmp_path):
    from setr.app import DetectionDemo

    srv = make_server(DetectionDemo(tiny_detector(), title="tiny"), 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    url = f"http://{HOST}:{srv.server_port}/"
    try:
        status, res = post(url, b"name,value\n1,2\n", "table.csv")
        assert status == 400 and res == {"error": "table.csv: not a readable image (not an image OpenCV or "
                                                  "Pillow can decode)"}
        status, res = post(url, png_bytes(30, 30), "a.png", "?score_thresh=0.45")
        assert status == 200 and res["score_thresh"] == 0.45 and res["detections"]
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


class _StopAtOnce:
    """A stand-in server: records what the command built, and stops as Ctrl-C would."""

    server_port = 1234

    def serve_forever(self):
        raise KeyboardInterrupt

    def server_close(self):
        pass


@pytest.fixture
def built(monkeypatch):
    import setr.app

    demos = []

    def make(demo, port):
        demos.append(demo)
        return _StopAtOnce()

    monkeypatch.setattr(setr.app, "make_server", make)
    return demos


def test_the_command_serves_a_detector(det_checkpoint, built, capsys):
    from setr.app import DetectionDemo
    from setr.cli import main

    assert main(["app", "--preset", DET_PRESET, "-c", str(det_checkpoint), "--score-thresh", "0.4"]) == 0
    demo = built[0]
    assert isinstance(demo, DetectionDemo) and demo.score_thresh == 0.4
    assert demo.detector.class_names == ["circle", "square"] and len(demo.examples) == 3
    res = demo.predict(png_bytes(32, 48), "x.png")
    assert (res["width"], res["height"]) == (48, 32) and {d["class"] for d in res["detections"]} <= {"circle",
                                                                                                      "square"}
    assert res["detections"] and all(d["score"] >= 0.4 for d in res["detections"])
    out = capsys.readouterr().out
    assert out.startswith(f"serving {DET_PRESET} {det_checkpoint} on http://127.0.0.1:1234/ (device cpu")


def test_the_command_takes_a_detection_pretrained_folder(tmp_path, built):
    from setr.app import DetectionDemo
    from setr.cli import main

    tiny_detector().save_pretrained(tmp_path / "det")
    assert main(["app", str(tmp_path / "det")]) == 0
    assert isinstance(built[0], DetectionDemo) and built[0].detector.class_names == ["circle", "square"]


@pytest.mark.parametrize("preset", [DET_PRESET, "setr_demo_pup_tiny_64x64_shapes"])
def test_no_silent_random_weights(preset, built, capsys):
    from setr.app import DetectionDemo, SegmentationDemo
    from setr.cli import main

    assert main(["app", "--preset", preset]) == 1
    assert capsys.readouterr().err.strip() == (f"setr app: error: --preset {preset}: no weights: pass the checkpoint "
                                               "with -c/--checkpoint (or --random-weights to show an untrained "
                                               "network)")
    assert built == []
    assert main(["app", "--preset", preset, "--random-weights", "-c", "x.pth"]) == 1
    assert capsys.readouterr().err.strip() == "setr app: error: --random-weights and --checkpoint: choose one"
    assert main(["app", "--preset", preset, "--random-weights"]) == 0
    kind = DetectionDemo if preset == DET_PRESET else SegmentationDemo
    assert isinstance(built[0], kind)
    assert "warning: --random-weights: the page shows an untrained network" in capsys.readouterr().err


def test_options_of_the_other_kind_are_refused(det_checkpoint, built, capsys):
    from setr.cli import main

    assert main(["app", "--preset", "setr_demo_pup_tiny_64x64_shapes", "--random-weights", "--score-thresh",
                 "0.5"]) == 1
    assert capsys.readouterr().err.strip() == ("setr app: error: --score-thresh is for detectors (a segmentation "
                                               "model's page has no scores)")
    assert main(["app", "--preset", DET_PRESET, "-c", str(det_checkpoint), "--window-batch", "2"]) == 1
    assert capsys.readouterr().err.strip() == ("setr app: error: --window-batch is for segmentation models (a "
                                               "detector sees the whole image)")
    assert built == []
