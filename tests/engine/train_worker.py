"""The three training tasks at test size, shared by tests/engine/test_loop.py, in-process or as a subprocess:

    python train_worker.py '{"task": "seg", "root": ..., "work": ..., "resume": true, "sets": [...]}'
    torchrun --nproc_per_node 2 train_worker.py '{...}'     # "cli": true (seg): through `setr train` itself

Test hooks, by environment variable (this file only; the package has none):
* ``SLOW_SAVE=iter_4.pth,epoch_2.pth``: the checkpoint write of those names writes half its bytes to the
  temporary file, then sleeps (the test kills the process there);
* ``NAN_AT=3:1``: rank 1's loss of iteration 3 (0-based) is NaN;
* ``SIGTERM_AT=3:1``: rank 1 gets SIGTERM during its 3rd optimiser step.
* ``SIGNALS=step3:INT,TERM;eval:INT``: real signals sent during the 3rd optimiser step, then during the first
  evaluation (each followed by a short sleep, so the handler runs there); ``SIGNAL_TO=parent`` sends them to the
  parent process instead (``timeout`` forwards them to this one as it would its own).
"""
from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/helpers.py

TASKS = ("seg", "cls", "det")
SEG_PRESET = "SETR_Naive_768x768_40k_cityscapes_bs_8"
CLS_MODEL = "hlg_tiny"
CLS_KWARGS = dict(embed_dims=(16, 32, 64, 128), num_heads=(1, 2, 4, 8), depths=(1, 1, 1, 1))
DET_PRESET = "retinanet_hlg_tiny_test"
ITERS = 6  # every task: 6 iterations; the epoch-based ones as 3 epochs of 2


def make_data(task: str, root: Path) -> Path:
    root = Path(root)
    if task == "seg":
        from setr.data.synthetic import WRITERS

        WRITERS["cityscapes"](root, n_train=4, n_val=2, size=(32, 48))
        return root
    if task == "cls":
        from setr.data.synthetic import write_image_folder

        return write_image_folder(root, num_classes=2, n_train=4, n_val=2, size=32)
    from setr.detection.synthetic import write_coco

    return write_coco(root, n_train=8, n_val=2, size=64, num_classes=2, seed=1)


def seg_sets(sets=()) -> list[str]:
    from helpers import tiny_sets
    from setr import presets

    return tiny_sets(presets.get(SEG_PRESET), crop=32, depth=2) + [
        "model.backbone.drop_path_rate=0.1", f"train.iters={ITERS}", "train.checkpoint_interval=1",
        f"train.eval_interval={ITERS}", "train.keep_checkpoints=0"] + list(sets)


def seg_preset(sets=()):
    from setr.overrides import apply_overrides
    from setr import presets

    p = presets.get(SEG_PRESET)
    apply_overrides(p, seg_sets(sets))
    return p


def seg_cli(root, work, resume=None, sets=(), validate=False) -> int:
    """``setr train`` as typed (torchrun: ``-m setr train``), with the test sizes."""
    from setr.cli import main

    args = ["train", SEG_PRESET, "--data-root", str(root), "--work-dir", str(work), "--no-progress",
            *([] if validate else ["--no-validate"]), "--device", "cpu"]
    if resume:
        args += ["--resume"] + ([] if resume is True else [str(resume)])
    return main(args + ["--set", *seg_sets(sets)])


def cls_recipe(sets=()):
    from setr.engine.classification import ClassifyRecipe
    from setr.overrides import apply_overrides

    r = ClassifyRecipe(epochs=3, warmup_epochs=1, batch_size=4, base_lr=2e-3 * 512 / 4, img_size=32, workers=0,
                       auto_augment="rand-m9-mstd0.5-inc1", reprob=0.25, mixup=0.8, cutmix=1.0, drop_path=0.1,
                       ema_decay=0.9, crop_scale=(0.6, 1.0), checkpoint_interval=1, keep_checkpoints=0)
    apply_overrides(r, list(sets))
    return r


def det_preset(sets=()):
    from setr import presets
    from setr.overrides import apply_overrides

    p = presets.get(DET_PRESET, "detection")
    apply_overrides(p, ["train.epochs=3", "train.batch_size=4", "train.warmup_iters=3", "train.milestones=[2]",
                        "model.train_min_sizes=[48,64]", "model.max_size=64", "model.test_min_size=64",
                        "model.fpn_channels=32", "model.drop_path_rate=0.1", "train.checkpoint_interval=1",
                        "train.keep_checkpoints=0", "train.eval_interval=0"] + list(sets))
    return p


def run(task: str, root, work, resume=None, sets=(), overwrite=False, seed=0):
    """Train ``task`` with the test sizes; returns what the public function returns."""
    if task == "seg":
        from setr.engine.segmentation import train

        return train(seg_preset(sets), root, work, resume=resume, overwrite=overwrite, seed=seed, progress=False,
                     validate=False)
    if task == "cls":
        from setr.engine.classification import train_classifier

        return train_classifier(CLS_MODEL, root, work, cls_recipe(sets), model_kwargs=CLS_KWARGS, resume=resume,
                                overwrite=overwrite, seed=seed, progress=False)
    from setr.detection.training import train_detector

    return train_detector(det_preset(sets), root, work, resume=resume, overwrite=overwrite, seed=seed,
                          progress=False)


def task_class(task: str):
    if task == "seg":
        from setr.engine.segmentation import SegmentationTask as T
    elif task == "cls":
        from setr.engine.classification import ClassificationTask as T
    else:
        from setr.detection.training import DetectionTask as T
    return T


def last_weights(work) -> tuple[str, dict]:
    """The newest checkpoint of ``work`` (its name and state_dict)."""
    from setr.engine.state import read_checkpoint
    from setr.engine.workdir import list_checkpoints

    found = list_checkpoints(Path(work), 2)
    return found[-1][1].name, read_checkpoint(found[-1][1])["state_dict"]


def _install_hooks() -> None:
    slow = [n for n in os.environ.get("SLOW_SAVE", "").split(",") if n]
    if slow:
        real = torch.save

        def slow_save(obj, f, *args, **kwargs):
            name = os.path.basename(str(f)) if isinstance(f, (str, os.PathLike)) else ""
            if not any(name.startswith(f".{n}.") for n in slow):
                return real(obj, f, *args, **kwargs)
            buf = io.BytesIO()
            real(obj, buf, *args, **kwargs)
            data = buf.getvalue()
            with open(f, "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                time.sleep(600)  # killed here
                fh.write(data[len(data) // 2:])

        torch.save = slow_save
    term_at = os.environ.get("SIGTERM_AT")
    if term_at:
        import signal

        import setr.engine.loop as loop_module

        at, rank = (int(v) for v in term_at.split(":"))
        real_step, steps = loop_module.optimizer_step, []

        def step_then_signal(*args, **kwargs):
            steps.append(1)
            if int(os.environ.get("RANK", "0")) == rank and len(steps) == at:
                signal.raise_signal(signal.SIGTERM)  # lands in the middle of that iteration
            return real_step(*args, **kwargs)

        loop_module.optimizer_step = step_then_signal
    signals = os.environ.get("SIGNALS")
    if signals:
        import signal

        import setr.engine.loop as loop_module

        plan = dict(part.split(":") for part in signals.split(";"))
        target = os.getppid() if os.environ.get("SIGNAL_TO") == "parent" else os.getpid()

        def send(point):
            for name in plan.pop(point, "").split(","):
                if name:
                    os.kill(target, getattr(signal, f"SIG{name}"))
                    time.sleep(1.0)  # the handler runs here (a forwarded signal arrives a moment later)

        real_step2, steps2 = loop_module.optimizer_step, []

        def step_with_signals(*args, **kwargs):
            steps2.append(1)
            send(f"step{len(steps2)}")
            return real_step2(*args, **kwargs)

        loop_module.optimizer_step = step_with_signals
        seg_cls = task_class("seg")
        real_evaluate = seg_cls.evaluate

        def evaluate(self, it):
            send("eval")
            return real_evaluate(self, it)

        seg_cls.evaluate = evaluate
    nan_at = os.environ.get("NAN_AT")
    if nan_at:
        at, rank = (int(v) for v in nan_at.split(":"))
        spec = json.loads(sys.argv[1])
        cls = task_class(spec["task"])
        real_forward, calls = cls.forward, []

        def forward(self, batch, autocast):
            losses = real_forward(self, batch, autocast)
            calls.append(1)
            if int(os.environ.get("RANK", "0")) == rank and len(calls) - 1 == at:
                k = next(iter(losses))
                losses = {**losses, k: losses[k] * float("nan")}
            return losses

        cls.forward = forward


def main() -> int:
    torch.set_num_threads(1)
    spec = json.loads(sys.argv[1])
    _install_hooks()
    from setr.errors import SetrError

    if spec.get("cli"):
        return seg_cli(spec["root"], spec["work"], resume=spec.get("resume"), sets=spec.get("sets", ()),
                       validate=spec.get("validate", False))
    try:
        run(spec["task"], spec["root"], spec["work"], resume=spec.get("resume"), sets=spec.get("sets", ()),
            overwrite=spec.get("overwrite", False))
    except SetrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
