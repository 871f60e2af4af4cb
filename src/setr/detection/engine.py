"""RetinaNet-HLG: loading checkpoints, COCO bbox evaluation and prediction images. Training is in
:mod:`.training` (re-exported here: ``train_detector``, ``DetectionTask``); evaluation and prediction files in
:mod:`.evaluation`, checkpoints and the test path in :mod:`.api`."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..engine.common import newest_checkpoint
from ..presets.detection import DetectionPreset

# evaluation and prediction files (the authors' test path through Detector)
from .evaluation import (coco_bbox_eval, detect_results, evaluate_detector, format_metrics,  # noqa: F401
                         predict_files)
# training lives in .training (the shared loop's task); re-exported here for existing callers
from .training import (CKPT_FORMAT, METRIC_NAMES, DetectionTask, check_categories, resolve_preset,  # noqa: F401
                       train_detector)


def latest_epoch_checkpoint(work_dir: Path) -> Path | None:
    return newest_checkpoint(work_dir, "epoch")


def load_detector(preset: str | DetectionPreset | None, checkpoint: str | Path, num_classes: int | None = None,
                  device: str | torch.device = "cpu", trust_checkpoint: bool = False
                  ) -> tuple[nn.Module, list[dict] | None]:
    """A RetinaNet-HLG from a preset and a checkpoint: the authors' mmdet file, one of ours (its config wins) or
    a bare state dict. Returns (model in eval mode, the checkpoint's categories or None). Read with
    ``weights_only=True``; ``trust_checkpoint`` also unpickles other Python objects (unsafe). Missing,
    unexpected and mis-shaped keys are named in one line."""
    from .api import load_detector_checkpoint

    model, _, categories, _ = load_detector_checkpoint(checkpoint, preset, num_classes=num_classes,
                                                       trust_checkpoint=trust_checkpoint)
    return model.to(device).eval(), categories
