"""One-call inference: ``Segmenter.from_checkpoint(path).predict(image)`` -> label map at the image's size.

The test pipeline is the original's: resize to the preset's test scale (keep ratio), normalise with ImageNet
mean/std (RGB), whole or sliding-window inference, logits resized back to the input size, argmax. ``aug=True``
runs the multi-scale + flip test (softmax probabilities averaged over the views).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .config import ModelConfig, build_model
from .data.classes import classes_and_palette
from .data.specs import ms_sizes, test_size
from .errors import SetrError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------- images
def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    path = Path(path)
    if not path.is_file():
        raise SetrError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
        raise SetrError(f"{path}: not a readable image ({type(exc).__name__})") from None


def find_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image paths; every input must yield images."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            imgs = sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            if not imgs:
                raise SetrError(f"{p}: folder contains no images ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(imgs)
        elif p.is_file():
            found.append(p)
        else:
            raise SetrError(f"{p}: no such file or folder")
    return found


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 on 0..255."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float()


def resize_image(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of a 0..255 image, rounded like the original's uint8 OpenCV resize."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False).round_().clamp_(0, 255)


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)[:256]
    return table[labels.astype(np.int64).clip(0, 255)]


def overlay(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """Blend the palette colours of ``labels`` over ``image`` (the original's 50/50 ``show`` blend)."""
    colours = colorize(labels, palette).astype(np.float32)
    return (image.astype(np.float32) * (1 - alpha) + colours * alpha).round().clip(0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- the segmenter
class Segmenter:
    """A model plus its test pipeline."""

    def __init__(self, model: nn.Module, cfg: ModelConfig, device: str | torch.device = "cpu",
                 mode: str | None = None, aug: bool | None = None, window_batch: int | None = None,
                 precision: str = "fp32", compile: bool = False):
        from .precision import resolve_precision

        self.cfg = cfg
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        if self.precision != "fp32":  # fast path: channels-last convolutions in the heads
            self.model = self.model.to(memory_format=torch.channels_last)
        if compile:
            self.model.encode_decode = torch.compile(self.model.encode_decode, dynamic=False)
        self.mode = mode or cfg.test.mode
        if self.mode not in ("whole", "slide"):
            raise SetrError(f"--mode must be 'whole' or 'slide', got {self.mode!r}")
        self.aug = cfg.test.aug if aug is None else aug
        # fp32: one window at a time, the original's order of operations; fast paths batch the windows
        self.window_batch = window_batch or (1 if self.precision == "fp32" else 8)
        self.class_names, self.palette = classes_and_palette(cfg.dataset, cfg.num_classes, cfg.class_names)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, preset: str | None = None, **kwargs) -> "Segmenter":
        """From one of our checkpoints (config inside), or an original SETR checkpoint plus its preset name."""
        from .checkpoints import load_model
        from .presets import get_preset

        from .checkpoints import config_for

        cfg = config_for(checkpoint, get_preset(preset).model) if preset else None
        model, cfg = load_model(checkpoint, cfg)
        return cls(model, cfg, **kwargs)

    @classmethod
    def from_preset(cls, preset: str, checkpoint: str | os.PathLike | None = None, **kwargs) -> "Segmenter":
        """A preset's model, with weights from ``checkpoint`` (random weights without one)."""
        if checkpoint is not None:
            return cls.from_checkpoint(checkpoint, preset, **kwargs)
        from .presets import get_preset

        cfg = get_preset(preset).model
        return cls(build_model(cfg, with_aux=False), cfg, **kwargs)

    # ------------------------------------------------------------------
    def _views(self, ori_hw: tuple[int, int]) -> list[tuple[tuple[int, int], bool]]:
        t = self.cfg.test
        if not self.aug:
            size = test_size(ori_hw, t.img_scale, t.resize_mode) if t.img_scale else ori_hw
            return [(size, False)]
        scale = t.img_scale or (max(ori_hw), min(ori_hw))
        sizes = ms_sizes(ori_hw, scale, t.aug_ratios, min(t.crop_size))
        return [(s, f) for s in sizes for f in ((False, True) if t.aug_flip else (False,))]

    @torch.inference_mode()
    def predict_probs(self, image: np.ndarray | str | os.PathLike | Image.Image) -> torch.Tensor:
        """(K, H, W) class probabilities (fp32) at the image's own size."""
        from .precision import autocast

        image = self._as_array(image)
        ori_hw = image.shape[:2]
        x = to_tensor(image).to(self.device)
        t = self.cfg.test
        total = None
        views = self._views(ori_hw)
        for size, flip in views:
            v = normalise(resize_image(x, size), self.cfg.mean, self.cfg.std)
            if flip:
                v = v.flip(dims=(3,))
            with autocast(self.precision, self.device):
                probs = self.model.inference(v, self.mode, t.crop_size, t.stride, ori_hw, flip, self.window_batch)
            total = probs if total is None else total + probs
        return (total / len(views))[0]

    def predict(self, image: np.ndarray | str | os.PathLike | Image.Image) -> np.ndarray:
        """(H, W) uint8/int label map (class ids) at the image's own size."""
        labels = self.predict_probs(image).argmax(0).cpu().numpy()
        return labels.astype(np.uint8 if self.cfg.num_classes <= 256 else np.int32)

    def overlay(self, image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        return overlay(self._as_array(image), labels, self.palette, alpha)

    @staticmethod
    def _as_array(image) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            return read_image(image)
        if isinstance(image, Image.Image):
            return np.asarray(image.convert("RGB"))
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise SetrError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
        return arr.astype(np.uint8)

    def predict_files(self, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                      progress: bool = True) -> list[Path]:
        """For each image: ``out_dir/<stem>.png`` (class ids) and ``out_dir/<stem>_overlay.jpg``."""
        from tqdm import tqdm

        paths = find_images(inputs)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        stems: set[str] = set()
        for path in tqdm(paths, desc="predict", unit="img", disable=not progress):
            image = read_image(path)
            labels = self.predict(image)
            stem, k = path.stem, 1
            if stem in stems:  # the same name in two input folders: keep both, prefixed by the folder
                stem = f"{path.parent.name}_{path.stem}"
            while stem in stems:
                k += 1
                stem = f"{path.parent.name}_{path.stem}_{k}"
            stems.add(stem)
            mask_path = out / f"{stem}.png"
            Image.fromarray(labels).save(mask_path)
            Image.fromarray(self.overlay(image, labels)).save(out / f"{stem}_overlay.jpg", quality=92)
            written.append(mask_path)
        return written
