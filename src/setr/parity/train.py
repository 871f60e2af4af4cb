"""Training-step golden cases (``setr_train``): three SGD iterations of the original trainer on one batch.

The case's batch becomes a folder dataset of PNGs, its initial weights an original-format ``--load-from``
checkpoint, and ``setr train`` runs as a user runs it, with augmentation switched off by ``--set``. Then the
per-head losses and learning rates of every iteration (``metrics.jsonl``) and the final weights (the last
``iter_N.pth``) are compared with the original's.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import SetrError
from .fields import INFO, check_fields, equals, unsupported

LOSS_RTOL = 1e-5  # per-head losses, relative
LR_RTOL = 1e-9  # learning rates, relative
WEIGHT_RTOL = 1e-4  # final tensors: max|got - want| <= 1e-4 x max(max|want|, 1e-2)


def is_train_case(case: Mapping[str, Any]) -> bool:
    return "iterations" in case and "initial_state_dict" in case


def lr_group(name: str) -> str:
    """The original's rule (``paramwise_cfg.custom_keys {'head': lr_mult}``): a name containing "head"."""
    return "heads" if "head" in name else "backbone"


def train_overrides(case: Mapping[str, Any]) -> list[str]:
    """The ``--set`` list of the case: the preset's narrowing, then augmentation off and the batch as run."""
    c = case["config"]
    size = int(c["img_size"])
    return [*c["setr_overrides"], "data.dataset=folder", f"data.img_scale=[{size},{size}]", "data.ratio_range=[1,1]",
            "data.flip_prob=0", "data.photometric=false", "data.workers=0", f"train.batch_size={c['batch_size']}",
            f"train.iters={c['iters']}"]


def _verify_recipe(c: Mapping[str, Any], preset) -> None:
    r = preset.train
    check_fields(c["optimizer"], {
        "type": "SGD", "lr": equals(r.lr, "train.lr"), "momentum": equals(r.momentum, "train.momentum"),
        "weight_decay": equals(r.weight_decay, "train.weight_decay"), "nesterov": False,
        "paramwise_cfg": {"custom_keys": {"head": {"lr_mult": equals(r.head_lr_mult, "train.head_lr_mult")}}},
    }, "config.optimizer")
    if r.optimizer != "sgd":
        raise unsupported("config.optimizer.type", f"SGD, but the preset trains with {r.optimizer}")
    check_fields(c["lr_config"], {"policy": "poly", "power": equals(r.poly_power, "train.poly_power"),
                                  "min_lr": equals(r.min_lr, "train.min_lr"), "by_epoch": False}, "config.lr_config")
    check_fields(c["optimizer_config"], {"grad_clip": None}, "config.optimizer_config")
    m = preset.model
    check_fields(c["img_norm_cfg"], {"mean": equals(list(m.mean), "model.mean"),
                                     "std": equals(list(m.std), "model.std"), "to_rgb": True}, "config.img_norm_cfg")
    if r.loss_normalisation != "all_pixels":
        raise unsupported("config", "the original averages the loss over all pixels; the preset says "
                                    f"{r.loss_normalisation}")
    heads = c["mmseg_model_cfg"].get("auxiliary_head") or []
    heads = heads if isinstance(heads, list) else [heads]
    if len(heads) != len(m.aux_heads):
        raise unsupported("config.mmseg_model_cfg.auxiliary_head", f"{len(heads)} heads, the preset has "
                                                                 f"{len(m.aux_heads)}")
    for i, (h, ours) in enumerate(zip(heads, m.aux_heads)):
        weight = h.get("loss_decode", {}).get("loss_weight", 1.0)
        if abs(weight - ours.loss_weight) > 1e-12:
            raise unsupported(f"config.mmseg_model_cfg.auxiliary_head.{i}.loss_decode.loss_weight",
                              f"{weight} differs from model.aux_heads.{i}.loss_weight {ours.loss_weight}")


def check_train_case(case: Mapping[str, Any], device: str = "cpu", work_dir: str | Path | None = None):
    """Run ``setr train`` on the case and compare losses, learning rates and final weights."""
    from ..cli import main
    from ..engine.state import read_checkpoint
    from ..presets import with_overrides
    from .base import OutputCheck

    check_fields(case, {"config": INFO, "batch": INFO, "initial_state_dict": INFO, "final_state_dict": INFO,
                        "iterations": INFO, "readme": INFO}, "")
    c = case["config"]
    check_fields(c, {"name": INFO, "reference_repo": INFO, "mmcv": INFO, "original_config": INFO, "seed": INFO,
                     "img_size": INFO, "num_classes": INFO, "class_names": INFO, "iters": INFO,
                     "batch_size": INFO, "mmseg_model_cfg": INFO, "optimizer": INFO, "lr_config": INFO,
                     "optimizer_config": INFO, "img_norm_cfg": INFO, "distinct_initial_lrs": INFO,
                     "ignore_fraction": INFO, "float64_check": INFO, "setr_preset": INFO, "setr_overrides": INFO,
                     "sizes": INFO}, "config")
    check_fields(case["batch"], {"images_rgb": INFO, "masks": INFO, "names": INFO, "img": INFO,
                                 "gt_semantic_seg": INFO}, "batch")
    overrides = train_overrides(case)
    preset = with_overrides(c["setr_preset"], overrides)
    if preset.model.num_classes != c["num_classes"] or len(c["class_names"]) != c["num_classes"]:
        raise unsupported("config.num_classes", f"{c['num_classes']} (the preset + overrides give "
                                                f"{preset.model.num_classes}, class_names {len(c['class_names'])})")
    from .pipeline import check_mmseg_model_cfg

    _verify_recipe(c, preset)
    model_cfg = dict(c["mmseg_model_cfg"])
    model_cfg.pop("auxiliary_head", None)  # verified above (count and loss weights)
    check_mmseg_model_cfg(model_cfg, preset.model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(work_dir or tmp)
        data = write_folder_dataset(tmp / "data", case["batch"], c["class_names"])
        weights = tmp / "initial_weights.pth"
        torch.save({"meta": {}, "state_dict": dict(case["initial_state_dict"])}, weights)
        work = tmp / "work"
        argv = ["train", c["setr_preset"], "--data-root", str(data), "--work-dir", str(work), "--load-from",
                str(weights), "--no-validate", "--no-progress", "--device", device, "--set", *overrides]
        with torch.enable_grad():  # the checker script turns gradients off for the inference cases
            code = main(argv)
        if code != 0:
            raise SetrError(f"setr train failed on case {c.get('name')}")
        records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines() if line.strip()]
        last = work / f"iter_{c['iters']}.pth"
        if not last.is_file():
            raise SetrError(f"{last}: setr train wrote no final checkpoint")
        got_weights = read_checkpoint(last)["state_dict"]
    return _compare(case, records, got_weights, OutputCheck)


def _compare(case, records, got_weights, OutputCheck) -> list:
    checks = []
    by_iter = {r["iteration"]: r for r in records}
    for want in case["iterations"]:
        it = want["iteration"]
        check_fields(want, {"iteration": INFO, "lr": INFO, "log_vars": INFO, "losses": INFO,
                            "total_loss": INFO}, f"iterations.{it}")
        rec = by_iter.get(it)
        if rec is None:
            checks.append(OutputCheck(f"iter{it}.losses", float("inf"), LOSS_RTOL, "iteration missing"))
            continue
        errs = [abs(rec["losses"].get(k, float("inf")) - v) / max(abs(v), 1e-12) for k, v in want["losses"].items()]
        errs.append(abs(rec["total_loss"] - want["total_loss"]) / max(abs(want["total_loss"]), 1e-12))
        if set(rec["losses"]) != set(want["losses"]):
            errs.append(float("inf"))
        checks.append(OutputCheck(f"iter{it}.losses", max(errs), LOSS_RTOL, "relative, per head and total"))
        lr_errs = [abs(rec["lr"][lr_group(k)] - v) / v for k, v in want["lr"].items()]
        checks.append(OutputCheck(f"iter{it}.lr", max(lr_errs), LR_RTOL, f"relative, {len(want['lr'])} parameters"))
    want_weights = {k: v for k, v in case["final_state_dict"].items() if "conv_seg" not in k}
    worst, name = 0.0, ""
    missing = set(want_weights) ^ {k for k in got_weights if "conv_seg" not in k}
    for k, w in want_weights.items():
        g = got_weights.get(k)
        if g is None or g.shape != w.shape:
            worst, name = float("inf"), k
            continue
        if not w.is_floating_point():
            ratio = 0.0 if torch.equal(g, w) else float("inf")
        else:
            tol = WEIGHT_RTOL * max(w.double().abs().max().item(), 1e-2)
            ratio = (g.double() - w.double()).abs().max().item() / tol
        if not np.isfinite(ratio) or ratio > worst:
            worst, name = ratio, k
    checks.append(OutputCheck("final_weights", float("inf") if missing else worst, 1.0,
                              f"max err / tolerance over {len(want_weights)} tensors (worst {name})"
                              + (f"; keys differ: {sorted(missing)[:3]}" if missing else "")))
    return checks


def write_folder_dataset(root: Path, batch: Mapping[str, Any], class_names) -> Path:
    """The case's batch as a folder dataset: images/train/*.png, masks/train/*.png, classes.txt."""
    from PIL import Image

    (root / "images" / "train").mkdir(parents=True)
    (root / "masks" / "train").mkdir(parents=True)
    for name, img, mask in zip(batch["names"], batch["images_rgb"], batch["masks"]):
        Image.fromarray(np.asarray(img, dtype=np.uint8)).save(root / "images" / "train" / f"{name}.png")
        Image.fromarray(np.asarray(mask, dtype=np.uint8)).save(root / "masks" / "train" / f"{name}.png")
    (root / "classes.txt").write_text("\n".join(class_names) + "\n")
    return root
