"""The package's shape: no import cycle or upward import, and the README's map names exactly what is there."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "setr"


def test_no_import_cycle_and_no_upward_import():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_layers.py")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^\d+ modules, 0 problem\(s\)$", proc.stdout, re.M), proc.stdout
    assert "allowed upward import" not in proc.stdout  # no whitelist: the model classes reach nothing above them


def _readme_map() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Where things live")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def test_readme_map_matches_the_tree():
    section = _readme_map()
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    first_cells = " ".join(line.split("|")[1] for line in rows)
    named = set(re.findall(r"`([\w.]+/?)`", first_cells))
    here = {p.name + ("/" if p.is_dir() else "") for p in SRC.iterdir()
            if p.name not in ("__init__.py", "__main__.py", "py.typed", "__pycache__")}
    assert named == here, (f"in the tree but not in the README map: {sorted(here - named)}; "
                           f"in the map but not in the tree: {sorted(named - here)}")
    # the files a row names inside a folder exist there
    for line in rows:
        folder = re.match(r"\| `(\w+)/` \|", line)
        if folder:
            for name in re.findall(r"`(\w+\.py)`", line.split("|")[2]):
                assert (SRC / folder.group(1) / name).is_file(), f"README map: {folder.group(1)}/{name} is not there"


def test_tests_mirror_the_package():
    """A module's tests are where a newcomer looks: tests/<folder>/ for src/setr/<folder>/ (shared helpers in
    tests/helpers.py, fixtures in conftest.py)."""
    tests = ROOT / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and p.name not in ("fixtures", "__pycache__")}
    package = {p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= package, f"test folders without a package folder: {sorted(folders - package)}"
    assert (tests / "test_inference.py").is_file() and (tests / "helpers.py").is_file()
    conftest = (tests / "conftest.py").read_text()
    assert "def tiny_config" not in conftest  # helpers live in helpers.py, imported as `from helpers import ...`
    needle = "from " + "conftest import"  # spelled apart so this file does not match itself
    importers = [p.relative_to(tests) for p in tests.rglob("*.py") if needle in p.read_text()]
    assert not importers, f"import helpers from tests/helpers.py, not conftest: {importers}"
