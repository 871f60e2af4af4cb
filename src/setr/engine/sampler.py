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


class _PositionSeededSampler(Sampler):
    """What both samplers share: the global batch cut into rank slices, epoch ``e`` permuted with ``seed + e``,
    and each sample's seed a pure function of ``seed`` and its position in the stream."""

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

    def _sample_seed(self, pos: int) -> int:
        return (self.seed * 1_000_003 + pos) % (2 ** 63)


class InfiniteSampler(_PositionSeededSampler):
    """Iteration-based training (segmentation): the epochs' permutations concatenated, so a global batch may
    straddle two epochs, as the original's infinite loader."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        it = self.start_iter
        epoch, perm = -1, None
        while True:
            base = it * self.global_batch + self.rank * self.per_rank
            for pos in range(base, base + self.per_rank):
                e = pos // self.n
                if e != epoch:
                    epoch, perm = e, self._epoch(e)
                yield int(perm[pos % self.n]), self._sample_seed(pos)
            it += 1


class EpochSampler(_PositionSeededSampler):
    """The sampler of epoch-based training (classification, detection), resumable at any iteration.

    Epoch ``e`` is a permutation seeded with ``seed + e`` cut into ``steps_per_epoch = n // global_batch``
    global batches (the incomplete tail is dropped, as ``drop_last``); rank r takes its slice of each. Items
    are ``(index, sample_seed)`` with the seed a pure function of ``seed`` and the sample's position, so the
    data order *and* the augmentation of iteration k are the same whether the run started at 0 or resumed at k.
    The stream is endless (one DataLoader for the whole run); the trainer counts iterations.
    """

    def __init__(self, dataset_len: int, global_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 start_iter: int = 0, shuffle: bool = True):
        super().__init__(dataset_len, global_batch, rank, world_size, seed, start_iter, shuffle)
        if dataset_len < global_batch:
            from ..errors import SetrError

            raise SetrError(f"{dataset_len} training samples, fewer than the batch size {global_batch}")
        self.steps_per_epoch = dataset_len // global_batch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        it = self.start_iter
        epoch, perm = -1, None
        while True:
            e, b = divmod(it, self.steps_per_epoch)
            if e != epoch:
                epoch, perm = e, self._epoch(e)
            base = b * self.global_batch + self.rank * self.per_rank
            for j in range(self.per_rank):
                pos = it * self.global_batch + self.rank * self.per_rank + j
                yield int(perm[base + j]), self._sample_seed(pos)
            it += 1


class SeededSamples(torch.utils.data.Dataset):
    """Wraps a dataset whose transforms draw from the global RNGs (timm, torchvision): each item
    ``(index, sample_seed)`` is made with Python's, NumPy's and torch's generators seeded by ``sample_seed``
    and put back afterwards, so a sample's augmentation depends on its position only (exact resume, any
    number of loader workers) and the training process's own RNG streams are untouched."""

    def __init__(self, base):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        import random

        import numpy as np

        index, seed = key if isinstance(key, tuple) else (key, None)
        if seed is None:
            return self.base[index]
        py, npy = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed(seed % (2 ** 32))
            torch.manual_seed(seed)
            try:
                return self.base[index]
            finally:
                random.setstate(py)
                np.random.set_state(npy)


def loader_generator() -> torch.Generator:
    """For ``DataLoader(generator=...)``: a DataLoader draws its workers' base seed when an iterator starts, from
    the global RNG unless given a generator; a resumed run starts its iterator at another point of the global
    stream, so that draw would shift every later random number (drop path, scales). Samples are seeded by
    position (the samplers above), so the workers' base seed does not matter."""
    return torch.Generator().manual_seed(0)
