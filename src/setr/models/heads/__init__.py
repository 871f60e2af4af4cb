"""SETR decode and auxiliary heads."""
from .mla import MLAAuxHead, MLAHead, MLANeck
from .naive import NaiveHead, PUPAuxHead
from .pup import PUPHead

__all__ = ["MLAAuxHead", "MLAHead", "MLANeck", "NaiveHead", "PUPAuxHead", "PUPHead"]
