"""RetinaNet-HLG object detection on COCO (the authors' mmdet 1x recipe), composed from torchvision's detection models.

* :mod:`.model` - :func:`build_retinanet_hlg`: HLG dense backbone -> FPN (P3-P7) -> torchvision ``RetinaNet``.
* :mod:`.presets` - the ``retinanet_hlg_{small,medium,large}_fpn_mstrain_1x_coco`` recipes.
* :mod:`.coco` - the COCO dataset (pycocotools), :mod:`.synthetic` - a generated COCO-format dataset.
* :mod:`.engine` - training (epochs, warm-up + step schedule, atomic checkpoints, exact resume, DDP),
  COCO bbox evaluation and prediction images. :mod:`.cli` - the ``setr detect`` sub-commands.
"""
from .model import build_retinanet_hlg
from ..presets.detection import DetectionPreset, get_detection_preset, list_detection_presets

__all__ = ["build_retinanet_hlg", "DetectionPreset", "get_detection_preset", "list_detection_presets"]
