"""A generated COCO-format detection dataset: high-contrast shapes (class 0 rectangle, 1 ellipse, 2 triangle,
then further colours) on textured backgrounds, written as real JPEG files and real ``instances_*.json``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SHAPES = ("rectangle", "ellipse", "triangle")
COLOURS = ((230, 30, 30), (30, 70, 230), (30, 200, 40), (240, 220, 20), (200, 30, 220), (20, 220, 220))


def _category_names(num_classes: int) -> list[str]:
    return [f"{SHAPES[i % len(SHAPES)]}{'' if i < len(SHAPES) else i // len(SHAPES)}" for i in range(num_classes)]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A dim grey gradient with low-amplitude noise and stripes."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a, b = rng.uniform(-30, 30, 2)
    base = 90 + a * xx + b * yy + 12 * np.sin(2 * np.pi * rng.uniform(2, 6) * (xx + yy * rng.uniform(-1, 1)))
    img = base[..., None] + rng.normal(0, 8, (size, size, 3))
    return np.clip(img, 0, 255)


def _draw(img, draw, kind: int, box, colour) -> None:
    x1, y1, x2, y2 = box
    shape = SHAPES[kind % len(SHAPES)]
    if shape == "rectangle":
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=colour)
    elif shape == "ellipse":
        draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=colour)
    else:
        draw.polygon([((x1 + x2) / 2, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)], fill=colour)


def write_coco(root: str | Path, n_train: int = 64, n_val: int = 16, size: int = 128, num_classes: int = 2,
               seed: int = 0, max_objects: int = 2, min_frac: float = 0.3, max_frac: float = 0.6) -> Path:
    """Write ``root/annotations/instances_{train,val}2017.json`` and ``root/{train,val}2017/*.jpg``.

    Every image is ``size`` x ``size`` with 1..``max_objects`` non-overlapping-ish shapes whose sides are
    ``min_frac``..``max_frac`` of the image. Category ids start at 1 and skip even numbers above 1 (1, 3, 5, ...)
    so that code relying on contiguous ids is caught. Returns ``root``.
    """
    from PIL import Image, ImageDraw

    root = Path(root)
    rng = np.random.default_rng(seed)
    cat_ids = [1 + 2 * i for i in range(num_classes)]
    categories = [{"id": cid, "name": name, "supercategory": "shape"}
                  for cid, name in zip(cat_ids, _category_names(num_classes))]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id, img_id = 1, 1
    for split, n in (("train", n_train), ("val", n_val)):
        img_dir = root / f"{split}2017"
        img_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for _ in range(n):
            img = Image.fromarray(_background(rng, size).astype(np.uint8))
            draw = ImageDraw.Draw(img)
            placed: list[tuple[int, int, int, int]] = []
            for _ in range(int(rng.integers(1, max_objects + 1))):
                for _attempt in range(20):
                    bw, bh = (int(rng.uniform(min_frac, max_frac) * size) for _ in range(2))
                    x1, y1 = int(rng.integers(0, size - bw + 1)), int(rng.integers(0, size - bh + 1))
                    box = (x1, y1, x1 + bw, y1 + bh)
                    if all(_iou(box, p) < 0.1 for p in placed):
                        break
                else:
                    continue
                placed.append(box)
                k = int(rng.integers(0, num_classes))
                _draw(img, draw, k, box, COLOURS[k % len(COLOURS)])
                annotations.append({"id": ann_id, "image_id": img_id, "category_id": cat_ids[k],
                                    "bbox": [float(x1), float(y1), float(bw), float(bh)],
                                    "area": float(bw * bh), "iscrowd": 0})
                ann_id += 1
            name = f"{img_id:012d}.jpg"
            img.save(img_dir / name, quality=95)
            images.append({"id": img_id, "file_name": name, "width": size, "height": size})
            img_id += 1
        data = {"info": {"description": "setr synthetic COCO", "version": "1.0"}, "licenses": [],
                "images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(data))
    return root


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0
