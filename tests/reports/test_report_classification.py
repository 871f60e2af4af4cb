"""`setr classify test --report DIR`: per-class accuracy, the confusion matrix and the most confident mistakes,
from the same single evaluation pass (the numbers agree with the command's top-1)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from setr.cli import main
from setr.reports.classification import ClassificationReport

pytestmark = pytest.mark.usefixtures("one_thread")


def test_counts_and_most_confident_mistakes(tmp_path):
    rep = ClassificationReport(["cat", "dog", "fox"], worst=2)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.05, 0.9, 0.05], [0.3, 0.3, 0.4]])
    rep.add(probs, [0, 1, 1, 2, 2], [f"im{i}.png" for i in range(5)])
    assert rep.confusion.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert [(m["path"], m["true"], m["predicted"]) for m in rep.worst] == [("im3.png", "fox", "dog"),
                                                                           ("im2.png", "dog", "cat")]
    assert rep.worst[0]["confidence"] == pytest.approx(0.9) and rep.worst[0]["true_probability"] == pytest.approx(0.05)


def test_classify_test_report(tmp_path, capsys):
    import timm
    import torch

    from setr.data.synthetic import write_image_folder

    root = write_image_folder(tmp_path / "data", num_classes=3, n_train=1, n_val=3, size=32)
    model = timm.create_model("hlg_tiny", num_classes=3)
    torch.save(model.state_dict(), tmp_path / "hlg.pth")
    out = tmp_path / "rep"
    assert main(["classify", "test", "hlg_tiny", "-c", str(tmp_path / "hlg.pth"), "--data-root", str(root),
                 "--img-size", "32", "--workers", "0", "--batch-size", "4", "--json", str(tmp_path / "m.json"),
                 "--report", str(out), "--report-images", "2"]) == 0
    assert f"report written to {out / 'report.html'}" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "m.json").read_text())
    rep = json.loads((out / "report.json").read_text())
    cm = np.array(rep["confusion_matrix"]["counts"])
    assert cm.sum() == 9 and cm.sum(1).tolist() == [3, 3, 3]
    assert 100 * np.trace(cm) / 9 == pytest.approx(metrics["top1"])  # the report saw the very same predictions
    assert rep["metrics"]["top1"] == metrics["top1"] and rep["meta"]["preset"] == "hlg_tiny"
    wrong = 9 - int(np.trace(cm))
    assert len(rep["worst_images"]) == min(2, wrong)
    page = (out / "report.html").read_text()
    assert page.count('class="class-row"') == 3 and page.count('class="gallery-item"') == min(2, wrong)
    assert main(["classify", "test", "hlg_tiny", "-c", str(tmp_path / "hlg.pth"), "--data-root", str(root),
                 "--report", str(root / "val")]) == 1
    assert "lies inside the input folder --data-root" in capsys.readouterr().err
