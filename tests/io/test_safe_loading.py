"""No code execution from data files: every weights file is read with ``torch.load(weights_only=True)``.

A malicious pickle (its ``__reduce__`` would create a marker file) handed to every command and API that takes a
weights file creates nothing and is refused in one line; ``--trust-checkpoint`` / ``trust_checkpoint=True`` is
the explicit, documented-unsafe way to load a file with other Python objects. Our own training checkpoints hold
tensors and plain values only, so they load the safe way.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from setr.io.weights import read_state_dict, safe_torch_load, trusted_checkpoints
from setr.model_files import load_model, load_pretrained_backbone, load_weights, read_pretrained
from setr.cli import main
from setr.config import build_model
from setr.engine.state import read_checkpoint, rng_state, set_rng_state, write_checkpoint
from setr.errors import SetrError
from setr.inference import Segmenter
from setr.models.hlg_timm import load_hlg_checkpoint
from setr.models.hlg import create_hlg
from setr.overrides import apply_overrides
from setr import presets

from helpers import tiny_config, tiny_sets

SEG_PRESET = "SETR_PUP_768x768_40k_cityscapes_bs_8"
HLG_PRESET = "setr_pup_hlg_small_768x768_40k_cityscapes_bs_16"
TINY_HLG = dict(embed_dims=(16, 32, 64, 128), num_heads=(1, 2, 4, 8), depths=(2, 2, 2, 2))
REFUSED = "refused to load: the file contains Python objects other than tensors and plain values"


class Payload:
    """Unpickling this runs ``exec``: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Malicious files in every layout we read, each with valid tiny weights (so a trusted load succeeds)."""
    d = tmp_path_factory.mktemp("evil")
    marker = d / "PWNED"
    torch.manual_seed(0)
    cfg = tiny_config("pup", num_classes=5, img_size=(64, 64))
    seg_sd = build_model(cfg).state_dict()
    out = {"dir": d, "marker": marker, "cfg": cfg, "seg_sd": seg_sd}
    # an original (mmcv) checkpoint whose meta runs code; our config beside it, so the model can be built
    out["original"] = d / "evil_setr.pth"
    torch.save({"meta": {"note": Payload(marker)}, "state_dict": seg_sd, "optimizer": {}}, out["original"])
    out["original"].with_suffix(".json").write_text(cfg.to_json())
    # the same in PyTorch's legacy (non-zip) serialisation
    out["legacy"] = d / "evil_legacy.pth"
    torch.save({"meta": {"note": Payload(marker)}, "state_dict": seg_sd}, out["legacy"],
               _use_new_zipfile_serialization=False)
    out["legacy"].with_suffix(".json").write_text(cfg.to_json())
    # a timm / DeiT ViT file: {'model': ...}
    vit = build_model(cfg).backbone.state_dict()
    out["deit"] = d / "evil_deit.pth"
    torch.save({"model": vit, "args": Payload(marker)}, out["deit"])
    # an HLG ImageNet file: {'model': ...}
    hlg = create_hlg("small", num_classes=4, **TINY_HLG).state_dict()
    out["hlg"] = d / "evil_hlg.pth"
    torch.save({"model": hlg, "epoch": Payload(marker)}, out["hlg"])
    # a training checkpoint (any trainer's layout)
    out["train"] = d / "iter_5.pth"
    torch.save({"meta": {"iteration": 5, "preset": SEG_PRESET, "epoch": 5}, "state_dict": seg_sd,
                "optimizer": {}, "rng": Payload(marker)}, out["train"])
    # a tensor-only file whose tensor rebuild is replaced by the payload (the payload is the whole pickle)
    out["bare"] = d / "evil_bare.pth"
    torch.save(Payload(marker), out["bare"])
    assert not marker.exists()
    return out


def assert_refused(exc_or_text, path: Path, marker: Path) -> None:
    text = str(exc_or_text)
    assert not marker.exists(), "the payload ran"
    assert str(path) in text and REFUSED in text and "--trust-checkpoint" in text, text
    assert "\n" not in text.strip()


def assert_cli_refused(argv, path: Path, marker: Path, capsys) -> None:
    assert main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert not marker.exists(), "the payload ran"
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("setr ") and ": error: " in lines[0], err
    assert_refused(lines[0], path, marker)


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory):
    from setr.data.synthetic import write_cityscapes

    return write_cityscapes(tmp_path_factory.mktemp("cs") / "cs", n_train=2, n_val=1, size=(64, 96))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(p)
    return p


def tiny_preset(name=SEG_PRESET, iters=2):
    p = presets.get(name)
    apply_overrides(p, tiny_sets(p) + [f"train.iters={iters}", f"train.eval_interval={iters}"])
    return p


# --------------------------------------------------------------------------------------- the one reader
@pytest.mark.parametrize("key", ["original", "legacy", "deit", "hlg", "train", "bare"])
def test_safe_torch_load_refuses_every_layout(files, key):
    with pytest.raises(SetrError) as e:
        safe_torch_load(files[key])
    assert_refused(e.value, files[key], files["marker"])


def test_message_names_the_objects(tmp_path, files):
    p = tmp_path / "ns.pth"
    torch.save({"state_dict": files["seg_sd"], "args": argparse.Namespace(lr=0.1)}, p)
    with pytest.raises(SetrError, match=r"ns\.pth: refused to load: .*\(argparse\.Namespace\).*could run code"):
        read_state_dict(p)
    garbage = tmp_path / "notes.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(SetrError, match=r"notes\.pth: not a PyTorch checkpoint"):
        read_state_dict(garbage)


# ------------------------------------------------------------------------------------------ Python APIs
def test_segmentation_apis_refuse(files):
    m, cfg = files["marker"], files["cfg"]
    for fn in (lambda p: read_state_dict(p), lambda p: load_weights(build_model(cfg), p),
               lambda p: load_model(p), lambda p: load_model(p, cfg), lambda p: Segmenter.from_checkpoint(p),
               lambda p: Segmenter.from_checkpoint(p, SEG_PRESET), lambda p: Segmenter.from_preset(SEG_PRESET, p)):
        for key in ("original", "legacy"):
            with pytest.raises(SetrError) as e:
                fn(files[key])
            assert_refused(e.value, files[key], m)


def test_pretrained_and_hlg_apis_refuse(files):
    m = files["marker"]
    backbone = build_model(files["cfg"]).backbone
    for fn, key in ((lambda p: read_pretrained(p), "deit"), (lambda p: load_pretrained_backbone(backbone, p), "deit"),
                    (lambda p: load_hlg_checkpoint(p, "small"), "hlg"),
                    (lambda p: read_checkpoint(p), "train")):
        with pytest.raises(SetrError) as e:
            fn(files[key])
        assert_refused(e.value, files[key], m)


def test_npz_object_arrays_are_not_unpickled(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.npz"
    np.savez(path, **{"embedding/kernel": np.array([Payload(marker)], dtype=object)})
    with pytest.raises(SetrError, match=r"evil\.npz: .*allow_pickle=False"):
        read_pretrained(path)
    assert not marker.exists()


def test_detection_apis_refuse(files):
    pytest.importorskip("pycocotools")
    from setr.detection.api import load_detector_checkpoint
    from setr.detection.model import build_retinanet_hlg

    m = files["marker"]
    with pytest.raises(SetrError) as e:
        build_retinanet_hlg(dict(TINY_HLG, variant="small"), 2, pretrained=str(files["hlg"]))
    assert_refused(e.value, files["hlg"], m)
    with pytest.raises(SetrError) as e:
        load_detector_checkpoint(files["train"], "retinanet_hlg_tiny_test")
    assert_refused(e.value, files["train"], m)


def test_training_apis_refuse(files, seg_data, tmp_path):
    from setr.engine.segmentation import train

    m = files["marker"]
    for kwargs, key in (({"load_from": files["original"]}, "original"), ({"pretrained": str(files["deit"])}, "deit"),
                        ({"resume": files["train"]}, "train")):
        with pytest.raises(SetrError) as e:
            train(tiny_preset(), seg_data, tmp_path / key, progress=False, validate=False, **kwargs)
        assert_refused(e.value, files[key], m)
    # --resume (latest) picks up a malicious iter_N.pth in the work dir
    work = tmp_path / "latest"
    work.mkdir()
    (work / "iter_5.pth").write_bytes(files["train"].read_bytes())
    with pytest.raises(SetrError) as e:
        train(tiny_preset(), seg_data, work, resume=True, progress=False, validate=False)
    assert_refused(e.value, work / "iter_5.pth", m)
    # an HLG backbone's ImageNet file
    with pytest.raises(SetrError) as e:
        train(tiny_preset(HLG_PRESET), seg_data, tmp_path / "hlg", pretrained=str(files["hlg"]), progress=False,
              validate=False)
    assert_refused(e.value, files["hlg"], m)


def test_classification_and_detection_training_refuse(files, tmp_path):
    from setr.data.synthetic import write_image_folder
    from setr.engine.classification import ClassifyRecipe, train_classifier

    m = files["marker"]
    folder = write_image_folder(tmp_path / "imnet", num_classes=2, n_train=4, n_val=2, size=32)
    recipe = ClassifyRecipe(epochs=1, img_size=32, workers=0, batch_size=4, warmup_epochs=0)
    with pytest.raises(SetrError) as e:
        train_classifier("hlg_tiny", folder, tmp_path / "c", recipe, model_kwargs=TINY_HLG, resume=files["train"],
                         progress=False)
    assert_refused(e.value, files["train"], m)

    pytest.importorskip("pycocotools")
    from setr.detection.training import train_detector
    from setr import presets
    from setr.detection.synthetic import write_coco

    coco = write_coco(tmp_path / "coco", n_train=2, n_val=1, size=64, num_classes=1, seed=0)
    with pytest.raises(SetrError) as e:
        train_detector("retinanet_hlg_tiny_test", coco, tmp_path / "d", batch_size=2, resume=files["train"],
                       progress=False)
    assert_refused(e.value, files["train"], m)
    p = presets.get("retinanet_hlg_tiny_test", "detection")
    apply_overrides(p, [f"model.pretrained={files['hlg']}"])
    with pytest.raises(SetrError) as e:
        train_detector(p, coco, tmp_path / "d2", batch_size=2, progress=False)
    assert_refused(e.value, files["hlg"], m)


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_commands_refuse(files, seg_data, image, tmp_path, capsys):
    m, orig = files["marker"], files["original"]
    tiny = tiny_sets(presets.get(SEG_PRESET))
    cases = [
        (["predict", SEG_PRESET, image, "-c", orig, "--out", tmp_path / "pred", "--no-progress"], orig),
        (["test", SEG_PRESET, "-c", orig, "--data-root", seg_data, "--no-progress"], orig),
        (["export", SEG_PRESET, "-c", orig, "--onnx", tmp_path / "m.onnx"], orig),
        (["train", SEG_PRESET, "--data-root", seg_data, "--work-dir", tmp_path / "w1", "--iters", "2",
          "--load-from", orig, "--no-progress", "--no-validate", "--set", *tiny], orig),
        (["train", SEG_PRESET, "--data-root", seg_data, "--work-dir", tmp_path / "w2", "--iters", "2",
          "--pretrained", files["deit"], "--no-progress", "--no-validate", "--set", *tiny], files["deit"]),
        (["train", SEG_PRESET, "--data-root", seg_data, "--work-dir", tmp_path / "w3", "--iters", "2",
          "--resume", files["train"], "--no-progress", "--no-validate", "--set", *tiny], files["train"]),
        (["classify", "test", "hlg_small", "-c", files["hlg"], "--data-root", tmp_path], files["hlg"]),
        (["classify", "test", "hlg_small", "-c", files["train"], "--data-root", tmp_path, "--ema"], files["train"]),
    ]
    for argv, path in cases:
        assert_cli_refused(argv, path, m, capsys)


def test_cli_classify_and_detect_refuse(files, image, tmp_path, capsys):
    from setr.data.synthetic import write_image_folder

    m = files["marker"]
    folder = write_image_folder(tmp_path / "imnet", num_classes=2, n_train=4, n_val=2, size=32)
    assert_cli_refused(["classify", "train", "hlg_tiny", "--data-root", folder, "--work-dir", tmp_path / "c",
                        "--epochs", "1", "--no-progress", "--resume", files["train"], "--set", "train.img_size=32",
                        "train.workers=0", "train.batch_size=4"], files["train"], m, capsys)
    pytest.importorskip("pycocotools")
    from setr.detection.synthetic import write_coco

    coco = write_coco(tmp_path / "coco", n_train=2, n_val=1, size=64, num_classes=1, seed=0)
    det = "retinanet_hlg_tiny_test"
    for argv, path in (
            (["detect", "test", det, "-c", files["train"], "--data-root", coco, "--no-progress"], files["train"]),
            (["detect", "predict", det, "--checkpoint", files["train"], image, "--out", tmp_path / "p"],
             files["train"]),
            (["detect", "train", det, "--data-root", coco, "--work-dir", tmp_path / "d", "--batch-size", "2",
              "--no-progress", "--resume", files["train"]], files["train"]),
            (["detect", "train", det, "--data-root", coco, "--work-dir", tmp_path / "d2", "--batch-size", "2",
              "--no-progress", "--set", f"model.pretrained={files['hlg']}"], files["hlg"]),
            (["detect", "train", det, "--data-root", coco, "--work-dir", tmp_path / "d3", "--batch-size", "2",
              "--no-progress", "--load-from", files["original"]], files["original"])):
        assert_cli_refused(argv, path, m, capsys)


def test_subprocess_one_line_exit_1(files, image, tmp_path):
    run = subprocess.run([sys.executable, "-m", "setr", "predict", SEG_PRESET, str(image), "-c",
                          str(files["original"]), "--out", str(tmp_path / "o"), "--no-progress"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 1
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert_refused(lines[0], files["original"], files["marker"])


def test_trust_flag_is_documented_unsafe(capsys):
    for argv in (["predict", "-h"], ["test", "-h"], ["train", "-h"], ["export", "-h"], ["classify", "test", "-h"],
                 ["classify", "train", "-h"], ["detect", "test", "-h"], ["detect", "predict", "-h"],
                 ["detect", "train", "-h"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = " ".join(capsys.readouterr().out.split())
        assert "--trust-checkpoint" in out and "UNSAFE" in out, argv


# ---------------------------------------------------------------------------------------- trusting a file
def test_trust_loads_a_benign_file_with_python_objects(files, image, tmp_path, capsys):
    cfg = files["cfg"]
    p = tmp_path / "with_args.pth"
    torch.save({"meta": {"args": argparse.Namespace(lr=0.1)}, "state_dict": files["seg_sd"]}, p)
    p.with_suffix(".json").write_text(cfg.to_json())
    with pytest.raises(SetrError, match="argparse.Namespace"):
        load_weights(build_model(cfg), p)
    model = load_weights(build_model(cfg), p, trust_checkpoint=True)
    assert torch.equal(model.state_dict()["backbone.pos_embed"], files["seg_sd"]["backbone.pos_embed"])
    assert Segmenter.from_checkpoint(p, trust_checkpoint=True).cfg.num_classes == 5
    with trusted_checkpoints():
        read_state_dict(p)
    with pytest.raises(SetrError, match="refused to load"):
        read_state_dict(p)  # the scope has ended
    assert main(["predict", SEG_PRESET, str(image), "-c", str(p), "--out", str(tmp_path / "pred"), "--no-progress",
                 "--trust-checkpoint", "--precision", "fp32"]) == 0
    assert "weights_only=False" in capsys.readouterr().err
    assert (tmp_path / "pred" / "a.png").is_file()


def test_trust_really_unpickles(files, tmp_path):
    """The flag works: with it the payload of a malicious file does run (here: it creates the marker)."""
    marker = tmp_path / "RAN"
    p = tmp_path / "evil.pth"
    torch.save({"state_dict": files["seg_sd"], "x": Payload(marker)}, p)
    with pytest.raises(SetrError):
        read_state_dict(p)
    assert not marker.exists()
    read_state_dict(p, trust_checkpoint=True)
    assert marker.exists()


# --------------------------------------------------------------------------- our own checkpoints are safe
def test_training_checkpoint_holds_tensors_and_plain_values(tmp_path, files):
    cfg = files["cfg"]
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    np.random.randn(3)  # leave a cached gaussian in numpy's state
    # what the training loop writes: numpy scalars in the metrics, optimizer, scaler and RNG states
    state = {"meta": {"iteration": 3, "preset": "x", "config": {"name": "x", "train": {"lr": 0.1}},
                      "best": {"mIoU": np.float64(0.5), "iteration": np.int64(3)}},
             "state_dict": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
             "rng": rng_state()}
    path = write_checkpoint(tmp_path / "iter_3.pth", state)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["meta"]["iteration"] == 3 and type(state["meta"]["best"]["mIoU"]) is float
    assert read_checkpoint(path)["meta"]["best"] == {"mIoU": 0.5, "iteration": 3}
    # the RNG states round-trip: every generator continues where it was saved
    saved = rng_state()
    a = (torch.rand(3), np.random.rand(3), np.random.randn(), __import__("random").random())
    set_rng_state(torch.load(_save_rng(tmp_path, saved), weights_only=True))
    b = (torch.rand(3), np.random.rand(3), np.random.randn(), __import__("random").random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2] and a[3] == b[3]


def _save_rng(tmp_path, state):
    p = tmp_path / "rng.pth"
    torch.save(state, p)
    return p


def test_segmentation_training_checkpoints_load_weights_only(seg_data, tmp_path):
    from setr.engine.segmentation import train

    train(tiny_preset(iters=2), seg_data, tmp_path, progress=False, validate=True)
    state = torch.load(tmp_path / "iter_2.pth", map_location="cpu", weights_only=True)
    assert state["meta"]["iteration"] == 2 and "rng" in state
    # and resume reads it the safe way
    train(tiny_preset(iters=3), seg_data, tmp_path, resume=True, progress=False, validate=False)
    assert torch.load(tmp_path / "iter_3.pth", weights_only=True)["meta"]["iteration"] == 3


def test_classification_checkpoints_load_weights_only(tmp_path):
    from setr.data.synthetic import write_image_folder
    from setr.engine.classification import ClassifyRecipe, train_classifier

    folder = write_image_folder(tmp_path / "imnet", num_classes=2, n_train=4, n_val=2, size=32)
    recipe = ClassifyRecipe(epochs=1, img_size=32, workers=0, batch_size=4, warmup_epochs=0, auto_augment="",
                            reprob=0.0, mixup=0.0, cutmix=0.0, smoothing=0.0, ema_decay=0.9)
    train_classifier("hlg_tiny", folder, tmp_path / "w", recipe, model_kwargs=TINY_HLG, progress=False)
    ckpts = sorted((tmp_path / "w").glob("*.pth"))
    assert ckpts
    for c in ckpts:
        torch.load(c, map_location="cpu", weights_only=True)


def test_detection_checkpoints_load_weights_only(tmp_path):
    pytest.importorskip("pycocotools")
    from setr.detection.api import load_detector_checkpoint
    from setr.detection.training import train_detector
    from setr.detection.synthetic import write_coco

    coco = write_coco(tmp_path / "coco", n_train=2, n_val=1, size=64, num_classes=1, seed=0)
    p = "retinanet_hlg_tiny_test"
    from setr import presets

    preset = presets.get(p, "detection")
    apply_overrides(preset, ["train.epochs=1", "model.train_min_sizes=[64]", "model.test_min_size=64",
                             "model.max_size=64"])
    train_detector(preset, coco, tmp_path / "w", batch_size=2, progress=False)
    ckpts = sorted((tmp_path / "w").glob("*.pth"))
    assert ckpts
    for c in ckpts:
        torch.load(c, map_location="cpu", weights_only=True)
    load_detector_checkpoint(ckpts[-1], p)
