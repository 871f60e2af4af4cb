"""RetinaNet-HLG training: the authors' mmdet 2.26 recipe as a task of the shared loop (:mod:`setr.engine.loop`).

* data: COCO train2017 through the original training pipeline (:mod:`.train_pipeline`: one of the six scales and
  the flip drawn per image, OpenCV resize, normalise, pad 32, batch padding);
* step: the network's raw per-level outputs (:class:`.model.RetinaNetHLG`), targets by mmdet's anchors, MaxIoU
  assigner and delta coder, focal + L1 losses per level normalised by ONE batch-wide ``sum_i max(num_pos_i, 1)``
  (:mod:`.losses`). The logged losses are the per-level ones, ``loss_cls.L`` and ``loss_bbox.L`` (their sum is the
  total); ``train.log`` also shows the sums ``loss_cls`` / ``loss_bbox`` as mmdet logs them;
* optimiser: :func:`setr.engine.common.build_optimizer` (AdamW; weight decay 0 for parameters whose NAME contains
  "norm", mmcv ``custom_keys``);
* lr: mmcv's step schedule by EPOCH with linear warm-up by ITERATION (:func:`setr.engine.schedule.step_warmup_lr`),
  set before every iteration from the iteration alone, so ``--resume`` continues exactly;
* after each epoch ``epoch_N.pth`` (and every ``checkpoint_interval`` iterations ``iter_N.pth``); COCO bbox AP
  every ``eval_interval`` epochs; torchrun DDP (each process normalises by its own positives, as mmdet 2.x).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from ..dist import DistInfo, all_reduce_sum
from ..engine.loop import TrainTask, run_training
from ..errors import SetrError
from ..presets import Preset
from .coco import CocoDetection
from .evaluation import METRIC_NAMES, check_categories

CKPT_FORMAT = "setr-det-1"


def resolve_preset(preset: str | Preset) -> Preset:
    from .. import presets

    return presets.get(preset, "detection") if isinstance(preset, str) else preset


class RetinaTrainingHead:
    """Anchors, assigner, coder and loss settings of a preset: (cls_scores, bbox_preds, batch) -> per-level
    losses. Kept apart from the network so the golden checker can read the assignment it computes."""

    def __init__(self, cfg, num_classes: int):
        from .anchors import anchor_generator_from_config
        from .assigner import MaxIoUAssigner
        from .box_coder import DeltaXYWHBBoxCoder
        from .losses import RetinaLossConfig

        self.num_classes = int(num_classes)
        self.generator = anchor_generator_from_config(cfg)
        self.assigner = MaxIoUAssigner(cfg.fg_iou_thresh, cfg.bg_iou_thresh, min_pos_iou=0.0)
        self.coder = DeltaXYWHBBoxCoder()
        self.loss_cfg = RetinaLossConfig(self.num_classes)

    def targets(self, featmap_sizes, metas, gt_bboxes, gt_labels, device=None):
        from .losses import batch_targets

        metas = [m if isinstance(m, dict) else {"pad_shape": m.pad_shape} for m in metas]
        with torch.no_grad():
            return batch_targets(featmap_sizes, metas, [b.to(device) for b in gt_bboxes],
                                 [lab.to(device) for lab in gt_labels], self.num_classes, self.generator,
                                 self.assigner, self.coder, device=device)

    def losses(self, cls_scores, bbox_preds, metas, gt_bboxes, gt_labels) -> dict[str, torch.Tensor]:
        from .losses import retina_losses

        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        targets = self.targets(sizes, metas, gt_bboxes, gt_labels, device=cls_scores[0].device)
        cls, box = retina_losses(cls_scores, bbox_preds, targets, self.loss_cfg)
        out = {f"loss_cls.{i}": v for i, v in enumerate(cls)}
        out.update({f"loss_bbox.{i}": v for i, v in enumerate(box)})
        return out


def train_detector(preset: str | Preset, data_root: str | Path, work_dir: str | Path, *,
                   epochs: int | None = None, batch_size: int | None = None, amp: str | None = None,
                   resume: bool | str | Path | None = None, device: str | None = None, seed: int = 0,
                   progress: bool = True, overwrite: bool = False, load_from: str | Path | None = None) -> dict:
    """Train on ``data_root`` (COCO layout, train2017 + optional val2017) through the shared loop.
    ``resume``: True / "latest" for the newest checkpoint of ``work_dir``, or a path. ``load_from``: initial
    weights (an mmdet RetinaNet checkpoint or ours) instead of the preset's initialisation. Returns the metrics
    dict (also ``work_dir/metrics.json``)."""
    p = resolve_preset(preset)
    if epochs is not None:
        p.train.epochs = int(epochs)
    if batch_size is not None:
        p.train.batch_size = int(batch_size)
    if amp not in (None, "bf16", "fp16"):
        raise SetrError(f"--amp {amp}: choose bf16 or fp16")
    task = DetectionTask(p, Path(data_root), Path(work_dir), seed, load_from=load_from)
    result = run_training(task, work_dir, resume=resume, overwrite=overwrite, amp=amp, device=device,
                          progress=progress)
    return result.finished or {}


class DetectionTask(TrainTask):
    """RetinaNet-HLG, mmdet's 1x recipe, epoch-based."""

    kind = "detection"
    ckpt_format = CKPT_FORMAT
    score_key = "AP"

    def __init__(self, p: Preset, root: Path, work_dir: Path, seed: int, load_from=None):
        self.p, self.root, self.work_dir, self.seed = p, root, work_dir, seed
        self.load_from = load_from
        r = p.train
        self.name = p.name
        self.keep_checkpoints = r.keep_checkpoints
        self.checkpoint_interval = r.checkpoint_interval or 0
        self.stop_at = r.stop_at
        self.clip_grad = r.grad_clip
        self.log_interval = r.log_interval
        self.history: list = []
        self.sums = torch.zeros(3, dtype=torch.float64)
        self.last_sums = (0.0, 0.0)
        self.t0 = time.time()

    def build(self, info: DistInfo, log, amp) -> None:
        import random

        import numpy as np

        from ..engine.common import build_optimizer
        from .model import build_retinanet_hlg
        from .train_pipeline import CocoTrainSamples, train_scales

        p, r, root = self.p, self.p.train, self.root
        self.info, self.log, self.amp = info, log, amp
        for key in ("epochs", "batch_size"):
            if getattr(r, key) < 1:
                raise SetrError(f"train.{key} {getattr(r, key)} must be >= 1")
        if r.optimizer != "adamw":
            raise SetrError(f"train.optimizer {r.optimizer!r}: the detection recipe trains with 'adamw'")
        if min(r.schedule_iter_offset, r.schedule_epoch_offset) < 0:
            raise SetrError("train.schedule_iter_offset / schedule_epoch_offset must be >= 0")
        torch.manual_seed(self.seed + info.rank)
        np.random.seed(self.seed + info.rank)
        random.seed(self.seed + info.rank)
        self.train_set = CocoDetection(root, "train", train=True, flip_prob=0.0)
        val_ann = root / "annotations" / "instances_val2017.json"
        self.val_set = CocoDetection(root, "val") if val_ann.is_file() else None
        if self.val_set is not None:
            check_categories(self.train_set.categories, self.val_set, str(self.val_set.ann_file))
        if r.batch_size % info.world_size:
            raise SetrError(f"batch size {r.batch_size} is not divisible by {info.world_size} processes")
        self.per_rank = r.batch_size // info.world_size
        if len(self.train_set) < r.batch_size:
            raise SetrError(f"{self.train_set.ann_file}: {len(self.train_set)} usable images, fewer than the batch "
                            f"size {r.batch_size}")
        m = p.model
        self.samples = CocoTrainSamples(self.train_set, train_scales(m.max_size, m.train_min_sizes), r.flip_prob,
                                        size_divisor=m.size_divisible)
        self.config = {**p.to_dict(), "categories": self.train_set.categories}
        torch.manual_seed(self.seed)  # identical init on every rank
        self.model = build_retinanet_hlg(p.model, self.train_set.num_classes)
        if self.load_from:
            self._load_initial(self.load_from)
        self.model.to(info.device)
        torch.manual_seed(self.seed + info.rank)
        self.head = RetinaTrainingHead(m, self.train_set.num_classes)
        self.optimizer = build_optimizer(self.model, r)
        steps = self.iters_per_epoch = len(self.train_set) // r.batch_size
        self.total_iters = r.epochs * steps
        self.ddp = nn.parallel.DistributedDataParallel(
            self.model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        ) if info.distributed else self.model
        log.info(f"{p.name} on {len(self.train_set)} images / {self.train_set.num_classes} classes for {r.epochs} "
                 f"epochs x {steps} iterations, batch {r.batch_size}, lr {r.lr:.2e}")

    def _load_initial(self, path) -> None:
        """``--load-from``: every weight from a detection checkpoint (mmdet's or ours), strictly (each missing,
        unexpected or mis-shaped key named)."""
        from .api import load_state_into, read_detector_file

        sd, _ = read_detector_file(path)
        load_state_into(self.model, sd, f"--load-from {path}")

    def lr_at(self, it: int, base_lr: float) -> float:
        """The lr of a group with initial lr ``base_lr`` at the loop's iteration ``it``."""
        from ..engine.schedule import step_warmup_lr

        r = self.p.train
        epoch = r.schedule_epoch_offset + it // max(self.iters_per_epoch, 1)
        return step_warmup_lr(base_lr, r.schedule_iter_offset + it, epoch, r.milestones, r.gamma,
                              r.warmup_iters, r.warmup_ratio)

    def before_step(self, it: int) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr_at(it, g["initial_lr"])

    def batches(self, start_iter: int):
        from ..engine.sampler import EpochSampler, SeededSamples, loader_generator
        from .train_pipeline import collate_train

        info, r = self.info, self.p.train
        sampler = EpochSampler(len(self.samples), r.batch_size, info.rank, info.world_size, self.seed, start_iter,
                               shuffle=r.shuffle)
        return torch.utils.data.DataLoader(SeededSamples(self.samples), batch_size=self.per_rank, sampler=sampler,
                                           num_workers=r.workers, collate_fn=collate_train,
                                           pin_memory=info.device.type == "cuda", persistent_workers=r.workers > 0,
                                           generator=loader_generator())

    def forward(self, batch, autocast) -> dict:
        images, metas, boxes, labels = batch
        images = images.to(self.info.device, non_blocking=True)
        with autocast():
            cls_scores, bbox_preds = self.ddp(images)
        return self.head.losses([c.float() for c in cls_scores], [b.float() for b in bbox_preds], metas, boxes,
                                labels)

    def after_step(self, it: int, losses: dict) -> None:
        cls = sum(v.item() for k, v in losses.items() if k.startswith("loss_cls"))
        box = sum(v.item() for k, v in losses.items() if k.startswith("loss_bbox"))
        self.last_sums = (cls, box)
        self.sums += torch.tensor([cls, box, 1.0], dtype=torch.float64)

    def log_extras(self) -> str:
        return f"(loss_cls {self.last_sums[0]:.4f} loss_bbox {self.last_sums[1]:.4f})"

    def should_evaluate(self, it: int) -> bool:
        r = self.p.train
        if self.val_set is None or it % self.iters_per_epoch:
            return False
        epoch = it // self.iters_per_epoch
        return it == self.total_iters or bool(r.eval_interval and epoch % r.eval_interval == 0)

    def evaluate(self, it: int) -> dict:
        from .evaluation import evaluate_detector

        last = it == self.total_iters
        metrics = evaluate_detector(self.model, self.val_set, batch_size=max(self.per_rank, 1), info=self.info,
                                    amp=self.amp, categories=self.train_set.categories,
                                    results_json=self.work_dir / "results.bbox.json" if last else None)
        return {k: v for k, v in metrics.items() if k != "results"}

    def end_of_epoch(self, epoch: int, metrics: dict | None) -> None:
        info = self.info
        sums = all_reduce_sum(self.sums.to(info.device) if info.device.type == "cuda" else self.sums, info).cpu()
        self.sums = torch.zeros(3, dtype=torch.float64)
        n = max(sums[2].item(), 1)
        entry = {"epoch": epoch, "loss_cls": sums[0].item() / n, "loss_bbox": sums[1].item() / n}
        if metrics and info.is_main:
            entry.update({k: metrics[k] for k in METRIC_NAMES})
        self.history.append(entry)
        if info.is_main:
            self.log.info(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch"))

    def meta(self) -> dict:
        return {"categories": self.train_set.categories, "history": self.history}

    def extra_state(self) -> dict:
        return {"epoch_sums": self.sums.clone()}

    def load_state(self, state: dict, path: Path) -> None:
        check_categories(state["meta"].get("categories"), self.train_set, str(path))
        if "epoch_sums" in state:
            self.sums = state["epoch_sums"].clone().to(torch.float64)
        self.history = list(state["meta"].get("history", []))

    def load_weights(self, state_dict: dict, path: Path) -> None:
        try:
            self.model.load_state_dict(state_dict)
        except RuntimeError:
            raise SetrError(f"{path}: weights do not fit preset {self.p.name}") from None

    def finish(self, it: int, metrics: dict, best: dict) -> dict:
        return {**{k: v for k, v in metrics.items() if k != "results"}, "history": self.history,
                "seconds": round(time.time() - self.t0, 1)}
