"""What several command groups share: common options, the device, a preset with the command's overrides."""
from __future__ import annotations

import argparse

from .. import argtypes


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, type=argtypes.device,
                   help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="discard the checkpoints of another run found in the work dir (a new run refuses to start "
                        "there otherwise)")


def add_trust(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="UNSAFE: load .pth files that hold Python objects other than tensors and plain values "
                        "(torch.load weights_only=False), which runs any code stored in them; only for files "
                        "from a source you trust")


def add_flip_directions(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flip-directions", nargs="+", choices=("horizontal", "vertical"), metavar="DIRECTION",
                   help="with --aug: the flipped views, horizontal and/or vertical (default: the preset's, "
                        "horizontal as every SETR config); each view is flipped back along its own axis")


def add_speed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16", "int8", "int8-static"),
                   help="auto: bf16 where the hardware has bf16 matrix units, else fp32; fp32 is bit-faithful; "
                        "int8 (CPU): dynamic int8 encoder linear layers, the rest as auto; int8-static (CPU, "
                        "needs torchao): static int8 linear and conv layers, calibrated on the first image, compiled")
    p.add_argument("--window-batch", type=argtypes.positive_int, default=None,
                   help="sliding windows per forward pass (default: 1 in fp32, 8 otherwise)")


def add_compile(p: argparse.ArgumentParser) -> None:
    """--compile, one meaning for predict, test, benchmark and train (issue 21)."""
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (Inductor: fused kernels; the first image / step compiles, "
                        "which takes minutes on the CPU; needs a C++ compiler there)")


def preset_from_args(args: argparse.Namespace):
    """The preset with --iters / --batch-size / --set applied."""
    from ..overrides import apply_overrides
    from ..presets import get_preset

    preset = get_preset(args.preset)
    sets = list(getattr(args, "set", None) or [])
    if getattr(args, "iters", None):
        sets.append(f"train.iters={args.iters}")
    if getattr(args, "batch_size", None):
        sets.append(f"train.batch_size={args.batch_size}")
    apply_overrides(preset, sets)
    names = preset.model.class_names
    if names and len(names) != preset.model.num_classes and not any(s.startswith("model.class_names=") for s in sets):
        preset.model.class_names = None  # the preset's names, for another class count: the data's names or class_i
    if getattr(args, "iters", None) and preset.train.eval_interval > preset.train.iters:
        preset.train.eval_interval = preset.train.iters
    return preset
