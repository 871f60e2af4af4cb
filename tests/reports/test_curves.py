"""Training curves: what `setr plot` reads from work dirs (a resumed run's records, validation points), the
PNG and HTML it writes for several runs, and the picture the training loop leaves in its work dir."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from setr.cli import main
from setr.reports.curves import append_validation, read_run

pytestmark = pytest.mark.usefixtures("one_thread")


def _write_run(wd, iters, heads=("decode.loss_seg", "aux_0.loss_seg"), groups=("backbone", "heads"), scale=1.0):
    wd.mkdir(parents=True, exist_ok=True)
    with open(wd / "metrics.jsonl", "w") as f:
        for it in range(iters):
            losses = {h: scale * (1.0 + j) / (it + 1) for j, h in enumerate(heads)}
            f.write(json.dumps({"iteration": it, "losses": losses, "total_loss": sum(losses.values()),
                                "lr": {g: 0.01 * (k + 1) * (1 - it / iters) + 1e-4 for k, g in enumerate(groups)}})
                    + "\n")


def test_read_run_losses_lrs_and_validation(tmp_path):
    wd = tmp_path / "run"
    _write_run(wd, 6)
    # a resumed run rewrote iterations 4.. : the last record of an iteration counts
    with open(wd / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"iteration": 4, "losses": {"decode.loss_seg": 9.0, "aux_0.loss_seg": 1.0},
                            "total_loss": 10.0, "lr": {"backbone": 0.5, "heads": 5.0}}) + "\n")
    append_validation(wd, 3, {"aAcc": 0.5, "mIoU": 0.25, "per_class": [{"IoU": 0.1}], "iteration": 3})
    append_validation(wd, 6, {"aAcc": 0.75, "mIoU": 0.5})
    append_validation(wd, 6, {"aAcc": 0.8, "mIoU": 0.6})  # evaluated again after a resume: replaces
    append_validation(wd, 9, {"model": {"top1": 71.5, "top5": 90.0}, "ema": None})
    run = read_run(wd)
    assert run.iterations == [1, 2, 3, 4, 5, 6]
    assert run.losses["decode.loss_seg"][4] == 9.0 and run.total[4] == 10.0 and run.lr["heads"][4] == 5.0
    assert run.losses["aux_0.loss_seg"][0] == 2.0
    assert run.val_iterations == [3, 6, 9]
    assert run.val["mIoU"][:2] == [0.25, 0.6] and math.isnan(run.val["mIoU"][2])
    assert run.val["model/top1"][2] == 71.5 and "per_class" not in run.val and "iteration" not in run.val
    # evaluation at iteration 3 again (a resume from iteration 2): the later points are gone
    append_validation(wd, 3, {"mIoU": 0.3})
    assert read_run(wd).val_iterations == [3]


def test_final_metrics_json_is_one_point_without_a_validation_log(tmp_path):
    wd = tmp_path / "old"
    _write_run(wd, 4)
    (wd / "metrics.json").write_text(json.dumps({"mIoU": 0.7, "aAcc": 0.9, "per_class": []}))
    run = read_run(wd)
    assert run.val_iterations == [4] and run.val == {"mIoU": [0.7], "aAcc": [0.9]}


def test_plot_several_runs(tmp_path, capsys):
    a, b = tmp_path / "a" / "demo", tmp_path / "b" / "demo"
    _write_run(a, 20)
    _write_run(b, 30, heads=("loss_cls", "loss_bbox"), groups=("lr",), scale=2.0)
    append_validation(a, 10, {"mIoU": 0.4})
    out = tmp_path / "cmp"
    assert main(["plot", str(a), str(b), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out / 'curves.png'} and {out / 'curves.html'}"
    png = Image.open(out / "curves.png")
    assert png.size == (1800, 420)  # three panels: losses, learning rates, validation
    page = (out / "curves.html").read_text()
    assert page.count('class="run"') == 2 and "demo (1)" in page and "demo (2)" in page
    assert 'src="data:image/png;base64,' in page
    # one run: the pictures go into its work dir; no validation panel without validation points
    assert main(["plot", str(b)]) == 0
    assert Image.open(b / "curves.png").size == (1200, 420)


def test_plot_errors_are_one_line(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.strip() == f"setr plot: error: {tmp_path / 'missing'}: work dir not found"
    assert main(["plot", str(tmp_path)]) == 1
    assert "no metrics.jsonl (written by `setr train` into its work dir)" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"iteration": 0, "losses": {}}\nnot json\n{"iteration": 1}\n')
    assert main(["plot", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"setr plot: error: {tmp_path / 'metrics.jsonl'}: line 2 is not JSON"


def test_training_writes_curves_and_validation_points(tmp_path):
    from helpers import tiny_sets
    from setr.data.synthetic import write_folder
    from setr.presets import get as get_preset

    name = "setr_demo_pup_tiny_64x64_shapes"
    root = write_folder(tmp_path / "data", n_train=2, n_val=1, size=(32, 32))
    sets = tiny_sets(get_preset(name), crop=32, depth=2) + ["train.iters=4", "train.eval_interval=2",
                                                             "train.checkpoint_interval=4"]
    wd = tmp_path / "work"
    assert main(["train", name, "--data-root", str(root), "--work-dir", str(wd), "--no-progress", "--device", "cpu",
                 "--set", *sets]) == 0
    val = [json.loads(line) for line in (wd / "val_metrics.jsonl").read_text().splitlines()]
    assert [v["iteration"] for v in val] == [2, 4] and set(val[0]) == {"iteration", "aAcc", "mIoU", "mAcc"}
    final = json.loads((wd / "metrics.json").read_text())
    assert val[-1]["mIoU"] == pytest.approx(final["mIoU"])
    png = np.asarray(Image.open(wd / "curves.png").convert("RGB"))
    assert png.shape == (420, 1800, 3) and png.std() > 0


def test_without_matplotlib_one_line_names_the_extra(tmp_path, monkeypatch, capsys):
    import sys

    from setr.reports.curves import write_work_dir_curves

    _write_run(tmp_path, 3)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert main(["plot", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == ("setr plot: error: Report pages and training curves needs the "
                                               "matplotlib package, an optional extra: pip install 'setr[report]'")
    notes = []

    class Log:
        info = notes.append

    assert write_work_dir_curves(tmp_path, Log) is None  # the end of training goes on, with one line in the log
    assert notes == [f"no curves.png in {tmp_path}: needs matplotlib: pip install 'setr[report]'"]
