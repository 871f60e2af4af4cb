"""One-call inference: ``Segmenter.from_checkpoint(path).predict(image)`` -> label map at the image's size.

The test pipeline is the original's, with its OpenCV arithmetic: the image is decoded as ``cv2.imread`` does
(``setr.io.images.read_image``), resized on uint8 with ``cv2.resize`` INTER_LINEAR to the size mmcv's keep-ratio
rule gives for the preset's test scale, normalised with ImageNet mean/std (RGB), run whole or in sliding
windows, and the logits are resized back to the input size (bilinear), softmaxed and arg-maxed. ``aug=True``
runs the multi-scale + flip test: every (scale, flip, direction) view's softmax probabilities, flipped back
along the view's own axis, averaged in the original's order.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .config import ModelConfig, build_model
from .data.classes import classes_and_palette
from .data.transforms import flip as flip_image
from .data.transforms import normalise as normalise_image
from .data.transforms import resize_image, scaled_sizes
from .errors import SetrError
from .io.hub import HubMixin
from .io.images import read_image  # noqa: F401  (public: setr.inference.read_image, setr.read_image)

FLIP_DIRECTIONS = ("horizontal", "vertical")
LARGE_IMAGE_FACTOR = 16  # warn when a view has more pixels than this times the preset's test scale
logger = logging.getLogger(__name__)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 on 0..255."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float()


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)[:256]
    return table[labels.astype(np.int64).clip(0, 255)]


def overlay(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """Blend the palette colours of ``labels`` over ``image`` (the original's 50/50 ``show`` blend)."""
    colours = colorize(labels, palette).astype(np.float32)
    return (image.astype(np.float32) * (1 - alpha) + colours * alpha).round().clip(0, 255).astype(np.uint8)


@dataclass(frozen=True)
class View:
    """One test-time view of an image: the size it is resized to and the flip applied (None: no flip)."""
    size: tuple[int, int]
    flip: str | None = None


@dataclass
class Segmentation:
    """What one image gives: (K, H, W) float32 class probabilities (None when only labels were asked for) and
    the (H, W) label map, at its own size."""
    probs: torch.Tensor | None
    labels: np.ndarray


def check_flip_directions(directions: Sequence[str], key: str = "model.test.flip_directions") -> tuple[str, ...]:
    if isinstance(directions, str):
        directions = (directions,)
    directions = tuple(directions)
    bad = [d for d in directions if d not in FLIP_DIRECTIONS]
    if bad or not directions:
        raise SetrError(f"{key}: {list(directions)} is not a list of flip directions "
                        f"(expected one or more of {', '.join(FLIP_DIRECTIONS)})")
    return directions


def views_for(ori_hw: tuple[int, int], test_cfg, aug: bool) -> list[View]:
    """The views of the original's ``MultiScaleFlipAug``, in its order: for each scale, the unflipped view once
    per flip direction, then the flipped view in each direction (so with two directions the unflipped view
    counts twice, as in the original's average)."""
    t = test_cfg
    if not aug:
        return [View(scaled_sizes(ori_hw, t.img_scale, t.resize_mode, crop=min(t.crop_size))[0])]
    sizes = scaled_sizes(ori_hw, t.img_scale, t.aug_resize_mode, ratios=t.aug_ratios, crop=min(t.crop_size))
    if not t.aug_flip:
        return [View(s) for s in sizes]
    directions = check_flip_directions(t.flip_directions)
    return [View(s, f) for s in sizes for f in [*(None for _ in directions), *directions]]


BAND_ELEMENTS = 1 << 21  # softmax / argmax of a full-size map run over row bands of about this many values


def _bands(height: int, per_row: int, width: int):
    """Row bands [r0, r1) of a (B, K, H, W) map, each band's H x W plane a multiple of 64 values: PyTorch's
    vectorised softmax over the classes walks the plane in SIMD blocks with a scalar tail, so bands aligned to
    the blocks give bit for bit the values of the softmax of the whole map (tested)."""
    import math

    unit = 64 // math.gcd(width, 64)
    rows = max(unit, BAND_ELEMENTS // max(per_row, 1) // unit * unit)
    for r0 in range(0, height, rows):
        yield r0, min(r0 + rows, height)


def accumulate_probs(total: torch.Tensor | None, logits: torch.Tensor, flip: str | None) -> torch.Tensor:
    """Add the fp32 softmax probabilities of one view's (B, K, H, W) logits, flipped back along the view's own
    axis, into ``total`` in place (a new tensor for the first view), one band of rows at a time: the same
    values as ``total + softmax(logits).flip(...)`` (softmax is per pixel, the sum elementwise), without the
    view's full probability map, its flipped copy or the new sum ever existing."""
    b, k, h, w = logits.shape
    if total is None:
        total = torch.zeros((b, k, h, w), dtype=torch.float32, device=logits.device)
    for r0, r1 in _bands(h, b * k * w, w):
        p = torch.softmax(logits[:, :, r0:r1].float(), dim=1)
        if flip is None:
            total[:, :, r0:r1] += p
        elif flip in (True, "horizontal"):
            total[:, :, r0:r1] += p.flip(dims=(3,))
        elif flip == "vertical":
            total[:, :, h - r1:h - r0] += p.flip(dims=(2,))
        else:
            raise ValueError(f"flip direction {flip!r}: expected 'horizontal' or 'vertical'")
    return total


def streamed_labels(scores: torch.Tensor, dtype=np.uint8, softmax: bool = True) -> np.ndarray:
    """(B, H, W) argmax over the classes of (B, K, H, W) ``scores`` (with ``softmax``: of their fp32 softmax,
    ties between rounded probabilities resolved as the full map's argmax resolves them), band by band of rows
    into one label array: only a band's probabilities ever exist besides ``scores`` and the labels."""
    b, k, h, w = scores.shape
    labels = np.empty((b, h, w), dtype=dtype)
    for r0, r1 in _bands(h, b * k * w, w):
        band = scores[:, :, r0:r1]
        if softmax:
            band = torch.softmax(band.float(), dim=1)
        labels[:, r0:r1] = band.argmax(1).cpu().numpy()
    return labels


# --------------------------------------------------------------------------- the segmenter
class Segmenter(HubMixin):
    """A model plus its test pipeline (``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``: a pretrained
    folder, through :class:`setr.io.hub.HubMixin`)."""

    _hub_kind = "segmenter"

    def __init__(self, model: nn.Module, cfg: ModelConfig, device: str | torch.device = "cpu",
                 mode: str | None = None, aug: bool | None = None, window_batch: int | None = None,
                 precision: str = "fp32", compile: bool = False, flip_directions: Sequence[str] | None = None):
        from .precision import default_window_batch, prepare_for_inference, resolve_precision

        self.cfg = cfg
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        # fast paths: channels-last head convolutions, the device's attention kernel, int8 linear layers
        self.model = prepare_for_inference(model.to(self.device).eval(), self.precision, self.device,
                                           fold=not compile)
        if compile and self.precision != "int8-static":  # int8-static is compiled by its own wrapper
            self.model.encode_decode = torch.compile(self.model.encode_decode, dynamic=False)
        self.mode = mode or cfg.test.mode
        if self.mode not in ("whole", "slide"):
            raise SetrError(f"--mode must be 'whole' or 'slide', got {self.mode!r}")
        self.aug = cfg.test.aug if aug is None else aug
        if flip_directions is not None:
            cfg.test.flip_directions = check_flip_directions(flip_directions, "flip directions")
        check_flip_directions(cfg.test.flip_directions)
        # fp32: one window at a time, the original's order of operations; fast paths batch the windows
        self.window_batch = window_batch or default_window_batch(self.precision)
        self.progress = False  # a progress bar over the windows of a very large image (the CLI turns it on)
        self.class_names, self.palette = classes_and_palette(cfg.dataset, cfg.num_classes, cfg.class_names)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, preset=None,
                        overrides: Sequence[str] = (), trust_checkpoint: bool = False, **kwargs) -> "Segmenter":
        """From one of our checkpoints (config inside), or an original SETR checkpoint plus its preset name.
        ``.pth`` files are read with ``weights_only=True``; ``trust_checkpoint=True`` also unpickles other Python
        objects, which can run code stored in the file (only for files you trust).

        ``overrides`` are ``--set`` strings (``"model.backbone.embed_dim=64"``, ``"model.test.aug=true"``,
        ``"model.test.flip_directions=[horizontal,vertical]"``) applied to the preset, or to the config stored in
        one of our checkpoints. ``preset`` may also be a ``Preset`` object with those overrides already applied."""
        import copy

        from .model_files import config_for, load_model, read_config
        from .overrides import apply_model_overrides
        from .presets import with_overrides

        stored = read_config(checkpoint)  # the file's header, read once
        if preset:
            preset_cfg = (with_overrides(preset, overrides, "segmentation") if isinstance(preset, str)
                          else preset).model
            cfg = config_for(checkpoint, preset_cfg, stored)
            if cfg is not preset_cfg:  # one of ours: its stored config, with the same overrides on top
                cfg = apply_model_overrides(copy.deepcopy(cfg), overrides)  # a copy: checked against the stored
        else:
            cfg = stored
            if cfg is not None:
                cfg = apply_model_overrides(copy.deepcopy(cfg), overrides)
        model, cfg = load_model(checkpoint, cfg, trust_checkpoint=trust_checkpoint, stored=stored)
        return cls(model, cfg, **kwargs)

    @classmethod
    def from_preset(cls, preset: str, checkpoint: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                    **kwargs) -> "Segmenter":
        """A preset's model (``overrides`` as ``--set``), with weights from ``checkpoint`` (random without one)."""
        if checkpoint is not None:
            return cls.from_checkpoint(checkpoint, preset, overrides=overrides, **kwargs)
        from .presets import with_overrides

        cfg = with_overrides(preset, overrides, "segmentation").model
        return cls(build_model(cfg, with_aux=False), cfg, **kwargs)

    # ------------------------------------------------------------------
    def views(self, ori_hw: tuple[int, int]) -> list[View]:
        """The test-time views of an (H, W) image, in the original's order."""
        return views_for(ori_hw, self.cfg.test, self.aug)

    def segment(self, image: np.ndarray | str | os.PathLike | Image.Image) -> Segmentation:
        """Class probabilities (K, H, W, fp32) and the label map (H, W) at the image's own size, in one pass."""
        return self.segment_batch([image])[0]

    @torch.inference_mode()
    def segment_batch(self, images: Sequence[np.ndarray | str | os.PathLike | Image.Image],
                      probs: bool = True) -> list[Segmentation]:
        """``segment`` for images of one size, run through the network together (a batch of one is ``segment``).
        ``probs=False``: labels only (``Segmentation.probs`` is None), without ever holding the probabilities
        of a single-view test (see :func:`accumulate_probs` and :func:`streamed_labels` for what is held)."""
        from .precision import autocast

        arrays = [self._as_array(im) for im in images]
        ori_hw = arrays[0].shape[:2]
        if any(a.shape[:2] != ori_hw for a in arrays):
            raise SetrError("segment_batch: the images must all have one size")
        t = self.cfg.test
        views = self.views(ori_hw)
        on_windows = self._warn_if_large(arrays[0], views)
        resized: dict[tuple[int, int], torch.Tensor] = {}
        total = labels = None
        label_dtype = np.uint8 if self.cfg.num_classes <= 256 else np.int32
        for i, view in enumerate(views):
            if view.size not in resized:  # resize on uint8 with OpenCV, then normalise (the original's order)
                resized[view.size] = torch.stack([normalise_image(resize_image(a, view.size), self.cfg.mean,
                                                                  self.cfg.std) for a in arrays]).to(self.device)
            x = resized[view.size]
            if view.flip:
                x = flip_image(x, view.flip)
            if i == len(views) - 1:
                resized.clear()  # the last view's input is all that is left to need
            with autocast(self.precision, self.device):
                # the view's logits at the image's size (slide windows summed in place inside)
                logits = self.model.inference_logits(x, self.mode, t.crop_size, t.stride, ori_hw, self.window_batch,
                                                     on_windows)
            del x
            if len(views) == 1 and not probs:
                labels = streamed_labels(logits, label_dtype)  # softmax + argmax band by band, nothing kept
            else:
                total = accumulate_probs(total, logits, view.flip)
            del logits
        if on_windows is not None:
            on_windows.close()
        if total is not None:
            if len(views) > 1:
                total.div_(len(views))  # in place: the same values as total / len(views)
            labels = streamed_labels(total, label_dtype, softmax=False)
        if not probs:
            total = None
        return [Segmentation(total[i] if total is not None else None, labels[i]) for i in range(len(arrays))]

    def _warn_if_large(self, image: np.ndarray, views: list[View]):
        """Warn when the network will see far more pixels than the preset's test scale (slow, memory hungry:
        whole-mode attention grows with the square of the pixels); in slide mode return a progress bar over
        the windows of all views (``None`` when the image is of ordinary size or progress is off)."""
        t = self.cfg.test
        reference = (t.img_scale[0] * t.img_scale[1]) if t.img_scale else (t.crop_size[0] * t.crop_size[1] * 4)
        pixels = max(v.size[0] * v.size[1] for v in views)
        if pixels <= LARGE_IMAGE_FACTOR * reference:
            return None
        h, w = image.shape[:2]
        scale = f"test scale {t.img_scale[0]}x{t.img_scale[1]}" if t.img_scale else "no test resize"
        hint = ("; consider --mode slide or a test scale (--set model.test.img_scale=[L,S])" if self.mode == "whole"
                else "")
        logger.warning(f"image {w}x{h} is much larger than this preset expects ({scale}, crop "
                       f"{t.crop_size[1]}x{t.crop_size[0]}, {self.mode} mode): slow and memory hungry{hint}")
        if self.mode != "slide" or not self.progress:
            return None
        from tqdm import tqdm

        bar = tqdm(total=0, desc="windows", unit="win", leave=False)
        views_done = [0]

        def on_windows(n_done: int, n_total: int) -> None:  # views of other scales: the total is an estimate
            bar.total = n_total * len(views)
            bar.n = views_done[0] * n_total + n_done
            views_done[0] += n_done == n_total
            bar.refresh()

        on_windows.close = bar.close  # type: ignore[attr-defined]
        return on_windows

    def predict_probs(self, image: np.ndarray | str | os.PathLike | Image.Image) -> torch.Tensor:
        """(K, H, W) class probabilities (fp32) at the image's own size."""
        return self.segment(image).probs

    def predict_batch(self, images: Sequence[np.ndarray | str | os.PathLike | Image.Image]) -> list[np.ndarray]:
        """Label maps of images of one size, run through the network together; no probabilities kept."""
        return [s.labels for s in self.segment_batch(images, probs=False)]

    def predict(self, image: np.ndarray | str | os.PathLike | Image.Image) -> np.ndarray:
        """(H, W) uint8/int label map (class ids) at the image's own size (labels only: the class probabilities
        are never held for the whole image, see :meth:`segment_batch`).

        ``image`` is a file path, a PIL image (converted to RGB), or an (H, W, 3) RGB array:

        * ``uint8``: values 0..255, as read by :func:`setr.read_image` (the pipeline's own input);
        * other integer types: values must lie in 0..255 (larger ones, e.g. 16-bit samples, are refused: scale
          them first);
        * floating point: an image whose values all lie in 0..1 (``skimage`` / ``torchvision`` style) is scaled
          by 255; values up to 255 are taken as 0..255 (rounded); negative values, values above 255, NaN or
          infinity are refused in one line.

        The same holds for :meth:`segment`, :meth:`segment_batch`, :meth:`predict_probs` and :meth:`overlay`."""
        return self.segment_batch([image], probs=False)[0].labels

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
        if arr.dtype == np.uint8:
            return arr
        if arr.dtype.kind not in "uif" or arr.size == 0:
            raise SetrError(f"expected an (H, W, 3) RGB image of uint8 (0..255) or float (0..1) values, got {arr.dtype}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise SetrError(f"image of {arr.dtype} holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 255:
            raise SetrError(f"image of {arr.dtype} has values {lo:g}..{hi:g}: expected 0..1 (float) or 0..255 "
                            "(scale it to one of these first)")
        if arr.dtype.kind == "f" and hi <= 1.0:  # 0..1 floats: the usual convention outside OpenCV
            arr = arr * 255.0
        return np.rint(arr).astype(np.uint8) if arr.dtype.kind == "f" else arr.astype(np.uint8)

    def predict_files(self, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                      progress: bool = True) -> list[Path]:
        """For each image: ``out_dir/<name>.png`` (class ids) and ``out_dir/<name>_overlay.jpg``, named by
        :func:`setr.batch_predict.output_stems` (the stem; ``<stem>_<ext>`` or ``<folder>_<stem>`` where inputs
        share a stem); returns the label maps in input order. One process (the ``setr predict`` command shards
        and batches the same way with :mod:`setr.batch_predict`)."""
        from .batch_predict import predict_files

        return predict_files(self, inputs, out_dir, workers=0, progress=progress, distributed=False)["written"]

    # ------------------------------------------------------------------ pretrained folders (setr.hub)
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> Path:
        """``config.json`` + ``model.safetensors`` + ``README.md`` (``preset=``, ``push_to_hub=True, repo_id=``)."""
        if self.precision == "int8":
            raise SetrError("save_pretrained: this Segmenter runs int8 layers built from the weights at load time; "
                            "save from one created with precision='fp32' or 'auto'")
        return super().save_pretrained(save_directory, **kwargs)
