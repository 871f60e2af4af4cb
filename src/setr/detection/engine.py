"""RetinaNet-HLG training, COCO bbox evaluation and prediction images.

Training is epoch-based like mmdet's 1x schedule: lr = base x gamma^(milestones passed) per epoch, with a linear
warm-up over the first ``warmup_iters`` iterations (mmcv: lr x (1 - (1 - it / warmup) (1 - ratio))), stepped every
iteration (a ``LambdaLR``). Training runs in the shared loop (:mod:`setr.engine.loop`): after each epoch
``work_dir/epoch_N.pth`` (and every ``checkpoint_interval`` iterations ``iter_N.pth``) is written atomically with
model, optimizer, scheduler, scaler and RNG states; the data order and the augmentation are functions of the
iteration, so ``resume`` continues bit-exactly, also from inside an epoch.
torchrun DDP through :func:`setr.dist.init_distributed`; the preset's batch size is global.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..io.atomic import atomic_write
from ..engine.state import read_checkpoint
from ..engine.common import newest_checkpoint, param_groups
from ..dist import DistInfo, all_reduce_sum
from ..engine.loop import TrainTask, run_training
from ..errors import SetrError
from ..io.images import has_image_suffix, open_rgb_pil
from .coco import CocoDetection, collate
from .model import build_retinanet_hlg
from ..presets.detection import DetectionPreset, get_detection_preset

CKPT_FORMAT = "setr-det-1"
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


class StepWarmupLR:
    """LambdaLR factor at iteration ``it``: step decay at epoch milestones, linear warm-up (mmcv semantics)."""

    def __init__(self, iters_per_epoch: int, milestones: Sequence[int], gamma: float, warmup_iters: int,
                 warmup_ratio: float):
        self.iters_per_epoch = max(int(iters_per_epoch), 1)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        self.warmup_iters = int(warmup_iters)
        self.warmup_ratio = float(warmup_ratio)

    def __call__(self, it: int) -> float:
        epoch = it // self.iters_per_epoch
        factor = self.gamma ** sum(epoch >= m for m in self.milestones)
        if self.warmup_iters and it < self.warmup_iters:
            factor *= 1 - (1 - it / self.warmup_iters) * (1 - self.warmup_ratio)
        return factor


def resolve_preset(preset: str | DetectionPreset) -> DetectionPreset:
    return get_detection_preset(preset) if isinstance(preset, str) else preset


def latest_epoch_checkpoint(work_dir: Path) -> Path | None:
    return newest_checkpoint(work_dir, "epoch")


def check_categories(ckpt_categories: list[dict] | None, dataset: CocoDetection, where: str) -> None:
    if ckpt_categories is None:
        return
    ours = [(int(c["id"]), str(c["name"])) for c in ckpt_categories]
    theirs = [(int(c["id"]), str(c["name"])) for c in dataset.categories]
    if ours != theirs:
        raise SetrError(f"{where}: checkpoint categories ({len(ours)}: {', '.join(n for _, n in ours[:5])}"
                        f"{', ...' if len(ours) > 5 else ''}) do not match {dataset.ann_file} "
                        f"({len(theirs)}: {', '.join(n for _, n in theirs[:5])}{', ...' if len(theirs) > 5 else ''})")


def load_detector(preset: str | DetectionPreset, checkpoint: str | Path, num_classes: int | None = None,
                  device: str | torch.device = "cpu", trust_checkpoint: bool = False
                  ) -> tuple[nn.Module, list[dict] | None]:
    """A RetinaNet-HLG from a preset and one of our checkpoints (or a bare state dict).
    Returns (model in eval mode, the checkpoint's categories or None). The file is read with
    ``weights_only=True``; ``trust_checkpoint`` also unpickles other Python objects (unsafe)."""
    p = resolve_preset(preset)
    state = read_checkpoint(checkpoint, trust_checkpoint)
    categories = state.get("meta", {}).get("categories")
    sd = state.get("state_dict", state)
    if num_classes is None:
        if categories is not None:
            num_classes = len(categories)
        elif "head.classification_head.cls_logits.weight" in sd:
            num_classes = int(sd["head.classification_head.cls_logits.weight"].shape[0]) // \
                          (p.model.scales_per_octave * len(p.model.anchor_ratios))
        else:
            raise SetrError(f"{checkpoint}: not a RetinaNet checkpoint (no head.classification_head weights)")
    p.model.pretrained = None
    model = build_retinanet_hlg(p.model, num_classes)
    try:
        model.load_state_dict(sd)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)[:200]]
        raise SetrError(f"{checkpoint}: weights do not fit preset {p.name} with {num_classes} classes "
                        f"({first[0].strip()})") from None
    return model.to(device).eval(), categories


# ----------------------------------------------------------------------------------------------- training
def train_detector(preset: str | DetectionPreset, data_root: str | Path, work_dir: str | Path, *,
                   epochs: int | None = None, batch_size: int | None = None, amp: str | None = None,
                   resume: bool | str | Path | None = None, device: str | None = None, seed: int = 0,
                   progress: bool = True, overwrite: bool = False) -> dict:
    """Train on ``data_root`` (COCO layout, train2017 + optional val2017) through the shared loop
    (:func:`setr.engine.loop.run_training`). ``resume``: True / "latest" for the newest checkpoint of
    ``work_dir``, or a path. Returns the metrics dict (also ``work_dir/metrics.json``)."""
    p = resolve_preset(preset)
    if epochs is not None:
        p.train.epochs = int(epochs)
    if batch_size is not None:
        p.train.batch_size = int(batch_size)
    if amp not in (None, "bf16", "fp16"):
        raise SetrError(f"--amp {amp}: choose bf16 or fp16")
    task = DetectionTask(p, Path(data_root), Path(work_dir), seed)
    result = run_training(task, work_dir, resume=resume, overwrite=overwrite, amp=amp, device=device,
                          progress=progress)
    return result.finished or {}


class DetectionTask(TrainTask):
    """RetinaNet-HLG, mmdet's 1x recipe, epoch-based: AdamW, step decay at epoch milestones with a linear warm-up
    by iteration (a ``LambdaLR`` stepped every iteration); COCO bbox AP after each ``eval_interval`` epochs."""

    kind = "detection"
    ckpt_format = CKPT_FORMAT
    score_key = "AP"

    def __init__(self, p: DetectionPreset, root: Path, work_dir: Path, seed: int):
        self.p, self.root, self.work_dir, self.seed = p, root, work_dir, seed
        r = p.train
        self.name = p.name
        self.keep_checkpoints = r.keep_checkpoints
        self.checkpoint_interval = r.checkpoint_interval or 0
        self.stop_at = r.stop_at
        self.clip_grad = r.grad_clip
        self.log_interval = r.log_interval
        self.history: list = []
        self.sums = torch.zeros(3, dtype=torch.float64)
        self.t0 = time.time()

    def build(self, info: DistInfo, log, amp) -> None:
        import random

        import numpy as np

        p, r, root = self.p, self.p.train, self.root
        self.info, self.log, self.amp = info, log, amp
        for key in ("epochs", "batch_size"):
            if getattr(r, key) < 1:
                raise SetrError(f"train.{key} {getattr(r, key)} must be >= 1")
        torch.manual_seed(self.seed + info.rank)
        np.random.seed(self.seed + info.rank)
        random.seed(self.seed + info.rank)
        self.train_set = CocoDetection(root, "train", train=True, flip_prob=r.flip_prob)
        self.val_set = CocoDetection(root, "val") if (root / "annotations" / "instances_val2017.json").is_file() else None
        if self.val_set is not None:
            check_categories(self.train_set.categories, self.val_set, str(self.val_set.ann_file))
        if r.batch_size % info.world_size:
            raise SetrError(f"batch size {r.batch_size} is not divisible by {info.world_size} processes")
        self.per_rank = r.batch_size // info.world_size
        if len(self.train_set) < r.batch_size:
            raise SetrError(f"{self.train_set.ann_file}: {len(self.train_set)} usable images, fewer than the batch "
                            f"size {r.batch_size}")
        self.config = {**p.to_dict(), "categories": self.train_set.categories}
        torch.manual_seed(self.seed)  # identical init on every rank
        self.model = build_retinanet_hlg(p.model, self.train_set.num_classes).to(info.device)
        torch.manual_seed(self.seed + info.rank)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, r.lr, r.weight_decay, no_decay_key="norm",
                                                        no_decay_mult=r.norm_decay_mult), lr=r.lr,
                                           betas=tuple(r.betas))
        steps = self.iters_per_epoch = len(self.train_set) // r.batch_size
        self.total_iters = r.epochs * steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, StepWarmupLR(steps, r.milestones, r.gamma, r.warmup_iters, r.warmup_ratio))
        self.ddp = nn.parallel.DistributedDataParallel(
            self.model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        ) if info.distributed else self.model
        log.info(f"{p.name} on {len(self.train_set)} images / {self.train_set.num_classes} classes for {r.epochs} "
                 f"epochs x {steps} iterations, batch {r.batch_size}, lr {r.lr:.2e}")

    def batches(self, start_iter: int):
        from ..engine.sampler import EpochSampler, SeededSamples, loader_generator

        info, r = self.info, self.p.train
        sampler = EpochSampler(len(self.train_set), r.batch_size, info.rank, info.world_size, self.seed, start_iter)
        return torch.utils.data.DataLoader(SeededSamples(self.train_set), batch_size=self.per_rank, sampler=sampler,
                                           num_workers=r.workers, collate_fn=collate,
                                           pin_memory=info.device.type == "cuda", persistent_workers=r.workers > 0,
                                           generator=loader_generator())

    def forward(self, batch, autocast) -> dict:
        images, targets = batch
        dev = self.info.device
        images = [im.to(dev, non_blocking=True) for im in images]
        targets = [{"boxes": t["boxes"].to(dev), "labels": t["labels"].to(dev)} for t in targets]
        with autocast():
            losses = self.ddp(images, targets)
        return {k: v.float() for k, v in losses.items()}

    def after_step(self, it: int, losses: dict) -> None:
        self.scheduler.step()
        self.sums += torch.tensor([losses["classification"].item(), losses["bbox_regression"].item(), 1.0],
                                  dtype=torch.float64)

    def should_evaluate(self, it: int) -> bool:
        r = self.p.train
        if self.val_set is None or it % self.iters_per_epoch:
            return False
        epoch = it // self.iters_per_epoch
        return it == self.total_iters or bool(r.eval_interval and epoch % r.eval_interval == 0)

    def evaluate(self, it: int) -> dict:
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
        return {"scheduler": self.scheduler.state_dict(), "epoch_sums": self.sums.clone()}

    def load_state(self, state: dict, path: Path) -> None:
        check_categories(state["meta"].get("categories"), self.train_set, str(path))
        self.scheduler.load_state_dict(state["scheduler"])
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


# --------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def detect_results(model: nn.Module, dataset: CocoDetection, *, batch_size: int = 2, device=None,
                   amp: str | None = None, info: DistInfo | None = None, progress: bool = False) -> list[dict]:
    """COCO results (image_id, category_id = the dataset's COCO id, bbox xywh, score) for this rank's share."""
    from tqdm import tqdm

    from ..precision import autocast

    dev = torch.device(device) if device is not None else (info.device if info else next(model.parameters()).device)
    indices = list(range(len(dataset)))
    if info is not None and info.distributed:
        indices = indices[info.rank::info.world_size]
    subset = torch.utils.data.Subset(dataset, indices)
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    results: list[dict] = []
    try:
        for images, targets in tqdm(loader, desc="eval", disable=not progress, dynamic_ncols=True):
            with autocast(amp or "fp32", dev):
                outs = model([im.to(dev) for im in images])
            for out, t in zip(outs, targets):
                boxes = out["boxes"].float().cpu()
                xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
                for b, s, lab in zip(xywh, out["scores"].float().cpu().tolist(), out["labels"].cpu().tolist()):
                    results.append({"image_id": int(t["image_id"]), "category_id": dataset.cat_ids[int(lab)],
                                    "bbox": [round(v, 2) for v in b], "score": round(float(s), 5)})
    finally:
        model.train(was_training)
    return results


def coco_bbox_eval(dataset: CocoDetection, results: list[dict], img_ids: Sequence[int] | None = None) -> dict:
    """pycocotools COCOeval (bbox) -> AP, AP50, AP75, APs, APm, APl (fractions) and per_category AP."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.cocoeval import COCOeval

    metrics: dict[str, Any] = {k: 0.0 for k in METRIC_NAMES}
    metrics["per_category"] = {n: 0.0 for n in dataset.class_names}
    if not results:
        metrics["summary"] = "no detections"
        return metrics
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        dt = dataset.coco.loadRes(results)
        ev = COCOeval(dataset.coco, dt, "bbox")
        ev.params.imgIds = list(img_ids) if img_ids is not None else list(dataset.ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics.update({k: max(float(v), 0.0) for k, v in zip(METRIC_NAMES, ev.stats[:6])})
    precision = ev.eval["precision"]  # (T, R, K, A, M); K follows ev.params.catIds (sorted ids)
    for k, cid in enumerate(ev.params.catIds):
        pr = precision[:, :, k, 0, -1]
        pr = pr[pr > -1]
        metrics["per_category"][dataset.class_names[dataset.cat_to_label[cid]]] = float(np.mean(pr)) if pr.size else 0.0
    metrics["summary"] = buf.getvalue()
    return metrics


def evaluate_detector(model: nn.Module, dataset: CocoDetection, *, batch_size: int = 2, device=None,
                      amp: str | None = None, info: DistInfo | None = None, results_json: str | Path | None = None,
                      categories: list[dict] | None = None, progress: bool = False) -> dict:
    """COCO bbox AP of ``model`` on ``dataset``; ``results_json`` gets the detections in the COCO results format.
    ``categories`` (e.g. a checkpoint's) must match the dataset's, else SetrError. Under DDP every rank detects a
    share; rank 0 gathers and evaluates, the others get {}."""
    check_categories(categories, dataset, "evaluate")
    results = detect_results(model, dataset, batch_size=batch_size, device=device, amp=amp, info=info,
                             progress=progress)
    if info is not None and info.distributed:
        import torch.distributed as dist

        gathered: list = [None] * info.world_size
        dist.all_gather_object(gathered, results)
        results = [r for part in gathered for r in part]
        if not info.is_main:
            return {}
    if results_json is not None:
        results_json = Path(results_json)
        results_json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(results_json, lambda tmp: Path(tmp).write_text(json.dumps(results)))
    metrics = coco_bbox_eval(dataset, results)
    metrics["num_detections"] = len(results)
    return metrics


def format_metrics(metrics: dict) -> str:
    """AP line plus a per-category table, for the CLI."""
    lines = ["  ".join(f"{k} {100 * metrics[k]:.1f}" for k in METRIC_NAMES), "", f"{'category':<24} AP"]
    for name, ap in metrics.get("per_category", {}).items():
        lines.append(f"{name:<24} {100 * ap:.1f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- prediction
@torch.no_grad()
def predict_images(model: nn.Module, paths: Sequence[str | Path], out_dir: str | Path,
                   class_names: Sequence[str], score_thresh: float = 0.3, device=None,
                   box_counts: list[int] | None = None) -> list[Path]:
    """Detect on each image file and write ``out_dir/<stem>_boxes.jpg`` with the boxes drawn; a folder in
    ``paths`` stands for its images. Returns the written paths; ``box_counts`` (a list) gets each image's number
    of boxes drawn."""
    from torchvision.transforms.v2 import functional as TF
    from torchvision.utils import draw_bounding_boxes

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if has_image_suffix(q))
        elif p.is_file():
            files.append(p)
        else:
            raise SetrError(f"{p}: no such image or folder")
    if not files:
        raise SetrError("no input images")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    written = []
    palette = ["red", "blue", "lime", "yellow", "magenta", "cyan", "orange", "white"]
    try:
        for f in files:
            img = TF.pil_to_tensor(open_rgb_pil(f))
            out = model([img.float().div(255).to(dev)])[0]
            keep = out["scores"] >= score_thresh
            boxes, labels, scores = out["boxes"][keep].cpu(), out["labels"][keep].cpu(), out["scores"][keep].cpu()
            names = [f"{class_names[int(lab)] if int(lab) < len(class_names) else int(lab)} {float(s):.2f}"
                     for lab, s in zip(labels, scores)]
            colours = [palette[int(lab) % len(palette)] for lab in labels]
            drawn = draw_bounding_boxes(img, boxes, labels=names, colors=colours, width=2) if len(boxes) else img
            dst = out_dir / f"{f.stem}_boxes.jpg"
            TF.to_pil_image(drawn).save(dst, quality=90)
            written.append(dst)
            if box_counts is not None:
                box_counts.append(len(boxes))
    finally:
        model.train(was_training)
    return written
