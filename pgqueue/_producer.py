"""One queue of one node: claims jobs into free slots and runs them.

The loop claims with one statement sized to the free slots, on a connection of its own,
carrying the outcomes the acker holds (one round trip and one commit acknowledge the
last jobs and claim the next), starts a task per job, and then sleeps until something
can change the answer: a notification for its queue, a
slot freeing up after a full claim, or the poll interval (the fallback that makes a
lost notification cost latency, never a job). Results go to the acker; the slot frees
as soon as the job returns, while its acknowledgement is written in the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import psycopg

from ._acker import Acker
from ._engine import Engine
from ._executor import Executor
from ._job import Job
from ._service import TRANSIENT, Service, _first_line, jittered, reconnect_delay

log = logging.getLogger("pgqueue.producer")


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
        self._last_full = False
        self._waiting_for_slot = False
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._claiming_since: float | None = None
        self.application_name = application_name
        self._on_db_error = on_db_error

    def notify(self) -> None:
        """Jobs may be available (a notification, a poll, a resume)."""
        self.wake()

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

    def drop(self, ids: set[int]) -> list[int]:
        """Stop running jobs that are no longer this node's (cancelled or rescued)."""
        dropped = []
        for job_id in ids & self.running_jobs.keys():
            job, task = self.running_jobs[job_id]
            job.request_cancel()
            task.cancel()
            dropped.append(job_id)
        return dropped

    @property
    def claiming_since(self) -> float | None:
        """Monotonic time the claim in flight started, None when there is none."""
        return self._claiming_since

    async def _claim(self, free: int) -> list[Job]:
        if self._conn is None or self._conn.closed:
            self._conn = await self.engine.connect(self.application_name)
        acks = self.acker.take(self.max_acks)
        self._claiming_since = time.monotonic()
        try:
            jobs = await self.engine.fetch_jobs(self.queue, free, self.node, acks, self._conn)
        except BaseException:
            # The statement may or may not have committed: the connection goes, so no
            # reply can come later; the acks are written again (the guard makes that
            # harmless) and any claim that did commit is an orphan the heartbeat returns.
            self.acker.settle(acks, written=False)
            await self._close()
            raise
        finally:
            self._claiming_since = None
        self.acker.settle(acks, written=True)
        return jobs

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def stop(self, timeout: float = 5.0) -> None:
        await super().stop(timeout)
        await self._close()

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            free = self.limit - len(self.running_jobs)
            if free > 0 and not self.paused:
                try:
                    jobs = await self._claim(free)
                except TRANSIENT as exc:
                    failures += 1
                    if failures == 1:
                        log.warning(
                            "queue %s: cannot claim jobs (%s); retrying",
                            self.queue,
                            _first_line(exc),
                        )
                        if callable(self._on_db_error):
                            self._on_db_error()
                    await self.sleep(reconnect_delay(failures))
                    continue
                if failures:
                    log.info("queue %s: claiming again", self.queue)
                    failures = 0
                for job in jobs:
                    self._launch(job)
                self._last_full = len(jobs) == free
                if self._last_full:
                    continue
            # Idle or full: wait for a notification, a freed slot, or the poll.
            self._waiting_for_slot = free <= 0
            await self.sleep(None if self._waiting_for_slot else jittered(self.poll_interval))

    def _launch(self, job: Job) -> None:
        task = asyncio.create_task(self._execute(job), name=f"pgqueue-job-{job.id}")
        self.running_jobs[job.id] = (job, task)

    async def _execute(self, job: Job) -> None:
        try:
            transition = await self.executor.run(job)
            self.acker.push(transition)
        finally:
            self.running_jobs.pop(job.id, None)
            if self._last_full or self._waiting_for_slot:
                self.wake()  # the queue had more than we could take: claim again
