"""Faults: a SIGKILL mid-ingest, mid-pretraining or mid-experiment, then a re-run, loses nothing,
redoes nothing finished and ends where an uninterrupted run ends; a failed write never leaves a
half-written file that counts as done.

The kills hit real ``python -m echoclr ...`` processes at a point polled from outside (a cache
entry, a checkpoint, a finished cell appears); the re-runs and references run in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from _video_fixtures import echo_frames
from echoclr import cli
from echoclr.commands.evaluate import EvaluateConfig, evaluate_run
from echoclr.commands.finetune import FinetuneConfig, finetune
from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.data import cache as ingest_module
from echoclr.data.identity import file_identity
from echoclr.data.video import write_video
from echoclr.runs import JsonlLog
from echoclr.weights import atomic_torch_save, file_sha256

N_VIDEOS = 20


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: one torch thread avoids oversubscription stalls; the killed
    subprocesses run with one thread too (OMP_NUM_THREADS=1), so numerics match."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def kill_when(args: list[str], ready, log: Path, timeout: float = 120.0) -> None:
    """Start ``python -m echoclr *args``, SIGKILL it as soon as ``ready()`` holds."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "echoclr", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                if proc.poll() is not None:
                    pytest.fail(f"ended (status {proc.returncode}) before the kill point: "
                                f"{log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"kill point not reached in {timeout} s: {log.read_text()[-2000:]}")
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()  # no-op once dead; never leave a process behind
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


# --- ingest ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    for k in range(N_VIDEOS):
        write_video(root / f"clip {k:02d}.avi", echo_frames(t=30, h=96, w=128, seed=k)[0], fps=30)
    pd.DataFrame({"path": [f"clip {k:02d}.avi" for k in range(N_VIDEOS)],
                  "study_id": [f"S{k // 2}" for k in range(N_VIDEOS)],
                  "split": "train", "lvh": [k // 2 % 2 for k in range(N_VIDEOS)]}).to_csv(
        root / "manifest.csv", index=False)
    return root / "manifest.csv"


def entries(cache: Path) -> dict[str, int]:
    """Cache entries (name → mtime in ns) as ingest counts them: a .npy with its sidecar."""
    videos = cache / "videos"
    return {p.name: p.stat().st_mtime_ns for p in videos.glob("*.npy")
            if p.with_suffix(".json").is_file()} if videos.is_dir() else {}


def assert_same_cache(a: Path, b: Path) -> None:
    """Same manifest rows (order aside), identical arrays and sidecars."""
    rows_a = pd.read_csv(a / "manifest.csv").sort_values("manifest_line").reset_index(drop=True)
    rows_b = pd.read_csv(b / "manifest.csv").sort_values("manifest_line").reset_index(drop=True)
    pd.testing.assert_frame_equal(rows_a, rows_b)
    for path in rows_a["path"]:
        np.testing.assert_array_equal(np.load(a / path), np.load(b / path), err_msg=path)
        side = Path(path).with_suffix(".json")
        assert json.loads((a / side).read_text()) == json.loads((b / side).read_text())
    assert sorted(p.name for p in (a / "videos").iterdir() if not p.name.endswith(".tmp")) == \
        sorted(p.name for p in (b / "videos").iterdir())


def test_sigkill_during_ingest_loses_and_redoes_nothing(archive, tmp_path):
    cache = tmp_path / "cache"
    kill_when(["ingest", str(archive), "--out", str(cache), "--workers", "1", "--size", "32"],
              lambda: len(entries(cache)) >= 2, tmp_path / "ingest.log")
    finished = entries(cache)
    assert 2 <= len(finished) < N_VIDEOS and not (cache / "manifest.csv").exists()

    result = ingest(IngestConfig(manifest=str(archive), out=str(cache), size=32))
    assert result.ok and result.n_ok == N_VIDEOS and result.n_reused == len(finished)
    after = entries(cache)
    assert {k: after[k] for k in finished} == finished  # nothing finished was redone
    reference = tmp_path / "reference"
    ingest(IngestConfig(manifest=str(archive), out=str(reference), size=32))
    assert_same_cache(cache, reference)


def fail_on(monkeypatch, function_name: str, module, should_fail) -> list[str]:
    """Make ``module.function_name`` write half its output then raise OSError (disk full) when
    ``should_fail(target)`` holds; returns the targets it failed on."""
    real = getattr(module, function_name)
    failed = []

    def flaky(*args, **kwargs):
        target = str(args[1] if function_name == "replace" else args[0].name)
        if should_fail(target):
            failed.append(target)
            if function_name == "save":
                args[0].write(b"\x93NUMPY half a header")
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, function_name, flaky)
    return failed


def test_failed_writes_never_count_as_done(archive, tmp_path, monkeypatch):
    """np.save or the rename failing (disk full, read-only folder) mid-write: the video is
    reported as skipped, no temporary or partial file remains, the next run redoes it."""
    cache = tmp_path / "cache"
    first, second = (file_identity(archive.parent / f"clip {k:02d}.avi").key for k in (3, 7))
    failed_save = fail_on(monkeypatch, "save", ingest_module.np, lambda t: first in t)
    failed_rename = fail_on(monkeypatch, "replace", os,
                            lambda t: t.endswith(f"{second}.json"))
    result = ingest(IngestConfig(manifest=str(archive), out=str(cache), size=32))
    assert failed_save and failed_rename
    reasons = result.reasons
    assert result.n_ok == N_VIDEOS - 2
    assert "No space left" in reasons["clip 03.avi"] and "No space left" in reasons["clip 07.avi"]
    videos = cache / "videos"
    assert not [p.name for p in videos.iterdir() if p.name.endswith(".tmp")]
    assert not (videos / f"{first}.npy").exists() and not (videos / f"{second}.json").exists()
    monkeypatch.undo()

    again = ingest(IngestConfig(manifest=str(archive), out=str(cache), size=32))
    assert again.ok and again.n_reused == N_VIDEOS - 2 and again.n_ok == N_VIDEOS
    np.load(videos / f"{first}.npy")  # complete now


def test_failed_manifest_write_leaves_no_half_file(archive, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    fail_on(monkeypatch, "replace", os, lambda t: t.endswith("manifest.csv"))
    with pytest.raises(OSError, match="No space left"):
        ingest(IngestConfig(manifest=str(archive), out=str(cache), size=32))
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    assert not (cache / "manifest.csv").exists()  # so no reader takes the cache as complete
    monkeypatch.undo()
    assert ingest(IngestConfig(manifest=str(archive), out=str(cache), size=32)).n_reused == \
        N_VIDEOS


def test_leftover_temporary_file_is_not_a_cache_entry(archive, tmp_path):
    """A process killed inside np.save leaves `.KEY.npy.PID.tmp`: never read as the video."""
    cache = tmp_path / "cache"
    key = file_identity(archive.parent / "clip 00.avi").key
    (cache / "videos").mkdir(parents=True)
    (cache / "videos" / f".{key}.npy.99999.tmp").write_bytes(b"\x93NUMPY torn")
    (cache / "videos" / f"{key}.json").write_text("{}")  # sidecar written, array never renamed
    result = ingest(IngestConfig(manifest=str(archive), out=str(cache), size=32))
    assert result.n_reused == 0 and result.n_ok == N_VIDEOS
    assert np.load(cache / "videos" / f"{key}.npy").shape[1:] == (32, 32)
    assert json.loads((cache / "videos" / f"{key}.json").read_text())["n_frames"] == 30


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    atomic_torch_save({"step": 2}, path)

    def disk_full(obj, f):
        f.write(b"PK half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        atomic_torch_save({"step": 4}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    from echoclr.atomic import atomic_write_text

    path = tmp_path / "manifest.csv"
    atomic_write_text(path, "old\n")

    def rename_fails(src, dst):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", rename_fails)
    with pytest.raises(OSError):
        atomic_write_text(path, "new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.csv"]


def test_torn_last_log_line_is_dropped_not_fatal(tmp_path):
    """A writer that died mid-append (or a full disk) leaves a torn last line."""
    log = JsonlLog(tmp_path / "log.jsonl")
    for step in (1, 2, 3):
        log.write(step=step, loss=1.0 / step)
    with open(log.path, "a") as f:
        f.write('{"time": 1.0, "step": 4, "lo')
    assert [r["step"] for r in log.rows()] == [1, 2, 3]
    log.truncate_after(2)  # what --resume does: the torn line goes too
    log.write(step=3, loss=0.3)
    assert [r["step"] for r in log.rows()] == [1, 2, 3]
    with open(log.path, "a") as f:
        f.write("garbage\n" + json.dumps({"step": 4}) + "\n")
    with pytest.raises(ValueError, match="line 4 is not JSON"):
        log.rows()  # damage before the last line is not a torn append


# --- pretraining ----------------------------------------------------------------------------

PRETRAIN = ["--encoder", "r3d_tiny", "--width", "4", "--batch-size", "4", "--max-steps", "8",
            "--checkpoint-every", "2", "--workers", "0", "--precision", "fp32", "--no-progress",
            "--log-every", "1"]


def checkpoint_step(path: Path, key: str = "step", missing: int = 0) -> int:
    """``key`` of the checkpoint at ``path`` (``missing`` while there is none)."""
    try:
        return torch.load(path, weights_only=True)[key] if path.is_file() else missing
    except (RuntimeError, EOFError, OSError):  # replaced while reading
        return missing


def assert_same_weights(a: Path, b: Path) -> None:
    """Two weight files hold the same tensors, to float32 rounding."""
    got, want = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=k)


def test_sigkill_during_pretraining_then_resume_matches(tiny_cache, tmp_path):
    run = tmp_path / "run"
    kill_when(["pretrain", str(tiny_cache), "--out", str(run), *PRETRAIN],
              lambda: checkpoint_step(run / "checkpoint.pt") >= 2, tmp_path / "pretrain.log")
    killed_at = checkpoint_step(run / "checkpoint.pt")
    assert 2 <= killed_at < 8 and not (run / "encoder.pt").exists()

    assert cli.main(["pretrain", str(tiny_cache), "--out", str(run), *PRETRAIN, "--resume"]) == 0
    assert cli.main(["pretrain", str(tiny_cache), "--out", str(tmp_path / "ref"), *PRETRAIN]) == 0
    assert_same_weights(run / "encoder.pt", tmp_path / "ref" / "encoder.pt")
    assert [r["step"] for r in JsonlLog(run / "log.jsonl").rows()] == list(range(1, 9))


# --- experiment -----------------------------------------------------------------------------

def write_spec(path: Path, cache: Path) -> Path:
    # severe_as is not what the tiny cache's videos show, so AUROCs are not all 1.0.
    path.write_text(f"""
cache = "{cache}"
tasks = ["severe_as"]
fractions = [0.5, 1.0]
draws = 2
finetune_draws = 1
inits = ["random"]
readouts = ["probe", "finetune"]
reference = "random"
[probe]
encoder = "r3d_tiny"
width = 4
clip_len = 4
precision = "fp32"
[finetune]
encoder = "r3d_tiny"
width = 4
clip_len = 4
batch_size = 12
epochs = 1
workers = 0
progress = false
eval_clips = 2
val_clips = 2
precision = "fp32"
[evaluate]
n_resamples = 20
clips = 2
precision = "fp32"
""")
    return path


def test_sigkill_during_experiment_then_rerun_matches(tiny_cache, tmp_path):
    spec = write_spec(tmp_path / "exp.toml", tiny_cache)
    out = tmp_path / "exp"
    kill_when(["experiment", str(spec), "--out", str(out)],
              lambda: any(out.glob("*/*/*/*/done.json")), tmp_path / "experiment.log")
    done = list(out.glob("*/*/*/*/done.json"))
    assert len(done) == 1  # killed inside the second cell
    cell = done[0].parent
    stamps = {p: p.stat().st_mtime_ns for p in (done[0], cell / "model.pt",
                                                cell / "test" / "metrics.json")}

    assert cli.main(["experiment", str(spec), "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # the finished cell not redone
    cli.main(["experiment", str(spec), "--out", str(tmp_path / "ref")])
    assert len(got := pd.read_csv(out / "results.csv")) == 5  # 3 probes, 2 fine-tunings
    assert set(got["readout"]) == {"probe", "finetune"}
    columns = ["init", "task", "readout", "fraction", "draw", "split", "run", "n_train_studies"]
    got = pd.read_csv(out / "results.csv").sort_values("run").reset_index(drop=True)
    want = pd.read_csv(tmp_path / "ref" / "results.csv").sort_values("run").reset_index(drop=True)
    pd.testing.assert_frame_equal(got[columns], want[columns])
    for metric in ("auroc", "ci_low", "ci_high", "auprc", "balanced_accuracy"):
        np.testing.assert_allclose(got[metric], want[metric], rtol=0, atol=1e-6, err_msg=metric)
    for run in got["run"]:
        a = pd.read_csv(out / run / "test" / "predictions.csv")
        b = pd.read_csv(tmp_path / "ref" / run / "test" / "predictions.csv")
        assert a["y_score"].std() > 1e-5  # scores that differ, so equality means something
        np.testing.assert_allclose(a["y_score"], b["y_score"], rtol=0, atol=1e-6, err_msg=run)


def test_refinetune_discards_the_old_models_val_predictions(tiny_cache, tmp_path):
    """evaluate reuses val_study_predictions.csv for its threshold; after re-training into the
    same folder (a cell re-run after a kill) it must not be the old model's."""
    run = tmp_path / "ft"
    run.mkdir()
    (run / "val_study_predictions.csv").write_text("study_id,y_true,y_score\nS006,1,0.0\n")
    finetune(FinetuneConfig(cache=str(tiny_cache), out=str(run), task="lvh", encoder="r3d_tiny",
                            width=4, clip_len=4, batch_size=12, epochs=1, workers=0,
                            progress=False, val_clips=1, precision="fp32"))
    assert not (run / "val_study_predictions.csv").exists()


def test_evaluate_reuses_val_predictions_only_of_the_current_model(tiny_cache, tmp_path):
    """evaluate keeps its validation studies with the model's fingerprint and recomputes them
    for any other model (e.g. a model.pt copied over the old one), so its threshold never
    comes from another model."""
    run = finetune(FinetuneConfig(cache=str(tiny_cache), out=str(tmp_path / "ft"), task="lvh",
                                  encoder="r3d_tiny", width=4, clip_len=4, batch_size=12,
                                  epochs=1, workers=0, progress=False, val_clips=1,
                                  precision="fp32"))
    evaluate = EvaluateConfig(run=str(run), clips=1, n_resamples=10, precision="fp32")
    first = evaluate_run(evaluate)
    val, side = run / "val_study_predictions.csv", run / "val_study_predictions.json"
    key = json.loads(side.read_text())
    assert key["model_sha256"] == file_sha256(run / "model.pt")
    planted = "study_id,y_true,y_score,n_videos\nS006,1,0.0,1\n"  # one class: threshold 0.5
    val.write_text(planted)
    side.write_text(json.dumps(key | {"model_sha256": "0" * 64}))  # another model's
    assert evaluate_run(evaluate)["threshold"] == first["threshold"]  # recomputed
    assert val.read_text() != planted and json.loads(side.read_text()) == key
    val.write_text(planted)  # the current model's (its fingerprint): reused as it is
    assert evaluate_run(evaluate)["threshold_rule"].startswith("0.5")


# --- fine-tuning ----------------------------------------------------------------------------

FINETUNE = ["--encoder", "r3d_tiny", "--width", "4", "--clip-len", "4", "--batch-size", "6",
            "--epochs", "4", "--patience", "5", "--workers", "0", "--no-progress",
            "--val-clips", "1", "--precision", "fp32"]


def test_sigkill_during_finetuning_then_resume_matches(tiny_cache, tmp_path):
    run = tmp_path / "run"
    kill_when(["finetune", str(tiny_cache), "--out", str(run), *FINETUNE],
              lambda: checkpoint_step(run / "checkpoint.pt", "epoch", -1) >= 0,
              tmp_path / "finetune.log")
    assert 0 <= checkpoint_step(run / "checkpoint.pt", "epoch", -1) < 3  # epochs finished
    assert not (run / "model.pt").exists()

    assert cli.main(["finetune", str(tiny_cache), "--out", str(run), *FINETUNE, "--resume"]) == 0
    assert cli.main(["finetune", str(tiny_cache), "--out", str(tmp_path / "ref"), *FINETUNE]) == 0
    assert_same_weights(run / "model.pt", tmp_path / "ref" / "model.pt")
    assert [r["epoch"] for r in JsonlLog(run / "log.jsonl").rows()] == [0, 1, 2, 3]
