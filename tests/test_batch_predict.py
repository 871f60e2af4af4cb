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
    assert output_stems(paths) == ["img", "b_img", "b_img_2", "other"]


def test_workers_decode_and_batches_group_equal_sizes(images, tmp_path, monkeypatch):
    torch.manual_seed(0)
    seg = Segmenter.from_preset(DEMO, precision="fp32")
    one = predict_files(seg, images, tmp_path / "one", workers=0, progress=False)
    assert [p.name for p in one["written"]] == ["img_0.png", "img_1.png", "img_2.png", "img_3.png", "img_4.png",
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
    # loader batches [0 1 2] [3 4 5] [6]: equal-size runs (64,64)x2 | (48,80) | (64,64) | (50,70) | (64,64) | (40,40)
    assert batch_sizes == [2, 1, 1, 1, 1, 1]
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
    from setr.presets import get_preset

    preset = get_preset(DEMO)
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
                 "--no-progress", "--workers", "0"])
    captured = capsys.readouterr()
    assert code == 1
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "c.png").is_file()
    assert not (tmp_path / "out" / "b.png").exists()
    assert "skipped" in captured.err and "b.png" in captured.err
    summary = json.loads((tmp_path / "out" / "predict_summary.json").read_text())
    assert summary["images"] == 2 and [f["path"] for f in summary["failed"]] == [str(folder / "b.png")]
    assert "1 image(s) could not be read and were skipped: b.png" in captured.out
