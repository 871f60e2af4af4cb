"""Check a training set (and the validation split evaluated during training) once, before the first iteration:
every image readable, every label map readable, single-channel, of its image's size, with values in the class
range or 255 (ignore).

A bad file costs one line naming it before any training, instead of a crash when the sampler draws it hours
later. The files are read in parallel (threads: PIL decodes outside the GIL) with a progress bar, and the
result is cached per file by size and modification time (``data_check.json`` in the work dir), so the next
run only looks at files that changed.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import SetrError

CACHE_NAME = "data_check.json"
CACHE_VERSION = 1


def _stat(path: Path | None) -> list[int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [int(st.st_size), int(st.st_mtime_ns)]


def check_sample(image: Path, mask: Path | None, num_classes: int, reduce_zero_label: bool = False) -> str | None:
    """None when the pair is usable for training, else a one-line problem that names the file."""
    try:
        with Image.open(image) as im:
            im.load()  # decode everything: a truncated file fails here, not at iteration 150
            size = im.size
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
        return f"{image}: not a readable image ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"
    if mask is None:
        return None
    try:
        with Image.open(mask) as im:
            labels = np.array(im)
    except Exception as exc:  # noqa: BLE001
        return f"{mask}: not a readable label map ({type(exc).__name__})"
    if labels.ndim != 2:
        return f"{mask}: label map must be single-channel class ids, got shape {labels.shape}"
    if labels.shape != (size[1], size[0]):
        return f"{mask}: label map is {labels.shape[1]}x{labels.shape[0]}, its image {image.name} is {size[0]}x{size[1]}"
    values = np.unique(labels)
    if values.size and (values.min() < 0 or values.max() > 255):
        return f"{mask}: label values {int(values.min())}..{int(values.max())} do not fit 0..255"
    values = values.astype(np.int64)
    if reduce_zero_label:  # 0 = "other" -> ignored, v -> v - 1
        values = np.array([v - 1 for v in values if v not in (0, 255)], dtype=np.int64)
        bad = values[values >= num_classes] + 1
        allowed = f"1..{num_classes}; 0 and 255 are ignored"
    else:
        bad = values[(values >= num_classes) & (values != 255)]
        allowed = f"0..{num_classes - 1}, 255 = ignore"
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (", ..." if bad.size > 8 else "")
        return f"{mask}: label values {shown} are outside the {num_classes} classes ({allowed})"
    return None


def _fingerprint(num_classes: int, reduce_zero_label: bool) -> str:
    return hashlib.sha1(f"v{CACHE_VERSION}:{num_classes}:{int(reduce_zero_label)}".encode()).hexdigest()[:12]


def _read_cache(path: Path | None, fingerprint: str) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
        return {}
    files = data.get("checked", {})
    return files if isinstance(files, dict) else {}


def _write_cache(path: Path, fingerprint: str, checked: dict) -> None:
    from ..io.atomic import atomic_write_text

    try:
        atomic_write_text(path, json.dumps({"fingerprint": fingerprint, "checked": checked}))
    except OSError:
        pass  # a cache we cannot write only costs the next run another check


def check_samples(samples: Sequence, num_classes: int, reduce_zero_label: bool = False,
                  cache: str | os.PathLike | None = None, progress: bool = True, workers: int | None = None,
                  what: str = "training set") -> dict:
    """Check every ``Sample(image, mask, name)``; raise ``SetrError`` naming the first bad file (and how many
    more fail). ``cache``: a JSON file remembering the files that passed (by size and mtime). Returns
    ``{"checked": n_read_now, "cached": n_skipped}``."""
    from tqdm import tqdm

    cache_path = Path(cache) if cache is not None else None
    fingerprint = _fingerprint(num_classes, reduce_zero_label)
    known = _read_cache(cache_path, fingerprint)
    stamps = {}
    todo = []
    for s in samples:
        key = str(Path(s.image).resolve())
        stamp = [_stat(Path(s.image)), _stat(Path(s.mask) if s.mask is not None else None)]
        stamps[key] = stamp
        if known.get(key) != stamp or stamp[0] is None:
            todo.append((key, s))
    problems: dict[int, str] = {}
    if todo:
        workers = workers or min(16, (os.cpu_count() or 2) * 2)
        order = {key: i for i, (key, _) in enumerate(todo)}
        with ThreadPoolExecutor(max_workers=workers) as pool, \
                tqdm(total=len(todo), desc=f"checking {what}", unit="img", disable=not progress, leave=False) as bar:
            futures = {pool.submit(check_sample, Path(s.image), Path(s.mask) if s.mask is not None else None,
                                   num_classes, reduce_zero_label): key for key, s in todo}
            for fut in as_completed(futures):
                problem = fut.result()
                bar.update(1)
                if problem:
                    problems[order[futures[fut]]] = problem
    bad_keys = {todo[i][0] for i in problems}
    passed = {key: stamp for key, stamp in stamps.items() if stamp[0] is not None and key not in bad_keys}
    if cache_path is not None and todo:
        # entries of other splits (the training set and its validation split share the file) stay
        _write_cache(cache_path, fingerprint, {**{k: v for k, v in known.items() if k not in bad_keys}, **passed})
    if problems:
        first = problems[min(problems)]
        more = len(problems) - 1
        raise SetrError(first + (f" (and {more} more bad file{'s' if more > 1 else ''} in the {what})" if more else ""))
    return {"checked": len(todo), "cached": len(samples) - len(todo)}


def check_dataset(dataset, cache_dir: str | os.PathLike | None = None, progress: bool = True,
                  what: str = "training set") -> dict:
    """``check_samples`` for a ``SegmentationDataset`` (its samples, class count and label convention); the
    cache goes to ``cache_dir/data_check.json``."""
    cache = Path(cache_dir) / CACHE_NAME if cache_dir is not None else None
    return check_samples(dataset.samples, dataset.num_classes, getattr(dataset, "reduce_zero_label", False),
                         cache=cache, progress=progress, what=what)


def check_training_data(name: str, root: str | os.PathLike, num_classes: int, cache_dir: str | os.PathLike | None,
                        progress: bool = True, validate: bool = True) -> dict:
    """The training split, and with ``validate`` the validation split that training evaluates (when the dataset
    has one), checked before the first iteration: a bad label in the validation split is one line naming the
    file now, not a crash at the first evaluation. Returns ``{"train": ..., "val": ...}`` (``check_samples``)."""
    from .datasets import build_dataset

    out = {"train": check_dataset(build_dataset(name, root, "train", num_classes), cache_dir, progress)}
    if validate:
        try:
            val = build_dataset(name, root, "val", num_classes)
        except SetrError:
            return out  # no validation split: training runs without evaluation (and says so)
        out["val"] = check_dataset(val, cache_dir, progress, what="validation split")
    return out
