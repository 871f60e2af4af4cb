"""What the original SETR code (fudan-zvg/SETR at 1361561, over mmcv 1.2.2's Python sources) needs to run on
today's torch, installed before its ``mmseg`` is imported. Nothing here computes anything of the model:

* ``mmcv.ops``: a stand-in module whose every name raises on use (``mmcv_ops_stub``); mmcv 1.2.2's ops are
  compiled extensions, and SETR's models use none of them.
* ``torch._six``: removed from torch; the original imports ``container_abcs`` (= ``collections.abc``), ``inf``
  and ``string_classes`` from it.
* ``nn.SyncBatchNorm._specify_ddp_gpu_num``: removed from torch; mmcv 1.2.2 calls it when building a SyncBN layer.
  A no-op here (it only told DDP how many GPUs a process drives).
* ``SyncBN`` on one process: ``nn.SyncBatchNorm`` refuses to run in training outside a process group, so mmcv's
  ``SyncBN`` name is pointed at ``nn.BatchNorm2d`` (same parameters and buffers): on one process/GPU SyncBN
  computes exactly BatchNorm's statistics, which is what the original computes on one GPU.
* ``mmseg.models.backbones.region_attention`` and ``.hlg_share``: the HLG files of the repository at 1361561
  import these two modules, which the repository does not contain, so ``import mmseg.models`` fails there as
  published. They get stand-ins whose every name raises on use: the SETR models (ViT, PUP/MLA/Naive heads)
  use neither.
"""
from __future__ import annotations

import collections.abc
import math
import sys
import types

import torch


MISSING_IN_ORIGINAL = ("mmseg.models.backbones.region_attention", "mmseg.models.backbones.hlg_share")


def _stand_in(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)

        class Missing:
            def __init__(self, *args, **kwargs):
                raise RuntimeError(f"{name}.{attr}: not in the original repository (a stand-in for the import)")

        Missing.__name__ = attr
        return Missing

    mod.__getattr__ = __getattr__
    return mod


class OneProcessSyncBN(torch.nn.BatchNorm2d):
    """SyncBN on one process: BatchNorm2d (same parameters, buffers and statistics)."""

    def _specify_ddp_gpu_num(self, gpu_size: int) -> None:  # mmcv 1.2.2 calls it on every SyncBN it builds
        pass


def install() -> None:
    import os

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    six = types.ModuleType("torch._six")
    six.container_abcs = collections.abc
    six.inf = math.inf
    six.string_classes = (str, bytes)
    six.int_classes = int
    sys.modules.setdefault("torch._six", six)
    if not hasattr(torch.nn.SyncBatchNorm, "_specify_ddp_gpu_num"):
        torch.nn.SyncBatchNorm._specify_ddp_gpu_num = lambda self, gpu_size: None

    for name in MISSING_IN_ORIGINAL:
        sys.modules.setdefault(name, _stand_in(name))
    import mmcv  # mmcv 1.2.2's sources (its top level imports no compiled code)
    import mmcv_ops_stub

    mmcv_ops_stub.install()
    from mmcv.cnn.bricks.norm import NORM_LAYERS

    NORM_LAYERS.register_module("SyncBN", force=True, module=OneProcessSyncBN)
    import mmseg  # noqa: F401  (the original's; checks the mmcv version)
