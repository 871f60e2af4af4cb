"""The iteration-based trainer (the original recipe), on one CPU, one GPU or N processes under torchrun.

* SGD (momentum 0.9, weight decay 0), parameters whose name contains ``head`` at ``head_lr_mult`` x the base
  learning rate (the original's rule: decode and auxiliary heads, not the MLA neck), poly decay to ``min_lr``
  by iteration; auxiliary losses at their weights; cross-entropy normalised as the preset says.
* DDP when launched by torchrun (SyncBatchNorm on GPUs; CPU processes keep per-process BatchNorm, since
  PyTorch's SyncBatchNorm needs a GPU); the global batch is stated, not implied by the GPU count.
* Checkpoints are written atomically (``iter_N.pth``) with model, optimizer, iteration and RNG states; the data
  order and augmentation are functions of the iteration, so ``--resume`` continues exactly. Ctrl-C writes a
  checkpoint before exiting. The best checkpoint by mIoU is kept as ``best.safetensors``.
* tqdm progress bar (loss, lr, it/s), a plain ``train.log``, TensorBoard scalars in ``tb/``.
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import load_original_checkpoint, load_pretrained_backbone, save_model
from ..config import build_model
from ..data.datasets import build_dataset
from ..data.transforms import TrainPipeline
from ..errors import SetrError
from ..presets import Preset
from .common import optimizer_step, run_logger, tensorboard_writer
from .checkpoint import (gather_rng_states, latest_checkpoint, load_training_checkpoint, prune_checkpoints, save_training_checkpoint,
                         set_rng_state)
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed
from .losses import pixel_accuracy, segmentor_losses
from .sampler import InfiniteSampler
from .schedule import poly_lr


@dataclass
class TrainResult:
    work_dir: Path
    iterations: int
    final_checkpoint: Path | None
    metrics: dict
    best: dict


class StopRequest:
    """Turns SIGINT / SIGTERM into a flag the training loop checks between iterations, so an interrupted run
    saves a checkpoint of a whole iteration (never one cut inside an optimizer step) and resumes exactly."""

    def __init__(self):
        import signal
        import threading

        self.requested = False
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def param_groups(model: nn.Module, lr: float, head_lr_mult: float, weight_decay: float = 0.0,
                 no_decay_key: str | None = None) -> list[dict]:
    """Backbone parameters at ``lr``; any parameter whose name contains "head" at ``lr * head_lr_mult`` (the
    original's substring rule); with ``no_decay_key`` (HLG: "norm"), matching parameters get no weight decay."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = ("head" in name, bool(no_decay_key) and no_decay_key in name)
            groups.setdefault(key, []).append(p)
    out = []
    for (is_head, no_decay), params in sorted(groups.items()):
        g_lr = lr * (head_lr_mult if is_head else 1.0)
        out.append({"params": params, "lr": g_lr, "initial_lr": g_lr,
                    "weight_decay": 0.0 if no_decay else weight_decay,
                    "name": ("heads" if is_head else "backbone") + ("_no_decay" if no_decay else "")})
    return out


def _autocast(amp: str | None, device: torch.device):
    if not amp:
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if dtype is None:
        raise SetrError(f"--amp {amp}: expected bf16 or fp16")
    return torch.autocast(device_type=device.type, dtype=dtype)


def validate_preset(preset: Preset, world_size: int = 1) -> None:
    cfg = preset.model
    from ..config import BACKBONE_TYPES, HEAD_TYPES

    r = preset.train
    if r.loss_normalisation not in ("all_pixels", "valid_pixels"):
        raise SetrError(f"train.loss_normalisation {r.loss_normalisation!r}: expected all_pixels or valid_pixels")
    if r.batch_size < 1 or r.batch_size % world_size:
        raise SetrError(f"train.batch_size {r.batch_size} must be >= 1 and divisible by the {world_size} processes")
    if r.iters < 1:
        raise SetrError(f"train.iters {r.iters} must be >= 1")
    if cfg.backbone.type not in BACKBONE_TYPES:
        raise SetrError(f"model.backbone.type {cfg.backbone.type!r}: expected one of {', '.join(BACKBONE_TYPES)}")
    for h in [cfg.decode_head, *cfg.aux_heads]:
        if h.type not in HEAD_TYPES:
            raise SetrError(f"head type {h.type!r}: expected one of {', '.join(HEAD_TYPES)}")
    depth = cfg.backbone.depth
    for where, head in [("decode_head", cfg.decode_head)] + [(f"aux_heads.{i}", h) for i, h in enumerate(cfg.aux_heads)]:
        levels = head.type in ("mla_aux", "fcn")  # indexes the 4 feature levels, not the blocks
        limit = 4 if levels else depth
        if head.type not in ("mla", "hlg_up") and not -limit <= head.in_index < limit:
            raise SetrError(f"model.{where}.in_index {head.in_index} is out of range for "
                            f"{'the 4 feature levels' if levels else f'a backbone of depth {depth}'}")
    if cfg.backbone.mla_index and any(not 0 <= i < depth for i in cfg.backbone.mla_index):
        raise SetrError(f"model.backbone.mla_index {list(cfg.backbone.mla_index)} is out of range for depth {depth}")
    d = preset.data
    reachable = min(d.img_scale) * d.ratio_range[1]
    if min(d.crop_size) > reachable:
        raise SetrError(f"data.crop_size {list(d.crop_size)} is larger than any training image can become "
                        f"(short side at most {reachable:.0f} = {min(d.img_scale)} x ratio {d.ratio_range[1]}): "
                        "lower the crop or raise data.img_scale")
    if tuple(preset.data.crop_size) != tuple(cfg.backbone.img_size):
        raise SetrError(f"data.crop_size {list(preset.data.crop_size)} differs from model.backbone.img_size "
                        f"{list(cfg.backbone.img_size)}: set both")


def train(preset: Preset, data_root: str | Path, work_dir: str | Path, *, resume: str | Path | bool | None = None,
          load_from: str | Path | None = None, pretrained: str | None = None, amp: str | None = None,
          device: str | None = None, seed: int = 0, progress: bool = True, validate: bool = True) -> TrainResult:
    import os

    validate_preset(preset, int(os.environ.get("WORLD_SIZE", "1")))
    info = init_distributed(device)
    try:
        return _train(preset, Path(data_root), Path(work_dir), info, resume, load_from, pretrained, amp, seed,
                      progress, validate)
    finally:
        cleanup(info)


def _train(preset, data_root, work_dir, info: DistInfo, resume, load_from, pretrained, amp, seed, progress, validate):
    from tqdm import tqdm

    recipe, cfg = preset.train, preset.model
    work_dir.mkdir(parents=True, exist_ok=True)
    log = run_logger(work_dir, "train", info.is_main)
    preset_dict = preset.to_dict()

    # ---- data
    d = preset.data
    pipeline = TrainPipeline(crop_size=tuple(d.crop_size), img_scale=tuple(d.img_scale),
                             ratio_range=tuple(d.ratio_range), cat_max_ratio=d.cat_max_ratio, flip_prob=d.flip_prob,
                             photometric=d.photometric, mean=cfg.mean, std=cfg.std)
    train_set = build_dataset(d.dataset, data_root, "train", cfg.num_classes, pipeline)
    val_set = None
    if validate:
        try:
            val_set = build_dataset(d.dataset, data_root, "val", cfg.num_classes)
        except SetrError as exc:
            log.info(f"no validation during training: {exc}")
    if d.dataset == "folder" and not cfg.class_names:
        cfg.class_names = list(train_set.class_names)
    cfg.dataset = d.dataset  # saved with the model: palette and class names at test time

    # ---- model
    torch.manual_seed(seed)
    try:
        model = build_model(cfg).to(info.device)
    except ValueError as exc:
        raise SetrError(f"model config: {exc}") from None
    torch.manual_seed(seed + info.rank)  # identical init everywhere, independent dropout / drop-path per rank
    if pretrained and cfg.backbone.type == "hlg":
        from ..checkpoints import read_state_dict
        from ..models.hlg import load_hlg_state_dict

        try:
            load_hlg_state_dict(model.backbone, read_state_dict(pretrained))
        except RuntimeError as exc:
            raise SetrError(f"{pretrained}: {exc}") from None
        log.info(f"HLG backbone initialised from {pretrained} (norm_out_* kept at init)")
    elif pretrained:
        report = load_pretrained_backbone(model.backbone, pretrained)
        log.info(f"backbone initialised from {pretrained}; kept at init: {len(report['kept_init'])} tensors")
    if load_from:
        load_original_checkpoint(model, load_from)
    model.train()
    ddp_model = model
    if info.distributed:
        if info.device.type == "cuda":
            ddp_model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model = ddp_model
        elif info.is_main:
            log.info("CPU processes: BatchNorm statistics stay per process (SyncBatchNorm needs CUDA)")
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None, broadcast_buffers=False)

    groups = param_groups(model, recipe.lr, recipe.head_lr_mult, recipe.weight_decay, recipe.no_decay_key)
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    elif recipe.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=recipe.lr, betas=tuple(recipe.betas), weight_decay=recipe.weight_decay)
    else:
        raise SetrError(f"train.optimizer {recipe.optimizer!r}: expected 'sgd' or 'adamw'")
    scaler = torch.amp.GradScaler(info.device.type) if amp == "fp16" else None

    # ---- resume
    start_iter, best = 0, {}
    resume_path = None
    if resume:
        resume_path = latest_checkpoint(work_dir) if resume is True else Path(resume)
        if resume_path is None:
            raise SetrError(f"{work_dir}: --resume found no iter_*.pth checkpoint to continue from")
    if resume_path is not None:
        state = load_training_checkpoint(resume_path)
        if state["meta"]["preset"] != preset.name:
            raise SetrError(f"{resume_path}: checkpoint is from preset {state['meta']['preset']}, not {preset.name}")
        load_original_checkpoint(model, state["state_dict"], source=str(resume_path))
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state.get("rng_ranks", [state["rng"]] * info.world_size)[info.rank]
                      if len(state.get("rng_ranks", [])) == info.world_size else state["rng"])
        start_iter, best = int(state["meta"]["iteration"]), dict(state["meta"].get("best", {}))
        log.info(f"resumed from {resume_path} at iteration {start_iter}")
    if start_iter >= recipe.iters:
        log.info(f"nothing to do: iteration {start_iter} >= {recipe.iters}")

    if info.is_main:
        (work_dir / "config.json").write_text(json.dumps(preset_dict, indent=2))

    sampler = InfiniteSampler(len(train_set), recipe.batch_size, info.rank, info.world_size, seed, start_iter)
    loader = torch.utils.data.DataLoader(train_set, batch_size=sampler.per_rank, sampler=sampler,
                                         num_workers=d.workers, pin_memory=info.device.type == "cuda",
                                         persistent_workers=d.workers > 0)
    batches = iter(loader)
    weights = [cfg.decode_head.loss_weight] + [h.loss_weight for h in cfg.aux_heads]
    ckpt_every = recipe.checkpoint_interval or recipe.eval_interval or recipe.iters
    tb = tensorboard_writer(work_dir, info.is_main)

    def checkpoint(it: int) -> Path | None:
        path = None
        ranks = gather_rng_states(info)
        if info.is_main:
            path = save_training_checkpoint(work_dir / f"iter_{it}.pth", model, optimizer, it, preset_dict, best, scaler,
                                            ranks)
            prune_checkpoints(work_dir, recipe.keep_checkpoints, protect={path})
        barrier(info)
        return path

    def run_eval(it: int) -> dict:
        from ..evaluation.evaluate import evaluate
        from ..inference import Segmenter

        model.eval()
        metrics = evaluate(Segmenter(model, cfg, device=info.device), val_set, info, progress=progress)
        model.train()
        if info.is_main:
            log.info(f"iter {it}: aAcc {metrics['aAcc']:.4f} mIoU {metrics['mIoU']:.4f} mAcc {metrics['mAcc']:.4f}")
            if tb:
                for k in ("aAcc", "mIoU", "mAcc"):
                    tb.add_scalar(f"val/{k}", metrics[k], it)
        return metrics

    metrics: dict = {}
    last_ckpt = None
    bar = tqdm(total=recipe.iters, initial=start_iter, desc=preset.name[:40], unit="it",
               disable=not (progress and info.is_main), dynamic_ncols=True)
    t0, it = time.time(), start_iter
    log.info(f"training {preset.name} for {recipe.iters} iterations (batch {recipe.batch_size}, "
             f"{info.world_size} process(es), device {info.device}, amp {amp or 'off'}) from iteration {start_iter}")
    stop = StopRequest()
    try:
        while it < recipe.iters:
            for g in optimizer.param_groups:
                g["lr"] = poly_lr(g["initial_lr"], it, recipe.iters, recipe.poly_power, recipe.min_lr,
                                  recipe.warmup_iters, recipe.warmup_ratio)
            batch = next(batches)
            img = batch["img"].to(info.device, non_blocking=True)
            target = batch["mask"].to(info.device, non_blocking=True)
            with _autocast(amp, info.device):
                outputs = ddp_model(img, with_aux=True)
            losses = segmentor_losses(outputs, weights, target, recipe.loss_normalisation)
            loss = sum(losses.values())
            bad = all_reduce_sum(torch.tensor(0.0 if torch.isfinite(loss) else 1.0, device=info.device), info)
            if bad.item() > 0:  # every rank stops together instead of hanging in the gradient all-reduce
                raise SetrError(f"iteration {it}: loss is not finite (try a lower learning rate or --amp bf16)")
            optimizer_step(loss, optimizer, model, scaler)
            it += 1
            if info.is_main:
                lr = optimizer.param_groups[0]["lr"]
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
                if tb:
                    tb.add_scalar("train/loss", loss.item(), it)
                    tb.add_scalar("train/lr", lr, it)
                if it % 50 == 0 or it == recipe.iters or it == start_iter + 1:
                    speed = (it - start_iter) / max(time.time() - t0, 1e-9)
                    parts = " ".join(f"{k}.loss_seg {v.item():.4f}" for k, v in losses.items())
                    log.info(f"iter {it}/{recipe.iters} lr {lr:.3e} loss {loss.item():.4f} {parts} "
                             f"acc_seg {100 * pixel_accuracy(outputs[0].detach(), target):.2f} {speed:.2f} it/s")
            last_ckpt = None
            if val_set is not None and (it % (recipe.eval_interval or ckpt_every) == 0 or it == recipe.iters):
                metrics = run_eval(it)
                if info.is_main and (not best or metrics["mIoU"] > best.get("mIoU", -1)):
                    best = {"mIoU": metrics["mIoU"], "iteration": it}
                    save_model(model, cfg, work_dir / "best.safetensors", {"iteration": str(it)})
            if it % ckpt_every == 0 or it == recipe.iters:
                last_ckpt = checkpoint(it)
            if it < recipe.iters and all_reduce_sum(torch.tensor(float(stop.requested)), info).item() > 0:
                # Ctrl-C / SIGTERM: the iteration in flight completed; save it and leave (every rank together)
                path = checkpoint(it)
                if info.is_main:
                    log.info(f"interrupted: saved {path}; continue with --resume")
                    print(f"\ninterrupted at iteration {it}: saved {path}; continue with --resume")
                raise KeyboardInterrupt
    finally:
        stop.restore()
        bar.close()
        if tb:
            tb.close()
    final = None
    if info.is_main:
        final = save_model(model, cfg, work_dir / "final.safetensors", {"iteration": str(it)})
        if metrics:
            from ..evaluation.metrics import to_json

            (work_dir / "metrics.json").write_text(to_json({**metrics, "iteration": it, "best": best}))
    barrier(info)
    return TrainResult(work_dir, it, last_ckpt or final, metrics, best)
