"""The iteration-based trainer (the original recipe), on one CPU, one GPU or N processes under torchrun.

* SGD (momentum 0.9, weight decay 0), parameters whose name contains ``head`` at ``head_lr_mult`` x the base
  learning rate (the original's rule: decode and auxiliary heads, not the MLA neck), poly decay to ``min_lr``
  by iteration; auxiliary losses at their weights; cross-entropy normalised as the preset says.
* DDP when launched by torchrun (SyncBatchNorm on GPUs; CPU processes keep per-process BatchNorm, since
  PyTorch's SyncBatchNorm needs a GPU); the global batch is stated, not implied by the GPU count.
* The loop itself (checkpoints, resume, stop on SIGINT / SIGTERM, non-finite losses, the work-dir lock,
  ``metrics.jsonl``, logging) is :mod:`setr.engine.loop`, shared with classification and detection; this module
  is the segmentation task plugged into it (:class:`SegmentationTask`). The data order and augmentation are
  functions of the iteration, so ``--resume`` continues exactly. The best checkpoint by mIoU is kept as
  ``best.safetensors``; ``train.stop_at`` stops early within the full schedule.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..model_files import load_weights, load_pretrained_backbone, save_model
from ..config import build_model
from ..data.datasets import build_dataset
from ..data.transforms import TrainPipeline
from ..errors import SetrError
from ..presets import Preset
from .common import build_optimizer
from ..dist import DistInfo
from .loop import TrainTask, run_training
from .losses import pixel_accuracy, segmentor_losses
from .sampler import InfiniteSampler, loader_generator
from .schedule import poly_lr


@dataclass
class TrainResult:
    work_dir: Path
    iterations: int
    final_checkpoint: Path | None
    metrics: dict
    best: dict


def validate_preset(preset: Preset, world_size: int = 1) -> None:
    """The recipe and data settings of a segmentation preset; its model config goes to
    :func:`setr.config.validate_model_config`."""
    cfg = preset.model
    from ..config import validate_model_config

    r = preset.train
    if r.loss_normalisation not in ("all_pixels", "valid_pixels"):
        raise SetrError(f"train.loss_normalisation {r.loss_normalisation!r}: expected all_pixels or valid_pixels")
    if r.batch_size < 1 or r.batch_size % world_size:
        raise SetrError(f"train.batch_size {r.batch_size} must be >= 1 and divisible by the {world_size} processes")
    if r.iters < 1:
        raise SetrError(f"train.iters {r.iters} must be >= 1")
    if r.stop_at is not None and r.stop_at < 1:
        raise SetrError(f"train.stop_at {r.stop_at} must be >= 1 (or null: the whole schedule)")
    if r.checkpoint_interval is not None and r.checkpoint_interval < 0:
        raise SetrError(f"train.checkpoint_interval {r.checkpoint_interval} must be >= 0")
    validate_model_config(cfg)  # the one validator for model configs
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
          device: str | None = None, seed: int = 0, progress: bool = True, validate: bool = True,
          overwrite: bool = False, compile: bool = False) -> TrainResult:
    """Train ``preset`` on ``data_root`` in ``work_dir`` (the loop: :func:`setr.engine.loop.run_training`).
    ``resume``: True for the newest checkpoint of the work dir, or a path; ``overwrite`` discards another run's
    checkpoints in ``work_dir`` instead of refusing to start."""
    from ..dist import launch_env

    validate_preset(preset, launch_env()[1])
    task = SegmentationTask(preset, Path(data_root), Path(work_dir), load_from, pretrained, seed, progress, validate)
    task.compile = compile  # torch.compile the training forward (issue 21): the first step compiles
    result = run_training(task, work_dir, resume=resume, overwrite=overwrite, amp=amp, device=device,
                          progress=progress)
    return TrainResult(Path(work_dir), result.iterations, result.last_checkpoint or task.final_path,
                       result.metrics, result.best)


class SegmentationTask(TrainTask):
    """The original SETR recipe, iteration-based: poly lr by iteration set before each step, per-head losses."""

    kind = "segmentation"
    score_key = "mIoU"

    def __init__(self, preset: Preset, data_root: Path, work_dir: Path, load_from, pretrained, seed: int,
                 progress: bool, validate: bool):
        self.preset, self.data_root, self.work_dir = preset, data_root, work_dir
        self.load_from, self.pretrained, self.seed = load_from, pretrained, seed
        self.progress, self.validate = progress, validate
        self.name = preset.name
        self.final_path = None
        r = preset.train
        self.total_iters = r.iters
        self.stop_at = r.stop_at
        self.keep_checkpoints = r.keep_checkpoints
        self.checkpoint_interval = r.checkpoint_interval or r.eval_interval or r.iters
        self.eval_interval = r.eval_interval or self.checkpoint_interval
        self._last = None

    def build(self, info: DistInfo, log, amp) -> None:
        preset, cfg, d = self.preset, self.preset.model, self.preset.data
        self.info, self.log = info, log
        pipeline = TrainPipeline(crop_size=tuple(d.crop_size), img_scale=tuple(d.img_scale),
                                 ratio_range=tuple(d.ratio_range), cat_max_ratio=d.cat_max_ratio,
                                 flip_prob=d.flip_prob, photometric=d.photometric, mean=cfg.mean, std=cfg.std)
        self.train_set = build_dataset(d.dataset, self.data_root, "train", cfg.num_classes, pipeline)
        self.val_set = None
        if self.validate:
            try:
                self.val_set = build_dataset(d.dataset, self.data_root, "val", cfg.num_classes)
            except SetrError as exc:
                log.info(f"no validation during training: {exc}")
        if d.dataset == "folder" and not cfg.class_names:
            cfg.class_names = list(self.train_set.class_names)
        cfg.dataset = d.dataset  # saved with the model: palette and class names at test time
        self.config = preset.to_dict()

        torch.manual_seed(self.seed)
        try:
            model = build_model(cfg).to(info.device)
        except ValueError as exc:
            raise SetrError(f"model config: {exc}") from None
        torch.manual_seed(self.seed + info.rank)  # identical init everywhere, independent dropout / drop-path per rank
        pretrained = self.pretrained
        if pretrained and cfg.backbone.type == "hlg":
            from ..io.weights import read_state_dict
            from ..models.hlg import load_hlg_state_dict

            try:
                load_hlg_state_dict(model.backbone, read_state_dict(pretrained))
            except RuntimeError as exc:
                raise SetrError(f"{pretrained}: {exc}") from None
            log.info(f"HLG backbone initialised from {pretrained} (norm_out_* kept at init)")
        elif pretrained:
            report = load_pretrained_backbone(model.backbone, pretrained)
            log.info(f"backbone initialised from {pretrained}; kept at init: {len(report['kept_init'])} tensors")
        if self.load_from:
            load_weights(model, self.load_from)
        model.train()
        ddp_model = model
        if info.distributed:
            if info.device.type == "cuda":
                ddp_model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
                model = ddp_model
            elif info.is_main:
                log.info("CPU processes: BatchNorm statistics stay per process (SyncBatchNorm needs CUDA)")
            ddp_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
                broadcast_buffers=False)
        if getattr(self, "compile", False):
            ddp_model = torch.compile(ddp_model)  # the loss, backward and optimiser step stay eager
            log.info("torch.compile: the first iteration compiles the network (minutes on a CPU)")
        self.model, self.ddp_model = model, ddp_model
        r = preset.train
        self.optimizer = build_optimizer(model, r)
        self.weights = [cfg.decode_head.loss_weight] + [h.loss_weight for h in cfg.aux_heads]
        log.info(f"{preset.name}: batch {r.batch_size}, {len(self.train_set)} training images")

    def batches(self, start_iter: int):
        info, d, r = self.info, self.preset.data, self.preset.train
        sampler = InfiniteSampler(len(self.train_set), r.batch_size, info.rank, info.world_size, self.seed, start_iter)
        return torch.utils.data.DataLoader(self.train_set, batch_size=sampler.per_rank, sampler=sampler,
                                           num_workers=d.workers, pin_memory=info.device.type == "cuda",
                                           persistent_workers=d.workers > 0, generator=loader_generator())

    def before_step(self, it: int) -> None:
        r = self.preset.train
        for g in self.optimizer.param_groups:
            g["lr"] = poly_lr(g["initial_lr"], it, r.iters, r.poly_power, r.min_lr, r.warmup_iters, r.warmup_ratio)

    def forward(self, batch, autocast) -> dict:
        img = batch["img"].to(self.info.device, non_blocking=True)
        target = batch["mask"].to(self.info.device, non_blocking=True)
        with autocast():  # defer: each head's last resize happens inside the loss, piece by piece (lean memory)
            outputs = self.ddp_model(img, with_aux=True, defer=True)
        losses = segmentor_losses(outputs, self.weights, target, self.preset.train.loss_normalisation)
        self._last = (outputs[0]._replace(logits=outputs[0].logits.detach()), target)
        # the original's log names: decode.loss_seg, aux_0.loss_seg, ...
        return {("decode.loss_seg" if k == "decode" else f"aux_{k[3:]}.loss_seg"): v for k, v in losses.items()}

    def log_extras(self) -> str:
        if self._last is None:
            return ""
        return f"acc_seg {100 * pixel_accuracy(self._last[0], self._last[1]):.2f}"

    def should_evaluate(self, it: int) -> bool:
        return self.val_set is not None and (it % self.eval_interval == 0 or it == self.total_iters)

    def evaluate(self, it: int) -> dict:
        from ..evaluation.evaluate import evaluate
        from ..inference import Segmenter

        self._last = None
        self.model.eval()
        metrics = evaluate(Segmenter(self.model, self.preset.model, device=self.info.device), self.val_set,
                           self.info, progress=self.progress)
        self.model.train()
        if self.info.is_main:
            self.log.info(f"iter {it}: aAcc {metrics['aAcc']:.4f} mIoU {metrics['mIoU']:.4f} mAcc {metrics['mAcc']:.4f}")
        return metrics

    def on_best(self, it: int, metrics: dict) -> None:
        save_model(self.model, self.preset.model, self.work_dir / "best.safetensors", {"iteration": str(it)})

    def load_weights(self, state_dict: dict, path: Path) -> None:
        load_weights(self.model, state_dict, source=str(path))

    def finish(self, it: int, metrics: dict, best: dict) -> dict | None:
        self.final_path = save_model(self.model, self.preset.model, self.work_dir / "final.safetensors",
                                     {"iteration": str(it)})
        if metrics:
            return {**metrics, "iteration": it, "best": best}
        return None
