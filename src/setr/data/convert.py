"""Dataset conversion tools.

* Cityscapes: ``*_gtFine_polygons.json`` -> ``*_gtFine_labelTrainIds.png`` next to each file, drawn by
  cityscapesscripts' own ``json2labelImg`` (unlabelled and ignored classes -> 255), plus ``train.txt`` /
  ``val.txt`` lists of ``city/stem`` (as the original tool).
* Pascal Context: the original tool needs the Detail API (github ccvl/detail-api), which is not installable
  from a package index. We convert the official PASCAL-Context release instead (``trainval/<name>.mat`` files
  whose ``LabelMap`` indexes the 459 classes of ``labels.txt``): the 59 SETR classes are matched **by name** and
  numbered 1..59 in SETR's (alphabetical) order, every other label becomes 0 = background - the same
  60-class masks the Detail route produces. Writes ``SegmentationClassContext/<name>.png`` and
  ``ImageSets/SegmentationContext/{train,val}.txt`` (sorted), given the official train/val name lists.
"""
from __future__ import annotations

import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SetrError
from .classes import PASCAL_CONTEXT_CLASSES


def _cityscapes_one(json_path: str) -> str:
    from cityscapesscripts.preparation.json2labelImg import json2labelImg

    out = json_path.replace("_polygons.json", "_labelTrainIds.png")
    json2labelImg(json_path, out, "trainIds")
    return out


def convert_cityscapes(root: str | Path, gt_dir: str = "gtFine", out_dir: str | Path | None = None,
                       nproc: int = 1) -> list[Path]:
    root = Path(root)
    gt = root / gt_dir
    if not gt.is_dir():
        raise SetrError(f"{gt}: folder not found (expected the Cityscapes gtFine/ layout)")
    jsons = sorted(str(p) for p in gt.rglob("*_gtFine_polygons.json"))
    if not jsons:
        raise SetrError(f"{gt}: no *_gtFine_polygons.json files")
    if nproc > 1:
        with ProcessPoolExecutor(nproc) as pool:
            written = list(pool.map(_cityscapes_one, jsons, chunksize=16))
    else:
        written = [_cityscapes_one(j) for j in jsons]
    out_dir = Path(out_dir or root)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        split_dir = gt / split
        if split_dir.is_dir():
            stems = sorted(f"{p.parent.name}/{p.name.replace('_gtFine_polygons.json', '')}"
                           for p in split_dir.rglob("*_gtFine_polygons.json"))
            (out_dir / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return [Path(p) for p in written]


def read_context_labels(labels_txt: Path) -> dict[int, str]:
    """``labels.txt`` of the PASCAL-Context release: lines ``<index>: <name>``."""
    out = {}
    for line in labels_txt.read_text().splitlines():
        m = re.match(r"\s*(\d+)\s*[:\s]\s*(.+?)\s*$", line)
        if m:
            out[int(m.group(1))] = m.group(2).strip()
    if not out:
        raise SetrError(f"{labels_txt}: no '<index>: <name>' lines")
    return out


def context_lookup(labels: dict[int, str]) -> np.ndarray:
    """459-class index -> SETR's 60-class id (0 = background)."""
    ids = {name: i for i, name in enumerate(PASCAL_CONTEXT_CLASSES)}
    missing = [n for n in PASCAL_CONTEXT_CLASSES[1:] if n not in labels.values()]
    if missing:
        raise SetrError(f"labels.txt lacks the Pascal Context classes {', '.join(missing[:5])}")
    lut = np.zeros(max(labels) + 1, dtype=np.uint8)
    for idx, name in labels.items():
        lut[idx] = ids.get(name, 0)
    return lut


def convert_pascal_context(devkit: str | Path, context_dir: str | Path, train_list: str | Path | None = None,
                           val_list: str | Path | None = None) -> list[Path]:
    """``devkit``: ``VOCdevkit`` (or ``VOC2010``); ``context_dir``: the release with ``trainval/*.mat`` and
    ``labels.txt``; the split lists default to ``<context_dir>/{train,val}.txt``."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise SetrError("converting Pascal Context needs scipy (pip install scipy)") from None
    devkit, context_dir = Path(devkit), Path(context_dir)
    voc = devkit / "VOC2010" if (devkit / "VOC2010").is_dir() else devkit
    if not (voc / "JPEGImages").is_dir():
        raise SetrError(f"{voc / 'JPEGImages'}: folder not found (expected VOCdevkit/VOC2010)")
    mats = context_dir / "trainval"
    if not mats.is_dir():
        raise SetrError(f"{mats}: folder not found (expected the PASCAL-Context release: trainval/*.mat)")
    lut = context_lookup(read_context_labels(context_dir / "labels.txt"))
    out_dir = voc / "SegmentationClassContext"
    out_dir.mkdir(exist_ok=True)
    split_dir = voc / "ImageSets" / "SegmentationContext"
    split_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for split, given in (("train", train_list), ("val", val_list)):
        lst = Path(given) if given else context_dir / f"{split}.txt"
        if not lst.is_file():
            raise SetrError(f"{lst}: {split} list not found")
        names = sorted(n.strip() for n in lst.read_text().splitlines() if n.strip())
        for name in names:
            mat = mats / f"{name}.mat"
            if not mat.is_file():
                raise SetrError(f"{mat}: listed in {lst.name} but not found")
            label_map = loadmat(str(mat))["LabelMap"].astype(np.int64)
            if label_map.max() >= len(lut):
                raise SetrError(f"{mat}: label {int(label_map.max())} is not in labels.txt")
            path = out_dir / f"{name}.png"
            Image.fromarray(lut[label_map]).save(path)
            written.append(path)
        (split_dir / f"{split}.txt").write_text("\n".join(names) + "\n")
    return written
