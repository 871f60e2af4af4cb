"""Batch prediction at scale: sharding over torchrun processes (gloo on CPU), decoding in DataLoader workers,
batches of equal-size images, the run summary."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from setr import Segmenter
from setr.batch_predict import SUMMARY_NAME, output_stems, predict_files, shard

DEMO = "setr_demo_pup_tiny_64x64_shapes"


def write_image(path, h, w, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def images(tmp_path):
    """7 images in two folders, two of them with the same file name, several sizes."""
    a, b = tmp_path / "imgs" / "a", tmp_path / "imgs" / "b"
    a.mkdir(parents=True)
    b.mkdir()
    sizes = [(64, 64), (64, 64), (48, 80), (64, 64), (50, 70)]
    for i, (h, w) in enumerate(sizes):
        write_image(a / f"img_{i}.png", h, w, seed=i)
    write_image(b / "img_0.png", 64, 64, seed=10)
    write_image(b / "z.jpg", 40, 40, seed=11)
    return [a, b]


def test_shard_covers_every_index_once():
    for n in (0, 1, 5, 7, 100):
        for world in (1, 2, 3, 8):
            parts = [list(shard(n, r, world)) for r in range(world)]
            assert sum(parts, []) == list(range(n))  # contiguous, in order, no overlap
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_output_stems_name_clashes_like_one_process():
    paths = [Path("x/a/img.png"), Path("x/b/img.png"), Path("x/b/img.jpg"), Path("x/c/other.png")]
    assert output_stems(paths) == ["a_img", "b_img", "img_jpg", "other"]
    # the names do not depend on the order of the inputs
    assert output_stems(paths[::-1]) == ["other", "img_jpg", "b_img", "a_img"]
    twins = [Path("odd/twin.png"), Path("odd/twin.jpg")]
    assert output_stems(twins) == ["twin_png", "twin_jpg"] and output_stems(twins[::-1]) == ["twin_jpg", "twin_png"]
    assert output_stems([Path("a/i.png"), Path("a/i.png"), Path("b/j.png")]) == ["i", "i_2", "j"]


def test_workers_decode_and_batches_group_equal_sizes(images, tmp_path, monkeypatch):
    torch.manual_seed(0)
    seg = Segmenter.from_preset(DEMO, precision="fp32")
    one = predict_files(seg, images, tmp_path / "one", workers=0, progress=False)
    assert [p.name for p in one["written"]] == ["a_img_0.png", "img_1.png", "img_2.png", "img_3.png", "img_4.png",
                                                "b_img_0.png", "z.png"]
    assert one["images"] == 7 and one["per_rank"] == [7] and one["processes"] == 1
    assert not (tmp_path / "one" / SUMMARY_NAME).exists()  # only when asked (the command asks)

    import setr.batch_predict as bp

    decoded_in = tmp_path / "pids"
    decoded_in.mkdir()
    real_read = bp.read_image

    def read_and_mark(path):
        (decoded_in / str(os.getpid())).touch()
        return real_read(path)

    monkeypatch.setattr(bp, "read_image", read_and_mark)
    batch_sizes = []
    real_inference = seg.model.inference_logits  # the network call per view (issue 21: logits, softmax streamed)

    def recording(x, *args, **kwargs):
        batch_sizes.append(x.shape[0])
        return real_inference(x, *args, **kwargs)

    monkeypatch.setattr(seg.model, "inference_logits", recording)
    batched = predict_files(seg, images, tmp_path / "batched", batch_size=3, workers=2, progress=False,
                            write_summary=True)
    pids = {int(p.name) for p in decoded_in.iterdir()}
    assert pids and os.getpid() not in pids  # decoded in the DataLoader's worker processes
    # smallest network input first (the demo's 64x64 test scale: 48x80 -> 38x64, 50x70 -> 46x64, then 40x40 and the
    # four 64x64 images, equal sizes together): loader batches [2 4 6] [0 1 3] [5]; equal-size runs 1 | 1 | 1 | 3 | 1
    assert batch_sizes == [1, 1, 1, 3, 1]
    summary = json.loads((tmp_path / "batched" / SUMMARY_NAME).read_text())
    assert summary["images"] == 7 and summary["per_rank"] == [7] and summary["batch_size"] == 3
    assert summary["seconds"] > 0 and summary["images_per_s"] == pytest.approx(7 / summary["seconds"], rel=0.01)
    assert [p.name for p in batched["written"]] == [p.name for p in one["written"]]  # same files, same order
    for p in one["written"]:
        a = np.asarray(Image.open(p))
        b = np.asarray(Image.open(tmp_path / "batched" / p.name))
        assert a.shape == b.shape and (a == b).mean() >= 0.999  # batched matmuls: at most rare argmax ties


def test_torchrun_two_cpu_processes_write_exactly_what_one_process_writes(images, tmp_path):
    from setr.model_files import save_model
    from setr.config import build_model
    from setr import presets

    preset = presets.get(DEMO)
    torch.manual_seed(0)
    ckpt = save_model(build_model(preset.model, with_aux=False), preset.model, tmp_path / "demo.safetensors")
    args = ["predict", DEMO, *map(str, images), "-c", str(ckpt), "--device", "cpu", "--precision", "fp32",
            "--no-progress", "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same arithmetic in every process
    single = subprocess.run([sys.executable, "-m", "setr", *args, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, timeout=600, env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    assert "wrote 7 label maps" in single.stdout
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "setr", *args, "--out", str(tmp_path / "two")],
                           capture_output=True, text=True, timeout=600, env=env)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert multi.stdout.count("wrote 7 label maps") == 1  # rank 0 reports, once

    def files(d):
        return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name != SUMMARY_NAME}

    one, two = files(tmp_path / "one"), files(tmp_path / "two")
    assert len(one) == 14 and sorted(one) == sorted(two)
    assert all(one[name] == two[name] for name in one), [n for n in one if one[n] != two[n]]

    s1 = json.loads((tmp_path / "one" / SUMMARY_NAME).read_text())
    s2 = json.loads((tmp_path / "two" / SUMMARY_NAME).read_text())
    assert (s1["images"], s1["per_rank"], s1["processes"]) == (7, [7], 1)
    assert (s2["images"], s2["per_rank"], s2["processes"]) == (7, [4, 3], 2)
    for s in (s1, s2):
        assert s["seconds"] > 0 and s["images_per_s"] == pytest.approx(s["images"] / s["seconds"], rel=0.01)


def test_an_unreadable_image_is_skipped_and_named(tmp_path, capsys):
    """One bad file in a folder costs that file, not the run: the rest is written, the failure is named in the
    summary, and the exit status is non-zero."""
    import json

    import numpy as np
    from PIL import Image

    from setr.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "c"):
        Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(folder / f"{name}.png")
    (folder / "b.png").write_bytes(b"this is not a png")
    code = main(["predict", "setr_demo_pup_tiny_64x64_shapes", str(folder), "--out", str(tmp_path / "out"),
                 "--no-progress", "--workers", "0", "--random-weights"])
    captured = capsys.readouterr()
    assert code == 1
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "c.png").is_file()
    assert not (tmp_path / "out" / "b.png").exists()
    assert "skipped" in captured.err and "b.png" in captured.err
    summary = json.loads((tmp_path / "out" / "predict_summary.json").read_text())
    assert summary["images"] == 2 and [f["path"] for f in summary["failed"]] == [str(folder / "b.png")]
    assert "1 image(s) could not be read and were skipped: b.png" in captured.out


# --------------------------------------------------------------------------------------------------- nothing lost
@pytest.fixture
def ckpt(tmp_path_factory):
    from setr.config import build_model
    from setr.model_files import save_model
    from setr.presets import get as get_preset

    cfg = get_preset(DEMO).model
    torch.manual_seed(0)
    return save_model(build_model(cfg, with_aux=False), cfg, tmp_path_factory.mktemp("ckpt") / "final.safetensors")


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"val_{i:04d}.png", 40, 48, seed=i)
    return folder


def run_predict(argv, capsys):
    from setr.cli import main

    code = main(["predict", DEMO, *map(str, argv), "--no-progress", "--workers", "0"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_out_equal_to_the_input_folder_is_refused_and_nothing_is_touched(photos, ckpt, capsys):
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    code, _, err = run_predict([photos, "-c", ckpt, "--out", photos], capsys)
    assert code == 1 and err.strip().count("\n") == 0
    assert err.strip() == (f"setr predict: error: --out {photos}: is the input folder {photos}; outputs would "
                           "replace the inputs: choose another --out")
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
    # an input file inside --out that an output would replace: refused too (x.png -> x.png)
    code, _, err = run_predict([photos / "val_0000.png", "-c", ckpt, "--out", photos], capsys)
    assert code == 1 and "an output would be written over the input" in err and str(photos / "val_0000.png") in err
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_out_inside_the_inputs_is_left_out_and_a_rerun_reads_only_the_inputs(photos, ckpt, tmp_path, capsys):
    out = photos / "pred"
    code, stdout, err = run_predict([photos, "-c", ckpt, "--out", out], capsys)
    assert code == 0 and "wrote 3 label maps" in stdout
    assert f"--out {out} is inside the input folder {photos}: it is left out of the inputs" in err
    first = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".png"}
    assert sorted(first) == ["val_0000.png", "val_0001.png", "val_0002.png"]
    code, stdout, err = run_predict([photos, "-c", ckpt, "--out", out], capsys)  # again: the same 3, the same maps
    assert code == 0 and "wrote 3 label maps" in stdout
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".png"} == first
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["outputs"] == {str(photos / f"val_{i:04d}.png"): [f"val_{i:04d}.png", f"val_{i:04d}_overlay.jpg"]
                                  for i in range(3)}
    # elsewhere: the files that run recorded in its summary are not inputs either
    code, stdout, err = run_predict([photos, "-c", ckpt, "--out", tmp_path / "other"], capsys)
    assert code == 0 and "wrote 3 label maps" in stdout
    assert "left out 6 file(s) written by an earlier run" in err
    assert sorted(p.name for p in (tmp_path / "other").glob("*.png")) == sorted(first)


def test_weights_where_an_image_goes_and_no_weights_at_all(photos, ckpt, tmp_path, capsys):
    code, _, err = run_predict([ckpt, photos, "--out", tmp_path / "o"], capsys)
    assert code == 1 and err.strip() == (f"setr predict: error: {ckpt}: a weights file, not an image: pass it "
                                         "with -c/--checkpoint")
    code, _, err = run_predict([photos, "--out", tmp_path / "o"], capsys)
    assert code == 1 and err.strip() == ("setr predict: error: no weights: pass the checkpoint with -c/--checkpoint "
                                         "(or --random-weights to try the pipeline with an untrained network)")
    assert not (tmp_path / "o").exists()  # a refused run leaves no folder behind
    code, stdout, err = run_predict([photos, "--out", tmp_path / "o", "--random-weights"], capsys)
    assert code == 0 and "--random-weights: predicting with an untrained network" in err


def test_twins_get_names_by_their_extension_and_the_summary_maps_them(tmp_path, ckpt, capsys):
    odd = tmp_path / "odd"
    odd.mkdir()
    write_image(odd / "twin.png", 30, 30, seed=1)
    write_image(odd / "twin.jpg", 30, 30, seed=2)
    write_image(odd / "solo.png", 30, 30, seed=3)
    code, _, _ = run_predict([odd, "-c", ckpt, "--out", tmp_path / "o"], capsys)
    assert code == 0
    summary = json.loads((tmp_path / "o" / SUMMARY_NAME).read_text())
    assert summary["outputs"] == {str(odd / "solo.png"): ["solo.png", "solo_overlay.jpg"],
                                  str(odd / "twin.jpg"): ["twin_jpg.png", "twin_jpg_overlay.jpg"],
                                  str(odd / "twin.png"): ["twin_png.png", "twin_png_overlay.jpg"]}
    assert all((tmp_path / "o" / n).is_file() for names in summary["outputs"].values() for n in names)


def test_a_large_image_is_announced_first_and_predicted_last(tmp_path, ckpt, capsys, monkeypatch):
    import setr.batch_predict as bp

    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a_big.png", 640, 700, seed=1)  # sorts first; ~27x the demo's reference (2x2 crops)
    for i in range(2):
        write_image(folder / f"b_{i}.png", 40, 40, seed=i)
    order, real_write = [], bp.write_outputs

    def recording(seg, image, labels, out, stem):
        order.append(stem)
        return real_write(seg, image, labels, out, stem)

    monkeypatch.setattr(bp, "write_outputs", recording)
    code, _, err = run_predict([folder, "-c", ckpt, "--out", tmp_path / "o"], capsys)
    assert code == 0 and order == ["b_0", "b_1", "a_big"]  # each written as soon as done, the small ones first
    line = next(x for x in err.splitlines() if "much larger than this preset's test scale" in x)
    assert f"1 image(s) much larger than this preset's test scale (largest {folder / 'a_big.png'}, 700x640)" in line
    assert "they are predicted last; --max-size N" in line and "s measured for one 128x128 image" in line
    # --max-size: the network sees at most 100 pixels on the longer side; the outputs keep the image's size
    code, _, err = run_predict([folder / "a_big.png", "-c", ckpt, "--out", tmp_path / "m", "--max-size", "100"],
                               capsys)
    assert code == 0 and "much larger" not in err
    assert np.asarray(Image.open(tmp_path / "m" / "a_big.png")).shape == (640, 700)
    assert json.loads((tmp_path / "m" / SUMMARY_NAME).read_text())["max_size"] == 100


def test_help_names_the_true_default_mode_and_a_foreign_preset_is_named(tmp_path, photos, capsys):
    from setr.cli import main
    from setr.config import build_model
    from setr.model_files import save_model
    from setr.overrides import apply_overrides
    from setr.presets import get as get_preset

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default: the preset's own test mode" in help_text and "whole for the demo preset" in help_text
    preset = apply_overrides(get_preset(DEMO), ["model.backbone.embed_dim=48"])
    other = save_model(build_model(preset.model, with_aux=False), preset.model, tmp_path / "other.safetensors")
    code, _, err = run_predict([photos, "-c", other, "--out", tmp_path / "o"], capsys)
    assert code == 0
    assert (f"warning: {other} was trained as another model than preset {DEMO} (backbone.embed_dim differ): "
            "predicting with the checkpoint's own configuration") in err
