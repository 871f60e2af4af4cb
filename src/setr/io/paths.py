"""Outputs kept apart from inputs: no command writes over, or later reads back, a file the user gave it.

* :func:`check_outputs_apart` (``setr predict``, ``setr export``, ``setr detect predict``, reports): before any work,
  an output folder equal to an input folder, or an output file that is (or would replace) one of the inputs, is
  refused in one line. An output folder *inside* an input folder is allowed: the input
  walk leaves it out (:func:`drop_written`), so a run never reads its own earlier outputs.
* :func:`drop_written`: the images found under the input folders, less the output folder and every file that an
  earlier run recorded as its output in a manifest (``predict_summary.json``'s ``"outputs"`` map) in the folder
  it wrote to.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import SetrError

WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (symbolic links resolved)."""
    p, f = _real(path), _real(folder)
    return p == f or f in p.parents


def check_outputs_apart(out: str | os.PathLike, inputs: Iterable[str | os.PathLike], option: str = "--out",
                        outputs: Sequence[str | os.PathLike] = ()) -> str | None:
    """Refuse (one-line :class:`SetrError`) an output location that would overwrite or swallow an input.

    ``out`` is an output folder or file. Refused: ``out`` equal to an input (file or folder), and any of the
    planned ``outputs`` paths equal to an input file (without ``outputs``: any input file directly in ``out``).
    Returns a note (to print) when ``out`` lies inside an input folder: allowed, and left out of the inputs."""
    o = _real(out)
    note = None
    for item in inputs:
        i = _real(item)
        if o == i:
            what = "folder" if i.is_dir() else "file"
            raise SetrError(f"{option} {out}: is the input {what} {item}; outputs would replace the inputs: "
                            f"choose another {option}")
        if i.is_dir():
            if i in o.parents:
                note = (f"{option} {out} is inside the input folder {item}: it is left out of the inputs "
                        "(outputs are never read back as images)")
        elif i.parent == o and not outputs:
            raise SetrError(f"{option} {out}: holds the input file {item}; outputs could replace it: "
                            f"choose another {option}")
    planned = {_real(p) for p in outputs}
    for item in inputs:
        if _real(item) in planned:
            raise SetrError(f"{option} {out}: an output would be written over the input {item}: "
                            f"choose another {option}")
    return note


def check_not_weights(inputs: Iterable[str | os.PathLike], what: str = "an image",
                      hint: str = "pass it with -c/--checkpoint") -> None:
    """A weights file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``, ``.ckpt``) given where ``what`` is expected
    is refused in one line that says where it belongs."""
    for item in inputs:
        p = Path(item)
        if p.suffix.lower() in WEIGHTS_SUFFIXES and not p.is_dir():
            raise SetrError(f"{p}: a weights file, not {what}: {hint}")


def recorded_outputs(folder: Path, manifest: str) -> set[Path]:
    """The files an earlier run recorded in ``folder/manifest`` (``{"outputs": {input: [output, ...]}}``)."""
    try:
        data = json.loads((folder / manifest).read_text())
    except (OSError, ValueError):
        return set()
    written = data.get("outputs") if isinstance(data, dict) else None
    if not isinstance(written, dict):
        return set()
    return {_real(folder / name) for names in written.values() if isinstance(names, list)
            for name in names if isinstance(name, str)}


def drop_written(paths: Sequence[Path], inputs: Iterable[str | os.PathLike], out: str | os.PathLike | None,
                 manifest: str) -> tuple[list[Path], int]:
    """``paths`` (found under ``inputs``) less those in the output folder ``out`` and those an earlier run
    recorded in a ``manifest`` file next to them. Files named on the command line are always kept. Returns the
    kept paths and how many were dropped."""
    named = {_real(i) for i in inputs if Path(i).is_file()}
    o = _real(out) if out is not None else None
    written: dict[Path, set[Path]] = {}
    kept = []
    for p in paths:
        r = _real(p)
        if r not in named:
            if o is not None and (r.parent == o or o in r.parents):
                continue
            folder = r.parent
            if folder not in written:
                written[folder] = recorded_outputs(folder, manifest) if (folder / manifest).is_file() else set()
            if r in written[folder]:
                continue
        kept.append(p)
    return kept, len(paths) - len(kept)
