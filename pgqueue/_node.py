"""A worker node: the producers of its queues and the services they share.

``Node`` is what ``pgqueue worker`` runs. It opens one pool, checks the schema, starts
a producer per queue, the acker, the stager and the notifier, and on ``stop()`` shuts
down in the order DESIGN §5 promises: stop claiming on every queue at once, wait one
shared grace period, cancel what is left, write every outcome, hand the unfinished jobs
back to ``available``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg_pool import AsyncConnectionPool

from . import _events
from ._acker import Acker
from ._dsn import resolve_dsn, unavailable
from ._engine import Engine
from ._errors import ConfigError
from ._executor import Executor
from ._job import QUEUE_NAME, Job
from ._migrate import check_versions
from ._notifier import Notifier
from ._producer import Producer
from ._service import TRANSIENT, _first_line, reconnect_delay
from ._stager import Stager

log = logging.getLogger("pgqueue.node")


def default_node_name() -> str:
    return f"{socket.gethostname()}.{os.getpid()}"


class Node:
    """Runs the jobs of ``queues`` (name → concurrency) until stopped."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = "public",
        queues: Mapping[str, int] | None = None,
        name: str | None = None,
        poll_interval: float = 1.0,
        shutdown_grace: float = 15.0,
        listen: bool = True,
    ) -> None:
        self.dsn = resolve_dsn(dsn)
        self.schema = schema
        self.queues = dict(queues or {"default": 10})
        for queue, limit in self.queues.items():
            if not QUEUE_NAME.match(queue):
                raise ConfigError(f"not a queue name: {queue!r}")
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ConfigError(f"queue {queue} needs a concurrency >= 1, got {limit!r}")
        if not poll_interval > 0:
            raise ConfigError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        if not shutdown_grace >= 0:
            raise ConfigError(f"shutdown_grace must be >= 0 seconds, got {shutdown_grace!r}")
        self.name = name or default_node_name()
        self.poll_interval = poll_interval
        self.shutdown_grace = shutdown_grace
        self.listen = listen
        self.producers: dict[str, Producer] = {}
        self._pool: AsyncConnectionPool | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._stop_requested = asyncio.Event()
        self._hurry = asyncio.Event()
        self._stopped = False
        self._pool_check: asyncio.Task[None] | None = None
        self.engine: Engine | None = None
        self.acker: Acker | None = None
        self.stager: Stager | None = None
        self.notifier: Notifier | None = None
        self.handed_back: list[Job] = []

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        if self._pool is not None:
            return
        pool = AsyncConnectionPool(
            self.dsn,
            min_size=min(len(self.queues) + 2, 8),
            max_size=len(self.queues) + 4,
            open=False,
            kwargs={"autocommit": True},
            timeout=5.0,
            name=f"pgqueue-{self.name}",
        )
        try:
            probe = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=10
            )
        except psycopg.Error as exc:
            raise unavailable(exc, self.dsn) from None
        try:
            engine = Engine(pool, self.schema)
            check_versions(self.schema, await engine.applied_versions(probe))
        finally:
            await probe.close()
        await pool.open(wait=True, timeout=10)
        self._pool = pool
        self.engine = engine
        total = sum(self.queues.values())
        # Twice the slots: a timed-out sync job keeps its thread until it returns.
        self._threads = ThreadPoolExecutor(
            max_workers=2 * total + 2, thread_name_prefix="pgqueue-job"
        )
        executor = Executor(self.name, self._threads)
        self.acker = Acker(engine, on_db_error=self._db_error)
        for queue, limit in self.queues.items():
            self.producers[queue] = Producer(
                queue,
                limit,
                engine=engine,
                executor=executor,
                acker=self.acker,
                node=self.name,
                poll_interval=self.poll_interval,
                on_db_error=self._db_error,
            )
        self.stager = Stager(engine, interval=self.poll_interval, on_staged=self._wake_queue)
        await self.acker.start()
        for producer in self.producers.values():
            await producer.start()
        await self.stager.start()
        if self.listen:
            self.notifier = Notifier(
                self.dsn, engine.channel, on_notify=self._wake_queue, on_connect=self._wake_all
            )
            await self.notifier.start()
        log.info(
            "node %s started: queues %s, schema %s",
            self.name,
            ", ".join(f"{q}:{n}" for q, n in self.queues.items()),
            self.schema,
        )
        _events.emit("node_start", node=self.name)

    def request_stop(self) -> None:
        """Begin a graceful shutdown; asked again, stop waiting for running jobs."""
        if self._stop_requested.is_set():
            if not self._hurry.is_set():
                log.warning("asked to stop again: not waiting for running jobs")
            self._hurry.set()
        else:
            log.info("stop requested")
            self._stop_requested.set()

    async def run(self) -> None:
        """Start, run until ``request_stop()``, then shut down gracefully."""
        await self.start()
        try:
            await self._stop_requested.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        if self._stopped or self._pool is None:
            return
        self._stopped = True
        assert self.acker is not None and self.engine is not None
        # 1. Stop claiming everywhere at once.
        await asyncio.gather(*(p.stop() for p in self.producers.values()))
        running = {
            task: job for p in self.producers.values() for job, task in p.running_jobs.values()
        }
        # 2. One grace period shared by every queue.
        if running:
            log.info(
                "stopping: waiting up to %g s for %d running job(s)",
                self.shutdown_grace,
                len(running),
            )
            await self._grace(set(running))
        late = {task for task in running if not task.done()}
        # 3. Cancel what is left; its result, if any ever comes, is ignored.
        unfinished = [running[task] for task in late]
        for task in late:
            running[task].request_cancel()
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=2.0)
        # 4. Write every outcome we have, then 5. hand the rest back.
        if not await self.acker.flush(timeout=10.0):
            log.error("stopping with %d job outcome(s) unwritten", self.acker.pending)
        await self.acker.stop()
        if unfinished:
            await self._hand_back(unfinished)
        if self.stager is not None:
            await self.stager.stop()
        if self.notifier is not None:
            await self.notifier.stop(timeout=0)
        if self._pool_check is not None:
            self._pool_check.cancel()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        await self._pool.close()
        log.info("node %s stopped", self.name)
        _events.emit("node_stop", node=self.name)

    async def _grace(self, tasks: set[asyncio.Task[None]]) -> None:
        """Wait for ``tasks`` until the grace period ends or a second stop request."""
        if self.shutdown_grace <= 0 or self._hurry.is_set():
            return
        all_done = asyncio.ensure_future(asyncio.wait(tasks))
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait(
                {all_done, hurry}, timeout=self.shutdown_grace, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            all_done.cancel()
            hurry.cancel()

    async def _hand_back(self, jobs: list[Job]) -> None:
        assert self.engine is not None
        for failures in range(1, 6):
            try:
                await self.engine.handback_jobs(jobs)
            except TRANSIENT as exc:
                log.warning("cannot hand back %d job(s) yet (%s)", len(jobs), _first_line(exc))
                await asyncio.sleep(reconnect_delay(failures))
                continue
            self.handed_back.extend(jobs)
            log.info(
                "handed %d unfinished job(s) back: %s",
                len(jobs),
                ", ".join(str(j.id) for j in jobs),
            )
            return
        log.error(
            "could not hand back job(s) %s; they will be rescued",
            ", ".join(str(j.id) for j in jobs),
        )

    # ---- wiring ---------------------------------------------------------------------

    def _wake_queue(self, queue: str) -> None:
        producer = self.producers.get(queue)
        if producer is not None:
            producer.notify()

    def _wake_all(self) -> None:
        for producer in self.producers.values():
            producer.notify()

    def _db_error(self) -> None:
        """A call failed on a dead connection: test the idle ones now, not one by one."""
        if self._pool is None or (self._pool_check is not None and not self._pool_check.done()):
            return
        self._pool_check = asyncio.create_task(self._check_pool())

    async def _check_pool(self) -> None:
        assert self._pool is not None
        with contextlib.suppress(Exception):
            await self._pool.check()
