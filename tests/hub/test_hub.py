"""Pretrained folders (config.json + model.safetensors + README.md): save, reload from the folder and from a repo
id in a local Hugging Face cache (offline), identical outputs for a SETR, an HLG classifier and a RetinaNet-HLG."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from setr import Segmenter
from setr.errors import SetrError
from setr.models.hlg import HLG
from setr.hub import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, from_pretrained, load_pretrained, save_pretrained

from helpers import ROOT

DEMO = "setr_demo_pup_tiny_64x64_shapes"
REV = "0123456789abcdef0123456789abcdef01234567"
TINY_HLG = dict(embed_dims=(16, 32, 64, 128), num_heads=(1, 2, 4, 8), depths=(1, 2, 1, 1))


@pytest.fixture
def offline(monkeypatch):
    """huggingface_hub's offline mode (HF_HUB_OFFLINE=1), set for this process."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def hub_cache(folder: Path, cache: Path, repo_id: str, revision: str = REV) -> Path:
    """Lay ``folder`` out as huggingface_hub caches a downloaded repo: blobs named by hash, snapshot symlinks,
    refs/main holding the commit."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(revision)
    snap = root / "snapshots" / revision
    snap.mkdir(parents=True)
    (root / "blobs").mkdir()
    for f in sorted(folder.iterdir()):
        blob = root / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blob)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    return cache


def demo_segmenter(**kwargs) -> Segmenter:
    torch.manual_seed(0)
    return Segmenter.from_preset(DEMO, **kwargs)


# ------------------------------------------------------------------------------------------------- segmentation
def test_segmenter_folder_round_trip(tmp_path):
    seg = demo_segmenter()
    folder = seg.save_pretrained(tmp_path / "demo", preset=DEMO)
    assert sorted(p.name for p in folder.iterdir()) == [CARD_NAME, CONFIG_NAME, WEIGHTS_NAME]
    conf = json.loads((folder / CONFIG_NAME).read_text())
    assert conf["kind"] == "segmentation" and conf["preset"] == DEMO
    assert conf["model"] == seg.cfg.to_dict() or conf["model"] == json.loads(json.dumps(seg.cfg.to_dict()))
    assert conf["class_names"] == list(seg.class_names)
    assert conf["palette"] == [list(c) for c in seg.palette]
    assert conf["num_parameters"] == sum(p.numel() for p in seg.model.parameters())

    again = Segmenter.from_pretrained(folder)
    assert again.preset == DEMO and again.class_names == seg.class_names
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    torch.testing.assert_close(again.predict_probs(image), seg.predict_probs(image), rtol=0, atol=0)
    for (k, a), (k2, b) in zip(seg.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)

    # the weights file alone is one of our ordinary checkpoints (config in its metadata)
    alone = Segmenter.from_checkpoint(folder / WEIGHTS_NAME)
    torch.testing.assert_close(alone.predict_probs(image), seg.predict_probs(image), rtol=0, atol=0)


def test_model_card_has_preset_params_results_licence_and_loading(tmp_path):
    seg = demo_segmenter()
    card = (seg.save_pretrained(tmp_path / "m", preset=DEMO) / CARD_NAME).read_text()
    assert card.startswith("---\nlibrary_name: setr\n")
    assert "pipeline_tag: image-segmentation" in card
    assert f"# {DEMO}" in card
    n = sum(p.numel() for p in seg.model.parameters())
    assert f"{n:,d}" in card
    assert "Licence" in card and "MIT" in card
    assert "Segmenter.from_pretrained(" in card
    assert "no result" in card  # the demo has no original results row


def test_card_of_a_preset_with_original_results():
    from setr.hub.card import model_card
    from setr import presets

    p = presets.get("SETR_PUP_512x512_160k_ade20k_bs_16")
    conf = {"kind": "segmentation", "preset": p.name, "model": p.model.to_dict(), "num_parameters": 123}
    card = model_card(conf)
    assert "| SETR_PUP_512x512_160k_ade20k_bs_16 | ade20k | 48.62 | 50.09 |" in card
    assert 'torch.hub.load("<setr repo or folder>", "setr_pup"' in card


def test_segmentation_model_with_aux_heads(tmp_path):
    from setr.config import build_model
    from setr import presets

    preset = presets.get(DEMO)
    torch.manual_seed(0)
    model = build_model(preset.model, with_aux=True).eval()
    folder = save_pretrained(model, tmp_path / "aux", config=preset)
    conf = json.loads((folder / CONFIG_NAME).read_text())
    assert conf["with_aux"] and conf["preset"] == DEMO
    full = from_pretrained(folder, with_aux=True)
    assert len(full.auxiliary_head) == len(model.auxiliary_head)
    slim = from_pretrained(folder)  # inference: aux heads not built, their weights ignored
    assert len(slim.auxiliary_head) == 0
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(slim.encode_decode(x), model.encode_decode(x), rtol=0, atol=0)
    with pytest.raises(SetrError, match="needs its config"):
        save_pretrained(model, tmp_path / "x")


def test_repo_id_from_local_hub_cache_offline(tmp_path, offline):
    seg = demo_segmenter()
    folder = seg.save_pretrained(tmp_path / "demo", preset=DEMO)
    cache = hub_cache(folder, tmp_path / "hub", "someorg/setr-demo")
    again = Segmenter.from_pretrained("someorg/setr-demo", cache_dir=cache)
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert np.array_equal(again.predict(image), seg.predict(image))
    torch.testing.assert_close(again.predict_probs(image), seg.predict_probs(image), rtol=0, atol=0)
    assert again.preset == DEMO
    # pinned revision, and the revision in refs/main
    assert Segmenter.from_pretrained("someorg/setr-demo", cache_dir=cache, revision=REV).preset == DEMO
    # not cached, offline: one line naming the repo
    with pytest.raises(SetrError, match="someorg/other: not a local folder"):
        Segmenter.from_pretrained("someorg/other", cache_dir=cache)


def test_repo_id_through_hf_hub_cache_env_in_a_fresh_process(tmp_path):
    """HF_HUB_OFFLINE=1 and HF_HUB_CACHE in the environment, as a user sets them."""
    seg = demo_segmenter()
    folder = seg.save_pretrained(tmp_path / "demo", preset=DEMO)
    cache = hub_cache(folder, tmp_path / "hub", "someorg/setr-demo")
    image = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    np.save(tmp_path / "img.npy", image)
    np.save(tmp_path / "want.npy", seg.predict(image))
    code = ("import numpy as np, sys; from setr import Segmenter; "
            "s = Segmenter.from_pretrained('someorg/setr-demo'); "
            f"got = s.predict(np.load(r'{tmp_path / 'img.npy'}')); "
            f"sys.exit(0 if np.array_equal(got, np.load(r'{tmp_path / 'want.npy'}')) else 3)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_bad_folders_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SetrError, match="no config.json in this folder"):
        Segmenter.from_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / CONFIG_NAME).write_text('{"hello": 1}')
    with pytest.raises(SetrError, match="not a setr pretrained config"):
        Segmenter.from_pretrained(tmp_path / "empty")
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(SetrError, match="got a file"):
        from_pretrained(f)
    hlg = save_pretrained(HLG(**TINY_HLG, num_classes=3), tmp_path / "hlg")
    with pytest.raises(SetrError, match="holds a classification model, not a segmentation model"):
        Segmenter.from_pretrained(hlg)


# ------------------------------------------------------------------------------------------------- classification
def test_hlg_classifier_round_trip_folder_and_repo_id(tmp_path, offline, monkeypatch):
    """HLG folders are timm's own hub format: HLG.from_pretrained and timm.create_model("hf-hub:...") both load
    them, from a folder and from a Hub cache (offline)."""
    import huggingface_hub.constants as constants
    import timm

    torch.manual_seed(0)
    model = HLG(**TINY_HLG, num_classes=5).eval()
    folder = model.save_pretrained(tmp_path / "hlg", class_names=list("abcde"))
    assert sorted(p.name for p in folder.iterdir()) == [CARD_NAME, CONFIG_NAME, WEIGHTS_NAME]
    assert "library_name: timm" in (folder / CARD_NAME).read_text()
    conf = json.loads((folder / CONFIG_NAME).read_text())
    assert conf["architecture"] == "hlg_tiny" and conf["num_classes"] == 5  # no variant has these dims: args say
    assert conf["model_args"]["depths"] == [1, 2, 1, 1] and conf["model_args"]["embed_dims"] == [16, 32, 64, 128]
    assert conf["pretrained_cfg"]["label_names"] == list("abcde")
    assert conf["pretrained_cfg"]["input_size"] == [3, 224, 224]
    from safetensors import safe_open

    with safe_open(str(folder / WEIGHTS_NAME), "pt") as f:  # timm's key names: the model's own state dict
        assert sorted(f.keys()) == sorted(model.state_dict())
    x = torch.randn(2, 3, 56, 72)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(HLG.from_pretrained(folder)(x), want, rtol=0, atol=0)
        torch.testing.assert_close(timm.create_model(f"local-dir:{folder}", pretrained=True).eval()(x), want,
                                   rtol=0, atol=0)
        cache = hub_cache(folder, tmp_path / "hub", "org/hlg-tiny-test")
        cached = HLG.from_pretrained("org/hlg-tiny-test", cache_dir=cache)
        torch.testing.assert_close(cached(x), want, rtol=0, atol=0)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
        with_timm = timm.create_model("hf-hub:org/hlg-tiny-test", pretrained=True).eval()
        torch.testing.assert_close(with_timm(x), want, rtol=0, atol=0)
    assert cached.pretrained_cfg["label_names"] == list("abcde")
    # the package's save_pretrained adds the model card
    card = save_pretrained(model, tmp_path / "hlg2", class_names=list("abcde")) / CARD_NAME
    assert "pipeline_tag: image-classification" in card.read_text()
    assert 'timm.create_model("hf-hub:PATH_OR_REPO_ID", pretrained=True)' in card.read_text()


def test_timm_hlg_records_variant_and_data_config(tmp_path):
    import timm

    with torch.device("meta"):
        model = timm.create_model("hlg_large", num_classes=10)
    from setr.hub import describe

    kind, _, conf = describe(model)
    assert kind == "classification" and conf["variant"] == "hlg_large" and conf["preset"] == "hlg_large"
    assert conf["num_parameters"] == sum(p.numel() for p in model.parameters())
    from setr.hub.card import model_card

    card = model_card(conf)
    assert "| hlg_large | 84M | 15.9 |" in card


# ------------------------------------------------------------------------------------------------- detection
def test_retinanet_hlg_round_trip_folder_and_repo_id(tmp_path, offline):
    from setr import Detector
    from setr.detection.model import build_retinanet_hlg
    from setr import presets

    preset = presets.get("retinanet_hlg_tiny_test", "detection")
    torch.manual_seed(0)
    model = build_retinanet_hlg(preset.model, 3).eval()
    with torch.no_grad():  # non-trivial scores so the comparison covers boxes, not only an empty list
        model.bbox_head.retina_cls.bias.fill_(0.0)
    categories = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "fox"}]
    folder = save_pretrained(model, tmp_path / "det", config=preset, categories=categories)
    conf = json.loads((folder / CONFIG_NAME).read_text())
    assert conf["kind"] == "detection" and conf["preset"] == "retinanet_hlg_tiny_test"
    assert conf["categories"] == categories and conf["num_classes"] == 3
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), rng.integers(0, 256, (128, 80, 3), dtype=np.uint8)]
    want = Detector(model, preset.model).predict_batch(images)
    assert sum(len(w) for w in want) > 0
    hub = load_pretrained("org/retina-tiny", cache_dir=hub_cache(folder, tmp_path / "hub", "org/retina-tiny"))
    from_folder = Detector.from_pretrained(folder)
    assert from_folder.class_names == ["cat", "dog", "fox"] and from_folder.category_ids == [1, 3, 7]
    for loaded in (from_folder, Detector(hub.model, preset.model)):
        for g, w in zip(loaded.predict_batch(images), want, strict=True):
            for key in ("boxes", "scores", "labels"):
                torch.testing.assert_close(getattr(g, key), getattr(w, key), rtol=0, atol=0)
    with pytest.raises(SetrError, match="needs its config"):
        save_pretrained(model, tmp_path / "x")
    with pytest.raises(SetrError, match="2 categories for a model with 3 classes"):
        save_pretrained(model, tmp_path / "y", config=preset, categories=categories[:2])


def test_push_to_hub_uploads_the_folder(tmp_path, monkeypatch):
    """No network: huggingface_hub's HfApi is replaced by a recorder."""
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create_repo", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, revision=None, commit_message=None):
            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
            return "https://huggingface.co/org/m/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = HLG(**TINY_HLG, num_classes=2)
    assert model.push_to_hub("org/m", token="t", private=True) == "https://huggingface.co/org/m/commit/abc"
    assert calls == [("init", "t"), ("create_repo", "org/m", True, True),
                     ("upload", "org/m", [CARD_NAME, CONFIG_NAME, WEIGHTS_NAME])]
    calls.clear()
    seg = demo_segmenter()
    seg.save_pretrained(tmp_path / "s", preset=DEMO, push_to_hub=True, repo_id="org/s")
    assert calls[-1] == ("upload", "org/s", [CARD_NAME, CONFIG_NAME, WEIGHTS_NAME])
    assert 'Segmenter.from_pretrained("org/s")' in (tmp_path / "s" / CARD_NAME).read_text()
    with pytest.raises(SetrError, match="needs repo_id"):
        seg.save_pretrained(tmp_path / "t", push_to_hub=True)


# ------------------------------------------------------------------------------------------------- torch.hub
REPO = ROOT


def hub_load(entry, *args, **kwargs):
    return torch.hub.load(str(REPO), entry, *args, source="local", **kwargs)


def test_torch_hub_entry_points_listed():
    import importlib.util

    spec = importlib.util.spec_from_file_location("setr_hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = sorted(n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")
                     and getattr(hubconf, n).__module__ == "setr_hubconf")
    assert entries == ["hlg", "retinanet_hlg", "setr_mla", "setr_naive", "setr_pup", "setr_pup_hlg"]


def test_torch_hub_load_local_segmentation(tmp_path):
    seg = demo_segmenter()
    folder = seg.save_pretrained(tmp_path / "demo", preset=DEMO)
    image = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    loaded = hub_load("setr_pup", weights=str(folder))
    assert isinstance(loaded, Segmenter) and loaded.preset == DEMO
    assert np.array_equal(loaded.predict(image), seg.predict(image))
    module = hub_load("setr_pup", weights=str(folder), segmenter=False)
    assert isinstance(module, torch.nn.Module)

    random_init = hub_load("setr_pup", preset=DEMO)  # preset only: random weights
    assert random_init.cfg.num_classes == seg.cfg.num_classes
    with pytest.raises(SetrError, match="is a pup model; use the setr_pup entry point"):
        hub_load("setr_naive", weights=str(folder))
    with pytest.raises(SetrError, match="use the setr_pup entry point"):
        hub_load("setr_mla", preset=DEMO)


def test_torch_hub_load_local_hlg_and_retinanet(tmp_path):
    torch.manual_seed(0)
    model = HLG(**TINY_HLG, num_classes=4).eval()
    folder = model.save_pretrained(tmp_path / "hlg")
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(hub_load("hlg", weights=str(folder))(x), model(x), rtol=0, atol=0)
    feats = hub_load("hlg", "hlg_tiny", features_only=True, out_indices=(2, 3))
    assert feats.feature_info.channels() == [256, 512]

    det = hub_load("retinanet_hlg", "retinanet_hlg_tiny_test", num_classes=2)
    assert det.num_classes == 2 and det.bbox_head.retina_cls.out_channels == 18 and not det.training
    folder = save_pretrained(det, tmp_path / "det", config=_det_preset())
    again = hub_load("retinanet_hlg", weights=str(folder))
    for (k, a), (k2, b) in zip(det.state_dict().items(), again.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)


def _det_preset():
    from setr import presets

    return presets.get("retinanet_hlg_tiny_test", "detection")


# ------------------------------------------------------------------------------------------------- convert-weights
def run_cli(capsys, *argv):
    from setr.cli import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_convert_original_setr_checkpoint(tmp_path, capsys):
    from setr.config import build_model
    from setr import presets

    preset = presets.get(DEMO)
    torch.manual_seed(0)
    model = build_model(preset.model, with_aux=True)
    sd = dict(model.state_dict())
    sd["decode_head.conv_seg.weight"] = torch.zeros(5, 48, 1, 1)  # the original's unused layer
    torch.save({"meta": {"mmcv_version": "0.x"}, "state_dict": sd, "optimizer": {}}, tmp_path / "orig.pth")

    code, out, err = run_cli(capsys, "convert-weights", tmp_path / "orig.pth", "--out", tmp_path / "conv",
                             "--preset", DEMO, "--verify-size", "48", "80")
    assert code == 0, err
    assert "max abs difference 0 on a random 1x3x48x80 input" in out
    conf = json.loads((tmp_path / "conv" / CONFIG_NAME).read_text())
    assert conf["preset"] == DEMO and conf["source"] == "orig.pth" and not conf["with_aux"]
    image = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    want = Segmenter.from_checkpoint(tmp_path / "orig.pth", DEMO).predict_probs(image)
    torch.testing.assert_close(Segmenter.from_pretrained(tmp_path / "conv").predict_probs(image), want,
                               rtol=0, atol=0)

    code, _, err = run_cli(capsys, "convert-weights", tmp_path / "orig.pth", "--out", tmp_path / "c2")
    assert code == 1 and "name its preset with --preset" in err and len(err.strip().splitlines()) == 1


def test_convert_hlg_imagenet_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    model = HLG(**TINY_HLG, num_classes=3).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "hlg_in1k.pth")
    (tmp_path / "names.txt").write_text("ant\nbee\ncat\n")
    code, out, err = run_cli(capsys, "convert-weights", tmp_path / "hlg_in1k.pth", "--out", tmp_path / "hlg",
                             "--class-names", tmp_path / "names.txt", "--verify-size", "64")
    assert code == 0, err
    assert "classification" in out and "max abs difference 0 on a random 1x3x64x64 input" in out
    again = HLG.from_pretrained(tmp_path / "hlg")
    assert again.pretrained_cfg["label_names"] == ["ant", "bee", "cat"]
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    code, _, err = run_cli(capsys, "convert-weights", tmp_path / "hlg_in1k.pth", "--out", tmp_path / "h2",
                           "--preset", "hlg_small")
    assert code == 1 and "belongs to another variant" in err


def test_convert_our_segmentation_checkpoints(tmp_path, capsys):
    from setr.model_files import save_model
    from setr.config import build_model
    from setr import presets

    preset = presets.get(DEMO)
    torch.manual_seed(0)
    model = build_model(preset.model, with_aux=True)
    save_model(model, preset.model, tmp_path / "final.safetensors")
    code, out, err = run_cli(capsys, "convert-weights", tmp_path / "final.safetensors", "--out", tmp_path / "a",
                             "--preset", DEMO)
    assert code == 0 and "max abs difference 0" in out, err
    # a training checkpoint: meta.iteration + the resolved preset
    torch.save({"meta": {"iteration": 7, "preset": DEMO, "config": preset.to_dict(), "format": "setr-train-1"},
                "state_dict": model.state_dict()}, tmp_path / "iter_7.pth")
    code, out, err = run_cli(capsys, "convert-weights", tmp_path / "iter_7.pth", "--out", tmp_path / "b")
    assert code == 0 and "iteration 7" in out and "max abs difference 0" in out, err
    image = np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    a, b = Segmenter.from_pretrained(tmp_path / "a"), Segmenter.from_pretrained(tmp_path / "b")
    assert b.preset == DEMO
    torch.testing.assert_close(a.predict_probs(image), b.predict_probs(image), rtol=0, atol=0)


def test_convert_our_detection_checkpoint(tmp_path, capsys):
    from setr.detection.model import build_retinanet_hlg

    preset = _det_preset()
    torch.manual_seed(0)
    model = build_retinanet_hlg(preset.model, 2)
    cats = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    torch.save({"meta": {"format": "setr-det-1", "epoch": 3, "preset": preset.name, "config": preset.to_dict(),
                         "categories": cats}, "state_dict": model.state_dict()}, tmp_path / "epoch_3.pth")
    code, out, err = run_cli(capsys, "convert-weights", tmp_path / "epoch_3.pth", "--out", tmp_path / "det",
                             "--verify-size", "96")
    assert code == 0, err
    assert "detection" in out and "epoch 3" in out and "max abs difference 0" in out
    loaded = load_pretrained(tmp_path / "det")
    assert loaded.kind == "detection" and loaded.config["categories"] == cats
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)


def test_segmentor_methods_round_trip(tmp_path):
    """The same on the segmentation model itself: ``EncoderDecoder.save_pretrained`` / ``from_pretrained``."""
    from setr.config import build_model
    from setr.models.segmentor import EncoderDecoder
    from setr import presets

    preset = presets.get(DEMO)
    torch.manual_seed(0)
    model = build_model(preset.model, with_aux=False).eval()
    folder = model.save_pretrained(tmp_path / "seg", config=preset)
    again = EncoderDecoder.from_pretrained(str(folder))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again.encode_decode(x), model.encode_decode(x), rtol=0, atol=0)
