"""Moved to :mod:`setr.presets.detection` (every preset family lives in ``setr.presets``); kept importable."""
from ..presets.detection import (  # noqa: F401
    TRAIN_SHORT_SIDES,
    DetectionPreset,
    DetModelConfig,
    DetTrainConfig,
    get_detection_preset,
    list_detection_presets,
)
