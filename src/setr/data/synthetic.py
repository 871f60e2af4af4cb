"""Procedurally generated segmentation data: textured shapes on a textured background.

Nothing is downloaded. ``make_scene`` draws one image and its label map; the ``write_*`` functions lay a
dataset out in each real on-disk layout (folder, Cityscapes, ADE20K, Pascal Context), so the demo and the
end-to-end tests run the same loaders users point at real data. Shapes are polygons, which also gives the
Cityscapes ``*_gtFine_polygons.json`` files for the conversion tool.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DEMO_CLASSES = ("background", "stripes", "checker", "dots", "diagonal")
# per class: base RGB colour and texture
_COLOURS = [(110, 110, 100), (220, 60, 50), (50, 170, 60), (60, 80, 220), (230, 200, 40), (170, 60, 200)]
_TEXTURES = ["noise", "stripes", "checker", "dots", "diagonal", "rings"]


def _texture(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w) float in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(5, 8)
    phase = rng.uniform(0, period)
    if kind == "stripes":
        t = (np.sin(2 * np.pi * (yy + phase) / period) > 0).astype(np.float32)
    elif kind == "checker":
        t = (((xx + phase) // (period / 1.5) + (yy + phase) // (period / 1.5)) % 2).astype(np.float32)
    elif kind == "dots":
        t = ((np.sin(2 * np.pi * (xx + phase) / period) * np.sin(2 * np.pi * (yy + phase) / period)) > 0.4)
        t = t.astype(np.float32)
    elif kind == "diagonal":
        t = (np.sin(2 * np.pi * (xx + yy + phase) / period) > 0).astype(np.float32)
    elif kind == "rings":
        t = (np.sin(np.hypot(xx - w / 2, yy - h / 2) / period * 2 * np.pi) > 0).astype(np.float32)
    else:
        t = rng.random((h, w)).astype(np.float32) * 0.6
    return t


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    n = {"triangle": 3, "square": 4, "pentagon": 5, "circle": 28}[kind]
    return [(cx + r * math.cos(angle + 2 * math.pi * i / n), cy + r * math.sin(angle + 2 * math.pi * i / n))
            for i in range(n)]


def make_scene(rng: np.random.Generator, height: int, width: int, num_classes: int = 5,
               max_shapes: int = 3) -> tuple[np.ndarray, np.ndarray, list[tuple[int, list]]]:
    """One image (H, W, 3) uint8, its label map (H, W) uint8 (0 = background) and the polygons drawn."""
    if not 2 <= num_classes <= len(_TEXTURES):
        raise ValueError(f"num_classes must be in 2..{len(_TEXTURES)}")
    mask_img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask_img)
    polygons = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        cls = int(rng.integers(1, num_classes))
        r = rng.uniform(0.18, 0.35) * min(height, width)
        cx, cy = rng.uniform(r * 0.5, width - r * 0.5), rng.uniform(r * 0.5, height - r * 0.5)
        kind = ["triangle", "square", "pentagon", "circle"][int(rng.integers(4))]
        pts = _polygon(kind, cx, cy, r, rng.uniform(0, 2 * math.pi))
        draw.polygon(pts, fill=cls)
        polygons.append((cls, pts))
    mask = np.asarray(mask_img).copy()
    img = np.zeros((height, width, 3), dtype=np.float32)
    for cls in range(num_classes):
        sel = mask == cls
        if not sel.any():
            continue
        tex = _texture(_TEXTURES[cls], height, width, rng)
        base = np.array(_COLOURS[cls], dtype=np.float32) * rng.uniform(0.85, 1.15)
        layer = base[None, None] * (0.55 + 0.45 * tex[..., None])
        img[sel] = layer[sel]
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask, polygons


def _scenes(n: int, size: tuple[int, int], num_classes: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield i, make_scene(rng, size[0], size[1], num_classes)


def write_folder(root: str | Path, n_train: int = 8, n_val: int = 4, size=(64, 64), num_classes: int = 5,
                 seed: int = 0, class_names=None) -> Path:
    """``images/{train,val}/*.png``, ``masks/{train,val}/*.png``, ``classes.txt``."""
    root = Path(root)
    names = list(class_names or DEMO_CLASSES[:num_classes] if num_classes <= len(DEMO_CLASSES)
                 else [f"class_{i}" for i in range(num_classes)])
    for split, n, s in (("train", n_train, seed), ("val", n_val, seed + 1000)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for i, (img, mask, _) in _scenes(n, size, num_classes, s):
            Image.fromarray(img).save(root / "images" / split / f"{split}_{i:04d}.png")
            Image.fromarray(mask).save(root / "masks" / split / f"{split}_{i:04d}.png")
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root


# synthetic class k -> Cityscapes trainId (road, car, person, vegetation, building, sky)
CITYSCAPES_TRAIN_IDS = (0, 13, 11, 8, 2, 10)


def write_cityscapes(root: str | Path, n_train: int = 4, n_val: int = 2, size=(64, 128), num_classes: int = 5,
                     seed: int = 0, cities=("aachen", "bremen")) -> Path:
    """``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and ``gtFine/...`` with ``_labelTrainIds``,
    ``_labelIds`` and ``_polygons.json`` files, as the official release plus its conversion script give."""
    from cityscapesscripts.helpers.labels import trainId2label

    root = Path(root)
    to_train = np.full(256, 255, dtype=np.uint8)
    to_id = np.zeros(256, dtype=np.uint8)
    for k in range(num_classes):
        to_train[k] = CITYSCAPES_TRAIN_IDS[k]
        to_id[k] = trainId2label[CITYSCAPES_TRAIN_IDS[k]].id
    for split, n, s in (("train", n_train, seed), ("val", n_val, seed + 1000)):
        for i, (img, mask, polys) in _scenes(n, size, num_classes, s):
            city = cities[i % len(cities)]
            stem = f"{city}_{i:06d}_000019"
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            gt = root / "gtFine" / split / city
            gt.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            Image.fromarray(to_train[mask]).save(gt / f"{stem}_gtFine_labelTrainIds.png")
            Image.fromarray(to_id[mask]).save(gt / f"{stem}_gtFine_labelIds.png")
            h, w = size
            objects = [{"label": trainId2label[CITYSCAPES_TRAIN_IDS[0]].name,
                        "polygon": [[0, 0], [w, 0], [w, h], [0, h]]}]
            objects += [{"label": trainId2label[CITYSCAPES_TRAIN_IDS[c]].name,
                         "polygon": [[round(x, 2), round(y, 2)] for x, y in pts]} for c, pts in polys]
            (gt / f"{stem}_gtFine_polygons.json").write_text(
                json.dumps({"imgHeight": h, "imgWidth": w, "objects": objects}))
    return root


def write_ade20k(root: str | Path, n_train: int = 4, n_val: int = 2, size=(64, 80), num_classes: int = 5,
                 seed: int = 0) -> Path:
    """``ADEChallengeData2016/{images,annotations}/{training,validation}``; annotation = class + 1 (0 = other)."""
    root = Path(root) / "ADEChallengeData2016"
    for split, n, s in (("training", n_train, seed), ("validation", n_val, seed + 1000)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        tag = "train" if split == "training" else "val"
        for i, (img, mask, _) in _scenes(n, size, num_classes, s):
            Image.fromarray(img).save(root / "images" / split / f"ADE_{tag}_{i:08d}.jpg", quality=95)
            Image.fromarray((mask + 1).astype(np.uint8)).save(root / "annotations" / split / f"ADE_{tag}_{i:08d}.png")
    return root


def write_pascal_context(root: str | Path, n_train: int = 4, n_val: int = 2, size=(64, 80), num_classes: int = 5,
                         seed: int = 0) -> Path:
    """``VOCdevkit/VOC2010/{JPEGImages,SegmentationClassContext,ImageSets/SegmentationContext}``."""
    root = Path(root) / "VOCdevkit" / "VOC2010"
    for sub in ("JPEGImages", "SegmentationClassContext", "ImageSets/SegmentationContext"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("val", n_val, seed + 1000)):
        names = []
        for i, (img, mask, _) in _scenes(n, size, num_classes, s):
            name = f"2008_{s + i:06d}"
            Image.fromarray(img).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
            Image.fromarray(mask).save(root / "SegmentationClassContext" / f"{name}.png")
            names.append(name)
        (root / "ImageSets" / "SegmentationContext" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


WRITERS = {"folder": write_folder, "cityscapes": write_cityscapes, "ade20k": write_ade20k,
           "pascal_context": write_pascal_context}


def write_image_folder(root: str | Path, num_classes: int = 4, n_train: int = 16, n_val: int = 8, size: int = 64,
                       seed: int = 0) -> Path:
    """An ImageNet-style ``train/<class>/*.png`` + ``val/<class>/*.png`` tree: class k = colour k (jittered) with
    texture k, on a noisy image."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for k in range(num_classes):
            d = root / split / f"class_{k}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                tex = _texture(_TEXTURES[1 + k % (len(_TEXTURES) - 1)], size, size, rng)
                colour = np.array(_COLOURS[k % len(_COLOURS)], dtype=np.float64) + rng.uniform(-25, 25, 3)
                img = colour[None, None] * (0.5 + 0.5 * tex[..., None]) + rng.normal(0, 8, (size, size, 3))
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"{split}_{k}_{i:04d}.png")
    return root
