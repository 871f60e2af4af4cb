"""COCO detection data: ``<root>/annotations/instances_{split}2017.json`` + ``<root>/{split}2017/*.jpg``.

Each item is ``(image, target)``: ``image`` a float CHW tensor in [0, 1] at its original size, ``target`` a dict with
``boxes`` (xyxy, pixels, float32), ``labels`` (contiguous 0 .. C-1, int64), ``image_id``, ``orig_size``.
Boxes are read from COCO xywh. Evaluation splits clip them to the image and drop those with zero width or
height after clipping; the training split (``train=True``) reads them as mmdet's ``CocoDataset`` does: unclipped
(the training pipeline clips after resizing), dropped when they miss the image or are under 1 px wide or high, and
images without boxes are skipped (``filter_empty_gt``). Either way one counted warning per dataset. ``iscrowd``
annotations are ignored in training (as mmdet does). Training images go through :mod:`.train_pipeline`
(``annotations(i)`` and ``image_path(i)``); ``__getitem__`` gives the float image for the older callers.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import torch

from ..errors import SetrError
from ..io.images import open_rgb_pil

log = logging.getLogger(__name__)


def load_coco_api(ann_file: Path):
    """A pycocotools ``COCO`` for a file, or a one-line SetrError when it is missing or not COCO JSON."""
    from pycocotools.coco import COCO

    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise SetrError(f"{ann_file}: annotation file not found")
    try:
        data = json.loads(ann_file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise SetrError(f"{ann_file}: not a COCO annotation file (invalid JSON: {exc})") from None
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or
               not isinstance(data.get(k), list)]
    if missing:
        raise SetrError(f"{ann_file}: not a COCO annotation file (no {', '.join(missing)} list)")
    try:
        for a in data["annotations"]:
            if not (isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4):
                raise KeyError(f"annotation {a.get('id')} has no [x, y, w, h] bbox")
            a["image_id"], a["category_id"]  # noqa: B018  (presence check)
        for im in data["images"]:
            im["id"], im["file_name"]  # noqa: B018
        for c in data["categories"]:
            c["id"], c["name"]  # noqa: B018
    except (KeyError, TypeError, AttributeError) as exc:
        raise SetrError(f"{ann_file}: not a COCO annotation file ({exc})") from None
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(torch.utils.data.Dataset):
    """COCO ``split`` ("train" / "val") of ``root`` in the standard 2017 layout.

    ``train=True`` drops images without usable boxes (mmdet ``filter_empty_gt``) and enables the flip.
    ``ann_file`` / ``img_dir`` override the layout.
    """

    def __init__(self, root: str | Path, split: str = "val", train: bool = False, flip_prob: float = 0.5,
                 ann_file: str | Path | None = None, img_dir: str | Path | None = None):
        root = Path(root)
        self.ann_file = Path(ann_file) if ann_file else root / "annotations" / f"instances_{split}2017.json"
        self.img_dir = Path(img_dir) if img_dir else root / f"{split}2017"
        if not self.img_dir.is_dir():
            raise SetrError(f"{self.img_dir}: image folder not found (expected the COCO layout "
                            f"<root>/{split}2017/*.jpg)")
        self.coco = load_coco_api(self.ann_file)
        self.train = train
        self.flip_prob = flip_prob if train else 0.0
        cats = sorted(self.coco.dataset["categories"], key=lambda c: c["id"])
        if not cats:
            raise SetrError(f"{self.ann_file}: no categories")
        self.cat_ids = [int(c["id"]) for c in cats]  # label i <-> COCO category id cat_ids[i]
        self.class_names = [str(c["name"]) for c in cats]
        self.cat_to_label = {cid: i for i, cid in enumerate(self.cat_ids)}

        self.ids: list[int] = []
        self._targets: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        dropped = 0
        for img_id in sorted(self.coco.imgs):
            info = self.coco.imgs[img_id]
            path = self.img_dir / info["file_name"]
            if not path.is_file():
                raise SetrError(f"{self.ann_file}: image id {img_id} has no file {path}")
            w, h = float(info.get("width", 0)), float(info.get("height", 0))
            boxes, labels = [], []
            for a in self.coco.imgToAnns.get(img_id, []):
                if a.get("iscrowd", 0):
                    continue
                if a["category_id"] not in self.cat_to_label:
                    raise SetrError(f"{self.ann_file}: annotation {a.get('id')} has unknown category "
                                    f"{a['category_id']}")
                x, y, bw, bh = (float(v) for v in a["bbox"])
                x1, y1, x2, y2 = x, y, x + bw, y + bh
                if train:  # mmdet's CocoDataset: kept unclipped (the pipeline clips after resizing), dropped
                    # when it misses the image or is under 1 px wide or high
                    misses = w > 0 and h > 0 and max(0.0, min(x2, w) - max(x1, 0.0)) * max(0.0, min(y2, h) - max(y1, 0.0)) == 0
                    if misses or bw < 1 or bh < 1 or float(a.get("area", bw * bh)) <= 0:
                        dropped += 1
                        continue
                else:
                    if w > 0 and h > 0:  # clip to the image
                        x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
                        y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
                    if x2 - x1 <= 0 or y2 - y1 <= 0:
                        dropped += 1
                        continue
                boxes.append([x1, y1, x2, y2])
                labels.append(self.cat_to_label[a["category_id"]])
            if train and not boxes:
                continue
            self.ids.append(img_id)
            self._targets[img_id] = (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                     torch.tensor(labels, dtype=torch.int64))
        self.dropped_boxes = dropped
        if dropped:
            msg = (f"{self.ann_file}: dropped {dropped} boxes with zero area (after clipping to the image)" if not train
                   else f"{self.ann_file}: dropped {dropped} boxes outside the image or under 1 px (as mmdet)")
            warnings.warn(msg, stacklevel=2)
            log.warning(msg)
        if not self.ids:
            raise SetrError(f"{self.ann_file}: no images with usable boxes")

    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    @property
    def categories(self) -> list[dict]:
        return [{"id": c, "name": n} for c, n in zip(self.cat_ids, self.class_names)]

    def __len__(self) -> int:
        return len(self.ids)

    def annotations(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(boxes (n, 4) float32 xyxy in image pixels, labels (n,) int64) of item ``index``."""
        return self._targets[self.ids[index]]

    def image_path(self, index: int) -> Path:
        return self.img_dir / self.coco.imgs[self.ids[index]]["file_name"]

    def __getitem__(self, index: int):
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as TF

        img_id = self.ids[index]
        path = self.image_path(index)
        img = TF.pil_to_tensor(open_rgb_pil(path))
        boxes, labels = self._targets[img_id]
        h, w = img.shape[-2:]
        boxes = tv_tensors.BoundingBoxes(boxes.clone(), format="XYXY", canvas_size=(h, w))
        if self.flip_prob > 0 and torch.rand(()).item() < self.flip_prob:
            img, boxes = TF.horizontal_flip(tv_tensors.Image(img)), TF.horizontal_flip(boxes)
        image = TF.to_dtype(torch.as_tensor(img), torch.float32, scale=True)
        target = {"boxes": torch.as_tensor(boxes), "labels": labels.clone(), "image_id": img_id,
                  "orig_size": (int(h), int(w))}
        return image, target


def collate(batch):
    return tuple(zip(*batch))
