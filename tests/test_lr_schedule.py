"""Pretraining's learning-rate schedule: warm-up, then constant (paper) or a half cosine to 0."""

from __future__ import annotations

import pytest
import torch

from echoclr.commands.pretrain import PretrainConfig, pretrain
from echoclr.errors import UserError
from echoclr.pretraining import lr_at
from echoclr.runs import JsonlLog


def cfg(**kw) -> PretrainConfig:
    return PretrainConfig(**({"cache": "unused", "lr": 0.01} | kw))


def test_constant_schedule_holds_lr_after_warmup():
    c = cfg(warmup_steps=4)
    assert [lr_at(c, s, 20) for s in range(4)] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    assert {lr_at(c, s, 20) for s in range(4, 20)} == {0.01}


@pytest.mark.parametrize("warmup", [0, 5])
def test_cosine_schedule_matches_torch_cosine_annealing(warmup):
    # Reference: torch's CosineAnnealingLR (eta_min 0) over the steps after warm-up.
    total = 40
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup)
    expected = []
    for _ in range(total - warmup):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    c = cfg(schedule="cosine", warmup_steps=warmup)
    got = [lr_at(c, s, total) for s in range(warmup, total)]
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert lr_at(c, total, total) == pytest.approx(0.0, abs=1e-12)  # past the end: 0, not back up
    if warmup:
        assert lr_at(c, 0, total) == pytest.approx(0.01 / warmup)


def test_pretraining_log_shows_the_cosine_decay(tiny_cache, tmp_path):
    pretrain(PretrainConfig(cache=str(tiny_cache), out=str(tmp_path / "run"), encoder="r3d_tiny",
                            width=4, batch_size=4, max_steps=5, workers=0, log_every=1,
                            progress=False, clip_len=4, period=2, schedule="cosine"))
    lrs = [r["lr"] for r in JsonlLog(tmp_path / "run" / "log.jsonl").rows()]
    assert lrs[0] == pytest.approx(1e-3)  # step 1 ran at the full rate
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(1e-3 * 0.5 * (1 + torch.cos(torch.tensor(0.8 * torch.pi))))


def test_unknown_schedule_is_a_user_error(tiny_cache, tmp_path):
    with pytest.raises(UserError, match="--schedule linear"):
        pretrain(PretrainConfig(cache=str(tiny_cache), out=str(tmp_path / "r"), schedule="linear"))


def test_a_cosine_run_resumes_only_at_its_own_length(tiny_cache, tmp_path):
    """Extending a cosine run would change the rate of the steps already taken: refused. A
    constant-rate run extends (its first steps are those of the longer run)."""
    def run(schedule: str, max_steps: int) -> None:
        pretrain(PretrainConfig(cache=str(tiny_cache), out=str(tmp_path / schedule),
                                encoder="r3d_tiny", width=4, batch_size=4, max_steps=max_steps,
                                workers=0, log_every=1, checkpoint_every=1, progress=False,
                                clip_len=4, period=2, schedule=schedule, resume=True))
    run("cosine", 2)
    with pytest.raises(UserError, match="--max-steps 2"):
        run("cosine", 3)
    run("cosine", 2)  # its own length: nothing left to do, no error
    run("constant", 2)
    run("constant", 3)
    assert [r["step"] for r in JsonlLog(tmp_path / "constant" / "log.jsonl").rows()] == [1, 2, 3]
