"""``setr demo`` / ``make demo``: generate the shapes dataset, train the demo preset on the CPU, evaluate, and
write ``metrics.json`` and overlays of a few validation images."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable

from PIL import Image

log = logging.getLogger(__name__)


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads counted once, where /proc/cpuinfo tells)."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cores, core = set(), {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("physical id", "core id"):
                core[key] = value.strip()
            elif not line.strip() and core:
                cores.add((core.get("physical id"), core.get("core id")))
                core = {}
        if core:
            cores.add((core.get("physical id"), core.get("core id")))
        physical = len(cores) if cores and None not in {c[1] for c in cores} else allowed
    except OSError:
        physical = allowed
    return max(1, min(allowed, physical))


def demo_threads() -> tuple[int, str]:
    """Torch threads for the demo and why: ``OMP_NUM_THREADS`` when set; else the physical cores, less those the
    machine is busy with (1-minute load average), at least 1. On a shared machine PyTorch's default (every core)
    makes a small model several times slower than one thread."""
    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        n = int(os.environ["OMP_NUM_THREADS"])
        return n, f"{n} thread(s), from OMP_NUM_THREADS"
    cores = physical_cores()
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        load = 0.0
    n = max(1, min(cores, int(cores - load + 0.5)))
    return n, (f"{n} thread(s): {cores} physical core(s), load average {load:.1f} "
               "(set OMP_NUM_THREADS=N to choose)")


def run_demo(work_dir: str | Path = "work_dirs/demo", iters: int | None = None, progress: bool = True,
             n_train: int = 200, n_val: int = 40, say: Callable[[str], None] | None = None) -> dict:
    """Returns the metrics; progress lines go to ``say`` (the command line passes ``print``), else to the log."""
    say = say or log.info
    import torch

    threads, why = demo_threads()
    torch.set_num_threads(threads)
    say(f"torch uses {why}")
    from .model_files import load_model
    from .data.datasets import build_dataset
    from .data.synthetic import write_folder
    from .engine.segmentation import train
    from .evaluation.evaluate import evaluate
    from .evaluation.metrics import format_table, to_json
    from .inference import Segmenter
    from .io.atomic import atomic_write_text
    from .outputs import ensure_writable_dir
    from .presets.demo import DEMO_SIZE, demo_preset

    work_dir = ensure_writable_dir(work_dir, "--work-dir")
    data = work_dir / "data"
    if not (data / "classes.txt").is_file():
        say(f"generating {n_train} + {n_val} images of textured shapes in {data}")
        write_folder(data, n_train=n_train, n_val=n_val, size=(DEMO_SIZE, DEMO_SIZE), seed=0)
    preset = demo_preset()
    if iters:
        preset.train.iters = iters
        preset.train.eval_interval = min(preset.train.eval_interval, iters)
    result = train(preset, data, work_dir, progress=progress, validate=False, overwrite=True)  # a re-run starts anew
    model, cfg = load_model(result.work_dir / "final.safetensors")
    seg = Segmenter(model, cfg, precision="fp32")  # the original arithmetic: `setr test` may pick bf16 (it says)
    val = build_dataset("folder", data, "val", cfg.num_classes)
    metrics = evaluate(seg, val, progress=progress)
    metrics.update({"iterations": result.iterations, "precision": seg.precision, "mode": seg.mode})
    atomic_write_text(work_dir / "metrics.json", to_json(metrics))
    overlays = work_dir / "overlays"
    overlays.mkdir(exist_ok=True)
    for i in range(min(6, len(val))):
        image = val.load_image(i)
        Image.fromarray(seg.overlay(image, seg.predict(image))).resize((4 * DEMO_SIZE, 4 * DEMO_SIZE), 0).save(
            overlays / f"{val.samples[i].name}.png")
    say(format_table(metrics))
    return json.loads(to_json(metrics))
