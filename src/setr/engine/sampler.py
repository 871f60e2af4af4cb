"""An infinite, resumable, rank-aware sampler for iteration-based training.

The stream of sample indices is the concatenation of per-epoch permutations (epoch e shuffled with
``seed + e``), cut into global batches; rank r takes its slice of each. Every item is ``(index, sample_seed)``
where the seed (used for that sample's augmentation) is a pure function of ``seed`` and the sample's position
in the stream. Starting at iteration k therefore yields exactly what an uninterrupted run would have.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class InfiniteSampler(Sampler):
    def __init__(self, dataset_len: int, global_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 start_iter: int = 0, shuffle: bool = True):
        if global_batch < 1 or global_batch % world_size:
            from ..errors import SetrError

            raise SetrError(f"batch size {global_batch} must be >= 1 and divisible by {world_size} processes")
        self.n = dataset_len
        self.global_batch = global_batch
        self.per_rank = global_batch // world_size
        self.rank = rank
        self.seed = seed
        self.start_iter = start_iter
        self.shuffle = shuffle

    def _epoch(self, e: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        g = torch.Generator().manual_seed(self.seed + e)
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        it = self.start_iter
        epoch, perm = -1, None
        while True:
            base = it * self.global_batch + self.rank * self.per_rank
            for pos in range(base, base + self.per_rank):
                e = pos // self.n
                if e != epoch:
                    epoch, perm = e, self._epoch(e)
                yield int(perm[pos % self.n]), (self.seed * 1_000_003 + pos) % (2 ** 63)
            it += 1
