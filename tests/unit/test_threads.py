"""The sync jobs' threads: started only as concurrency demands."""

from __future__ import annotations

import asyncio
import queue
import threading
import time

from pgqueue import _threads
from pgqueue._threads import JobThreads


class _GatedInbox(queue.SimpleQueue):
    """An inbox whose threads cannot take a job while the gate is shut: an idle thread
    that has not run yet, as when the event loop's thread holds the GIL."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.open.set()

    def get(self, block=True, timeout=None):
        self.open.wait()
        return super().get(block, timeout)


def test_idle_threads_that_have_not_run_yet_take_a_burst_without_new_threads():
    asyncio.run(_idle_threads_that_have_not_run_yet_take_a_burst_without_new_threads())


async def _idle_threads_that_have_not_run_yet_take_a_burst_without_new_threads():
    pool = JobThreads(20)
    pool._inbox = inbox = _GatedInbox()
    release, started = threading.Event(), threading.Semaphore(0)

    def block(_):
        started.release()
        release.wait(5)

    # Five jobs that block: each gets a thread of its own, almost at once.
    blocked = [pool.submit(block, None) for _ in range(5)]
    await _acquired(started, 5)
    assert len(pool._threads) == 5
    # They return; their threads go idle but, the gate shut, cannot take the next job.
    inbox.open.clear()
    release.set()
    await asyncio.wait_for(asyncio.gather(*blocked), 5)
    burst = [pool.submit(lambda x: x, i) for i in range(5)]
    await asyncio.sleep(20 * _threads.SPAWN_AFTER)
    assert len(pool._threads) == 5  # the five idle threads are enough (before: ten)
    inbox.open.set()
    assert await asyncio.wait_for(asyncio.gather(*burst), 5) == list(range(5))
    assert len(pool._threads) == 5
    pool.shutdown()


async def _acquired(semaphore: threading.Semaphore, count: int, timeout: float = 5.0) -> None:
    """Wait, letting the event loop run, until ``semaphore`` was released ``count`` times."""
    deadline = time.monotonic() + timeout
    for _ in range(count):
        while not semaphore.acquire(blocking=False):
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.001)


def test_jobs_that_block_get_a_thread_each_up_to_the_size():
    asyncio.run(_jobs_that_block_get_a_thread_each_up_to_the_size())


async def _jobs_that_block_get_a_thread_each_up_to_the_size():
    pool = JobThreads(8)
    release, started = threading.Event(), threading.Semaphore(0)

    def block(_):
        started.release()
        release.wait(5)

    # A guard, not the fix: jobs that block must keep getting a thread each at once.
    jobs = [pool.submit(block, None) for _ in range(12)]
    await _acquired(started, 8)  # eight run at once, each on a thread of its own
    await asyncio.sleep(0.05)
    assert not started.acquire(blocking=False)  # the other four wait for a thread
    assert len(pool._threads) == 8
    release.set()
    await asyncio.wait_for(asyncio.gather(*jobs), 5)
    assert len(pool._threads) == 8
    pool.shutdown()


def test_a_burst_of_short_jobs_needs_no_more_threads_than_jobs_at_once():
    asyncio.run(_a_burst_of_short_jobs_needs_no_more_threads_than_jobs_at_once())


async def _a_burst_of_short_jobs_needs_no_more_threads_than_jobs_at_once():
    pool = JobThreads(202)
    for _ in range(20):  # claims of 50, the loop busy between them as a producer's is
        batch = [pool.submit(lambda x: x, i) for i in range(50)]
        end = time.perf_counter() + 0.003
        while time.perf_counter() < end:  # the loop's thread holds the GIL
            pass
        await asyncio.gather(*batch)
    # About one thread per job of a burst (50-54 measured; a thread still finishing its
    # job as the next burst waits counts as busy), not every thread the pool may have
    # (before: all 202, in every one of eight runs).
    assert len(pool._threads) <= 75, len(pool._threads)
    pool.shutdown()
