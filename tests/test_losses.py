"""NT-Xent against a naive double loop, lightly's NTXentLoss, a hand-built study mask, and
a 2-process gloo run."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from echoclr.losses import nt_xent, reorder_loss, retrieval_accuracy


def naive_nt_xent(z_a, z_b, temperature, study=None):
    """Double loop over queries and keys; excludes self and same-study non-positives."""
    z = F.normalize(torch.cat([z_a, z_b]).double(), dim=1)
    n = z_a.shape[0]
    sid = None if study is None else torch.cat([study, study])
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        num = math.exp(float(z[i] @ z[pos]) / temperature)
        den = 0.0
        for k in range(2 * n):
            if k == i:
                continue
            if sid is not None and k != pos and sid[k] == sid[i]:
                continue
            den += math.exp(float(z[i] @ z[k]) / temperature)
        total += -math.log(num / den)
    return total / (2 * n)


@pytest.mark.parametrize("batch", [1, 2, 5, 17])
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_matches_naive_double_loop_any_batch_size(batch, temperature):
    g = torch.Generator().manual_seed(batch)
    z_a, z_b = torch.randn(batch, 8, generator=g), torch.randn(batch, 8, generator=g)
    got = nt_xent(z_a, z_b, temperature=temperature).item()
    assert got == pytest.approx(naive_nt_xent(z_a, z_b, temperature), rel=1e-4)


def test_default_temperature_is_the_papers():
    g = torch.Generator().manual_seed(4)
    z_a, z_b = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert nt_xent(z_a, z_b).item() == pytest.approx(naive_nt_xent(z_a, z_b, 0.05), rel=1e-4)


def test_pair_halves_of_different_sizes_are_refused_with_both_shapes():
    with pytest.raises(ValueError, match=r"pair halves differ in size: .*\[3, 4\].* vs .*\[2, 4\]"):
        nt_xent(torch.randn(3, 4), torch.randn(2, 4))


@pytest.mark.gpu
def test_cuda_gives_the_cpu_loss_and_gradients():
    # Index tensors built on the wrong device pass every CPU test: only a GPU run sees them.
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    g = torch.Generator().manual_seed(6)
    z_a, z_b = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    study = torch.tensor([0, 1, 0, 2, 1, 3])
    results = []
    for device in ("cpu", "cuda"):
        a = z_a.to(device).requires_grad_(True)
        b = z_b.to(device).requires_grad_(True)
        loss = nt_xent(a, b, temperature=0.1, study=study.to(device))
        loss.backward()
        results.append((loss.item(), a.grad.cpu(), b.grad.cpu()))
    (cpu_loss, *cpu_grads), (cuda_loss, *cuda_grads) = results
    assert cuda_loss == pytest.approx(cpu_loss, rel=1e-4)
    for got, expected in zip(cuda_grads, cpu_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_matches_lightly_without_same_study_pairs():
    lightly_loss = pytest.importorskip("lightly.loss").NTXentLoss
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(12, 16, generator=g), torch.randn(12, 16, generator=g)
    ref = lightly_loss(temperature=0.1)(z_a, z_b).item()
    assert nt_xent(z_a, z_b, temperature=0.1, study=torch.arange(12)).item() == pytest.approx(
        ref, rel=1e-5)


def test_study_mask_removes_exactly_the_same_study_negatives():
    # Pairs 0 and 1 come from study 7; pair 2 from study 3.
    z_a = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    z_b = torch.tensor([[0.9, 0.1], [0.6, 0.8], [-0.2, 1.0]])
    study = torch.tensor([7, 7, 3])
    t = 0.5
    masked = nt_xent(z_a, z_b, temperature=t, study=study).item()
    unmasked = nt_xent(z_a, z_b, temperature=t).item()
    assert masked == pytest.approx(naive_nt_xent(z_a, z_b, t, study), rel=1e-5)
    assert unmasked == pytest.approx(naive_nt_xent(z_a, z_b, t), rel=1e-5)
    # By hand for query 0: its denominator loses keys a1 and b1 (same study, not its partner).
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    sim = (z @ z.T / t).exp()
    den_masked = sim[0, [2, 3, 5]].sum()
    den_full = sim[0, [1, 2, 3, 4, 5]].sum()
    _, logits, targets = nt_xent(z_a, z_b, temperature=t, study=study, return_logits=True)
    row0 = F.cross_entropy(logits[:1], targets[:1]).item()
    assert row0 == pytest.approx(-(sim[0, 3] / den_masked).log().item(), rel=1e-5)
    assert masked < unmasked
    assert torch.isinf(logits[0, [0, 1, 4]]).all() and torch.isfinite(logits[0, [2, 3, 5]]).all()
    assert den_masked < den_full


def test_retrieval_and_reorder_helpers():
    z = torch.eye(4)
    _, logits, targets = nt_xent(z, z.clone(), temperature=0.1, return_logits=True)
    assert retrieval_accuracy(logits, targets) == 1.0
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0]])
    assert reorder_loss(logits, torch.tensor([0, 1])).item() == pytest.approx(
        F.cross_entropy(logits, torch.tensor([0, 1])).item())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, z_a, z_b, study, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    b = z_a.shape[0] // world
    za = z_a[rank * b:(rank + 1) * b].clone().requires_grad_(True)
    zb = z_b[rank * b:(rank + 1) * b].clone().requires_grad_(True)
    loss = nt_xent(za, zb, temperature=0.1, study=study[rank * b:(rank + 1) * b])
    loss.backward()
    # DDP averages gradients over processes: divide by world to compare with one process.
    out[rank] = (loss.item(), za.grad / world, zb.grad / world)
    dist.destroy_process_group()


def test_two_process_gloo_equals_single_process_on_concatenated_batch():
    g = torch.Generator().manual_seed(1)
    z_a, z_b = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    study = torch.tensor([0, 1, 2, 0, 3, 4, 5, 1])  # same-study pairs straddle the processes
    ref_a, ref_b = z_a.clone().requires_grad_(True), z_b.clone().requires_grad_(True)
    ref = nt_xent(ref_a, ref_b, temperature=0.1, study=study)
    ref.backward()
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, _free_port(), z_a, z_b, study, out), nprocs=2)
        results = [out[r] for r in range(2)]
    loss = sum(r[0] for r in results) / 2
    assert loss == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(torch.cat([r[1] for r in results]), ref_a.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.cat([r[2] for r in results]), ref_b.grad, rtol=1e-4, atol=1e-6)
