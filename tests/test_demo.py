"""The embedded default: the demo trains on generated shapes and clears its bar."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from setr.demo import run_demo


def test_demo_reaches_its_bar(tmp_path):
    # exactly what `make demo` runs (the preset's 200 iterations)
    metrics = run_demo(tmp_path, progress=False)
    assert metrics["mIoU"] >= 0.80 and metrics["iterations"] == 200
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.80 <= saved["mIoU"] <= 1.0
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 6


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
def test_make_demo_installs_the_base_package_and_make_test_everything(tmp_path):
    """`make demo` then `make test`, and the other way round, on one .venv (a stand-in python records the calls)."""
    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "Makefile", tmp_path)
    shutil.copy(root / "pyproject.toml", tmp_path)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "setr"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{tmp_path}/calls"\n')
        (bin_dir / name).chmod(0o755)

    def make(target: str) -> list[str]:
        calls = tmp_path / "calls"
        calls.unlink(missing_ok=True)
        subprocess.run(["make", "-s", target], cwd=tmp_path, check=True, capture_output=True)
        return calls.read_text().splitlines() if calls.exists() else []

    demo = make("demo")
    assert "python -m pip install -q -e ." in demo and not any(".[test]" in c for c in demo)
    assert demo[-1] == "setr demo --work-dir work_dirs/demo"
    test = make("test")
    assert "python -m pip install -q -e .[test]" in test and test[-1].startswith("python -m pytest")
    assert make("demo") == ["setr demo --work-dir work_dirs/demo"]  # nothing installed again
    assert make("test") == [test[-1]]


def test_demo_threads_follow_omp_num_threads_else_the_free_cores(monkeypatch):
    import setr.demo as demo

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert demo.demo_threads() == (3, "3 thread(s), from OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(demo, "physical_cores", lambda: 4)
    monkeypatch.setattr(demo.os, "getloadavg", lambda: (9.0, 9.0, 9.0))  # a busy machine: one thread
    n, why = demo.demo_threads()
    assert n == 1 and why == "1 thread(s): 4 physical core(s), load average 9.0 (set OMP_NUM_THREADS=N to choose)"
    monkeypatch.setattr(demo.os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    assert demo.demo_threads()[0] == 3
    monkeypatch.setattr(demo.os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # idle: every physical core
    assert demo.demo_threads()[0] == 4
