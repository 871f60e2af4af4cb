"""The embedded default: the demo trains on generated shapes and clears its bar."""
import json

from setr.demo import run_demo


def test_demo_reaches_its_bar(tmp_path):
    # fewer iterations than `make demo` (1500) keeps the suite fast; the bar is the same
    metrics = run_demo(tmp_path, iters=400, progress=False)
    assert metrics["mIoU"] >= 0.80
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.80 <= saved["mIoU"] <= 1.0
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 6
