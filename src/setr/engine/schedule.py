"""Learning-rate schedules by iteration (mmcv semantics: ``it`` is the 0-based iteration about to run)."""
from __future__ import annotations


def poly_lr(base_lr: float, it: int, max_iters: int, power: float = 0.9, min_lr: float = 1e-4,
            warmup_iters: int = 0, warmup_ratio: float = 1e-6) -> float:
    """(base - min) * (1 - it / max) ** power + min, with an optional linear warm-up from base * ratio."""
    lr = (base_lr - min_lr) * (1 - it / max_iters) ** power + min_lr
    if warmup_iters and it < warmup_iters:
        k = (1 - it / warmup_iters) * (1 - warmup_ratio)
        lr = lr * (1 - k)
    return lr


def step_lr(base_lr: float, epoch: int, milestones, gamma: float = 0.1) -> float:
    """mmcv ``StepLrUpdaterHook`` by epoch: ``base * gamma ** (number of milestones <= epoch)``."""
    exp = sum(1 for m in milestones if epoch >= m)
    return base_lr * (gamma ** exp)


def step_warmup_lr(base_lr: float, it: int, epoch: int, milestones, gamma: float = 0.1, warmup_iters: int = 0,
                   warmup_ratio: float = 0.001) -> float:
    """mmcv's by-epoch step schedule with linear warm-up by ITERATION (``it`` = the runner's global iteration,
    ``epoch`` = its epoch): the epoch's regular lr, times ``1 - (1 - it / warmup_iters) * (1 - ratio)`` while
    ``it < warmup_iters``; from ``it == warmup_iters`` on the regular lr exactly (mmcv's ``before_train_iter``)."""
    lr = step_lr(base_lr, epoch, milestones, gamma)
    if warmup_iters and it < warmup_iters:
        k = (1 - it / warmup_iters) * (1 - warmup_ratio)
        lr = lr * (1 - k)
    return lr
