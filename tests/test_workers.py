"""A worker killed from outside (the OOM killer's SIGKILL) costs only the video it was
decoding: the pool is restarted, the unfinished videos are retried, the killer is named."""

from __future__ import annotations

import os
import signal

import pandas as pd

from _video_fixtures import echo_frames
from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.data import cache as cache_module
from echoclr.data.video import write_video
from echoclr.workers import run_jobs


def test_a_sigkilled_worker_costs_only_its_own_video(tmp_path, monkeypatch):
    names = [f"clip {k}.avi" for k in range(8)]
    names[3] = "killer.avi"
    for k, name in enumerate(names):
        write_video(tmp_path / name, echo_frames(t=6, h=24, w=32, seed=k)[0], fps=30)
    pd.DataFrame({"path": names, "study_id": [f"S{k}" for k in range(8)],
                  "split": "train"}).to_csv(tmp_path / "m.csv", index=False)
    real = cache_module.open_video

    def open_or_die(path, **kwargs):  # decoding this file kills its own process, as OOM does
        if os.path.basename(path) == "killer.avi":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, **kwargs)

    monkeypatch.setattr(cache_module, "open_video", open_or_die)
    result = ingest(IngestConfig(manifest=str(tmp_path / "m.csv"), out=str(tmp_path / "c"),
                                 size=16, workers=2))
    assert result.n_ok == 7 and result.reasons == {
        "killer.avi": "worker died (killed by signal 9, SIGKILL) while decoding"}
    assert len(pd.read_csv(tmp_path / "c" / "manifest.csv")) == 7


def _job(k: int) -> int:
    if k == 5:
        os._exit(3)
    return k * k


def test_run_jobs_retries_the_unfinished_and_blames_the_dead():
    results = dict(run_jobs(_job, {k: {"k": k} for k in range(12)}, 3, desc="t", unit="job",
                            died=lambda how: how))
    assert results == {k: (k * k if k != 5 else "exited with status 3") for k in range(12)}


def _square(k: int) -> int:
    return k * k


def test_many_jobs_with_long_ids_never_stall_the_pool():
    """Each job announces its id on a pipe as it starts; unread, 64 KiB of announcements
    blocked a worker in put() and hung the pool (echoclr scan --workers 2 stopped at 1,040
    files). Run in a thread with a deadline so a regression fails instead of hanging."""
    import threading

    jobs = ((("x" * 200, k), {"k": k}) for k in range(3000))  # ≈ 0.7 MB of announcements
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(run_jobs(
        _square, jobs, 2, desc="t", unit="job", died=lambda how: how, total=3000)), daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), f"the pool stalled after {len(out)} of 3000 jobs"
    assert out == {("x" * 200, k): k * k for k in range(3000)}
