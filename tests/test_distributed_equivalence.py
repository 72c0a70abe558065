"""Two gloo processes on CPU do what one process does on the concatenated batch.

Checked for NT-Xent alone (logits row by row, the exact candidate count under the study mask)
and for ``pretrain`` itself: each rank reads its own items, the study mask reaches the loss, the
loss and the gradient of every rank's projections equal the one-process loss and gradient over
both ranks' pairs, and each rank draws its own augmentations.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import echoclr.commands.pretrain as pt_cmd
import echoclr.pretraining as pt
from conftest import make_cache
from echoclr.data.sampling import ResumableSampler
from echoclr.losses import nt_xent
from echoclr.commands.pretrain import PretrainConfig
from echoclr.runs import JsonlLog

WORLD = 2
TEMPERATURE = 0.1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(worker, *args) -> None:
    """Run ``worker(rank, *args)`` in WORLD forked processes joined by a gloo group.

    Fork, not spawn: the children need nothing re-imported, which keeps the test fast.
    """
    port = free_port()
    mp.start_processes(worker, args=(port, *args), nprocs=WORLD, start_method="fork")


def join_group(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def expected_candidates(study: torch.Tensor) -> torch.Tensor:
    """Finite logits per query row of a one-process batch of pairs with these study ids:
    2N keys minus the query's own study's 2m items, plus its positive back."""
    n = len(study)
    m = (study[:, None] == study[None, :]).sum(1)  # pairs of each query's study, itself included
    return torch.cat([2 * n - 2 * m + 1] * 2)


# --- the loss alone ---------------------------------------------------------------------------


def _loss_worker(rank, port, z_a, z_b, study, out_dir):
    join_group(rank, port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    b = len(study) // WORLD
    mine = slice(rank * b, (rank + 1) * b)
    loss, logits, targets = nt_xent(z_a[mine], z_b[mine], temperature=TEMPERATURE,
                                    study=study[mine], return_logits=True)
    torch.save({"loss": loss.item(), "logits": logits, "targets": targets},
               f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_each_rank_gets_the_one_process_logit_rows_and_candidate_counts(tmp_path):
    g = torch.Generator().manual_seed(3)
    z_a, z_b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    study = torch.tensor([4, 1, 4, 2, 4, 1])  # study 4 on both ranks, study 1 straddles them
    run_ranks(_loss_worker, z_a, z_b, study, str(tmp_path))
    ref_loss, ref_logits, ref_targets = nt_xent(z_a, z_b, temperature=TEMPERATURE, study=study,
                                                return_logits=True)
    counts = torch.isfinite(ref_logits).sum(1)
    assert counts.tolist() == expected_candidates(study).tolist() == [7, 9, 7, 11, 7, 9] * 2
    n, b = len(study), len(study) // WORLD
    losses = []
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        rows = torch.cat([torch.arange(rank * b, (rank + 1) * b),
                          torch.arange(n + rank * b, n + (rank + 1) * b)])
        torch.testing.assert_close(got["logits"], ref_logits[rows], rtol=1e-5, atol=1e-5)
        assert torch.equal(got["targets"], ref_targets[rows])
        losses.append(got["loss"])
    assert sum(losses) / WORLD == pytest.approx(ref_loss.item(), rel=1e-5)


# --- pretrain ---------------------------------------------------------------------------------


def _pretrain_worker(rank, port, cfg, out_dir):
    """Run ``pretrain`` as one rank, recording what it reads, draws and computes."""
    join_group(rank, port)
    record = {"keys": [], "steps": [], "draws": []}

    class Recording(pt_cmd.StudyPairDataset):
        def __getitem__(self, key):
            record["keys"].append(key)
            return super().__getitem__(key)

    loss_fn, augment = pt.nt_xent, pt.augment_clips

    def spy_loss(z_a, z_b, **kw):
        step = {"z_a": z_a.detach().clone(), "z_b": z_b.detach().clone(), "study": kw["study"]}
        z_a.register_hook(lambda grad: step.__setitem__("grad_a", grad.clone()))
        z_b.register_hook(lambda grad: step.__setitem__("grad_b", grad.clone()))
        loss, logits, targets = loss_fn(z_a, z_b, **kw)
        step |= {"loss": loss.item(), "candidates": torch.isfinite(logits).sum(1)}
        record["steps"].append(step)
        return loss, logits, targets

    def spy_augment(clips, *, generator=None, **kw):
        peek = torch.Generator()
        peek.set_state(generator.get_state())
        record["draws"].append(torch.rand(8, generator=peek))  # what this step's draws start with
        return augment(clips, generator=generator, **kw)

    pt_cmd.StudyPairDataset, pt.nt_xent, pt.augment_clips = Recording, spy_loss, spy_augment
    pt_cmd.pretrain(cfg)
    torch.save(record, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_pretrain(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    cache = make_cache(root / "cache")
    cfg = PretrainConfig(cache=str(cache), out=str(root / "run"), encoder="r3d_tiny", width=4,
                         batch_size=3, max_steps=2, workers=0, log_every=1, progress=False,
                         clip_len=4, period=2, precision="fp32", device="cpu",
                         temperature=TEMPERATURE, seed=5)
    run_ranks(_pretrain_worker, cfg, str(root))
    records = [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return cfg, records, root


def test_ranks_read_disjoint_items(two_rank_pretrain):
    _, records, _ = two_rank_pretrain
    keys = [set(r["keys"]) for r in records]
    assert all(len(k) == 2 * 3 for k in keys)  # 2 steps of 3 pairs, no item twice
    assert not keys[0] & keys[1]


def test_study_mask_reaches_the_loss_with_exact_candidate_counts(two_rank_pretrain):
    _, records, _ = two_rank_pretrain
    for step in range(2):
        for rec in records:
            assert rec["steps"][step]["study"] is not None, "pretrain gave NT-Xent no study ids"
        study = torch.cat([r["steps"][step]["study"] for r in records])
        assert study.unique().numel() < study.numel()  # same-study pairs across ranks
        counts = expected_candidates(study)
        b = len(study) // WORLD
        for rank, rec in enumerate(records):
            rows = torch.cat([torch.arange(rank * b, (rank + 1) * b),
                              torch.arange(len(study) + rank * b, len(study) + (rank + 1) * b)])
            assert rec["steps"][step]["candidates"].tolist() == counts[rows].tolist()


def test_loss_and_gradients_equal_one_process_on_the_concatenated_batch(two_rank_pretrain):
    _, records, root = two_rank_pretrain
    logged = JsonlLog(root / "run" / "log.jsonl").rows()
    for step in range(2):
        steps = [r["steps"][step] for r in records]
        z_a = torch.cat([s["z_a"] for s in steps]).requires_grad_(True)
        z_b = torch.cat([s["z_b"] for s in steps]).requires_grad_(True)
        study = torch.cat([s["study"] for s in steps])
        loss = nt_xent(z_a, z_b, temperature=TEMPERATURE, study=study)
        loss.backward()
        assert sum(s["loss"] for s in steps) / WORLD == pytest.approx(loss.item(), rel=1e-5)
        assert logged[step]["nt_xent"] == pytest.approx(loss.item(), rel=1e-5)
        # Each rank's gradient sums every rank's loss; DDP then averages over the WORLD ranks.
        grad_a = torch.cat([s["grad_a"] for s in steps]) / WORLD
        grad_b = torch.cat([s["grad_b"] for s in steps]) / WORLD
        torch.testing.assert_close(grad_a, z_a.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(grad_b, z_b.grad, rtol=1e-4, atol=1e-6)


def test_each_rank_draws_its_own_augmentations(two_rank_pretrain):
    cfg, records, _ = two_rank_pretrain
    draws = [r["draws"] for r in records]
    assert len(draws[0]) == len(draws[1]) == 2
    for step, (rank_0, rank_1) in enumerate(zip(*draws)):
        assert not torch.equal(rank_0, rank_1), f"both ranks drew {rank_0.tolist()} at step {step}"
        # Rank 0 keeps the one-process stream, so one-process runs and resumes are unchanged.
        one_process = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        assert torch.equal(rank_0, torch.rand(8, generator=one_process))


def test_sampler_gives_each_rank_a_disjoint_equal_share():
    for world in (2, 3):
        shares = [ResumableSampler(20, num_replicas=world, rank=r, seed=1) for r in range(world)]
        for epoch in (0, 1):
            for s in shares:
                s.set_epoch(epoch)
            parts = [s.indices() for s in shares]
            flat = [i for p in parts for i in p]
            assert len(set(flat)) == len(flat) == 20 // world * world
            assert {len(p) for p in parts} == {20 // world}
            assert set(flat) <= set(range(20))


def test_views_depend_on_seed_rank_and_step_only():
    g = torch.Generator().manual_seed(0)
    batch = {"clip_a": torch.rand(4, 4, 16, 16, generator=g),
             "clip_b": torch.rand(4, 4, 16, 16, generator=g), "study": torch.arange(4)}
    cfg = PretrainConfig(method="echoclr", clip_len=4, seed=2)
    cpu = torch.device("cpu")

    def views(step, **kw):
        x, _, perm = pt.make_views(batch, cfg, step, cpu, **kw)
        return x, perm

    one_process = views(7)
    for a, b in zip(one_process, views(7, rank=0)):
        assert torch.equal(a, b)  # rank 0 is the one-process run
    for a, b in zip(views(7, rank=1), views(7, rank=1)):
        assert torch.equal(a, b)  # replayed exactly (resume)
    assert not torch.equal(views(7, rank=1)[0], one_process[0])
    assert not torch.equal(views(7, rank=1)[0], views(7, rank=2)[0])
    assert not torch.equal(views(8)[0], one_process[0])
