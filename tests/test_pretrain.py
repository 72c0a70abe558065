"""Pretraining: smoke runs of every method, exported encoder, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from echoclr.commands.pretrain import PretrainConfig, pretrain
from echoclr.errors import UserError
from echoclr.pretraining import CollapseMonitor
from echoclr.runs import JsonlLog
from echoclr.weights import load_encoder


def cfg_for(cache, out, **kw):
    base = dict(cache=str(cache), out=str(out), encoder="r3d_tiny", width=4, batch_size=4,
                max_steps=3, workers=0, log_every=1, progress=False, clip_len=4, period=2)
    return PretrainConfig(**(base | kw))


@pytest.mark.parametrize("method", ["echoclr", "mi-simclr", "simclr"])
def test_three_step_smoke_run_writes_everything(tiny_cache, tmp_path, method):
    encoder_path = pretrain(cfg_for(tiny_cache, tmp_path / "run", method=method))
    run = tmp_path / "run"
    for name in ("config.json", "log.jsonl", "checkpoint.pt", "encoder.pt", "encoder.json",
                 "loss_curves.png"):
        assert (run / name).is_file(), name
    rows = JsonlLog(run / "log.jsonl").rows()
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert ("reorder_acc" in rows[0]) == (method == "echoclr")
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == method and config["n_train_studies"] == 12
    encoder, meta = load_encoder(encoder_path)
    assert meta["clip_len"] == 4 and meta["method"] == method
    with torch.no_grad():
        assert encoder(torch.rand(2, 3, 4, 16, 16)).shape == (2, encoder.feature_dim)
    state = torch.load(encoder_path, weights_only=True)  # tensors only
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_resume_reproduces_uninterrupted_run(tiny_cache, tmp_path):
    full = pretrain(cfg_for(tiny_cache, tmp_path / "full", max_steps=6, checkpoint_every=2,
                            precision="fp32"))
    # "Interrupted" after step 3 (a checkpoint at step 2, mid-epoch), then resumed to step 6.
    part = cfg_for(tiny_cache, tmp_path / "part", max_steps=3, checkpoint_every=2,
                   precision="fp32")
    pretrain(part)
    state = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3
    resumed = pretrain(cfg_for(tiny_cache, tmp_path / "part", max_steps=6, checkpoint_every=2,
                               precision="fp32", resume=True))
    a = torch.load(full, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    for k in a:
        # Same ops in the same order on one process: equal to float32 rounding.
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    steps = [r["step"] for r in JsonlLog(tmp_path / "part" / "log.jsonl").rows()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_unknown_method_rejected(tiny_cache, tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        pretrain(cfg_for(tiny_cache, tmp_path, method="byol"))


@pytest.mark.parametrize("augment", [True, False])
def test_make_views_permutes_frames_with_and_without_augmentation(augment):
    from echoclr.data.transforms import minmax_scale, permutations
    from echoclr.pretraining import make_views

    g = torch.Generator().manual_seed(0)
    clip_a = torch.rand(3, 4, 16, 16, generator=g)
    clip_b = torch.rand(3, 4, 16, 16, generator=g)
    batch = {"clip_a": clip_a, "clip_b": clip_b, "study": torch.arange(3)}
    cfg = PretrainConfig(method="echoclr", clip_len=4, augment=augment)
    x, study, perm = make_views(batch, cfg, step=5, device=torch.device("cpu"))
    assert x.shape == (6, 3, 4, 16, 16) and perm.shape == (6,)
    assert torch.equal(study, torch.arange(3))
    scaled = minmax_scale(torch.cat([clip_a, clip_b]))
    order = permutations(4)[perm]
    # Without augmentation each view is exactly the scaled clip with its frames reordered; with
    # it, the crop/flip/rotation changes the pixels.
    expected = torch.stack([scaled[i, order[i]] for i in range(6)])
    same = torch.allclose(x[:, 0], expected, atol=1e-6)
    assert same is (not augment)


def test_make_views_separate_reorder_input_keeps_contrastive_views_in_order():
    from echoclr.data.transforms import minmax_scale, permutations
    from echoclr.pretraining import make_views

    g = torch.Generator().manual_seed(0)
    clip_a = torch.rand(3, 4, 16, 16, generator=g)
    clip_b = torch.rand(3, 4, 16, 16, generator=g)
    batch = {"clip_a": clip_a, "clip_b": clip_b, "study": torch.arange(3)}
    cfg = PretrainConfig(method="echoclr", clip_len=4, augment=False, reorder_input="separate")
    x, _, perm = make_views(batch, cfg, step=5, device=torch.device("cpu"))
    assert x.shape == (9, 3, 4, 16, 16) and perm.shape == (3,)
    scaled = minmax_scale(torch.cat([clip_a, clip_b]))
    torch.testing.assert_close(x[:6, 0], scaled)  # both contrastive views: true frame order
    order = permutations(4)[perm]
    expected = torch.stack([scaled[i, order[i]] for i in range(3)])  # permuted first views
    torch.testing.assert_close(x[6:, 0], expected)
    # During a reorder warm-up every view is permuted (no contrastive view to protect).
    warm = PretrainConfig(method="echoclr", clip_len=4, augment=False, reorder_input="separate",
                          reorder_warmup_steps=10)
    x, _, perm = make_views(batch, warm, step=5, device=torch.device("cpu"))
    assert x.shape == (6, 3, 4, 16, 16) and perm.shape == (6,)
    x, _, perm = make_views(batch, warm, step=10, device=torch.device("cpu"))
    assert x.shape == (9, 3, 4, 16, 16) and perm.shape == (3,)


def test_separate_reorder_input_trains_and_logs_both_losses(tiny_cache, tmp_path):
    run = tmp_path / "sep"
    pretrain(cfg_for(tiny_cache, run, method="echoclr", reorder_input="separate"))
    rows = JsonlLog(run / "log.jsonl").rows()
    assert len(rows) == 3
    for row in rows:
        assert row["loss"] == pytest.approx(row["nt_xent"] + row["reorder_loss"], rel=1e-5)
        assert 0.0 <= row["reorder_acc"] <= 1.0
    with pytest.raises(ValueError, match="reorder_input"):
        pretrain(cfg_for(tiny_cache, tmp_path / "bad", reorder_input="both"))


def test_reorder_warmup_trains_reordering_alone_first(tiny_cache, tmp_path):
    run = tmp_path / "warm"
    pretrain(cfg_for(tiny_cache, run, method="echoclr", max_steps=3, reorder_warmup_steps=2))
    rows = JsonlLog(run / "log.jsonl").rows()
    # During the warm-up the optimised loss is the reorder loss alone; afterwards both terms.
    assert len(rows) == 3
    for row in rows:
        expected = row["reorder_loss"] + row["nt_xent"] * (1.0 if row["step"] > 2 else 0.0)
        assert row["loss"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="reorder_warmup_steps"):
        pretrain(cfg_for(tiny_cache, tmp_path / "bad", method="mi-simclr", reorder_warmup_steps=2))


def test_collapse_verdict_ignores_a_reordering_only_warm_up():
    monitor = CollapseMonitor()
    monitor.spread = 1.0
    chance = 4.844
    # NT-Xent far above chance while untrained (reorder warm-up), then falling.
    rows = [{"step": s, "nt_xent": 11.0 if s <= 300 else 4.0, "chance_nt_xent": chance}
            for s in range(25, 501, 25)]
    warm_only = [r for r in rows if r["step"] <= 300]
    assert "collapsed" in monitor.verdict(warm_only)
    assert monitor.verdict(warm_only, after_step=300) is None  # nothing trained yet
    assert monitor.verdict(rows, after_step=300) is None
    stuck = [r | {"nt_xent": chance} if r["step"] > 300 else r for r in rows]
    assert "collapsed" in monitor.verdict(stuck, after_step=300)


@pytest.mark.parametrize("clip_len", [1, 6, 10])
def test_clip_len_the_reordering_head_cannot_have_is_refused_before_it_is_built(
        tiny_cache, tmp_path, clip_len):
    # 10! = 3,628,800 orderings: the head would be built (and memory spent) before any check.
    with pytest.raises(ValueError, match=f"--clip-len {clip_len}: frame reordering"):
        pretrain(cfg_for(tiny_cache, tmp_path / "run", clip_len=clip_len))
    assert not (tmp_path / "run").exists()
    assert pretrain(cfg_for(tiny_cache, tmp_path / "simclr", method="simclr", clip_len=6,
                            max_steps=1)).is_file()  # no reordering: any clip length


def test_device_under_torchrun_gets_the_process_index(monkeypatch):
    """`--device cuda` under torchrun means this process's GPU, so DDP gets an index."""
    from echoclr.distributed import torchrun_local_rank
    from echoclr.runs import pick_device

    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}
    assert torchrun_local_rank(env) == 1 and torchrun_local_rank({}) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with 4 GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert pick_device("cuda", local_rank=torchrun_local_rank(env)) == torch.device("cuda", 1)
    assert pick_device("cuda:0", local_rank=1) == torch.device("cuda", 0)  # explicit index kept
    assert pick_device("cuda") == torch.device("cuda")  # one process: as given
    assert pick_device("cpu", local_rank=1) == torch.device("cpu")
    assert pick_device("auto", local_rank=2) == torch.device("cuda", 2)
    with pytest.raises(UserError, match="--device cuda:4: this machine has 4 CUDA GPU"):
        pick_device("cuda:4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto", local_rank=2) == torch.device("cpu")
    with pytest.raises(UserError, match="--device cuda: no CUDA GPU"):
        pick_device("cuda")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert torchrun_local_rank() == 1
