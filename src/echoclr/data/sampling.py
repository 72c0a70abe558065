"""A distributed sampler that can start mid-epoch, so interrupted runs resume exactly."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Like ``DistributedSampler(shuffle=True, drop_last=True)`` plus ``set_start``.

    The permutation depends only on (seed, epoch); each replica takes every
    ``num_replicas``-th index. ``set_start(k)`` skips this replica's first k indices once.
    Yields ``(epoch, index)`` keys, so datasets draw their per-item randomness from the epoch
    even inside persistent loader workers (which never see a later ``set_epoch`` call).
    """

    def __init__(self, n: int, *, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True):
        self.n, self.num_replicas, self.rank = n, num_replicas, rank
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start = 0, 0
        self.per_replica = n // num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        self.start = start

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        order = order[: self.per_replica * self.num_replicas]
        return order[self.rank::self.num_replicas]

    def __iter__(self):
        return iter([(self.epoch, i) for i in self.indices()[self.start:]])

    def __len__(self) -> int:
        return max(0, self.per_replica - self.start) if self.start else self.per_replica
