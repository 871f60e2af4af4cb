"""RetinaNet-HLG TRAINING golden cases (``retinanet_hlg/train_*.pt``): three AdamW iterations of the authors'
mmdet 2.26 runner on one fixed batch, checked through ``setr detect train`` as a user runs it.

The case's batch becomes a tiny COCO dataset (the photographs, the given boxes and labels), written ``iters``
times over in order so that ``train.shuffle=false`` feeds the same batch to every iteration within one epoch; its
initial weights become an mmdet-format ``--load-from`` checkpoint; the runner's iteration and epoch become
``train.schedule_iter_offset`` / ``schedule_epoch_offset``; augmentation is off as in the case (the one
``img_scale``, flip 0). Then, against the case:

* the pipeline (the same functions the training data goes through): image / pad shapes, scale factors, the gt
  boxes after Resize exactly, the normalised input (``input_sub``) atol 1e-5;
* the assignment (anchors, valid flags, MaxIoUAssigner, coder) on the case's batch: counts, ``pos_inds`` and
  labels exactly, box targets atol 1e-5, the batch's avg factor;
* per iteration (``metrics.jsonl``): ``loss_cls`` / ``loss_bbox`` / total and the per-level losses, rtol 1e-4 at
  iteration 0 and, later, 2e-2 when the sum of the three lrs exceeds 1e-4 (AdamW moves rounding-noise elements
  by +-lr, which perturbs later iterations; ``train_two_images``) or 1e-3 otherwise; every parameter's lr rtol
  1e-9 and weight decay exactly (the final checkpoint's optimizer groups);
* the final weights: every parameter element within 2.2 x sum(lr) of the golden (AdamW's bound) and at least 80%
  of all elements within 0.1 x sum(lr); BatchNorm running stats |diff| <= 0.25 (|v| + 0.01); counters exact.

Any field or value the case holds that we do not implement fails, naming the field.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import SetrError
from .base import OutputCheck
from .fields import INFO, check_fields, equals, one_of, unsupported

TRAIN_KIND = "retinanet_hlg_train_step"
PRESET = "retinanet_hlg_small_fpn_mstrain_1x_coco"
LOSS_RTOL_FIRST = 1e-4
LOSS_RTOL_LATER_LARGE_LR = 2e-2
LOSS_RTOL_LATER = 1e-3
LARGE_LR_SUM = 1e-4
LR_RTOL = 1e-9
INPUT_ATOL = 1e-5
TARGET_ATOL = 1e-5
WEIGHT_BOUND = 2.2  # x sum(lr): every element
WEIGHT_NEAR = 0.1  # x sum(lr): ...
WEIGHT_NEAR_SHARE = 0.8  # ... for at least this share of all elements
BN_RTOL, BN_FLOOR = 0.25, 0.01


def _positive_int(value: Any, path: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise unsupported(path, f"value {value!r} is not a positive integer")


def _number(value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise unsupported(path, f"value {value!r} is not a number")


def _nonneg(value: Any, path: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise unsupported(path, f"value {value!r} is not a non-negative integer")


def _ints(n: int):
    def check(value: Any, path: str) -> None:
        if not isinstance(value, (list, tuple)) or len(value) != n or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
            raise unsupported(path, f"value {value!r} is not {n} non-negative integers")
    return check


def _model_cfg_spec():
    from ..detection.anchors import FPN_STRIDES

    backbone = {
        "type": "HLGTransformer", "embed_dims": _ints(4), "num_heads": _ints(4), "depths": _ints(4), "in_chans": 3,
        "qkv_bias": True, "drop_rate": one_of(0.0),
        "drop_path_rate": one_of(0, 0.0),  # random masks would differ from the original's draws
        "h0_att": False,
        "proj_dwconv": "convbn", "downsampling": ["c", "sc", "sc", "sc"], "h0_h1_method": "mean",
        "crs_interval": [8, 4, 2, 1], "dynamic_position_bias": True,
        # accepted and ignored by the original class (specs/hlg.md resolution 21)
        "img_size": INFO, "patch_size": INFO, "mlp_ratios": INFO, "sr_ratios": INFO, "num_classes": INFO,
        "use_checkpoint": one_of(False), "pretrained": INFO,
    }
    head = {
        "type": "RetinaHead", "num_classes": _positive_int, "in_channels": _positive_int,
        "stacked_convs": _positive_int, "feat_channels": _positive_int,
        "anchor_generator": {"type": "AnchorGenerator", "octave_base_scale": _number,
                             "scales_per_octave": _positive_int, "ratios": INFO,  # used to build the preset
                             "strides": list(FPN_STRIDES)},
        "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4, "target_stds": [1.0] * 4},
        "loss_cls": {"type": "FocalLoss", "use_sigmoid": True, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0},
        "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0},
    }
    neck = {"type": "FPN", "in_channels": _ints(4), "out_channels": _positive_int, "start_level": 1,
            "add_extra_convs": "on_input", "num_outs": len(FPN_STRIDES), "relu_before_extra_convs": False}
    return {"type": "RetinaNet", "backbone": backbone, "neck": neck, "bbox_head": head, "train_cfg": TRAIN_CFG,
            "test_cfg": INFO,  # inference only
            "pretrained": INFO}


TRAIN_CFG = {"assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": _number, "neg_iou_thr": _number,
                          "min_pos_iou": one_of(0, 0.0), "ignore_iof_thr": -1},
             "allowed_border": -1, "pos_weight": -1, "debug": INFO}
_NORM = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "to_rgb": True}
_DIGEST = {k: INFO for k in ("shape", "sha256_float32", "sum", "abs_sum", "sq_sum", "min", "max", "channel_mean",
                             "row_mean", "col_mean")}
IMAGE_FIELDS = {"file": INFO, "photo": INFO, "crop": INFO, "gt_bboxes_input": INFO, "gt_labels_input": INFO,
                "flip": False, "input_digest": _DIGEST,
                # compared
                "gt_bboxes": INFO, "gt_labels": INFO, "ori_shape": INFO, "img_shape": INFO, "pad_shape": INFO,
                "scale_factor": INFO, "input_sub": INFO}
ITERATION_FIELDS = {"iteration": INFO, "runner_epoch": INFO, "runner_iter": INFO, "lr": INFO, "log_vars": INFO,
                    "loss_cls": INFO, "loss_bbox": INFO, "total_loss": INFO, "per_level_losses": INFO,
                    "grad_norm": INFO,  # gradients are not exposed by the CLI run; the losses and weights cover them
                    "num_samples": INFO}


def _pipeline(steps: Any, c: Mapping[str, Any]) -> None:
    where = "config.train_pipeline"
    types = [s.get("type") if isinstance(s, Mapping) else None for s in (steps or [])]
    want = ["LoadImageFromFile", "LoadAnnotations", "Resize", "RandomFlip", "Normalize", "Pad", "DefaultFormatBundle",
            "Collect"]
    if types != want:
        raise unsupported(where, f"steps {types} (implemented: {', '.join(want)})")
    specs = [
        {"type": "LoadImageFromFile", "to_float32": False, "color_type": "color"},
        {"type": "LoadAnnotations", "with_bbox": True, "with_label": True, "with_mask": False, "with_seg": False},
        {"type": "Resize", "img_scale": equals(tuple(c["img_scale"]), "config.img_scale"), "keep_ratio": True,
         "multiscale_mode": one_of("value", "range"), "bbox_clip_border": True},
        {"type": "RandomFlip", "flip_ratio": one_of(0.0, 0, None), "direction": "horizontal"},
        {"type": "Normalize", **_NORM},
        {"type": "Pad", "size_divisor": _positive_int, "pad_val": one_of(0, {"img": 0})},
        {"type": "DefaultFormatBundle"},
        {"type": "Collect", "keys": ["img", "gt_bboxes", "gt_labels"], "meta_keys": INFO},
    ]
    for i, (step, spec) in enumerate(zip(steps, specs)):
        check_fields(step, spec, f"{where}.{i}")


def validate_train_case(case: Mapping[str, Any]) -> None:
    """Fail naming the field on anything in a training case that the checker does not implement."""
    check_fields(case, {"config": INFO, "batch": INFO, "assignment": INFO, "initial_state_dict": INFO,
                        "final_state_dict": INFO, "iterations": INFO, "readme": INFO}, "")
    c = case["config"]
    check_fields(c, {
        "name": INFO, "kind": TRAIN_KIND, "reference": INFO, "original_config": INFO, "model_cfg": _model_cfg_spec(),
        "narrowing": INFO, "train_pipeline": INFO, "img_scale": _ints(2), "train_cfg": INFO, "img_norm_cfg": _NORM,
        "optimizer": {"type": "AdamW", "lr": _number, "betas": INFO, "weight_decay": _number,
                      "paramwise_cfg": {"custom_keys": {"norm": {"decay_mult": _number}}}},
        "optimizer_config": {"grad_clip": None},
        "lr_config": {"policy": "step", "warmup": "linear", "warmup_iters": _nonneg,
                      "warmup_ratio": _number, "step": INFO, "gamma": _number, "by_epoch": True},
        "runner": {"type": "EpochBasedRunner", "max_epochs": INFO},
        "samples_per_gpu": _positive_int, "iters": _positive_int, "runner_epoch": _nonneg, "runner_iters": INFO,
        "seeds": INFO, "init": INFO, "head_rule": INFO, "photographs": INFO, "weight_decay": INFO,
        "distinct_initial_lrs": INFO, "notes": INFO, "notes_ref": INFO,
    }, "config")
    if dict(c["train_cfg"]) != dict(c["model_cfg"]["train_cfg"]):
        raise unsupported("config.train_cfg", "differs from config.model_cfg.train_cfg")
    betas = c["optimizer"]["betas"]
    if not (isinstance(betas, (list, tuple)) and len(betas) == 2):
        raise unsupported("config.optimizer.betas", f"value {betas!r} is not two numbers")
    step = c["lr_config"]["step"]
    if not (isinstance(step, (list, tuple)) and all(isinstance(s, int) and s > 0 for s in step)):
        raise unsupported("config.lr_config.step", f"value {step!r}: only a list of epochs is implemented")
    m = c["model_cfg"]
    if list(m["neck"]["in_channels"]) != list(m["backbone"]["embed_dims"]):
        raise unsupported("config.model_cfg.neck.in_channels", "differs from the backbone's embed_dims")
    if m["bbox_head"]["in_channels"] != m["neck"]["out_channels"]:
        raise unsupported("config.model_cfg.bbox_head.in_channels", "differs from the FPN's out_channels")
    _pipeline(c["train_pipeline"], c)
    its = c["runner_iters"]
    if not (isinstance(its, (list, tuple)) and len(its) == c["iters"]
            and all(isinstance(v, int) and v == its[0] + k for k, v in enumerate(its))):
        raise unsupported("config.runner_iters", f"value {its!r}: consecutive iterations, one per config.iters")
    if len(case["iterations"]) != c["iters"]:
        raise unsupported("iterations", f"{len(case['iterations'])} entries for config.iters {c['iters']}")
    for k, it in enumerate(case["iterations"]):
        check_fields(it, ITERATION_FIELDS, f"iterations.{k}")
        if (it["iteration"], it["runner_iter"], it["runner_epoch"]) != (k, its[k], c["runner_epoch"]):
            raise unsupported(f"iterations.{k}.runner_epoch", "all iterations must run in config.runner_epoch at "
                                                             "config.runner_iters")
        check_fields(it["log_vars"], {"loss_cls": INFO, "loss_bbox": INFO, "loss": INFO}, f"iterations.{k}.log_vars")
        check_fields(it["per_level_losses"], {"loss_cls": INFO, "loss_bbox": INFO}, f"iterations.{k}.per_level_losses")
    b = case["batch"]
    check_fields(b, {"images": INFO, "batch_input_shape": INFO, "batch_digest": _DIGEST}, "batch")
    if len(b["images"]) != c["samples_per_gpu"]:
        raise unsupported("batch.images", f"{len(b['images'])} images for samples_per_gpu {c['samples_per_gpu']}")
    for i, im in enumerate(b["images"]):
        check_fields(im, IMAGE_FIELDS, f"batch.images.{i}")
        # the batch goes through a COCO training set, read as mmdet's CocoDataset reads one: an image without
        # boxes would be skipped and a box under 1 px or outside the image dropped
        boxes = im["gt_bboxes_input"]
        h, w = int(im["ori_shape"][0]), int(im["ori_shape"][1])
        if boxes.numel() == 0:
            raise unsupported(f"batch.images.{i}.gt_bboxes_input", "an image without boxes (a COCO training set "
                                                                   "skips it)")
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        inside = (boxes[:, 2].clamp(max=w) - boxes[:, 0].clamp(min=0)).clamp(min=0) * \
                 (boxes[:, 3].clamp(max=h) - boxes[:, 1].clamp(min=0)).clamp(min=0)
        if bool(((bw < 1) | (bh < 1) | (inside <= 0)).any()):
            raise unsupported(f"batch.images.{i}.gt_bboxes_input", "a box under 1 px or outside the image (a COCO "
                                                                   "training set drops it)")
    a = case["assignment"]
    check_fields(a, {"featmap_sizes": INFO, "level_num_anchors": INFO, "images": INFO,
                     "num_total_pos_avg_factor": INFO}, "assignment")
    for i, im in enumerate(a["images"]):
        check_fields(im, {k: INFO for k in ("num_anchors", "num_valid", "num_pos", "num_neg", "pos_inds",
                                            "pos_labels", "pos_bbox_targets")}, f"assignment.images.{i}")


def train_overrides(case: Mapping[str, Any]) -> list[str]:
    """The ``--set`` list that makes the preset the case's narrowed model and recipe, augmentation off."""
    c = case["config"]
    m = c["model_cfg"]
    bb, head = m["backbone"], m["bbox_head"]
    anchors, assigner = head["anchor_generator"], m["train_cfg"]["assigner"]
    opt, lr_cfg = c["optimizer"], c["lr_config"]

    def seq(v) -> str:
        return "[" + ",".join(repr(x) for x in v) + "]"

    return [
        f"model.embed_dims={seq(bb['embed_dims'])}", f"model.num_heads={seq(bb['num_heads'])}",
        f"model.depths={seq(bb['depths'])}", f"model.drop_path_rate={float(bb['drop_path_rate'])!r}",
        f"model.fpn_channels={m['neck']['out_channels']}", f"model.head_channels={head['feat_channels']}",
        f"model.stacked_convs={head['stacked_convs']}",
        f"model.octave_base_scale={float(anchors['octave_base_scale'])!r}",
        f"model.scales_per_octave={anchors['scales_per_octave']}",
        f"model.anchor_ratios={seq(float(r) for r in anchors['ratios'])}",
        f"model.fg_iou_thresh={float(assigner['pos_iou_thr'])!r}",
        f"model.bg_iou_thresh={float(assigner['neg_iou_thr'])!r}",
        f"model.train_min_sizes=[{min(c['img_scale'])}]", f"model.max_size={max(c['img_scale'])}",
        f"model.size_divisible={c['train_pipeline'][5]['size_divisor']}",
        f"train.lr={float(opt['lr'])!r}", f"train.betas={seq(float(x) for x in opt['betas'])}",
        f"train.weight_decay={float(opt['weight_decay'])!r}", "train.no_decay_key=norm",
        f"train.no_decay_mult={float(opt['paramwise_cfg']['custom_keys']['norm']['decay_mult'])!r}",
        f"train.milestones={seq(lr_cfg['step'])}", f"train.gamma={float(lr_cfg.get('gamma', 0.1))!r}",
        f"train.warmup_iters={lr_cfg['warmup_iters']}", f"train.warmup_ratio={float(lr_cfg['warmup_ratio'])!r}",
        "train.grad_clip=null", "train.flip_prob=0.0", "train.shuffle=false", "train.workers=0",
        f"train.batch_size={c['samples_per_gpu']}", "train.epochs=1", "train.eval_interval=0",
        "train.checkpoint_interval=0", "train.log_interval=1",
        f"train.schedule_iter_offset={c['runner_iters'][0]}", f"train.schedule_epoch_offset={c['runner_epoch']}",
    ]


def write_coco_batch(root: Path, case: Mapping[str, Any], image_dir: Path, repeats: int) -> Path:
    """The case's batch, ``repeats`` times over in order, as ``root/train2017`` + ``annotations``."""
    from ..io.images import read_image

    c = case["config"]
    num_classes = int(c["model_cfg"]["bbox_head"]["num_classes"])
    (root / "train2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    for r in range(repeats):
        for im in case["batch"]["images"]:
            src = image_dir / im["file"]
            if not src.is_file():
                raise SetrError(f"{src}: the case's photograph is missing (it lies next to the case file)")
            name = f"{len(images) + 1:04d}_{im['file']}"
            shutil.copyfile(src, root / "train2017" / name)
            h, w = read_image(src).shape[:2]
            img_id = len(images) + 1
            images.append({"id": img_id, "file_name": name, "height": int(h), "width": int(w)})
            for box, label in zip(im["gt_bboxes_input"].tolist(), im["gt_labels_input"].tolist()):
                x1, y1, x2, y2 = box
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": int(label) + 1,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    cats = [{"id": k + 1, "name": f"class_{k}"} for k in range(num_classes)]
    (root / "annotations" / "instances_train2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def check_retinanet_train_case(case: Mapping[str, Any], device: str = "cpu", work_dir: str | Path | None = None,
                               image_dir: str | Path | None = None) -> list[OutputCheck]:
    """Run ``setr detect train`` on the case and compare pipeline, assignment, losses, lrs and final weights."""
    from ..cli import main
    from ..engine.state import read_checkpoint

    c = case.get("config", {})
    if c.get("kind") != TRAIN_KIND:
        raise SetrError(f"unknown RetinaNet-HLG training case kind {c.get('kind')!r} (this checker: {TRAIN_KIND})")
    validate_train_case(case)
    image_dir = Path(image_dir) if image_dir is not None else Path(".")
    overrides = train_overrides(case)
    checks = _check_pipeline_and_assignment(case, image_dir, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(work_dir or tmp)
        data = write_coco_batch(tmp / "data", case, image_dir, int(c["iters"]))
        weights = tmp / "initial_weights.pth"
        torch.save({"meta": {}, "state_dict": dict(case["initial_state_dict"])}, weights)
        work = tmp / "work"
        argv = ["detect", "train", PRESET, "--data-root", str(data), "--work-dir", str(work), "--load-from",
                str(weights), "--no-progress", "--device", device, "--set", *overrides]
        with torch.enable_grad():  # the checker script turns gradients off for the inference cases
            code = main(argv)
        if code != 0:
            raise SetrError(f"setr detect train failed on case {c.get('name')}")
        records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines() if line.strip()]
        final = work / "epoch_1.pth"
        if not final.is_file():
            raise SetrError(f"{final}: setr detect train wrote no final checkpoint")
        state = read_checkpoint(final)
    checks += _check_iterations(case, records)
    checks += _check_lrs(case, records)
    checks += _check_groups(case, state)
    checks += _check_weights(case, state["state_dict"])
    return checks


# ------------------------------------------------------------------------------------------------- pieces
def _exact(name: str, ok: bool, note: str = "") -> OutputCheck:
    return OutputCheck(name, 0.0 if ok else float("inf"), 0.0, "" if ok else note)


def _featmap_sizes(hw) -> list[tuple[int, int]]:
    """P3..P7 sizes of a padded input: the backbone's stride-2 convs give ceil halvings."""
    h, w = int(hw[0]), int(hw[1])
    sizes = []
    for level in range(1, 8):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        if level >= 3:
            sizes.append((h, w))
    return sizes


def _check_pipeline_and_assignment(case, image_dir: Path, overrides) -> list[OutputCheck]:
    from ..detection.training import RetinaTrainingHead
    from ..detection.train_pipeline import collate_train, train_transform
    from ..io.images import read_image
    from ..overrides import apply_overrides
    from .. import presets

    c = case["config"]
    preset = apply_overrides(presets.get(PRESET, "detection"), list(overrides))
    checks: list[OutputCheck] = []
    samples = []
    for i, im in enumerate(case["batch"]["images"]):
        img = read_image(image_dir / im["file"])
        s = train_transform(img, im["gt_bboxes_input"].numpy(), im["gt_labels_input"].numpy(), [tuple(c["img_scale"])],
                            0.0, size_divisor=preset.model.size_divisible)
        samples.append(s)
        meta = s.meta
        same = (tuple(meta.ori_shape) == tuple(im["ori_shape"]) and tuple(meta.img_shape) == tuple(im["img_shape"])
                and tuple(meta.pad_shape) == tuple(im["pad_shape"])
                and np.array_equal(meta.scale_factor, np.asarray(im["scale_factor"], dtype=np.float32)))
        checks.append(_exact(f"img{i}.shapes", same, f"{meta.img_shape} {meta.pad_shape} {meta.scale_factor}"))
        checks.append(_exact(f"img{i}.gt_bboxes", torch.equal(s.gt_bboxes, im["gt_bboxes"])
                             and torch.equal(s.gt_labels, im["gt_labels"]), "after Resize + clip"))
        sub = s.img[:, ::16, ::16]
        want = im["input_sub"]
        h, w = min(sub.shape[1], want.shape[1]), min(sub.shape[2], want.shape[2])
        err = (sub[:, :h, :w] - want[:, :h, :w]).abs().max().item()
        checks.append(OutputCheck(f"img{i}.input_sub", err, INPUT_ATOL, "normalised input, ::16"))
    images, metas, boxes, labels = collate_train(samples)
    checks.append(_exact("batch_input_shape", tuple(images.shape[-2:]) == tuple(case["batch"]["batch_input_shape"]),
                         f"{tuple(images.shape[-2:])}"))
    a = case["assignment"]
    sizes = _featmap_sizes(images.shape[-2:])
    checks.append(_exact("featmap_sizes", [tuple(s) for s in sizes] == [tuple(s) for s in a["featmap_sizes"]],
                         f"{sizes}"))
    head = RetinaTrainingHead(preset.model, int(c["model_cfg"]["bbox_head"]["num_classes"]))
    t = head.targets([tuple(s) for s in a["featmap_sizes"]], metas, boxes, labels)
    checks.append(_exact("level_num_anchors", t.level_sizes == list(a["level_num_anchors"]), f"{t.level_sizes}"))
    checks.append(_exact("avg_factor", t.avg_factor == a["num_total_pos_avg_factor"], f"{t.avg_factor}"))
    for i, (got, want) in enumerate(zip(t.images, a["images"])):
        counts = (got.labels.numel(), got.num_valid, got.num_pos, got.num_neg)
        wanted = (want["num_anchors"], want["num_valid"], want["num_pos"], want["num_neg"])
        checks.append(_exact(f"assign{i}.counts", counts == wanted, f"{counts} != {wanted}"))
        same_pos = torch.equal(got.pos_inds.cpu(), want["pos_inds"])
        checks.append(_exact(f"assign{i}.pos_inds", same_pos, "indices into the valid anchors differ"))
        if not same_pos:
            continue
        # as the case stores them: the unmapped per-anchor targets read at the sampler's pos_inds
        checks.append(_exact(f"assign{i}.pos_labels", torch.equal(got.labels[got.pos_inds].cpu(), want["pos_labels"])))
        err = (got.bbox_targets[got.pos_inds].cpu() - want["pos_bbox_targets"]).abs().max().item() \
            if want["pos_bbox_targets"].numel() else 0.0
        checks.append(OutputCheck(f"assign{i}.targets", err, TARGET_ATOL, "encoded deltas"))
    return checks


def _lr_sum(case) -> float:
    first = next(iter(case["iterations"][0]["lr"]))
    return sum(it["lr"][first] for it in case["iterations"])


def _check_iterations(case, records) -> list[OutputCheck]:
    checks = []
    by_iter = {r["iteration"]: r for r in records}
    later = LOSS_RTOL_LATER_LARGE_LR if _lr_sum(case) > LARGE_LR_SUM else LOSS_RTOL_LATER
    for want in case["iterations"]:
        k = want["iteration"]
        rtol = LOSS_RTOL_FIRST if k == 0 else later
        rec = by_iter.get(k)
        if rec is None:
            checks.append(OutputCheck(f"iter{k}.losses", float("inf"), rtol, "iteration missing from metrics.jsonl"))
            continue
        losses = rec["losses"]
        per = {kind: [losses.get(f"{kind}.{lv}", float("nan")) for lv in range(len(want["per_level_losses"][kind]))]
               for kind in ("loss_cls", "loss_bbox")}
        pairs = [(sum(per["loss_cls"]), want["loss_cls"]), (sum(per["loss_bbox"]), want["loss_bbox"]),
                 (rec["total_loss"], want["total_loss"]), (rec["total_loss"], want["log_vars"]["loss"])]
        for kind in per:
            pairs += list(zip(per[kind], want["per_level_losses"][kind]))
        # a level without positives has loss_bbox 0 exactly: compared absolutely below 1e-12
        errs = [abs(g - w) / max(abs(w), 1e-12) if math.isfinite(g) else float("inf") for g, w in pairs]
        extra = set(losses) - {f"{kind}.{lv}" for kind in per for lv in range(len(per[kind]))}
        checks.append(OutputCheck(f"iter{k}.losses", float("inf") if extra else max(errs), rtol,
                                  "relative: loss_cls, loss_bbox, total, per level"
                                  + (f"; unexpected {sorted(extra)}" if extra else "")))
    return checks


def _check_groups(case, state) -> list[OutputCheck]:
    """Every parameter's lr per iteration (metrics.jsonl's group lrs) and weight decay (the optimizer's groups)."""
    from ..engine.common import param_group_key, param_group_name

    groups = {g.get("name"): g for g in state["optimizer"]["param_groups"]}
    wd_ok = True
    note = ""
    for name, want in case["config"]["weight_decay"].items():
        g = groups.get(param_group_name(param_group_key(name, "norm")))
        if g is None or g["weight_decay"] != want:
            wd_ok, note = False, f"{name}: {None if g is None else g['weight_decay']} != {want}"
            break
    checks = [_exact("weight_decay", wd_ok, note)]
    return checks


def _check_lrs(case, records) -> list[OutputCheck]:
    from ..engine.common import param_group_key, param_group_name

    checks = []
    by_iter = {r["iteration"]: r for r in records}
    for want in case["iterations"]:
        rec = by_iter.get(want["iteration"], {"lr": {}})
        worst = 0.0
        for name, lr in want["lr"].items():
            got = rec["lr"].get(param_group_name(param_group_key(name, "norm")))
            err = float("inf") if got is None else abs(got - lr) / lr
            worst = max(worst, err)
        checks.append(OutputCheck(f"iter{want['iteration']}.lr", worst, LR_RTOL,
                                  f"relative, {len(want['lr'])} parameters"))
    return checks


def _check_weights(case, got) -> list[OutputCheck]:
    want_sd = case["final_state_dict"]
    params = set(case["iterations"][0]["lr"])
    lr_sum = _lr_sum(case)
    keys = set(want_sd) ^ set(got)
    checks = [_exact("final.keys", not keys, f"differ: {sorted(keys)[:3]}")]
    worst, worst_name, near, total = 0.0, "", 0, 0
    bn_worst, bn_name, counters_ok = 0.0, "", True
    for k, w in want_sd.items():
        g = got.get(k)
        if g is None or g.shape != w.shape:
            worst, worst_name = float("inf"), k
            continue
        if not w.is_floating_point():
            counters_ok &= torch.equal(g, w)
            continue
        diff = (g.double() - w.double()).abs()
        if k in params:
            m = diff.max().item() / lr_sum if diff.numel() else 0.0
            if m > worst:
                worst, worst_name = m, k
            near += int((diff <= WEIGHT_NEAR * lr_sum).sum())
            total += diff.numel()
        else:  # BatchNorm running statistics
            ratio = (diff / (BN_RTOL * (w.double().abs() + BN_FLOOR))).max().item() if diff.numel() else 0.0
            if ratio > bn_worst:
                bn_worst, bn_name = ratio, k
    checks.append(OutputCheck("final.params", worst, WEIGHT_BOUND, f"max |diff| / sum(lr) (worst {worst_name})"))
    share = near / max(total, 1)
    checks.append(OutputCheck("final.params_near", 1.0 - share, 1.0 - WEIGHT_NEAR_SHARE,
                              f"share {share:.3f} of {total} elements within {WEIGHT_NEAR} x sum(lr)"))
    checks.append(OutputCheck("final.bn_stats", bn_worst, 1.0, f"|diff| / (0.25 (|v| + 0.01)) (worst {bn_name})"))
    checks.append(_exact("final.counters", counters_ok, "num_batches_tracked differs"))
    return checks
