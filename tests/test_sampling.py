"""ResumableSampler against torch's own permutation: the order per (seed, epoch), the share of
each replica, the mid-epoch start and its length."""

from __future__ import annotations

import torch

from echoclr.data.sampling import ResumableSampler


def perm(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def test_one_replica_yields_the_seeded_permutation_keyed_by_epoch():
    sampler = ResumableSampler(10)
    assert list(sampler) == [(0, i) for i in perm(10, 0)] and len(sampler) == 10
    sampler = ResumableSampler(10, seed=5)
    sampler.set_epoch(2)
    assert list(sampler) == [(2, i) for i in perm(10, 7)]  # seed + epoch
    assert list(ResumableSampler(4, shuffle=False)) == [(0, 0), (0, 1), (0, 2), (0, 3)]


def test_replicas_take_disjoint_strided_shares_and_drop_the_remainder():
    order = perm(10, 3)
    shares = [ResumableSampler(10, num_replicas=3, rank=r, seed=3).indices() for r in range(3)]
    assert shares == [order[:9][r::3] for r in range(3)]
    assert sorted(sum(shares, [])) == sorted(order[:9])  # disjoint, the 10th dropped
    assert all(len(ResumableSampler(10, num_replicas=3, rank=r)) == 3 for r in range(3))


def test_a_mid_epoch_start_skips_that_many_of_this_replicas_indices():
    sampler = ResumableSampler(10, num_replicas=2, rank=1, seed=1)
    full = sampler.indices()
    sampler.set_start(2)
    assert [i for _, i in sampler] == full[2:] and len(sampler) == 3
    sampler.set_start(7)  # past the end: nothing left
    assert list(sampler) == [] and len(sampler) == 0
    sampler.set_start(0)
    assert len(sampler) == 5 and [i for _, i in sampler] == full
