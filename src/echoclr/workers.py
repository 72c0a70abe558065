"""Run independent jobs in worker processes, with a progress bar, and survive a worker killed
from outside (the OOM killer's SIGKILL): the pool is restarted, unfinished jobs are retried, and
only the job that was running in the dead worker is blamed.

Every job is a call ``fn(**kwargs)`` that never raises (it returns its own failure). When a
worker dies, the jobs that had started and not finished are the suspects: each is run again
alone in a process of its own, so the one that kills its process is named with the signal, and
the others are done; jobs that had not started go to a fresh pool.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from tqdm import tqdm

IN_FLIGHT = 4  # jobs submitted per worker at a time
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


def run_jobs(fn: Callable, jobs, workers: int, *, desc: str, unit: str,
             died: Callable[[str], object], total: int | None = None,
             bar: tqdm | None = None) -> Iterator[tuple[object, object]]:
    """Yield (job id, result) per job, in completion order.

    Args:
        fn: the job function; called as ``fn(**kwargs)``; it must not raise.
        jobs: {id: kwargs}, or an iterable of (id, kwargs) pairs, consumed as workers free up
            (at most ``IN_FLIGHT`` per worker are submitted at once, so memory stays flat).
        workers: processes; 1 runs in this process.
        desc, unit: the progress bar's label and unit; ``total``: its length, when ``jobs`` is
            an iterator; ``bar``: the caller's bar to advance instead (it also counts what
            needed no job).
        died: the result of a job whose process died while running it, given how it died.
    """
    todo = iter(jobs.items() if isinstance(jobs, dict) else jobs)
    total = len(jobs) if isinstance(jobs, dict) else total
    own = tqdm(total=total, desc=desc, unit=unit, disable=None) if bar is None else None
    with own or contextlib.nullcontext(bar) as bar:
        if workers <= 1:
            for job_id, kwargs in todo:
                yield job_id, fn(**kwargs)
                bar.update()
            return
        retry: list = []  # jobs of a dead pool that had not started
        while True:
            queued = itertools.chain(retry, todo)
            retry, in_flight, broke, announced = [], {}, False, set()
            started = _context().SimpleQueue()  # put() writes at once: seen even if killed
            with ProcessPoolExecutor(max_workers=workers, mp_context=_context(),
                                     initializer=_remember, initargs=(started,)) as pool:
                while True:
                    for job_id, kwargs in itertools.islice(
                            queued, max(0, workers * IN_FLIGHT - len(in_flight))):
                        in_flight[pool.submit(_call, fn, job_id, kwargs)] = (job_id, kwargs)
                    if not in_flight:
                        break
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    # Read the announcements as they come: unread, they fill the pipe behind
                    # the queue (64 KiB) and a worker blocks in put(), stalling the pool.
                    announced |= _drain(started)
                    try:
                        finished = [(f, f.result()) for f in done]
                    except BrokenProcessPool:
                        broke = True
                        break
                    for future, result in finished:
                        job_id = in_flight.pop(future)[0]
                        announced.discard(job_id)
                        yield job_id, result
                        bar.update()
                if broke:
                    pool.shutdown(wait=True, cancel_futures=True)
            if not broke:
                return
            # The jobs that had started are the suspects: each runs again alone, and the one
            # that dies again is blamed; none announced (killed at start?): the first one.
            lost = list(in_flight.values())
            announced |= _drain(started)
            suspects = announced & {job_id for job_id, _ in lost} or {lost[0][0]}
            for job_id, kwargs in lost:
                if job_id in suspects:
                    yield job_id, run_alone(fn, kwargs, died=died)
                    bar.update()
                else:
                    retry.append((job_id, kwargs))
            todo = queued


def _drain(started) -> set:
    """The ids the pool's workers have announced since the last call (without blocking)."""
    ids = set()
    while not started.empty():
        ids.add(started.get())
    return ids
