"""RetinaNet-HLG training, COCO bbox evaluation and prediction images.

Training is epoch-based like mmdet's 1x schedule: lr = base x gamma^(milestones passed) per epoch, with a linear
warm-up over the first ``warmup_iters`` iterations (mmcv: lr x (1 - (1 - it / warmup) (1 - ratio))), stepped every
iteration (a ``LambdaLR``). After each epoch ``work_dir/epoch_N.pth`` is written atomically with model, optimizer,
scheduler, scaler, RNG and data-loader generator states, so ``resume`` continues bit-exactly from an epoch boundary.
torchrun DDP through :func:`setr.engine.distributed.init_distributed`; the preset's batch size is global.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..checkpoints import atomic_write
from ..engine.checkpoint import read_checkpoint, rng_state, set_rng_state
from ..engine.common import newest_checkpoint, optimizer_step, run_logger, tensorboard_writer
from ..engine.distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed
from ..errors import SetrError
from .coco import CocoDetection, collate
from .model import build_retinanet_hlg, param_groups
from .presets import DetectionPreset, get_detection_preset

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
                  device: str | torch.device = "cpu") -> tuple[nn.Module, list[dict] | None]:
    """A RetinaNet-HLG from a preset and one of our checkpoints (or a bare state dict).
    Returns (model in eval mode, the checkpoint's categories or None)."""
    p = resolve_preset(preset)
    state = read_checkpoint(checkpoint)
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
                   progress: bool = True) -> dict:
    """Train on ``data_root`` (COCO layout, train2017 + optional val2017). ``resume``: True / "latest" for the
    newest ``work_dir/epoch_*.pth``, or a path. Returns the metrics dict (also ``work_dir/metrics.json``)."""
    p = resolve_preset(preset)
    if epochs is not None:
        p.train.epochs = int(epochs)
    if batch_size is not None:
        p.train.batch_size = int(batch_size)
    if amp not in (None, "bf16", "fp16"):
        raise SetrError(f"--amp {amp}: choose bf16 or fp16")
    info = init_distributed(device)
    try:
        return _train(p, Path(data_root), Path(work_dir), amp, resume, info, seed, progress)
    finally:
        cleanup(info)


def _train(p: DetectionPreset, root: Path, work_dir: Path, amp, resume, info: DistInfo, seed: int, progress: bool):
    import random

    import numpy as np
    from tqdm import tqdm

    from ..precision import autocast

    r = p.train
    work_dir.mkdir(parents=True, exist_ok=True)
    log = run_logger(work_dir, "detect", info.is_main)
    torch.manual_seed(seed + info.rank)
    np.random.seed(seed + info.rank)
    random.seed(seed + info.rank)

    train_set = CocoDetection(root, "train", train=True, flip_prob=r.flip_prob)
    val_set = CocoDetection(root, "val") if (root / "annotations" / "instances_val2017.json").is_file() else None
    if val_set is not None:
        check_categories(train_set.categories, val_set, str(val_set.ann_file))
    if r.batch_size % info.world_size:
        raise SetrError(f"batch size {r.batch_size} is not divisible by {info.world_size} processes")
    per_rank = r.batch_size // info.world_size
    if len(train_set) < r.batch_size:
        raise SetrError(f"{train_set.ann_file}: {len(train_set)} usable images, fewer than the batch size "
                        f"{r.batch_size}")

    torch.manual_seed(seed)  # identical init on every rank
    model = build_retinanet_hlg(p.model, train_set.num_classes).to(info.device)
    torch.manual_seed(seed + info.rank)
    optimizer = torch.optim.AdamW(param_groups(model, r.weight_decay, r.norm_decay_mult), lr=r.lr,
                                  betas=tuple(r.betas))
    sampler = (torch.utils.data.distributed.DistributedSampler(train_set, info.world_size, info.rank, shuffle=True,
                                                               seed=seed, drop_last=True)
               if info.distributed else None)
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=per_rank, shuffle=sampler is None, sampler=sampler,
                                         num_workers=r.workers, drop_last=True, generator=gen, collate_fn=collate,
                                         pin_memory=info.device.type == "cuda")
    steps = len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, StepWarmupLR(steps, r.milestones, r.gamma, r.warmup_iters, r.warmup_ratio))
    scaler = torch.amp.GradScaler(info.device.type) if amp == "fp16" else None
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda"
                                              else None) if info.distributed else model

    start_epoch, history = 0, []
    if resume:
        path = latest_epoch_checkpoint(work_dir) if resume in (True, "latest") else Path(resume)
        if path is None or not path.is_file():
            raise SetrError(f"{path or work_dir}: no epoch_*.pth checkpoint to resume from")
        state = read_checkpoint(path)
        meta = state.get("meta", {})
        if meta.get("format") != CKPT_FORMAT or "epoch" not in meta:
            raise SetrError(f"{path}: not a setr detection training checkpoint")
        check_categories(meta.get("categories"), train_set, str(path))
        try:
            model.load_state_dict(state["state_dict"])
        except RuntimeError:
            raise SetrError(f"{path}: weights do not fit preset {p.name}") from None
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        gen.set_state(state["loader_rng"])
        start_epoch, history = int(meta["epoch"]), list(meta.get("history", []))
        log.info(f"resumed from {path} at epoch {start_epoch}")

    tb = tensorboard_writer(work_dir, info.is_main)
    if info.is_main:
        (work_dir / "config.json").write_text(json.dumps({"preset": p.to_dict(), "categories": train_set.categories,
                                                          "amp": amp, "seed": seed}, indent=2))
    log.info(f"training {p.name} on {len(train_set)} images / {train_set.num_classes} classes for {r.epochs} "
             f"epochs x {steps} iterations, batch {r.batch_size}, lr {r.lr:.2e}, {info.world_size} process(es), "
             f"amp {amp or 'off'}")
    metrics: dict[str, Any] = {}
    bar = tqdm(total=r.epochs * steps, initial=start_epoch * steps, unit="it", desc=p.name,
               disable=not (progress and info.is_main), dynamic_ncols=True)
    t0 = time.time()
    try:
        for epoch in range(start_epoch, r.epochs):
            model.train()
            if sampler is not None:
                sampler.set_epoch(epoch)
            sums = torch.zeros(3, dtype=torch.float64)
            for i, (images, targets) in enumerate(loader):
                images = [im.to(info.device, non_blocking=True) for im in images]
                targets = [{"boxes": t["boxes"].to(info.device), "labels": t["labels"].to(info.device)}
                           for t in targets]
                with autocast(amp or "fp32", info.device):
                    losses = ddp(images, targets)
                losses = {k: v.float() for k, v in losses.items()}
                loss = sum(losses.values())
                if not math.isfinite(loss.item()):
                    raise SetrError(f"epoch {epoch + 1} iteration {i + 1}: loss is {loss.item()}")
                optimizer_step(loss, optimizer, model, scaler, r.grad_clip)
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                it = epoch * steps + i + 1
                cls_l, reg_l = losses["classification"].item(), losses["bbox_regression"].item()
                sums += torch.tensor([cls_l, reg_l, 1.0], dtype=torch.float64)
                if info.is_main:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
                    if tb is not None:
                        tb.add_scalar("train/loss", loss.item(), it)
                        tb.add_scalar("train/loss_cls", cls_l, it)
                        tb.add_scalar("train/loss_bbox", reg_l, it)
                        tb.add_scalar("train/lr", lr, it)
                    if r.log_interval and it % r.log_interval == 0:
                        log.info(f"epoch {epoch + 1} iter {i + 1}/{steps}: loss {loss.item():.4f} "
                                 f"(cls {cls_l:.4f}, bbox {reg_l:.4f}) lr {lr:.3e}")
            sums = all_reduce_sum(sums.to(info.device) if info.device.type == "cuda" else sums, info).cpu()
            n = max(sums[2].item(), 1)
            entry = {"epoch": epoch + 1, "loss_cls": sums[0].item() / n, "loss_bbox": sums[1].item() / n}
            last = epoch + 1 == r.epochs
            if val_set is not None and (last or (r.eval_interval and (epoch + 1) % r.eval_interval == 0)):
                train_rng = rng_state()  # evaluation must not shift the training RNG streams (exact resume)
                metrics = evaluate_detector(model, val_set, batch_size=max(per_rank, 1), info=info, amp=amp,
                                            categories=train_set.categories,
                                            results_json=work_dir / "results.bbox.json" if last else None)
                set_rng_state(train_rng)
                if info.is_main:
                    entry.update({k: metrics[k] for k in METRIC_NAMES})
                if tb is not None:
                    for k in METRIC_NAMES:
                        tb.add_scalar(f"val/{k}", metrics[k], epoch + 1)
            history.append(entry)
            if info.is_main:
                log.info(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch"))
                _save(work_dir / f"epoch_{epoch + 1}.pth", p, train_set.categories, model, optimizer, scheduler,
                      scaler, gen, epoch + 1, history)
                if r.keep_checkpoints > 0:
                    old = sorted(work_dir.glob("epoch_*.pth"), key=lambda q: int(q.stem.split("_")[1]))
                    for q in old[:-r.keep_checkpoints]:
                        q.unlink()
            barrier(info)
    finally:
        bar.close()
        if tb is not None:
            tb.close()
    if not info.is_main:
        return {}
    out = {**{k: v for k, v in metrics.items() if k != "results"}, "history": history,
           "seconds": round(time.time() - t0, 1)}
    (work_dir / "metrics.json").write_text(json.dumps(out, indent=2))
    return out


def _save(path, p, categories, model, optimizer, scheduler, scaler, gen, epoch, history):
    state = {"meta": {"format": CKPT_FORMAT, "epoch": epoch, "preset": p.name, "config": p.to_dict(),
                      "categories": categories, "history": history},
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
             "loader_rng": gen.get_state()}
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    atomic_write(path, lambda tmp: torch.save(state, tmp))


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
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@torch.no_grad()
def predict_images(model: nn.Module, paths: Sequence[str | Path], out_dir: str | Path,
                   class_names: Sequence[str], score_thresh: float = 0.3, device=None) -> list[Path]:
    """Detect on each image file and write ``out_dir/<stem>_boxes.jpg`` with the boxes drawn; a folder in
    ``paths`` stands for its images. Returns the written paths."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF
    from torchvision.utils import draw_bounding_boxes

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
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
            try:
                with Image.open(f) as im:
                    img = TF.pil_to_tensor(im.convert("RGB"))
            except Exception as exc:  # noqa: BLE001
                raise SetrError(f"{f}: unreadable image ({type(exc).__name__})") from None
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
    finally:
        model.train(was_training)
    return written
