"""Prediction files in the formats the official evaluation servers take.

* Cityscapes: trainIds -> labelIds (cityscapesscripts' own table, e.g. 0 -> 7 road, 18 -> 33 bicycle), a
  palettised PNG named ``<image basename>.png`` (``<city>_<seq>_<frame>_leftImg8bit.png``), flat.
* ADE20K: class + 1 (1..150; 0 would mean "other") as uint8 ``<basename>.png``.
* Anything else: the class ids as ``<basename>.png``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


class SubmissionWriter:
    def __init__(self, dataset: str | None, out_dir: str | Path):
        self.dataset = dataset
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []
        if dataset == "cityscapes":
            from cityscapesscripts.helpers.labels import labels, trainId2label

            self._lut = np.zeros(256, dtype=np.uint8)
            for train_id, label in trainId2label.items():
                if 0 <= train_id < 255:
                    self._lut[train_id] = label.id
            self._palette = [0] * (256 * 3)
            for label in labels:
                if 0 <= label.id < 256:
                    self._palette[3 * label.id:3 * label.id + 3] = list(label.color)

    def __call__(self, labels: np.ndarray, sample) -> Path:
        path = self.out_dir / f"{sample.name}.png"
        if self.dataset == "cityscapes":
            im = Image.fromarray(self._lut[labels.astype(np.uint8)], mode="P")
            im.putpalette(self._palette)
        elif self.dataset == "ade20k":
            im = Image.fromarray((labels.astype(np.uint16) + 1).astype(np.uint8))
        else:
            im = Image.fromarray(labels.astype(np.uint8))
        im.save(path)
        self.written.append(path)
        return path
