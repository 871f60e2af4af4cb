"""ImageNet-style classification training and evaluation (the HLG recipe, on timm's own utilities).

Data: ``<root>/train/<class>/*`` and ``<root>/val/<class>/*``. Augmentation: timm's ``create_transform``
(RandomResizedCrop + flip, RandAugment ``rand-m9-mstd0.5-inc1``, RandomErasing 0.25 pixel mode, bicubic);
test: resize 256 / centre crop 224. Mixup 0.8 / CutMix 1.0 (switch 0.5, batch mode) with label smoothing 0.1 and
``SoftTargetCrossEntropy``; AdamW (lr 5e-4 x batch/512, weight decay 0.05 except norms and biases, eps 1e-8),
cosine schedule per iteration with warm-up (timm ``CosineLRScheduler``), gradient clipping 5.0, model EMA
(``ModelEmaV3``, 0.99996), AMP. Both the model and its EMA are validated; top-1 / top-5 go to ``metrics.json``.
Training runs in the shared loop (:mod:`setr.engine.loop`): checkpoints at each epoch end (``epoch_N.pth``) and
every ``checkpoint_interval`` iterations hold model, EMA, optimizer, scheduler, scaler and RNG states; the data
order and every sample's augmentation are functions of the iteration, so ``--resume`` continues exactly, also
from inside an epoch; torchrun DDP as for segmentation.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ..errors import SetrError
from ..io.images import IMAGE_SUFFIXES, has_image_suffix, open_rgb_pil
from ..presets.hlg import ClassifyRecipe  # noqa: F401  (the recipe lives with its presets)
from ..dist import DistInfo, all_reduce_sum
from .loop import TrainTask, run_training

def check_image_folder(split_dir: Path) -> list[str]:
    """Class names (sorted folder names); every class folder must hold at least one image."""
    if not split_dir.is_dir():
        raise SetrError(f"{split_dir}: folder not found (expected an ImageNet-style <root>/{split_dir.name}/<class>/*)")
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not classes:
        raise SetrError(f"{split_dir}: no class folders")
    for c in classes:
        if not any(has_image_suffix(p) for p in (split_dir / c).iterdir()):
            raise SetrError(f"{split_dir / c}: class folder has no images ({', '.join(IMAGE_SUFFIXES)})")
    return classes


def build_image_folder(split_dir: Path, transform, classes: list[str] | None = None):
    from torchvision.datasets import ImageFolder

    found = check_image_folder(split_dir)
    if classes is not None and found != classes:
        raise SetrError(f"{split_dir}: classes differ from the training set ({len(found)} vs {len(classes)})")
    return ImageFolder(str(split_dir), transform=transform, loader=open_rgb_pil,
                       is_valid_file=has_image_suffix)


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
                     device: str | None = None, seed: int = 0, progress: bool = True, overwrite: bool = False) -> dict:
    """Train ``model_name`` (a timm name, e.g. hlg_tiny) on ``<data_root>/{train,val}/<class>/*`` in ``work_dir``
    through the shared loop (:func:`setr.engine.loop.run_training`). Returns metrics.json's content (main rank)."""
    for key in ("epochs", "batch_size"):
        if getattr(recipe, key) < 1:
            raise SetrError(f"{key} {getattr(recipe, key)} must be >= 1")
    task = ClassificationTask(model_name, Path(data_root), recipe, model_kwargs or {}, seed)
    result = run_training(task, work_dir, resume=resume, overwrite=overwrite, amp=amp, device=device,
                          progress=progress)
    return result.finished or {}


class ClassificationTask(TrainTask):
    """The HLG ImageNet recipe (timm's transforms, Mixup/CutMix, AdamW, cosine per iteration, EMA, clipping),
    epoch-based: checkpoints at each epoch end (``epoch_N.pth``) and every ``checkpoint_interval`` iterations."""

    kind = "classification"
    ckpt_format = "setr-cls-1"
    score_key = "top1"

    def __init__(self, model_name: str, root: Path, recipe: ClassifyRecipe, model_kwargs: dict, seed: int):
        self.name, self.root, self.r, self.model_kwargs, self.seed = model_name, root, recipe, model_kwargs, seed
        self.keep_checkpoints = recipe.keep_checkpoints
        self.checkpoint_interval = recipe.checkpoint_interval or 0
        self.stop_at = recipe.stop_at
        self.clip_grad = recipe.clip_grad
        self.history: list = []
        self.t0 = time.time()

    def build(self, info: DistInfo, log, amp) -> None:
        import random
        import warnings

        import numpy as np
        import timm
        from timm.data import Mixup
        from timm.loss import SoftTargetCrossEntropy
        from timm.optim import create_optimizer_v2
        from timm.scheduler import CosineLRScheduler
        from timm.utils import ModelEmaV3

        # PyTorch warns when a DataLoader is made and again when it is iterated (two source lines, so the default
        # filter shows both), for the training and validation loaders alike: once is enough
        warnings.filterwarnings("once", message=r"This DataLoader will create \d+ worker processes", category=UserWarning)

        r, root = self.r, self.root
        self.info, self.log, self.amp = info, log, amp
        torch.manual_seed(self.seed + info.rank)
        np.random.seed(self.seed + info.rank)
        random.seed(self.seed + info.rank)
        self.train_set = build_image_folder(root / "train", _train_transform(r))
        classes = self.classes = self.train_set.classes
        self.val_set = build_image_folder(root / "val", eval_transform(r), classes) if (root / "val").is_dir() else None
        if r.batch_size % info.world_size:
            raise SetrError(f"batch size {r.batch_size} is not divisible by {info.world_size} processes")
        self.per_rank = r.batch_size // info.world_size
        mixup_on = r.mixup > 0 or r.cutmix > 0
        if mixup_on and self.per_rank % 2:
            raise SetrError(f"Mixup/CutMix in batch mode needs an even batch per process, got {self.per_rank}")
        if len(self.train_set) < r.batch_size:
            raise SetrError(f"{root / 'train'}: {len(self.train_set)} images, fewer than the batch size {r.batch_size}")
        self.config = {"model": self.name, "model_kwargs": self.model_kwargs, "classes": classes,
                       "recipe": asdict(r)}

        torch.manual_seed(self.seed)  # identical init on every rank
        model = timm.create_model(self.name, pretrained=False, num_classes=len(classes), drop_path_rate=r.drop_path,
                                  **self.model_kwargs).to(info.device)
        torch.manual_seed(self.seed + info.rank)
        self.model = model
        self.ema = ModelEmaV3(model, decay=r.ema_decay) if r.ema_decay > 0 else None
        self.lr = r.base_lr * r.batch_size / 512
        self.optimizer = create_optimizer_v2(model, opt="adamw", lr=self.lr, weight_decay=r.weight_decay, eps=1e-8,
                                             betas=(0.9, 0.999))
        steps = self.iters_per_epoch = len(self.train_set) // r.batch_size
        self.total_iters = r.epochs * steps
        warmup = min(r.warmup_epochs, r.epochs - 1)
        if warmup != r.warmup_epochs:
            log.info(f"warm-up shortened to {warmup} epochs: the run has only {r.epochs}")
        self.scheduler = CosineLRScheduler(
            self.optimizer, t_initial=max((r.epochs - warmup) * steps, 1), lr_min=r.min_lr * r.batch_size / 512,
            warmup_lr_init=r.warmup_lr * r.batch_size / 512, warmup_t=warmup * steps, cycle_limit=1,
            t_in_epochs=False, warmup_prefix=True)
        self.mixup = Mixup(mixup_alpha=r.mixup, cutmix_alpha=r.cutmix, prob=1.0, switch_prob=r.mixup_switch_prob,
                           mode="batch", label_smoothing=r.smoothing, num_classes=len(classes)) if mixup_on else None
        self.criterion = SoftTargetCrossEntropy() if self.mixup else nn.CrossEntropyLoss(label_smoothing=r.smoothing)
        self.ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None) if info.distributed else model
        self.val_loader = None
        if self.val_set is not None:
            vs = (torch.utils.data.distributed.DistributedSampler(self.val_set, info.world_size, info.rank,
                                                                  shuffle=False) if info.distributed else None)
            self.val_loader = torch.utils.data.DataLoader(self.val_set, batch_size=max(self.per_rank, 1), sampler=vs,
                                                          num_workers=r.workers)
        log.info(f"{self.name} on {len(self.train_set)} images / {len(classes)} classes for {r.epochs} epochs, "
                 f"batch {r.batch_size}, lr {self.lr:.2e}")

    def batches(self, start_iter: int):
        from .sampler import EpochSampler, SeededSamples, loader_generator

        info = self.info
        sampler = EpochSampler(len(self.train_set), self.r.batch_size, info.rank, info.world_size, self.seed,
                               start_iter)
        return torch.utils.data.DataLoader(SeededSamples(self.train_set), batch_size=self.per_rank, sampler=sampler,
                                           num_workers=self.r.workers, pin_memory=info.device.type == "cuda",
                                           persistent_workers=self.r.workers > 0, generator=loader_generator())

    def forward(self, batch, autocast) -> dict:
        images, targets = batch
        images, targets = images.to(self.info.device), targets.to(self.info.device)
        if self.mixup is not None:
            images, targets = self.mixup(images, targets)
        with autocast():
            loss = self.criterion(self.ddp(images).float(), targets)
        return {"loss": loss}

    def after_step(self, it: int, losses: dict) -> None:
        self.scheduler.step_update(it)
        if self.ema is not None:
            self.ema.update(self.model)

    def should_evaluate(self, it: int) -> bool:
        return self.val_loader is not None and it % self.iters_per_epoch == 0

    def evaluate(self, it: int) -> dict:
        epoch = it // self.iters_per_epoch
        metrics = {"epoch": epoch, "model": evaluate_classifier(self.model, self.val_loader, self.info, self.amp)}
        if self.ema is not None:
            metrics["ema"] = evaluate_classifier(self.ema.module, self.val_loader, self.info, self.amp)
        self.model.train()
        metrics["top1"] = max(metrics["model"]["top1"], metrics.get("ema", {}).get("top1", -1))
        self.history.append({"epoch": epoch, "top1": metrics["model"]["top1"],
                             "ema_top1": metrics.get("ema", {}).get("top1")})
        if self.info.is_main:
            self.log.info(f"epoch {epoch}: top1 {metrics['model']['top1']:.2f} top5 {metrics['model']['top5']:.2f}"
                          + (f" ema top1 {metrics['ema']['top1']:.2f}" if self.ema is not None else ""))
        return metrics

    def meta(self) -> dict:
        return {"model": self.name, "history": self.history, "classes": self.classes}

    def extra_state(self) -> dict:
        state = {"scheduler": self.scheduler.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.module.state_dict()
        return state

    def load_state(self, state: dict, path: Path) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and "ema" in state:
            self.ema.module.load_state_dict(state["ema"])
        self.history = list(state["meta"].get("history", []))

    def finish(self, it: int, metrics: dict, best: dict) -> dict:
        best = {k: v for k, v in best.items() if k != "iteration"}
        return {**metrics, "best": best, "history": self.history, "classes": len(self.classes),
                "seconds": round(time.time() - self.t0, 1)}
