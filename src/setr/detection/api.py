"""One-call detection: ``Detector.from_checkpoint(path, preset=NAME).predict(image)`` -> boxes in the image's pixels.

The whole test path is the authors' (mmdet 2.26): :mod:`.pipeline` (OpenCV decode, keep-ratio resize on uint8 to
the preset's (max_size, test_min_size) scale, normalisation, padding to 32, batch padding), the network
(:mod:`.model`), the anchors and box coder (:mod:`.anchors`, :mod:`.box_coder`) and the post-processing
(:mod:`.postprocess`: threshold, top-k, decoding, rescale, class-aware NMS, top 100).

Checkpoints: the authors' mmdet files (``{'state_dict': {backbone.*, neck.*, bbox_head.*}, 'meta': {...,
'CLASSES': ...}}``), our training checkpoints (``epoch_N.pth``, config inside), a bare state dict or a
``.safetensors`` file, all read with ``weights_only=True``; pretrained folders through :meth:`Detector.from_pretrained`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import SetrError
from ..io.hub import HubMixin
from ..presets import Preset
from ..presets.detection import DetModelConfig, preset_from_dict
from .anchors import anchor_generator_from_config
from .box_coder import DeltaXYWHBBoxCoder
from .model import RetinaNetHLG, build_retinanet_hlg
from .pipeline import IMG_NORM_MEAN, IMG_NORM_STD, ImageMeta, collate, prepare_test_image
from .postprocess import LevelCounts, PostprocessConfig, get_bboxes_single

# the 80 COCO classes in mmdet's CocoDataset order, and their COCO category ids
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush")
COCO_CATEGORY_IDS = (*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
                     *range(72, 83), *range(84, 91))


def categories_for(class_names: Sequence[str]) -> list[dict]:
    """COCO-style categories for class names: COCO's own ids for the 80 COCO classes in mmdet's order (the
    authors' checkpoints), else 1 .. K."""
    names = [str(n) for n in class_names]
    ids = COCO_CATEGORY_IDS if tuple(names) == COCO_CLASSES else range(1, len(names) + 1)
    return [{"id": int(i), "name": n} for i, n in zip(ids, names)]


@dataclass
class Detections:
    """One image's detections: ``boxes`` (N, 4) float32 x1, y1, x2, y2 in the original image's pixels,
    ``scores`` (N,) float32, ``labels`` (N,) int64 (0 .. K-1), sorted by score."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())

    def above(self, score: float) -> "Detections":
        keep = self.scores >= score
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])

    def to_coco(self, image_id: Any, category_ids: Sequence[int]) -> list[dict]:
        """COCO results entries as mmdet's ``results2json`` writes them: bbox (x, y, w, h) from the float32
        corners, the score as a float."""
        out = []
        for b, s, lab in zip(self.boxes.float().tolist(), self.scores.float().tolist(), self.labels.tolist()):
            out.append({"image_id": image_id, "category_id": int(category_ids[lab]),
                        "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": float(s)})
        return out


@dataclass
class DetectionBatch:
    """Everything one forward pass made: the collated input, the metas, the raw head outputs per level
    (``cls_scores[l]`` (B, A*K, H_l, W_l) logits, ``bbox_preds[l]`` (B, A*4, H_l, W_l) deltas), per image the
    candidate counts per level, and the detections."""

    inputs: torch.Tensor
    metas: list[ImageMeta]
    cls_scores: list[torch.Tensor]
    bbox_preds: list[torch.Tensor]
    candidates: list[list[LevelCounts]]
    detections: list[Detections] = field(default_factory=list)

    @property
    def featmap_sizes(self) -> list[tuple[int, int]]:
        return [(int(c.shape[-2]), int(c.shape[-1])) for c in self.cls_scores]


def postprocess_config_of(cfg: DetModelConfig) -> PostprocessConfig:
    return PostprocessConfig(nms_pre=int(cfg.topk_candidates), score_thr=float(cfg.score_thresh),
                             iou_threshold=float(cfg.nms_thresh), max_per_img=int(cfg.detections_per_img),
                             nms_impl=str(getattr(cfg, "nms_impl", "mmcv")))


class Detector(HubMixin):
    """A RetinaNet-HLG plus the authors' test pipeline and post-processing (``save_pretrained`` /
    ``from_pretrained`` / ``push_to_hub``: a pretrained folder, through :class:`setr.io.hub.HubMixin`)."""

    _hub_kind = "detector"

    def __init__(self, model: RetinaNetHLG, cfg: DetModelConfig | None = None, device: str | torch.device = "cpu",
                 precision: str = "fp32", class_names: Sequence[str] | None = None,
                 categories: Sequence[Mapping[str, Any]] | None = None, img_scale: Sequence[int] | None = None):
        from ..precision import resolve_precision

        if not isinstance(model, RetinaNetHLG):
            raise SetrError(f"Detector needs a RetinaNetHLG, got {type(model).__name__}")
        self.cfg = cfg or model.cfg
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        if self.precision == "int8":
            raise SetrError("--precision int8 is not available for detection; use fp32 or bf16")
        self.model = model.to(self.device).eval()
        self.num_classes = model.num_classes
        self.img_scale = tuple(img_scale) if img_scale else (int(self.cfg.max_size), int(self.cfg.test_min_size))
        self.test_cfg = postprocess_config_of(self.cfg)
        self.anchor_generator = anchor_generator_from_config(self.cfg)
        self.coder = DeltaXYWHBBoxCoder()
        if categories is not None:
            categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]
            if len(categories) != self.num_classes:
                raise SetrError(f"{len(categories)} categories for a model with {self.num_classes} classes")
            class_names = [c["name"] for c in categories]
        elif class_names is not None:
            class_names = [str(n) for n in class_names]
            if len(class_names) != self.num_classes:
                raise SetrError(f"{len(class_names)} class names for a model with {self.num_classes} classes")
            categories = categories_for(class_names)
        self.categories = categories
        self.class_names = class_names or [str(i) for i in range(self.num_classes)]
        self.preset: str | None = None
        self.checkpoint_categories: list[dict] | None = None  # the categories our training recorded, if any

    @property
    def category_ids(self) -> list[int]:
        """The COCO category id of each label (the checkpoint's categories, else 1 .. K)."""
        if self.categories is not None:
            return [c["id"] for c in self.categories]
        return list(range(1, self.num_classes + 1))

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, preset: str | None = None,
                        overrides: Sequence[str] = (), precision: str = "fp32", device: str | torch.device = "cpu",
                        trust_checkpoint: bool = False, **kwargs: Any) -> "Detector":
        """From the authors' mmdet checkpoint (name its ``preset``), one of our training checkpoints (config
        inside), or any state dict with the same keys. ``overrides`` are ``--set`` strings on the preset
        (``"model.score_thresh=0.3"``, ``"model.test_min_size=600"``)."""
        model, p, categories, class_names = load_detector_checkpoint(checkpoint, preset, overrides,
                                                                     trust_checkpoint=trust_checkpoint)
        det = cls(model, p.model, device=device, precision=precision, categories=categories,
                  class_names=None if categories is not None else class_names, **kwargs)
        det.preset = p.name
        det.checkpoint_categories = det.categories if categories is not None else None
        return det

    @classmethod
    def from_preset(cls, preset: str, num_classes: int = 80, overrides: Sequence[str] = (), **kwargs: Any
                    ) -> "Detector":
        """A preset's model with its initial weights (for tests and smoke runs)."""
        from ..overrides import apply_overrides
        from .. import presets

        p = apply_overrides(presets.get(preset, "detection"), list(overrides))
        p.model.pretrained = None
        det = cls(build_retinanet_hlg(p.model, num_classes), p.model, **kwargs)
        det.preset = p.name
        return det

    # -------------------------------------------------------------------------------------------- inference
    @staticmethod
    def _as_array(image) -> np.ndarray:
        from ..io.images import read_image

        if isinstance(image, (str, os.PathLike)):
            return read_image(image)
        try:
            from PIL import Image

            if isinstance(image, Image.Image):
                return np.asarray(image.convert("RGB"))
        except ImportError:  # pragma: no cover
            pass
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise SetrError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
        return arr.astype(np.uint8)

    def predict(self, image) -> Detections:
        """Detections of one image (an (H, W, 3) uint8 RGB array, a PIL image or a file path)."""
        return self.detect_batch([image]).detections[0]

    def predict_batch(self, images: Sequence) -> list[Detections]:
        """The images padded into ONE batch (mmdet ``samples_per_gpu``): the backbone sees the padding, so an
        image's detections can differ slightly from :meth:`predict` of it alone, as in the original."""
        return self.detect_batch(images).detections

    @torch.inference_mode()
    def detect_batch(self, images: Sequence, with_nms: bool = True) -> DetectionBatch:
        """One forward pass over ``images`` (padded together) with everything it made: the input, the metas, the
        raw head outputs per level, the candidate counts and the detections."""
        from ..precision import autocast

        if not images:
            raise SetrError("detect_batch: no images")
        prepared = [prepare_test_image(self._as_array(im), self.img_scale, IMG_NORM_MEAN, IMG_NORM_STD,
                                       self.cfg.size_divisible) for im in images]
        metas = [m for _, m in prepared]
        x = collate([t for t, _ in prepared], metas).to(self.device)
        with autocast(self.precision, self.device):
            cls_scores, bbox_preds = self.model(x)
        cls_scores = [c.float() for c in cls_scores]
        bbox_preds = [b.float() for b in bbox_preds]
        featmap_sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        anchors = self.anchor_generator.grid_anchors(featmap_sizes, device=self.device)
        batch = DetectionBatch(x, metas, cls_scores, bbox_preds, [])
        for i, meta in enumerate(metas):
            res = get_bboxes_single([c[i] for c in cls_scores], [b[i] for b in bbox_preds], anchors,
                                    meta.img_shape, meta.scale_factor, self.test_cfg, self.coder.decode,
                                    self.num_classes, rescale=True, with_nms=with_nms)
            batch.candidates.append(res.candidates)
            batch.detections.append(Detections(res.bboxes.cpu(), res.scores.cpu(), res.labels.cpu()))
        return batch


# ---------------------------------------------------------------------------------------------- checkpoints
def num_classes_of(state_dict: Mapping[str, torch.Tensor], cfg: DetModelConfig, source: str) -> int:
    w = state_dict.get("bbox_head.retina_cls.weight")
    if w is None:
        raise SetrError(f"{source}: not a RetinaNet-HLG checkpoint (no bbox_head.retina_cls.weight)")
    per = cfg.scales_per_octave * len(cfg.anchor_ratios)
    if w.shape[0] % per:
        raise SetrError(f"{source}: bbox_head.retina_cls.weight has {w.shape[0]} outputs, not a multiple of "
                        f"{per} anchors")
    return int(w.shape[0]) // per


def read_detector_file(path: str | os.PathLike, trust_checkpoint: bool = False
                       ) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, meta) of a detection checkpoint file: an mmdet checkpoint, one of our training checkpoints,
    a bare state dict, or a ``.safetensors`` file. ``weights_only=True`` unless trusted."""
    from ..io.weights import read_state_dict, strip_module_prefix

    path = Path(path)
    if path.suffix == ".safetensors":
        return read_state_dict(path), {}
    from ..engine.state import read_checkpoint

    state = read_checkpoint(path, trust_checkpoint)
    meta = state.get("meta") if isinstance(state.get("meta"), dict) else {}
    sd = state.get("state_dict", state)
    if not isinstance(sd, Mapping):
        raise SetrError(f"{path}: 'state_dict' is not a mapping of tensors")
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise SetrError(f"{path}: no weights found (expected a 'state_dict' of tensors)")
    return strip_module_prefix(tensors), meta


def load_state_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict load; missing, unexpected and mis-shaped keys are named in one line."""
    from ..model_files import check_keys

    check_keys(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)


def load_detector_checkpoint(checkpoint: str | os.PathLike, preset: str | Preset | None = None,
                             overrides: Sequence[str] = (), num_classes: int | None = None,
                             trust_checkpoint: bool = False):
    """(model in eval mode, preset, categories or None, class names or None) for a detection checkpoint."""
    from ..overrides import apply_overrides
    from .. import presets

    sd, meta = read_detector_file(checkpoint, trust_checkpoint)
    source = str(checkpoint)
    if isinstance(preset, Preset):
        p = preset
    elif isinstance(meta.get("config"), dict) and "model" in meta["config"]:
        p = preset_from_dict(meta["config"])  # our training checkpoint: the trained configuration
    elif preset:
        p = presets.get(preset, "detection")
    else:
        raise SetrError(f"{source}: a detection checkpoint without its config: name its preset "
                        "(retinanet_hlg_{small,medium,large}_fpn_mstrain_1x_coco)")
    apply_overrides(p, list(overrides or ()))
    p.model.pretrained = None
    categories = meta.get("categories")
    classes = meta.get("CLASSES")  # mmdet checkpoints
    class_names = [str(c) for c in classes] if isinstance(classes, (list, tuple)) else None
    if num_classes is None:
        num_classes = len(categories) if categories else num_classes_of(sd, p.model, source)
    model = build_retinanet_hlg(p.model, num_classes)
    load_state_into(model, sd, source)
    if class_names is not None and len(class_names) != num_classes:
        class_names = None
    return model.eval(), p, categories, class_names
