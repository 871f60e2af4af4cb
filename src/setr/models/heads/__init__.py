"""SETR decode and auxiliary heads."""
from .hlg_up import HLGUPHead
from .mla import MLAAuxHead, MLAHead, MLANeck
from .naive import NaiveHead, PUPAuxHead
from .pup import PUPHead

__all__ = ["HLGUPHead", "MLAAuxHead", "MLAHead", "MLANeck", "NaiveHead", "PUPAuxHead", "PUPHead"]
