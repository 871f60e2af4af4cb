"""``setr demo`` / ``make demo``: generate the shapes dataset, train the demo preset on the CPU, evaluate, and
write ``metrics.json`` and overlays of a few validation images."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

from PIL import Image

log = logging.getLogger(__name__)


def run_demo(work_dir: str | Path = "work_dirs/demo", iters: int | None = None, progress: bool = True,
             n_train: int = 200, n_val: int = 40, say: Callable[[str], None] | None = None) -> dict:
    """Returns the metrics; progress lines go to ``say`` (the command line passes ``print``), else to the log."""
    say = say or log.info
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
