"""Everyday mistakes cost one line, before any work (issue 13): each case as a user types it on the command line."""
import errno
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from setr.cli import main
from setr.config import build_model
from setr.data.synthetic import write_folder
from setr.overrides import apply_overrides
from setr import presets

from helpers import ROOT

DEMO = "setr_demo_pup_tiny_64x64_shapes"
TINY = ["model.backbone.embed_dim=32", "model.backbone.num_heads=2", "model.decode_head.channels=16",
        "model.aux_heads.0.channels=16", "train.batch_size=2", "data.workers=0"]


def tiny_demo(*extra):
    return apply_overrides(presets.get(DEMO), TINY + list(extra))


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def refused(argv, capsys) -> str:
    """argparse refuses the command line: exit 2, one line on stderr."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return one_line(capsys.readouterr().err)


def failed(argv, capsys) -> str:
    """The command starts and stops with one line: exit 1."""
    assert main(argv) == 1
    return one_line(capsys.readouterr().err)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("shapes") / "data", n_train=4, n_val=2, size=(64, 64), seed=0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny demo-preset model saved in our format (config, dataset and class names inside)."""
    from setr.model_files import save_model

    cfg = tiny_demo().model
    return save_model(build_model(cfg), cfg, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def copy_data(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def train_argv(data, work, *extra, sets=()):
    return ["train", DEMO, "--data-root", str(data), "--work-dir", str(work), "--iters", "1", "--no-progress",
            "--no-validate", *extra, "--set", *TINY, *sets]


# ------------------------------------------------------------------------------------------- 1. numeric ranges
@pytest.mark.parametrize("argv,message", [
    (["train", DEMO, "--data-root", "d", "--iters", "0"], "argument --iters: expected a whole number >= 1, got 0"),
    (["train", DEMO, "--data-root", "d", "--batch-size", "0"], "argument --batch-size: expected a whole number >= 1"),
    (["train", DEMO, "--data-root", "d", "--iters", "-5"], "argument --iters: expected a whole number >= 1, got -5"),
    (["classify", "train", "hlg_tiny", "--data-root", "d", "--epochs", "0"], "argument --epochs: expected a whole"),
    (["classify", "test", "hlg_tiny", "-c", "c.pth", "--data-root", "d", "--batch-size", "0"], "argument --batch-size"),
    (["detect", "train", "retinanet_hlg_tiny_test", "--data-root", "d", "--epochs", "0"], "argument --epochs"),
    (["detect", "predict", "retinanet_hlg_tiny_test", "--checkpoint", "c", "x.jpg", "--out", "o",
      "--score-thresh", "1.5"], "argument --score-thresh: expected a number between 0 and 1"),
    (["benchmark", DEMO, "--runs", "0"], "argument --runs: expected a whole number >= 1, got 0"),
    (["benchmark", DEMO, "--batch-size", "0"], "argument --batch-size: expected a whole number >= 1, got 0"),
    (["flops", DEMO, "--shape", "5", "7", "9"], "argument --shape: expected H W or a single size S, got 3 values"),
    (["flops", DEMO, "--shape", "0"], "argument --shape: expected a whole number >= 1, got 0"),
    (["benchmark", DEMO, "--shape", "64", "-64"], "argument --shape: expected a whole number >= 1, got -64"),
    (["evaluate", "p", "g", "--num-classes", "0"], "argument --num-classes: expected a whole number >= 1, got 0"),
    (["evaluate", "p", "g", "--num-classes", "3", "--ignore-index", "256"], "argument --ignore-index: expected"),
    (["demo", "--iters", "0"], "argument --iters: expected a whole number >= 1, got 0"),
])
def test_zero_and_negative_numbers_are_refused_in_one_line(argv, message, capsys):
    line = refused(argv, capsys)
    assert message in line and line.startswith("setr ")


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:99"])
def test_device_names_only_what_pytorch_can_use_here(device, capsys):
    line = refused(["train", DEMO, "--data-root", "d", "--device", device], capsys)
    assert f"argument --device: " in line and ("not a device PyTorch can use here" in line or "GPU" in line)
    assert "usable" in line or "PyTorch sees" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_train_device_cuda_without_a_gpu_is_one_line(capsys):
    line = refused(["train", DEMO, "--data-root", "d", "--device", "cuda"], capsys)
    assert "--device: cuda: CUDA is not available on this machine" in line
    refused(["detect", "test", "retinanet_hlg_tiny_test", "c.pth", "--data-root", "d", "--device", "cuda"], capsys)


@pytest.mark.parametrize("argv,message", [
    (["benchmark", DEMO, "--set", "model.backbone.embed_dim=100"],
     "--set model.backbone.embed_dim=100: not divisible by model.backbone.num_heads=3"),
    (["benchmark", DEMO, "--set", "model.backbone.img_size=[60,60]"],
     "--set model.backbone.img_size=[60, 60]: not a multiple of model.backbone.patch_size=8"),
    (["benchmark", DEMO, "--set", "model.num_classes=0"], "--set model.num_classes=0: expected a whole number >= 1"),
    (["benchmark", DEMO, "--set", "model.backbone.depth=0"], "--set model.backbone.depth=0: expected a whole number"),
    (["benchmark", DEMO, "--set", "model.test.stride=[0,8]"], "--set model.test.stride=[0, 8]: expected two whole"),
    (["benchmark", DEMO, "--set", "model.decode_head.type=mla"], "needs a 'vit_mla' backbone"),
    (["export", DEMO, "--onnx", "x.onnx", "--set", "model.backbone.num_heads=5"],
     "--set model.backbone.embed_dim=96: not divisible by model.backbone.num_heads=5"),
])
def test_model_config_is_validated_before_it_is_built(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert message in failed(argv, capsys)


def test_train_with_indivisible_embed_dim_is_one_line(data, tmp_path, capsys):
    line = failed(["train", DEMO, "--data-root", str(data), "--work-dir", str(tmp_path / "w"), "--no-progress",
                   "--set", "model.backbone.embed_dim=100"], capsys)
    assert line == ("setr train: error: --set model.backbone.embed_dim=100: not divisible by "
                    "model.backbone.num_heads=3")
    assert not (tmp_path / "w" / "train.log").exists()


def test_every_preset_config_is_valid():
    from setr.config import validate_model_config

    for preset in presets.all_presets("segmentation"):
        validate_model_config(preset.model)


# ------------------------------------------------------------------------------------------- 1. the training set
def test_bad_label_map_is_found_before_the_first_iteration(data, tmp_path, capsys, monkeypatch):
    root = copy_data(data, tmp_path / "data")
    bad = root / "masks" / "train" / "train_0002.png"
    labels = np.array(Image.open(bad))
    labels[0, 0] = 9  # 5 classes: 0..4 and 255
    Image.fromarray(labels).save(bad)
    line = failed(train_argv(root, tmp_path / "w"), capsys)
    assert f"{bad}: label values 9 are outside the 5 classes (0..4, 255 = ignore)" in line
    assert not list((tmp_path / "w").glob("*.pth")) and not (tmp_path / "w" / "train.log").exists()

    # the files that passed are remembered (size + mtime): after the fix only the changed file is read again
    labels[0, 0] = 1
    Image.fromarray(labels).save(bad)
    import setr.data.check as check

    seen = []
    real = check.check_sample
    monkeypatch.setattr(check, "check_sample", lambda image, mask, *a: seen.append(mask) or real(image, mask, *a))
    assert main(train_argv(root, tmp_path / "w")) == 0
    assert seen == [bad]


def test_bad_label_in_the_validation_split_is_found_before_training_and_a_resume_evaluates(data, tmp_path, capsys,
                                                                                             monkeypatch):
    root = copy_data(data, tmp_path / "data")
    bad = root / "masks" / "val" / "val_0001.png"
    labels = np.array(Image.open(bad))
    labels[0, 0] = 7
    Image.fromarray(labels).save(bad)
    work = tmp_path / "w"
    argv = [a for a in train_argv(root, work, sets=["train.eval_interval=1"]) if a != "--no-validate"]
    line = failed(argv, capsys)
    assert line == (f"setr train: error: {bad}: label values 7 are outside the 5 classes (0..4, 255 = ignore)")
    assert not list(work.glob("*.pth"))
    labels[0, 0] = 1
    Image.fromarray(labels).save(bad)
    # the final evaluation fails once (a file changed under the run): the iteration is kept, and a resume with the
    # fixed data evaluates and writes what an uninterrupted run writes
    from setr.engine.segmentation import SegmentationTask
    from setr.errors import SetrError

    real_evaluate = SegmentationTask.evaluate

    def broken_once(self, it):
        monkeypatch.setattr(SegmentationTask, "evaluate", real_evaluate)
        raise SetrError(f"{bad}: not a readable label map (OSError)")

    monkeypatch.setattr(SegmentationTask, "evaluate", broken_once)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"SetrError at iteration 1: saved the last whole iteration in {work / 'iter_1.pth'}" in err
    assert not (work / "metrics.json").exists()
    assert main([*argv, "--resume"]) == 0
    assert "mIoU" in capsys.readouterr().out
    assert json.loads((work / "metrics.json").read_text())["iteration"] == 1
    assert (work / "best.safetensors").is_file() and (work / "final.safetensors").is_file()


def test_learning_rates_out_of_range_and_train_settings_for_test_are_one_line(data, ckpt, tmp_path, capsys):
    line = failed(train_argv(data, tmp_path / "w", sets=["train.lr=-1"]), capsys)
    assert line == "setr train: error: --set train.lr=-1.0: must be > 0"
    line = failed(train_argv(data, tmp_path / "w", sets=["train.weight_decay=-0.1"]), capsys)
    assert line == "setr train: error: --set train.weight_decay=-0.1: must be >= 0"
    line = failed(["test", DEMO, str(ckpt), "--data-root", str(data), "--no-progress", "--set", "train.lr=5"], capsys)
    assert line == ("setr test: error: --set train.lr=5: train.* settings have no meaning for setr test (model.*, "
                    "test.* and data.* apply)")


def test_export_never_writes_over_the_checkpoint(ckpt, capsys):
    before = ckpt.read_bytes()
    line = failed(["export", DEMO, "-c", str(ckpt), "--onnx", str(ckpt)], capsys)
    assert line == (f"setr export: error: --onnx {ckpt}: is the input file {ckpt}; outputs would replace the "
                    "inputs: choose another --onnx")
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("damage,message", [
    ("truncated_image", "train_0001.png: not a readable image"),
    ("mask_size", "train_0001.png: label map is 32x32, its image train_0001.png is 64x64"),
    ("rgb_mask", "train_0001.png: label map must be single-channel class ids"),
])
def test_every_image_and_mask_is_checked(damage, message, data, tmp_path, capsys):
    root = copy_data(data, tmp_path / "data")
    image, mask = root / "images" / "train" / "train_0001.png", root / "masks" / "train" / "train_0001.png"
    if damage == "truncated_image":
        image.write_bytes(image.read_bytes()[:200])
    elif damage == "mask_size":
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(mask)
    else:
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(mask)
    line = failed(train_argv(root, tmp_path / "w"), capsys)
    assert message in line


def test_data_check_is_cached_by_size_and_time(data, tmp_path):
    from setr.data.check import check_dataset
    from setr.data.datasets import build_dataset

    ds = build_dataset("folder", data, "train", 5)
    assert check_dataset(ds, tmp_path, progress=False) == {"checked": 4, "cached": 0}
    assert check_dataset(ds, tmp_path, progress=False) == {"checked": 0, "cached": 4}
    os.utime(ds.samples[0].mask, ns=(1, 1))
    assert check_dataset(ds, tmp_path, progress=False) == {"checked": 1, "cached": 3}
    assert check_dataset(build_dataset("folder", data, "train", 5), tmp_path / "other", progress=False)["checked"] == 4


def test_reduce_zero_label_ranges(tmp_path):
    from setr.data.check import check_sample

    img, mask = tmp_path / "a.png", tmp_path / "a_mask.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    labels = np.zeros((8, 8), np.uint8)
    labels[0, :3] = [150, 255, 1]
    Image.fromarray(labels).save(mask)
    assert check_sample(img, mask, 150, reduce_zero_label=True) is None  # 0 and 255 ignored, 1..150 fine
    labels[0, 0] = 151
    Image.fromarray(labels).save(mask)
    assert "label values 151 are outside the 150 classes (1..150" in check_sample(img, mask, 150, True)


# ------------------------------------------------------------------------------------------- 1/4. output locations
def test_work_dir_that_is_a_file(data, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert failed(train_argv(data, f), capsys) == f"setr train: error: --work-dir {f}: is a file, expected a folder"
    line = failed(train_argv(data, f / "w"), capsys)
    assert line == f"setr train: error: --work-dir {f / 'w'}: {f} is a file, not a folder"
    line = failed(["predict", DEMO, str(data / "images" / "val"), "--random-weights", "--out", str(f)], capsys)
    assert f"--out {f}: is a file, expected a folder" in line


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder this user cannot write in: mode 0555, or for root (who writes anywhere) the immutable flag."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        pytest.skip("running as root where the immutable flag is not available: no folder is read-only")
    try:
        yield ro
    finally:
        subprocess.run(["chattr", "-i", str(ro)], capture_output=True)


def test_read_only_out_is_refused_before_any_work(read_only_dir, data, capsys):
    line = failed(["predict", DEMO, str(data / "images" / "val"), "--random-weights", "--out", str(read_only_dir)],
                  capsys)
    assert line.startswith(f"setr predict: error: --out {read_only_dir}: folder is not writable (")


def test_read_only_work_dir_is_refused_before_any_work(read_only_dir, data, capsys):
    line = failed(train_argv(data, read_only_dir / "w"), capsys)
    assert line.startswith(f"setr train: error: --work-dir {read_only_dir / 'w'}: cannot create the folder (")
    line = failed(train_argv(data, read_only_dir), capsys)
    assert line.startswith(f"setr train: error: --work-dir {read_only_dir}: folder is not writable (")


def test_unwritable_output_message(tmp_path, capsys, monkeypatch):
    import setr.outputs

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(setr.outputs.tempfile, "mkstemp", denied)
    line = failed(["export", DEMO, "--onnx", str(tmp_path / "m.onnx")], capsys)
    assert line == f"setr export: error: --onnx (its folder) {tmp_path}: folder is not writable (Permission denied)"


def test_test_json_and_onnx_locations_are_checked_first(ckpt, data, tmp_path, capsys, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    line = failed(["test", DEMO, "-c", str(ckpt), "--data-root", str(data), "--json", str(f / "m.json")], capsys)
    assert f"--json (its folder) {f}: is a file, expected a folder" in line
    line = failed(["export", DEMO, "--onnx", str(f / "m.onnx")], capsys)
    assert f"--onnx (its folder) {f}: is a file, expected a folder" in line


# ------------------------------------------------------------------------------------------- 1. evaluate
@pytest.fixture
def five_class_folders(tmp_path):
    rng = np.random.default_rng(0)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for i in range(2):
        labels = rng.integers(0, 5, (16, 16)).astype(np.uint8)
        Image.fromarray(labels).save(gt / f"im{i}.png")
        Image.fromarray(np.where(labels < 3, labels, 0).astype(np.uint8)).save(pred / f"im{i}.png")
    return pred, gt


def test_evaluate_refuses_labels_outside_num_classes(five_class_folders, capsys):
    pred, gt = five_class_folders
    line = failed(["evaluate", str(pred), str(gt), "--num-classes", "3"], capsys)
    assert f"{gt / 'im0.png'}: ground-truth label values 3, 4 are outside --num-classes 3 (0..2, 255 = ignore)" in line
    assert "--ignore-out-of-range" in line
    assert main(["evaluate", str(pred), str(gt), "--num-classes", "3", "--ignore-out-of-range", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["per_class"]) == 3
    assert main(["evaluate", str(pred), str(gt), "--num-classes", "5"]) == 0


def test_evaluate_takes_class_names(five_class_folders, tmp_path, capsys):
    pred, gt = five_class_folders
    names = tmp_path / "names.txt"
    names.write_text("sky\nroad\ncar\ntree\nhouse\n")
    assert main(["evaluate", str(pred), str(gt), "--num-classes", "5", "--classes", str(names)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^sky\s", table, re.M) and re.search(r"^house\s", table, re.M)
    line = failed(["evaluate", str(pred), str(gt), "--num-classes", "5", "--classes", "cityscapes"], capsys)
    assert "--classes cityscapes: dataset cityscapes names 19 classes, --num-classes is 5" in line
    line = failed(["evaluate", str(pred), str(gt), "--num-classes", "5", "--classes", "nope.txt"], capsys)
    assert "--classes nope.txt: not a file with one class name per line, nor a dataset name" in line


# ------------------------------------------------------------------------------------------- 3. setr test
def test_setr_test_prints_the_table_before_writing_and_writes_atomically(ckpt, data, tmp_path, capsys,
                                                                         monkeypatch):
    import pathlib

    out = tmp_path / "m.json"
    real_write_text = pathlib.Path.write_text

    def full_disk(self, *args, **kwargs):  # the temporary file beside m.json is on a full disk
        if self.name.startswith(".m.json.") and self.name.endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    assert main(["test", DEMO, "-c", str(ckpt), "--data-root", str(data), "--json", str(out), "--no-progress",
                 "--precision", "fp32"]) == 1
    captured = capsys.readouterr()
    assert "mIoU" in captured.out and "precision fp32" in captured.out  # the numbers were shown
    # the tiny checkpoint is another model than the demo preset: that is said first, then the one error line
    warning, *rest = captured.err.splitlines()
    assert warning.startswith(f"warning: {ckpt} was trained as another model than preset {DEMO}")
    err = one_line("\n".join(rest))
    assert err.startswith(f"setr test: error: {out}: could not be written (No space left on device; ")
    assert err.endswith(" MB free on its disk); nothing was replaced")
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind
    monkeypatch.undo()
    assert main(["test", DEMO, "-c", str(ckpt), "--data-root", str(data), "--json", str(out), "--no-progress"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["precision"] in ("fp32", "bf16") and not list(tmp_path.glob(".*.tmp"))
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()


# ------------------------------------------------------------------------------------------- 4. disk full, OSError
@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"),  # torch.save's way
])
def test_full_disk_during_a_checkpoint_write_is_one_line(error, data, tmp_path, capsys, monkeypatch):
    def save_to_full_disk(obj, f, *args, **kwargs):  # half the file reaches the disk, then the disk is full
        Path(f).write_bytes(b"PK" * 1000)
        raise error

    monkeypatch.setattr(torch, "save", save_to_full_disk)
    line = failed(train_argv(data, tmp_path / "w"), capsys)
    assert re.search(r"iter_1\.pth: could not be written \((No space left on device|\[enforce fail.*598); "
                     r"\d+ MB free on its disk\); nothing was replaced", line), line
    assert not list((tmp_path / "w").glob(".*.tmp")) and not (tmp_path / "w" / "iter_1.pth").exists()


def test_any_oserror_is_one_line_naming_the_path(capsys, monkeypatch, tmp_path):
    import setr.evaluation.evaluate as ev

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/data/gt/im0.png")

    monkeypatch.setattr(ev, "evaluate_folders", denied)
    line = failed(["evaluate", str(tmp_path), str(tmp_path), "--num-classes", "3"], capsys)
    assert line == "setr evaluate: error: /data/gt/im0.png: Permission denied (check the permissions)"


# ------------------------------------------------------------------------------------------- 5. say what you do
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_class_names_follow_num_classes_and_weights_get_the_umask_mode(tmp_path, capsys):
    from setr.model_files import read_config

    root = write_folder(tmp_path / "three", n_train=2, n_val=1, size=(64, 64), num_classes=3,
                        class_names=["sky", "road", "car"])
    old = os.umask(0o002)
    try:
        assert main(train_argv(root, tmp_path / "w", sets=["model.num_classes=3"])) == 0
    finally:
        os.umask(old)
    cfg = read_config(tmp_path / "w" / "final.safetensors")
    assert cfg.num_classes == 3 and cfg.class_names == ["sky", "road", "car"]
    for name in ("final.safetensors", "final.json", "iter_1.pth", "train.log"):
        assert stat.S_IMODE((tmp_path / "w" / name).stat().st_mode) == 0o664, name

    from setr.data.classes import classes_and_palette

    names, palette = classes_and_palette("folder", 3, ["a", "b", "c", "d", "e"])  # a preset's 5 names
    assert names == ["class_0", "class_1", "class_2"] and len(palette) == 3


def test_stored_dataset_is_used_by_test_without_repeating_set(ckpt, data, tmp_path, capsys):
    # a folder-trained checkpoint tested with a Cityscapes preset of the same kind: the checkpoint says "folder"
    json_path = tmp_path / "m.json"
    assert main(["test", "SETR_PUP_768x768_40k_cityscapes_bs_8", "-c", str(ckpt), "--data-root", str(data), "--json",
                 str(json_path), "--no-progress", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "triangle" in out or "circle" in out or "background" in out  # the folder's class names
    assert json.loads(json_path.read_text())["num_images"] == 2


def test_demo_reports_its_precision(tmp_path, capsys, monkeypatch):
    import setr.demo

    real = setr.demo.run_demo
    monkeypatch.setattr(setr.demo, "run_demo", lambda work_dir, iters=None, progress=True, **kw: real(
        work_dir, iters=iters, progress=progress, n_train=4, n_val=2, **kw))
    assert main(["demo", "--work-dir", str(tmp_path / "demo"), "--iters", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "precision fp32" in out and "demo mIoU" in out
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["precision"] == "fp32"


def test_detect_predict_says_when_there_are_no_boxes(tmp_path, capsys):
    from setr.detection.model import build_retinanet_hlg
    from setr import presets

    p = presets.get("retinanet_hlg_tiny_test", "detection")
    p.model.pretrained = None
    torch.manual_seed(0)
    model = build_retinanet_hlg(p.model, 2)  # untrained: every score is about the 0.01 prior
    ckpt = tmp_path / "det.pth"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    img = tmp_path / "a.jpg"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(img)
    assert main(["detect", "predict", "retinanet_hlg_tiny_test", "--checkpoint", str(ckpt), str(img), "--out",
                 str(tmp_path / "boxes"), "--score-thresh", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "0 box(es) with score >= 0.5 on 0 of 1 image(s)" in out and "kept no detection at all" in out
    # nothing to lower: --score-thresh 0 does not advise lowering it
    assert main(["detect", "predict", "retinanet_hlg_tiny_test", "--checkpoint", str(ckpt), str(img), "--out",
                 str(tmp_path / "boxes0"), "--score-thresh", "0.0"]) == 0
    out = capsys.readouterr().out
    assert "0 box(es) with score >= 0 on 0 of 1 image(s)" in out and "lower --score-thresh" not in out


def test_classify_test_ema_has_its_own_json(tmp_path, capsys):
    from setr.data.synthetic import write_image_folder
    from setr.models.hlg import HLG

    folder = write_image_folder(tmp_path / "imagenet", num_classes=2, n_train=2, n_val=2, size=32)
    model = HLG(embed_dims=(64, 128, 256, 512), num_heads=(2, 4, 8, 16), depths=(1, 1, 1, 1), num_classes=2)
    sd = model.state_dict()
    torch.save({"model": sd, "ema": {k: v + 0.0 for k, v in sd.items()}}, tmp_path / "epoch_1.pth")
    base = ["classify", "test", "hlg_tiny", "-c", str(tmp_path / "epoch_1.pth"), "--data-root", str(folder),
            "--img-size", "64", "--workers", "0"]
    assert main(base) == 0
    assert main(base + ["--ema"]) == 0
    plain = json.loads((tmp_path / "epoch_1_val_top1.json").read_text())
    ema = json.loads((tmp_path / "epoch_1_val_top1_ema.json").read_text())
    assert plain["ema"] is False and ema["ema"] is True


def test_benchmark_measures_cpu_peak_memory(capsys):
    assert main(["benchmark", DEMO, "--runs", "1", "--precision", "fp32", "--device", "cpu", "--json",
                 "--set", *TINY]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["memory_kind"].startswith("cpu_peak_rss") and r["peak_memory_mb"] > 10  # python + torch + the model


def test_info_json_shows_every_set_key_the_readme_mentions(capsys):
    readme = (ROOT / "README.md").read_text()
    keys = set(re.findall(r"\b((?:model|train|data)\.[a-z_]+(?:\.[a-z_]+)*)=", readme))
    assert {"data.workers", "data.dataset", "train.lr", "model.num_classes"} <= keys
    infos = []  # one preset of each task: the --set grammar is the same for the three
    for name in ("SETR_PUP_768x768_40k_cityscapes_bs_8", "hlg_tiny", "retinanet_hlg_tiny_test"):
        assert main(["info", name, "--json"]) == 0
        infos.append(json.loads(capsys.readouterr().out))

    def has(info, key):
        node = info
        for part in key.split("."):
            if not (isinstance(node, dict) and part in node):
                return False
            node = node[part]
        return True

    for key in sorted(keys):
        assert any(has(info, key) for info in infos), f"{key} not in setr info --json of any task's preset"
    assert has(infos[0], "train.lr") and has(infos[1], "train.mixup") and not has(infos[0], "train.mixup")


def test_pretrained_given_a_segmentation_checkpoint_suggests_load_from(ckpt, data, tmp_path, capsys):
    line = failed(train_argv(data, tmp_path / "w", "--pretrained", str(ckpt)), capsys)
    assert f"{ckpt}: a SETR segmentation checkpoint" in line and "--load-from" in line


def test_readme_error_section_shows_what_the_cli_prints(tmp_path, capsys, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Errors", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    lines = [ln for ln in block.strip().splitlines()]
    pairs = [(lines[i][2:].split(), lines[i + 1]) for i in range(0, len(lines), 2)]
    assert len(pairs) >= 3
    monkeypatch.chdir(tmp_path)
    for argv, expected in pairs[:2]:  # refused before any file is read
        assert argv[0] == "setr"
        with pytest.raises(SystemExit) if "argument" in expected else _no_raise():
            main(argv[1:])
        assert capsys.readouterr().err.strip() == expected


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
