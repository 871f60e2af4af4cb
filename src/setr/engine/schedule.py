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
