"""Dependencies as users expect: a small base install, extras for what only some users need, one-line errors
naming the extra, and `make test` (-e ".[test]") pulling every extra."""
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
from PIL import Image

from setr.cli import main
from setr.extras import EXTRAS, missing_extra

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("cityscapesscripts", "pycocotools", "tensorboard", "scipy", "onnx", "onnxscript", "onnxruntime",
            "matplotlib")


def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(reqs):
    import re

    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_extras_and_test_pulls_them_all():
    extras = project()["optional-dependencies"]
    for name in ("cityscapes", "coco", "tensorboard", "export", "convert", "all", "test"):
        assert name in extras
    every = set().union(*(names(v) for k, v in extras.items() if k not in ("test", "all")))
    assert names(extras["all"]) == every
    assert every <= names(extras["test"])
    base = names(project()["dependencies"])
    assert not base & {"cityscapesscripts", "pycocotools", "tensorboard", "scipy", "onnx", "onnxruntime"}
    assert {"huggingface-hub", "opencv-python-headless", "torch", "timm", "safetensors"} <= base
    assert 'pip install -q -e ".[test]"' in (ROOT / "Makefile").read_text()
    assert set(EXTRAS) == set(OPTIONAL)
    for module, (extra, _) in EXTRAS.items():
        assert extra in extras and module.lower() in {n.replace("-", "") for n in names(extras[extra])} | {module}


def test_missing_extra_message():
    exc = ModuleNotFoundError("No module named 'pycocotools'", name="pycocotools")
    assert missing_extra(exc) == ("COCO detection data and evaluation needs the pycocotools package, an optional "
                                  "extra: pip install 'setr[coco]'")
    # re-raised from a worker process: only the message carries the name
    assert "setr[cityscapes]" in missing_extra(ImportError("Caught ...\nNo module named 'cityscapesscripts.helpers'"))
    assert missing_extra(ModuleNotFoundError("No module named 'foo'", name="foo")) is None


def test_detection_without_pycocotools_is_one_line(tmp_path, monkeypatch, capsys):
    for mod in [m for m in sys.modules if m == "pycocotools" or m.startswith("pycocotools.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # as if not installed
    from setr.detection.synthetic import write_coco

    write_coco(tmp_path / "coco", n_train=1, n_val=1, size=32)
    code = main(["detect", "test", "retinanet_hlg_tiny_test", "-c", str(tmp_path / "x.pth"), "--data-root",
                 str(tmp_path / "coco")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "pip install 'setr[coco]'" in err and err.startswith("setr detect: error:")


def test_base_install_predicts_and_shares_without_any_extra(tmp_path):
    """A fresh process where every optional module fails to import: presets, predict (and its summary),
    a pretrained folder round trip all work."""
    img = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(img)
    blocked = ", ".join(repr(m) for m in OPTIONAL)
    code = f"""
import sys, importlib.abc, importlib.machinery
class Block(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # importing any optional module fails as if it were not installed (probes by find_spec still answer)
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ({blocked}):
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named '{{spec.name}}'", name=spec.name)
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, Block())
from setr.cli import main
from setr import Segmenter
assert main(['presets']) == 0
assert main(['predict', 'setr_demo_pup_tiny_64x64_shapes', r'{img}', '--out', r'{tmp_path / 'out'}',
             '--no-progress', '--workers', '0', '--random-weights']) == 0
Segmenter.from_preset('setr_demo_pup_tiny_64x64_shapes').save_pretrained(r'{tmp_path / 'folder'}')
Segmenter.from_pretrained(r'{tmp_path / 'folder'}')
assert not [m for m in sys.modules if m.split('.')[0] in ({blocked})]
print('base ok')
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and "base ok" in r.stdout, r.stderr[-3000:]
    assert (tmp_path / "out" / "predict_summary.json").is_file()
