"""Moved to :mod:`setr.dist` (used below the engine too, by the evaluation loops); kept importable."""
from ..dist import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed  # noqa: F401
