"""RetinaNet-HLG object detection on COCO with the arithmetic of the authors' mmdetection 2.26 detector.

* :mod:`.model` - :func:`build_retinanet_hlg`: dense HLG -> mmdet FPN (P3-P7) -> RetinaHead, mmdet's module names.
* :mod:`.pipeline` - the original test pipeline; :mod:`.anchors`, :mod:`.box_coder`, :mod:`.postprocess` - anchors,
  delta coding and the test post-processing; :mod:`.api` - :class:`Detector` (and checkpoint loading).
* :mod:`.coco` - the COCO dataset (pycocotools), :mod:`.synthetic` - a generated COCO-format dataset.
* :mod:`.evaluation` - COCO bbox evaluation and prediction files; :mod:`.training` - the training task;
  ``setr detect`` is :mod:`setr.cli.detect`.
"""
from .api import Detector
from .model import build_retinanet_hlg

__all__ = ["Detector", "build_retinanet_hlg"]
