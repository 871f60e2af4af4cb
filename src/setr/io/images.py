"""Images in, the way the original read them: OpenCV's colour decoding, then RGB.

The original loaded every image with ``cv2.imread(path, IMREAD_COLOR)`` (mmcv ``imread``, flag ``color``) and
converted BGR to RGB at normalisation. ``IMREAD_COLOR`` applies the EXIF orientation, expands grey and
palette images to three channels, drops alpha and maps 16-bit samples to 8 bits (``v >> 8``), so a phone
photo's label map lines up with the picture people see. We decode the same way (from the file's bytes, so
paths with any characters work). Files OpenCV cannot decode but Pillow can (for instance GIF, some TIFF and
CMYK variants) are converted to RGB by Pillow with the EXIF orientation applied; anything else is refused in
one line naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ..errors import SetrError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".jp2")


def decode_image(data: bytes | np.ndarray, name: str = "<bytes>") -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 RGB, decoded as ``cv2.imread(..., IMREAD_COLOR)`` would."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is not None:
        return np.ascontiguousarray(bgr[:, :, ::-1])
    return _decode_with_pillow(bytes(buf), name)


def _decode_with_pillow(data: bytes, name: str) -> np.ndarray:
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the high byte, as OpenCV does
                arr = np.asarray(im, dtype=np.uint32) >> 8
                return np.repeat(arr.clip(0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        kind = "not an image OpenCV or Pillow can decode" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise SetrError(f"{name}: not a readable image ({kind})") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB, decoded as the original did (OpenCV colour decoding, EXIF orientation applied)."""
    path = Path(path)
    if not path.is_file():
        raise SetrError(f"{path}: image not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SetrError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise SetrError(f"{path}: empty file, not an image")
    return decode_image(data, str(path))


def open_rgb_pil(path: str | os.PathLike):
    """The file as an RGB ``PIL.Image`` (for timm / torchvision transforms that take Pillow images), or a
    ``SetrError`` naming the file. Pillow's decoding, not :func:`read_image`'s OpenCV one."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - any decoding failure is an unreadable image
        raise SetrError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from None


def has_image_suffix(path: str | os.PathLike) -> bool:
    """Whether the file name ends in one of :data:`IMAGE_SUFFIXES` (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


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
