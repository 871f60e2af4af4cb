"""The one convention every command group follows, as option builders (``cli/detect.py`` uses them too):

* ``add_preset(p, task)``: the positional preset name, checked against ``task`` (a name of another task says
  which command owns it);
* ``add_checkpoint(p)``: ``-c/--checkpoint FILE`` (``positional_too=True``: the old positional spelling keeps
  working for one release with a one-line deprecation notice; read it with :func:`checkpoint_of`);
* ``add_json(p, ...)``: ``--json [PATH]``: alone, the JSON goes to stdout; with a path, to that file;
* ``add_batch_size(p, ...)``, ``add_device(p)``, ``add_trust(p)``, ``add_overwrite(p)``, ``add_set(p)``;
* :func:`preset_for`: the preset with ``--set`` (dotted ``section.key=value``, one grammar for every task) and the
  command's shortcuts (``--iters``, ``--epochs``, ``--batch-size``) applied.
"""
from __future__ import annotations

import argparse
import sys

from .. import argtypes

STDOUT = "-"  # ``--json`` without a path


def deprecated(message: str) -> None:
    """One line on stderr for an old spelling that still works this release."""
    print(f"deprecated: {message}", file=sys.stderr)


def add_preset(p: argparse.ArgumentParser, task: str, help: str | None = None) -> None:
    p.add_argument("preset", help=help or f"a {task} preset (`setr presets` lists them)")
    p.set_defaults(preset_task=task)


def add_checkpoint(p: argparse.ArgumentParser, required: bool = False, positional_too: bool = False,
                   help: str = "the weights: one of our checkpoints or an original .pth") -> None:
    """``-c/--checkpoint``. ``positional_too``: ``CMD PRESET CKPT`` (the old spelling) still works, with a notice."""
    p.add_argument("--checkpoint", "-c", dest="checkpoint", default=None, metavar="FILE",
                   required=required and not positional_too, help=help)
    if positional_too:
        p.add_argument("old_checkpoint", nargs="?", default=None, help=argparse.SUPPRESS)
        p.set_defaults(checkpoint_required=required)


def checkpoint_of(args: argparse.Namespace, command: str) -> str | None:
    """The checkpoint given with ``-c`` or (deprecated) positionally; one line when it is missing but required."""
    from ..errors import SetrError

    old = getattr(args, "old_checkpoint", None)
    if old is not None:
        if args.checkpoint is not None:
            raise SetrError(f"give the checkpoint once: -c {args.checkpoint} or {old}, not both")
        deprecated(f"`{command} PRESET CKPT`: write `{command} PRESET -c CKPT`")
        args.checkpoint = old
    if args.checkpoint is None and getattr(args, "checkpoint_required", False):
        raise SetrError(f"{command} needs the checkpoint: -c/--checkpoint FILE")
    return args.checkpoint


def add_json(p: argparse.ArgumentParser, what: str = "the result", default: str | None = None) -> None:
    """``--json [PATH]``: ``--json`` alone prints ``what`` as JSON on stdout; ``--json PATH`` writes it there.
    ``default`` says where it goes without ``--json`` (None: printed as text)."""
    where = f"; without --json: {default}" if default else ""
    p.add_argument("--json", nargs="?", const=STDOUT, default=None, metavar="PATH",
                   help=f"{what} as JSON: to PATH, or on stdout when no PATH is given{where}")


def add_batch_size(p: argparse.ArgumentParser, default: int | None = None, help: str = "batch size") -> None:
    p.add_argument("--batch-size", type=argtypes.positive_int, default=default, help=help)


def add_set(p: argparse.ArgumentParser, example: str = "train.lr=0.001 model.num_classes=5") -> None:
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help=f"override preset values with dotted keys (model.*, train.*, data.*, test.*), e.g. "
                        f"{example}; `setr info PRESET --json` shows the keys")


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
                   help="auto: bf16 where the hardware has bf16 matrix units, else fp32; fp32 is the original's "
                        "arithmetic (head BatchNorms folded into their convolutions: ~1e-7); int8 (CPU): dynamic int8 "
                        "encoder linear layers and head convolutions, the rest as auto; int8-static (CPU, "
                        "needs torchao): static int8 linear and conv layers, calibrated on the first image, compiled")
    p.add_argument("--window-batch", type=argtypes.positive_int, default=None,
                   help="sliding windows per forward pass (default: 1 in fp32 and int8, 8 in bf16 / fp16)")


def add_compile(p: argparse.ArgumentParser) -> None:
    """--compile, one meaning for predict, test, benchmark and train (issue 21)."""
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (Inductor: fused kernels; the first image / step compiles, "
                        "which takes minutes on the CPU; needs a C++ compiler there)")


SECTIONS = ("model", "train", "data", "test")


def dotted(sets: list[str], preset) -> list[str]:
    """``--set`` assignments in the one grammar: a bare recipe key (``mixup=0``, the old ``classify train``
    spelling) becomes ``train.mixup=0`` with a one-line deprecation notice; everything else is left as it is."""
    import dataclasses

    recipe = {f.name for f in dataclasses.fields(preset.train)}
    out = []
    for item in sets:
        key = item.split("=", 1)[0].strip()
        if "." not in key and key in recipe:
            deprecated(f"--set {item}: write --set train.{item.strip()}")
            item = f"train.{item.strip()}"
        out.append(item)
    return out


def preset_for(args: argparse.Namespace, task: str | None = None):
    """The preset named on the command line (of ``task``, default the parser's), with the command's
    shortcuts (``--iters``, ``--epochs``, ``--batch-size``) and ``--set`` applied."""
    from ..overrides import apply_overrides
    from ..presets import get

    task = task or getattr(args, "preset_task", None)
    preset = get(args.preset, task)
    sets = dotted(list(getattr(args, "set", None) or []), preset)
    args.set = sets
    shortcuts = [f"train.{k}={getattr(args, k)}" for k in ("iters", "epochs")
                 if getattr(args, k, None) and hasattr(preset.train, k)]
    if getattr(args, "batch_size", None) and getattr(args, "batch_size_is_training", False):
        shortcuts.append(f"train.batch_size={args.batch_size}")
    apply_overrides(preset, sets + shortcuts)
    if preset.task == "segmentation":
        names = preset.model.class_names
        if names and len(names) != preset.model.num_classes and not any(s.startswith("model.class_names=")
                                                                        for s in sets):
            preset.model.class_names = None  # the preset's names, for another class count: the data's or class_i
        if getattr(args, "iters", None) and preset.train.eval_interval > preset.train.iters:
            preset.train.eval_interval = preset.train.iters
    return preset


def emit_json(where: str, obj, text: str | None = None) -> None:
    """``--json``'s output: ``obj`` (or ready ``text``) on stdout for ``-``, else written to that file (atomically;
    the folder is checked for writability first)."""
    import json

    text = json.dumps(obj, indent=2) if text is None else text
    if where == STDOUT:
        print(text)
        return
    from ..io.atomic import atomic_write_text
    from ..outputs import ensure_writable_file

    ensure_writable_file(where, "--json")
    atomic_write_text(where, text + "\n")
    print(f"wrote {where}")
