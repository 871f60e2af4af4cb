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
    from conftest import tiny_config
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


def post(url, data, name):
    req = urllib.request.Request(url + "predict", data=data, headers={"X-Filename": name}, method="POST")
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
