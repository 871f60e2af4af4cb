"""ImageNet-style classification training and evaluation (the HLG recipe, on timm's own utilities).

Data: ``<root>/train/<class>/*`` and ``<root>/val/<class>/*``. Augmentation: timm's ``create_transform``
(RandomResizedCrop + flip, RandAugment ``rand-m9-mstd0.5-inc1``, RandomErasing 0.25 pixel mode, bicubic);
test: resize 256 / centre crop 224. Mixup 0.8 / CutMix 1.0 (switch 0.5, batch mode) with label smoothing 0.1 and
``SoftTargetCrossEntropy``; AdamW (lr 5e-4 x batch/512, weight decay 0.05 except norms and biases, eps 1e-8),
cosine schedule per iteration with warm-up (timm ``CosineLRScheduler``), gradient clipping 5.0, model EMA
(``ModelEmaV3``, 0.99996), AMP. Both the model and its EMA are validated; top-1 / top-5 go to ``metrics.json``.
Checkpoints at each epoch end (atomic) hold model, EMA, optimizer, scheduler, scaler and RNG states, so
``--resume`` continues exactly; torchrun DDP as for segmentation.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import atomic_write
from ..errors import SetrError
from .checkpoint import read_checkpoint, rng_state, set_rng_state
from .common import newest_checkpoint, optimizer_step, run_logger, tensorboard_writer
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class ClassifyRecipe:
    epochs: int = 300
    warmup_epochs: int = 20
    batch_size: int = 1024  # global
    base_lr: float = 5e-4  # per 512 images: lr = base_lr * batch / 512
    warmup_lr: float = 5e-7
    min_lr: float = 5e-6
    weight_decay: float = 0.05
    clip_grad: float = 5.0
    drop_path: float = 0.2
    img_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area range (timm's default)
    crop_pct: float = 224 / 256
    interpolation: str = "bicubic"
    auto_augment: str = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    reprob: float = 0.25
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    ema_decay: float = 0.99996  # 0 disables the EMA
    workers: int = 8


def check_image_folder(split_dir: Path) -> list[str]:
    """Class names (sorted folder names); every class folder must hold at least one image."""
    if not split_dir.is_dir():
        raise SetrError(f"{split_dir}: folder not found (expected an ImageNet-style <root>/{split_dir.name}/<class>/*)")
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not classes:
        raise SetrError(f"{split_dir}: no class folders")
    for c in classes:
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in (split_dir / c).iterdir()):
            raise SetrError(f"{split_dir / c}: class folder has no images ({', '.join(IMAGE_SUFFIXES)})")
    return classes


def _loader(path: str):
    from PIL import Image

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except Exception as exc:  # noqa: BLE001
        raise SetrError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from None


def build_image_folder(split_dir: Path, transform, classes: list[str] | None = None):
    from torchvision.datasets import ImageFolder

    found = check_image_folder(split_dir)
    if classes is not None and found != classes:
        raise SetrError(f"{split_dir}: classes differ from the training set ({len(found)} vs {len(classes)})")
    return ImageFolder(str(split_dir), transform=transform, loader=_loader,
                       is_valid_file=lambda p: Path(p).suffix.lower() in IMAGE_SUFFIXES)


def eval_transform(r: ClassifyRecipe):
    from timm.data import create_transform

    return create_transform(r.img_size, is_training=False, interpolation=r.interpolation, crop_pct=r.crop_pct)


def _train_transform(r: ClassifyRecipe):
    from timm.data import create_transform

    return create_transform(r.img_size, is_training=True, scale=tuple(r.crop_scale), auto_augment=r.auto_augment or None,
                            color_jitter=r.color_jitter, re_prob=r.reprob, re_mode="pixel", re_count=1,
                            interpolation=r.interpolation)


@torch.no_grad()
def evaluate_classifier(model: nn.Module, loader, info: DistInfo, amp: str | None = None) -> dict:
    from ..precision import autocast

    model.eval()
    stats = torch.zeros(4, dtype=torch.float64)  # correct@1, correct@5, loss sum, count
    for images, targets in loader:
        images, targets = images.to(info.device), targets.to(info.device)
        with autocast(amp or "fp32", info.device):
            logits = model(images).float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        stats[0] += (top[:, 0] == targets).sum().item()
        stats[1] += (top == targets[:, None]).any(1).sum().item()
        stats[2] += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        stats[3] += len(targets)
    stats = all_reduce_sum(stats.to(info.device) if info.device.type == "cuda" else stats, info).cpu()
    n = max(stats[3].item(), 1)
    return {"top1": 100 * stats[0].item() / n, "top5": 100 * stats[1].item() / n, "loss": stats[2].item() / n,
            "images": int(stats[3].item())}


def train_classifier(model_name: str, data_root: str | Path, work_dir: str | Path, recipe: ClassifyRecipe, *,
                     model_kwargs: dict | None = None, resume: bool | str | Path | None = None, amp: str | None = None,
                     device: str | None = None, seed: int = 0, progress: bool = True) -> dict:
    info = init_distributed(device)
    try:
        return _train_classifier(model_name, Path(data_root), Path(work_dir), recipe, model_kwargs or {}, resume,
                                 amp, info, seed, progress)
    finally:
        cleanup(info)


def _train_classifier(model_name, root, work_dir, r, model_kwargs, resume, amp, info, seed, progress):
    import timm
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler
    from timm.utils import ModelEmaV3
    from tqdm import tqdm

    from ..precision import autocast

    work_dir.mkdir(parents=True, exist_ok=True)
    log = run_logger(work_dir, "classify", info.is_main)
    tb = tensorboard_writer(work_dir, info.is_main)
    torch.manual_seed(seed + info.rank)
    import random

    import numpy as np

    np.random.seed(seed + info.rank)
    random.seed(seed + info.rank)

    train_set = build_image_folder(root / "train", _train_transform(r))
    classes = train_set.classes
    val_set = build_image_folder(root / "val", eval_transform(r), classes) if (root / "val").is_dir() else None
    if r.batch_size % info.world_size:
        raise SetrError(f"batch size {r.batch_size} is not divisible by {info.world_size} processes")
    per_rank = r.batch_size // info.world_size
    mixup_on = r.mixup > 0 or r.cutmix > 0
    if mixup_on and per_rank % 2:
        raise SetrError(f"Mixup/CutMix in batch mode needs an even batch per process, got {per_rank}")
    if len(train_set) < r.batch_size:
        raise SetrError(f"{root / 'train'}: {len(train_set)} images, fewer than the batch size {r.batch_size}")

    model = timm.create_model(model_name, pretrained=False, num_classes=len(classes), drop_path_rate=r.drop_path,
                              **model_kwargs).to(info.device)
    ema = ModelEmaV3(model, decay=r.ema_decay) if r.ema_decay > 0 else None
    lr = r.base_lr * r.batch_size / 512
    optimizer = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=r.weight_decay, eps=1e-8,
                                    betas=(0.9, 0.999))
    sampler = (torch.utils.data.distributed.DistributedSampler(train_set, info.world_size, info.rank, shuffle=True,
                                                               seed=seed, drop_last=True)
               if info.distributed else None)
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=per_rank, shuffle=sampler is None, sampler=sampler,
                                         num_workers=r.workers, drop_last=True, generator=gen,
                                         pin_memory=info.device.type == "cuda", persistent_workers=False)
    steps = len(loader)
    warmup = min(r.warmup_epochs, r.epochs - 1)
    if warmup != r.warmup_epochs:
        log.info(f"warm-up shortened to {warmup} epochs: the run has only {r.epochs}")
    scheduler = CosineLRScheduler(optimizer, t_initial=max((r.epochs - warmup) * steps, 1),
                                  lr_min=r.min_lr * r.batch_size / 512, warmup_lr_init=r.warmup_lr * r.batch_size / 512,
                                  warmup_t=warmup * steps, cycle_limit=1, t_in_epochs=False, warmup_prefix=True)
    mixup = Mixup(mixup_alpha=r.mixup, cutmix_alpha=r.cutmix, prob=1.0, switch_prob=r.mixup_switch_prob,
                  mode="batch", label_smoothing=r.smoothing, num_classes=len(classes)) if mixup_on else None
    criterion = SoftTargetCrossEntropy() if mixup else nn.CrossEntropyLoss(label_smoothing=r.smoothing)
    scaler = torch.amp.GradScaler(info.device.type) if amp == "fp16" else None
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda"
                                              else None) if info.distributed else model

    start_epoch, best, history = 0, {}, []
    if resume:
        path = newest_checkpoint(work_dir, "epoch") if resume is True else Path(resume)
        if path is None or not path.is_file():
            raise SetrError(f"{path or work_dir}: no epoch_*.pth checkpoint to resume from")
        state = read_checkpoint(path)
        if state.get("meta", {}).get("model") != model_name:
            raise SetrError(f"{path}: checkpoint is for {state.get('meta', {}).get('model')}, not {model_name}")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and "ema" in state:
            ema.module.load_state_dict(state["ema"])
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        gen.set_state(state["loader_rng"])
        start_epoch, best, history = state["meta"]["epoch"], state["meta"].get("best", {}), state["meta"].get("history", [])
        log.info(f"resumed from {path} at epoch {start_epoch}")
    if info.is_main:
        (work_dir / "config.json").write_text(json.dumps({"model": model_name, "model_kwargs": model_kwargs,
                                                          "classes": classes, "recipe": asdict(r)}, indent=2))
    val_loader = None
    if val_set is not None:
        vs = (torch.utils.data.distributed.DistributedSampler(val_set, info.world_size, info.rank, shuffle=False)
              if info.distributed else None)
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=max(per_rank, 1), sampler=vs,
                                                 num_workers=r.workers)
    log.info(f"training {model_name} on {len(train_set)} images / {len(classes)} classes for {r.epochs} epochs, "
             f"batch {r.batch_size}, lr {lr:.2e}, {info.world_size} process(es), amp {amp or 'off'}")
    metrics = {}
    bar = tqdm(total=r.epochs * steps, initial=start_epoch * steps, unit="it", desc=model_name,
               disable=not (progress and info.is_main), dynamic_ncols=True)
    t0 = time.time()
    try:
        for epoch in range(start_epoch, r.epochs):
            model.train()
            if sampler is not None:
                sampler.set_epoch(epoch)
            for i, (images, targets) in enumerate(loader):
                images, targets = images.to(info.device), targets.to(info.device)
                if mixup is not None:
                    images, targets = mixup(images, targets)
                with autocast(amp or "fp32", info.device):
                    loss = criterion(ddp(images).float(), targets)
                if not math.isfinite(loss.item()):
                    raise SetrError(f"epoch {epoch} step {i}: loss is {loss.item()}")
                optimizer_step(loss, optimizer, model, scaler, r.clip_grad)
                scheduler.step_update(epoch * steps + i + 1)
                if ema is not None:
                    ema.update(model)
                if info.is_main:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                    if tb:
                        tb.add_scalar("train/loss", loss.item(), epoch * steps + i + 1)
                        tb.add_scalar("train/lr", optimizer.param_groups[0]["lr"], epoch * steps + i + 1)
            if val_loader is not None:
                metrics = {"epoch": epoch + 1, "model": evaluate_classifier(model, val_loader, info, amp)}
                if ema is not None:
                    metrics["ema"] = evaluate_classifier(ema.module, val_loader, info, amp)
                top1 = max(metrics["model"]["top1"], metrics.get("ema", {}).get("top1", -1))
                metrics["top1"] = top1
                history.append({"epoch": epoch + 1, "top1": metrics["model"]["top1"],
                                "ema_top1": metrics.get("ema", {}).get("top1")})
                if info.is_main:
                    log.info(f"epoch {epoch + 1}: top1 {metrics['model']['top1']:.2f} top5 {metrics['model']['top5']:.2f}"
                             + (f" ema top1 {metrics['ema']['top1']:.2f}" if ema is not None else ""))
                    if tb:
                        tb.add_scalar("val/top1", metrics["model"]["top1"], epoch + 1)
                    if not best or top1 > best["top1"]:
                        best = {"top1": top1, "epoch": epoch + 1}
            if info.is_main:
                _save(work_dir / f"epoch_{epoch + 1}.pth", model_name, model, ema, optimizer, scheduler, scaler,
                      gen, epoch + 1, best, history)
                for old in sorted(work_dir.glob("epoch_*.pth"), key=lambda p: int(p.stem.split("_")[1]))[:-2]:
                    old.unlink()
            barrier(info)
    finally:
        bar.close()
        if tb:
            tb.close()
    if info.is_main:
        out = {**metrics, "best": best, "history": history, "classes": len(classes),
               "seconds": round(time.time() - t0, 1)}
        (work_dir / "metrics.json").write_text(json.dumps(out, indent=2))
        return out
    return {}


def _save(path, model_name, model, ema, optimizer, scheduler, scaler, gen, epoch, best, history):
    state = {"meta": {"model": model_name, "epoch": epoch, "best": best, "history": history},
             "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng_state(), "loader_rng": gen.get_state()}
    if ema is not None:
        state["ema"] = ema.module.state_dict()
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    atomic_write(path, lambda tmp: torch.save(state, tmp))
