"""One entry point for every golden case: :func:`check_case` picks the checker from the case's fields.

Used by ``scripts/check_reference_case.py`` and the tests.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import SetrError
from .base import OutputCheck, load_case

__all__ = ["check_case", "load_case", "OutputCheck"]  # what scripts/check_reference_case.py uses


def check_case(case: Mapping[str, Any], device: str = "cpu", image_dir=None) -> list[OutputCheck]:
    """Dispatch on the case's config: RetinaNet-HLG cases name their ``kind`` (``retinanet_hlg_inference``,
    ``retinanet_hlg_train_*``), HLG cases ``model`` (HLG / HLGUPHead), SETR cases a ``head_type``; image-level
    (pipeline) and training cases are recognised by their own fields."""
    from .pipeline import check_pipeline_case, is_pipeline_case
    from .train import check_train_case, is_train_case

    cfg = case.get("config", {})
    if str(cfg.get("kind", "")).startswith("retinanet_hlg_train"):
        from .retinanet_train import check_retinanet_train_case

        return check_retinanet_train_case(case, device, image_dir=image_dir)
    if str(cfg.get("kind", "")).startswith("retinanet_hlg"):
        from .retinanet import check_retinanet_case

        return check_retinanet_case(case, device, image_dir=image_dir)
    if is_pipeline_case(case):
        return check_pipeline_case(case, device, image_dir=image_dir)
    if is_train_case(case):
        return check_train_case(case, device)
    if cfg.get("model") in ("HLG", "HLGUPHead"):
        from .hlg import check_hlg_case

        return check_hlg_case(case, device)
    if "head_type" in cfg:
        from .setr import check_setr_case

        return check_setr_case(case, device)
    raise SetrError("unknown reference case: config has neither 'model' (HLG) nor 'head_type' (SETR)")
