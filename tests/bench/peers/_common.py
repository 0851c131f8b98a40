"""Helpers every adapter shares. Standard library only: adapters run in foreign venvs.

Times are ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process of the
machine), so an enqueue in one process and a job start in another can be subtracted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable

QUEUE = "bench"
STARTS_ENV = "BENCH_STARTS"


def record_start(i: int) -> None:
    """Called first thing in the latency job's perform: append ``i t`` to the starts file."""
    t = time.monotonic()
    with open(os.environ[STARTS_ENV], "a") as f:
        f.write(f"{i} {t!r}\n")


def read_starts(path: str) -> dict[int, float]:
    starts: dict[int, float] = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    starts.setdefault(int(parts[0]), float(parts[1]))
    except FileNotFoundError:
        pass
    return starts


async def _wait_starts(path: str, ids: set[int], timeout: float) -> dict[int, float]:
    deadline = time.monotonic() + timeout
    while True:
        starts = read_starts(path)
        if ids <= starts.keys() or time.monotonic() > deadline:
            return starts
        await asyncio.sleep(0.05)


async def latency_run(
    enqueue: Callable[[int], Awaitable[object]],
    n: int,
    interval: float,
    starts: str,
    warmup: int = 5,
    rest: float = 1.0,
    timeout: float = 60.0,
) -> dict[str, object]:
    """W3: warm-up jobs, a rest, then ``n`` enqueues ``interval`` s apart; latencies in ms.

    Latency = the job's recorded start - the time just before its enqueue call. The
    schedule is absolute (t0 + i * interval), so a slow enqueue does not shift the rest.
    Beside it, the two parts of each latency: the enqueue call itself (its round trip
    and its commit's flush, where this machine's disk stalls land: 100-900 ms, now and
    then) and the time from the call's return to the job's start (the wake-up path).
    """
    warm = {-1 - k for k in range(warmup)}
    for i in sorted(warm, reverse=True):
        await enqueue(i)
    got = await _wait_starts(starts, warm, timeout)
    if not warm <= got.keys():
        return {"error": f"warm-up jobs did not start within {timeout:g} s", "latencies_ms": []}
    await asyncio.sleep(rest)
    before: dict[int, float] = {}
    after: dict[int, float] = {}
    t0 = time.monotonic()
    for i in range(n):
        delay = t0 + i * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        before[i] = time.monotonic()
        await enqueue(i)
        after[i] = time.monotonic()
    got = await _wait_starts(starts, set(range(n)), timeout)
    done = [i for i in range(n) if i in got]
    return {
        "latencies_ms": [(got[i] - before[i]) * 1000 for i in done],
        "enqueue_ms": [(after[i] - before[i]) * 1000 for i in done],
        "wake_ms": [(got[i] - after[i]) * 1000 for i in done],
        "missing": n - len(done),
    }


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


async def atimed(coro: Awaitable[object]) -> float:
    t = time.perf_counter()
    await coro
    return time.perf_counter() - t


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` in a new event loop; SIGTERM/SIGINT set ``stop``."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
