"""Run independent jobs in worker processes, with a progress bar, and survive a worker killed
from outside (the OOM killer's SIGKILL): the pool is restarted, unfinished jobs are retried, and
only the job that was running in the dead worker is blamed.

Every job is a call ``fn(**kwargs)`` that never raises (it returns its own failure). When a
worker dies, the jobs that had started and not finished are the suspects: each is run again
alone in a process of its own, so the one that kills its process is named with the signal, and
the others are done; jobs that had not started go to a fresh pool.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from tqdm import tqdm

_started = None  # in a worker: the queue that hears which job began


def _context():
    """Fork where available: workers run numpy/PyAV/pydicom code only (no torch, no OpenMP),
    so forking is safe and skips ~2 s of imports per spawned worker."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _remember(started) -> None:
    global _started
    _started = started


def _call(fn: Callable, job_id, kwargs: dict):
    _started.put(job_id)
    return fn(**kwargs)


def _call_into(fn: Callable, kwargs: dict, conn) -> None:
    conn.send(fn(**kwargs))
    conn.close()


def run_alone(fn: Callable, kwargs: dict, *, died: Callable[[str], object]):
    """``fn(**kwargs)`` in a process of its own; ``died(how)`` is the result when that process
    dies before answering ("killed by signal 9, SIGKILL", "exited with status 3")."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_call_into, args=(fn, kwargs, send), daemon=True)
    process.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        result = None
    process.join()
    if result is not None or process.exitcode == 0:
        return result
    code = process.exitcode
    how = (f"killed by signal {-code}, {signal.Signals(-code).name}" if code < 0
           else f"exited with status {code}")
    return died(how)


def run_jobs(fn: Callable, jobs: dict, workers: int, *, desc: str, unit: str,
             died: Callable[[str], object]) -> Iterator[tuple[object, object]]:
    """Yield (job id, result) per job of ``jobs`` ({id: kwargs}), in completion order.

    Args:
        fn: the job function; called as ``fn(**kwargs)``; it must not raise.
        workers: processes; 1 (or one job) runs in this process.
        desc, unit: the progress bar's label and unit.
        died: the result of a job whose process died while running it, given how it died.
    """
    pending = dict(jobs)
    with tqdm(total=len(jobs), desc=desc, unit=unit, disable=None) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for job_id, kwargs in jobs.items():
                yield job_id, fn(**kwargs)
                bar.update()
            return
        while pending:
            started = _context().SimpleQueue()  # put() writes at once: seen even if killed
            broke = False
            with ProcessPoolExecutor(max_workers=min(workers, len(pending)),
                                     mp_context=_context(), initializer=_remember,
                                     initargs=(started,)) as pool:
                futures = {pool.submit(_call, fn, i, kw): i for i, kw in pending.items()}
                for future in as_completed(futures):
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broke = True
                        break
                    job_id = futures[future]
                    del pending[job_id]
                    yield job_id, result
                    bar.update()
                if broke:
                    pool.shutdown(wait=True, cancel_futures=True)
            if broke:
                # None announced (killed before starting?): run one alone, so each round progresses.
                for job_id in _drain(started) & set(pending) or {next(iter(pending))}:
                    yield job_id, run_alone(fn, pending.pop(job_id), died=died)
                    bar.update()


def _drain(started) -> set:
    """The ids a dead pool's workers had announced."""
    ids = set()
    while not started.empty():
        ids.add(started.get())
    return ids
