"""Non-finite steps: skipped with weights, Adam moments and BatchNorm statistics as they were;
too many stop the run with the flag to change; pretrain, finetune and probe wired to it; and
``--precision auto`` keeps bf16 off CPUs where its Conv3d gradient was measured unreliable."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

import echoclr.finetuning
import echoclr.pretraining
from _model_fixtures import crash_after_epoch
from echoclr import runs
from echoclr.commands.finetune import FinetuneConfig, finetune
from echoclr.commands.pretrain import PretrainConfig, pretrain
from echoclr.commands.probe import ProbeConfig, probe
from echoclr.errors import UserError
from echoclr.runs import JsonlLog, cpu_bf16_kind, resolve_precision
from echoclr.step_guard import StepGuard
from echoclr.weights import load_encoder, save_encoder

CPU = torch.device("cpu")


def bn_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
                               torch.nn.Linear(4, 1))


def guarded_step(model, optimizer, guard, *, poison: bool) -> bool:
    guard.before_forward()
    loss = model(torch.randn(8, 3)).pow(2).mean()  # the forward moves BatchNorm's statistics
    optimizer.zero_grad()
    loss.backward()
    if poison:  # what the faulty bf16 kernel returns for one weight
        model[0].weight.grad[0, 0] = float("inf")
    return guard.step(optimizer, loss)


def snapshot(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_non_finite_gradient_leaves_weights_moments_and_statistics_as_they_were():
    model = bn_model()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    guard = StepGuard(model, what="run", precision="bf16")
    assert guarded_step(model, optimizer, guard, poison=False)
    before, moments = snapshot(model), {k: v["exp_avg"].clone()
                                        for k, v in optimizer.state.items()}
    assert not guarded_step(model, optimizer, guard, poison=True)
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # running_mean/var included
    assert all(torch.equal(moments[k], optimizer.state[k]["exp_avg"]) for k in moments)
    assert (guard.steps, guard.skipped) == (2, 1)
    assert guarded_step(model, optimizer, guard, poison=False)  # training goes on
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert not torch.equal(before["0.weight"], model.state_dict()["0.weight"])


def test_too_many_skipped_steps_stop_the_run_naming_the_flag():
    model = bn_model()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    guard = StepGuard(model, what="pretrain runs/x", precision="bf16", max_share=0.05,
                      min_skipped=3)
    for _ in range(40):  # 2 strays in 42 steps are tolerated
        guarded_step(model, optimizer, guard, poison=False)
    guarded_step(model, optimizer, guard, poison=True)
    guarded_step(model, optimizer, guard, poison=True)
    with pytest.raises(UserError, match=r"pretrain runs/x: .* 3 of 43 steps.*--precision fp32"):
        guarded_step(model, optimizer, guard, poison=True)
    fp32 = StepGuard(model, what="finetune y", precision="fp32", min_skipped=1)
    with pytest.raises(UserError, match=r"finetune y: .* 1 of 1 steps.*lower --lr"):
        guarded_step(model, optimizer, fp32, poison=True)


def nan_on_call(fn, calls: set[int]):
    """``fn`` whose result is made NaN on the given (1-based) calls: a loss gone non-finite."""
    count = {"n": 0}

    def wrapped(*args, **kwargs):
        count["n"] += 1
        out = fn(*args, **kwargs)
        if count["n"] not in calls:
            return out
        if isinstance(out, tuple):
            return (out[0] * float("nan"), *out[1:])
        return out * float("nan")
    return wrapped


def pretrain_cfg(cache, tmp_path, **kw) -> PretrainConfig:
    """A few fp32 steps of a width-4 r3d_tiny into tmp_path/run, logging every step."""
    return PretrainConfig(**{"cache": str(cache), "out": str(tmp_path / "run"),
                             "encoder": "r3d_tiny", "width": 4, "batch_size": 4, "workers": 0,
                             "log_every": 1, "progress": False, "clip_len": 4, "period": 2,
                             "precision": "fp32"} | kw)


def test_pretraining_skips_a_nan_step_and_exports_a_finite_encoder(tiny_cache, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr(echoclr.pretraining, "nt_xent",
                        nan_on_call(echoclr.pretraining.nt_xent, {2}))
    cfg = pretrain_cfg(tiny_cache, tmp_path, max_steps=4)
    with pytest.warns(UserWarning, match="1 of 4 steps had a non-finite loss"):
        encoder_path = pretrain(cfg)
    rows = JsonlLog(tmp_path / "run" / "log.jsonl").rows()
    assert [r["skipped_steps"] for r in rows] == [0, 1, 1, 1]
    encoder, _ = load_encoder(encoder_path)
    assert all(torch.isfinite(v).all() for v in encoder.state_dict().values())


def test_pretraining_that_never_has_a_finite_loss_stops_with_one_line(tiny_cache, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setattr(echoclr.pretraining, "nt_xent",
                        nan_on_call(echoclr.pretraining.nt_xent, set(range(1, 100))))
    cfg = pretrain_cfg(tiny_cache, tmp_path, max_steps=8)
    with pytest.raises(UserError, match="5 of 5 steps.*lower --lr"):
        pretrain(cfg)
    assert not (tmp_path / "run" / "encoder.pt").exists()


def test_finetuning_skips_a_nan_step_and_logs_it(tiny_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(echoclr.finetuning, "smoothed_bce",
                        nan_on_call(echoclr.finetuning.smoothed_bce, {1}))
    cfg = FinetuneConfig(cache=str(tiny_cache), out=str(tmp_path / "ft"), task="lvh",
                         encoder="r3d_tiny", width=4, clip_len=4, epochs=2, batch_size=4,
                         workers=0, progress=False, precision="fp32", min_epochs=0)
    with pytest.warns(UserWarning, match="finetune .*1 of"):
        run = finetune(cfg)
    rows = JsonlLog(run / "log.jsonl").rows()
    assert [r["skipped_steps"] for r in rows if "epoch" in r] == [1, 1]
    state = torch.load(run / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_pretraining_resumed_counts_the_steps_skipped_before_the_kill(tiny_cache, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setattr(echoclr.pretraining, "nt_xent",
                        nan_on_call(echoclr.pretraining.nt_xent, {2}))
    cfg = pretrain_cfg(tiny_cache, tmp_path, max_steps=3, checkpoint_every=2)
    with pytest.warns(UserWarning, match="1 of 3 steps"):
        pretrain(cfg)  # "killed" after step 3, its checkpoint written
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["guard"] == {"steps": 3, "skipped": 1}
    monkeypatch.setattr(echoclr.pretraining, "nt_xent",
                        nan_on_call(echoclr.pretraining.nt_xent, set()))
    with pytest.warns(UserWarning, match="1 of 5 steps"):  # the whole run, not since resume
        pretrain(dataclasses.replace(cfg, max_steps=5, resume=True))
    rows = JsonlLog(tmp_path / "run" / "log.jsonl").rows()
    assert [r["skipped_steps"] for r in rows] == [0, 1, 1, 1, 1]


def test_finetuning_resumed_counts_the_steps_skipped_before_the_kill(tiny_cache, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(echoclr.finetuning, "smoothed_bce",
                        nan_on_call(echoclr.finetuning.smoothed_bce, {1}))
    cfg = FinetuneConfig(cache=str(tiny_cache), out=str(tmp_path / "ft"), task="lvh",
                         encoder="r3d_tiny", width=4, clip_len=4, epochs=3, batch_size=4,
                         workers=0, progress=False, precision="fp32", min_epochs=0)
    crash_after_epoch(cfg, monkeypatch, 0)
    monkeypatch.undo()  # the crash and the NaN: the resumed epochs are clean
    with pytest.warns(UserWarning, match=r"finetune .*: 1 of \d+ steps"):
        run = finetune(dataclasses.replace(cfg, resume=True))
    rows = [r for r in JsonlLog(run / "log.jsonl").rows() if "epoch" in r]
    assert [r["skipped_steps"] for r in rows] == [1, 1, 1]


def test_probe_of_an_encoder_with_nan_weights_is_one_clear_error(tiny_cache, tmp_path):
    encoder, meta = load_encoder(pretrain(PretrainConfig(
        cache=str(tiny_cache), out=str(tmp_path / "pre"), encoder="r3d_tiny", width=4,
        batch_size=4, max_steps=1, workers=0, progress=False, clip_len=4, period=2,
        precision="fp32")))
    with torch.no_grad():
        next(encoder.parameters()).fill_(float("nan"))
    bad = tmp_path / "nan_encoder.pt"
    save_encoder(encoder, bad, meta)
    with pytest.raises(UserError, match=r"--init .*nan_encoder.pt: the features of \d+ of \d+ "
                                        r"training videos are not finite"):
        probe(ProbeConfig(cache=str(tiny_cache), out=str(tmp_path / "probe"), task="lvh",
                          init=str(bad)))


CPUINFO = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 {}\n"


def test_cpu_bf16_kind_reads_the_flags():
    assert cpu_bf16_kind(CPUINFO.format("avx512_bf16 amx_bf16 amx_tile")) == "amx"
    assert cpu_bf16_kind(CPUINFO.format("avx512f avx512_bf16")) == "avx512"
    assert cpu_bf16_kind(CPUINFO.format("")) is None
    assert runs.parse_cpuinfo(CPUINFO.format("avx2")) == ("Some CPU",
                                                          frozenset({"fpu", "sse2", "avx2"}))
    assert runs.parse_cpuinfo("processor\t: 0\n") == ("unknown CPU", frozenset())


@pytest.mark.parametrize(("kind", "auto"), [("amx", "bf16"), ("avx512", "fp32"), (None, "fp32")])
def test_auto_precision_runs_bf16_on_a_cpu_only_with_amx(monkeypatch, kind, auto):
    monkeypatch.setattr(runs, "cpu_bf16_kind", lambda cpuinfo=None: kind)
    assert resolve_precision("auto", CPU) == auto
    runs.warn_bf16_unsound.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_precision("bf16", CPU) == "bf16"  # asked for, it runs ...
        resolve_precision("bf16", CPU)  # once a process, not at every stage
    # ... with a warning where its Conv3d gradient was measured wrong
    assert [str(w.message) for w in caught] == ([runs.BF16_UNSOUND] if kind == "avx512" else [])


def test_bf16_with_onednn_capped_to_avx2_runs_without_the_warning(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN run the kernels whose bf16 gradient was sound."""
    monkeypatch.setattr(runs, "cpu_bf16_kind", lambda cpuinfo=None: "avx512")
    for isa, warned in (("avx2", False), ("AVX512_CORE", True), ("ALL", True)):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        runs.warn_bf16_unsound.cache_clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert resolve_precision("bf16", CPU) == "bf16"
        assert bool(caught) == warned, isa
        assert ("ONEDNN_MAX_CPU_ISA=" in runs.machine_description()) == (isa != "ALL")


def test_machine_description_says_what_auto_picks(monkeypatch):
    monkeypatch.setattr(runs, "cpu_bf16_kind", lambda cpuinfo=None: "avx512")
    assert "auto picks fp32" in runs.machine_description()


def test_the_step_guard_costs_no_reproducibility():
    """A guarded fp32 run with no fault is the unguarded run, to the bit."""
    states = []
    for guarded in (False, True):
        model = bn_model()
        optimizer = torch.optim.Adam(model.parameters(), 1e-2)
        guard = StepGuard(model, what="run", precision="fp32")
        torch.manual_seed(1)
        for _ in range(3):
            if guarded:
                guarded_step(model, optimizer, guard, poison=False)
            else:
                loss = model(torch.randn(8, 3)).pow(2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        states.append(snapshot(model))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_the_report_names_every_run_that_skipped_steps(tmp_path):
    from echoclr.report import skipped_line, skipped_steps

    def log(folder, counts):
        run = tmp_path / folder
        run.mkdir(parents=True)
        JsonlLog(run / "log.jsonl").write(step=0)  # a row from before the guard counted
        for n in counts:
            JsonlLog(run / "log.jsonl").write(skipped_steps=n)

    log("pretrain/echoclr", [0, 0])
    log("lvh/random/finetune/frac0.2_draw1", [0, 2, 3])
    log("lvh/random/finetune/frac0.2_draw2", [])
    assert skipped_steps(tmp_path) == {"lvh/random/finetune/frac0.2_draw1": 3}
    assert "in 1 run: `lvh/random/finetune/frac0.2_draw1` (3)" in skipped_line(tmp_path)
    assert skipped_line(tmp_path / "pretrain").endswith(": none.")
