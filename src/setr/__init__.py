"""SETR: vision transformers for semantic segmentation (the original SETR family, for today's PyTorch)."""
from ._version import __version__
from .model_files import load_model, save_model
from .config import ModelConfig, build_model
from .errors import SetrError
from .inference import Segmenter, read_image
from .detection.api import Detector
from .models import hlg_timm as _register_hlg_with_timm  # noqa: F401  (timm.create_model("hlg_tiny"))
from . import hub as _hub  # noqa: F401  (registers the pretrained-folder formats)
from . import presets

__all__ = ["Detector", "ModelConfig", "Segmenter", "SetrError", "build_model", "load_model", "presets",
           "read_image", "save_model", "__version__"]
