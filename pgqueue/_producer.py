"""One queue of one node: claims jobs into free slots and runs them.

A claim is one statement sized to the free slots, on a connection of its own, that also
carries the outcomes the acker holds (one round trip and one commit acknowledge the last
jobs and claim the next). A producer with enough slots claims in two lanes, each with
its connection and at most half the slots, so one claim travels while the jobs of the
other run and PostgreSQL works on both at once. A lane then sleeps until something can
change the answer: a notification for its queue, a slot freeing up after a full claim,
or the poll interval (the fallback that makes a lost notification cost latency, never a
job). The slot frees as soon as a job returns; its outcome rides the next claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import psycopg

from ._acker import Acker
from ._engine import Engine
from ._executor import Executor
from ._job import Job
from ._service import TRANSIENT, Service, _first_line, jittered, reconnect_delay

log = logging.getLogger("pgqueue.producer")


# A producer with at least this many slots claims in two lanes.
TWO_LANES_FROM = 20
# When slots free one by one (sync jobs finishing on threads), a lane waits this long
# for more to free before claiming, instead of claiming one job at a time.
COALESCE = 0.001


class _Lane:
    """One claim loop of a producer: its connection, its wake-up, its last claim."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.wakeup = asyncio.Event()
        self.claiming_since: float | None = None
        self.last_full = False
        self.waiting_for_slot = False


class Producer(Service):
    #: Outcomes carried by one claim, at most.
    max_acks = 1000

    def __init__(
        self,
        queue: str,
        limit: int,
        *,
        engine: Engine,
        executor: Executor,
        acker: Acker,
        node: str,
        poll_interval: float,
        on_db_error: object = None,
        application_name: str = "pgqueue",
        lanes: int | None = None,
    ) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError(f"queue {queue!r} needs a concurrency >= 1, got {limit}")
        self.name = f"producer[{queue}]"
        self.queue = queue
        self.configured_limit = limit
        self.limit = limit
        self.engine = engine
        self.executor = executor
        self.acker = acker
        self.node = node
        self.poll_interval = poll_interval
        self.paused = False
        self.running_jobs: dict[int, tuple[Job, asyncio.Task[None]]] = {}
        self.application_name = application_name
        self._on_db_error = on_db_error
        count = lanes if lanes is not None else (2 if limit >= TWO_LANES_FROM else 1)
        self._lanes = [_Lane(i) for i in range(count)]
        self._reserved = 0  # slots promised to claims in flight
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- signals ----------------------------------------------------------------------

    def wake(self) -> None:
        super().wake()
        for lane in self._lanes:
            lane.wakeup.set()

    def notify(self) -> None:
        """Jobs may be available (a notification, a poll, a resume): the first lane looks;
        a full claim there brings in the others."""
        self._lanes[0].wakeup.set()

    def control(self, *, paused: bool, limit: int | None) -> None:
        """Apply a queue control (persisted in the database, shared by every node)."""
        new_limit = limit or self.configured_limit
        if (paused, new_limit) == (self.paused, self.limit):
            return
        log.info(
            "queue %s: %s, concurrency %d", self.queue, "paused" if paused else "running", new_limit
        )
        self.paused, self.limit = paused, new_limit
        self.wake()

    def drop(self, ids: set[int], attempts: Mapping[int, int] | None = None) -> list[int]:
        """Stop running jobs that are no longer this node's (cancelled or rescued); with
        ``attempts``, only a job still running the attempt named there."""
        dropped = []
        for job_id in ids & self.running_jobs.keys():
            job, task = self.running_jobs[job_id]
            if attempts is not None and attempts.get(job_id) != job.attempt:
                continue
            job.request_cancel()
            task.cancel()
            # A task cancelled before its first step never runs its finally: free the
            # slot when it is done, whichever way.
            task.add_done_callback(lambda _, job_id=job_id: self._finished(job_id))
            dropped.append(job_id)
        return dropped

    @property
    def claiming_since(self) -> float | None:
        """Monotonic time the oldest claim in flight started, None when there is none."""
        times = [lane.claiming_since for lane in self._lanes if lane.claiming_since is not None]
        return min(times) if times else None

    # ---- the claim loops --------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.gather(*(self._run_lane(lane) for lane in self._lanes))

    async def _run_lane(self, lane: _Lane) -> None:
        failures = 0
        while not self._stopping:
            cap = math.ceil(self.limit / len(self._lanes))
            free = self.limit - len(self.running_jobs) - self._reserved
            want = min(free, cap)
            if want > 0 and not self.paused:
                if want < cap and self.running_jobs:
                    await asyncio.sleep(COALESCE)
                    if self._stopping or self.paused:
                        continue
                    free = self.limit - len(self.running_jobs) - self._reserved
                    want = min(free, cap)
                    if want <= 0:
                        continue
                self._reserved += want
                try:
                    jobs = await self._claim(lane, want)
                except Exception as exc:
                    failures += 1
                    if not isinstance(exc, TRANSIENT):
                        # Not the network: a statement the database refused. Never let
                        # it end the lane; the acker isolates a bad outcome it carried.
                        log.exception("queue %s: a claim failed", self.queue)
                    elif failures == 1:
                        log.warning(
                            "queue %s: cannot claim jobs (%s); retrying",
                            self.queue,
                            _first_line(exc),
                        )
                        if callable(self._on_db_error):
                            self._on_db_error()
                    await self.pause(reconnect_delay(failures))
                    continue
                finally:
                    self._reserved -= want
                if failures:
                    log.info("queue %s: claiming again", self.queue)
                    failures = 0
                for job in jobs:
                    self._launch(job)
                lane.last_full = len(jobs) == want
                # A full claim means the queue had more; a short one hands back slots
                # another lane may have been waiting for. Either way, let them look.
                for other in self._lanes:
                    if other is not lane and (lane.last_full or other.waiting_for_slot):
                        other.wakeup.set()
                if lane.last_full:
                    continue
            # Idle or full: wait for a notification, a freed slot, or the poll. The first
            # lane always polls: whatever the other lanes hold, the queue is looked at.
            lane.waiting_for_slot = free <= 0
            idle = None if lane.index and lane.waiting_for_slot else jittered(self.poll_interval)
            await self._sleep(lane, idle)

    async def _sleep(self, lane: _Lane, seconds: float | None) -> None:
        if not lane.wakeup.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await lane.wakeup.wait()
        lane.wakeup.clear()

    async def _claim(self, lane: _Lane, limit: int) -> list[Job]:
        if lane.conn is None or lane.conn.closed:
            conn = await self.engine.connect(self.application_name)
            try:
                await self.engine.tune_claims(conn)
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.close()
                raise
            lane.conn = conn
        acks = self.acker.take(self.max_acks)
        lane.claiming_since = time.monotonic()
        try:
            jobs = await self.engine.fetch_jobs(self.queue, limit, self.node, acks, lane.conn)
        except BaseException:
            # The statement may or may not have committed: the connection goes, so no
            # reply can come later; the acks are written again (the guard makes that
            # harmless) and any claim that did commit is an orphan the heartbeat returns.
            self.acker.settle(acks, written=False)
            await self._close(lane)
            raise
        finally:
            lane.claiming_since = None
        self.acker.settle(acks, written=True)
        return jobs

    async def _close(self, lane: _Lane) -> None:
        conn, lane.conn = lane.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def stop(self, timeout: float = 5.0) -> None:
        await super().stop(timeout)
        for lane in self._lanes:
            await self._close(lane)

    # ---- jobs -------------------------------------------------------------------------

    def _launch(self, job: Job) -> None:
        # The loop's own create_task, named at construction: asyncio.create_task looks the
        # running loop up (a getpid system call on 3.11), has the task make a default
        # name, then renames it through a Python function (0.7 us a job together).
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self._execute(job), name=f"pgqueue-job-{job.id}")
        # Under an eager task factory (3.12+) create_task runs the job's first step, and
        # all of a job that never waits: a task already done has freed its slot.
        if not task.done():
            self.running_jobs[job.id] = (job, task)

    async def _execute(self, job: Job) -> None:
        # This task, found without the running-loop lookup (a getpid on 3.11) and without
        # running_jobs, which an eager first step runs before _launch fills in.
        task = asyncio.current_task(self._loop)
        try:
            self.acker.push(await self.executor.run(job, task))
        finally:
            self._finished(job.id)

    def _finished(self, job_id: int) -> None:
        self.running_jobs.pop(job_id, None)
        for lane in self._lanes:
            if lane.last_full or lane.waiting_for_slot:
                lane.wakeup.set()  # the queue had more than we could take: claim again
