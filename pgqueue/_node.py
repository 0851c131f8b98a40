"""A worker node: the producers of its queues and the services they share.

``Node`` is what ``pgqueue worker`` runs. It registers itself, reads the persisted queue
controls, starts a producer per queue, the acker, the stager, the notifier, the
heartbeat and the leader with its duties (rescue, prune, cron). On ``stop()`` it shuts
down in the order DESIGN §5 promises: give up the leadership, stop claiming on every
queue at once, wait one shared grace period, cancel what is left, write every outcome,
hand the unfinished jobs back to ``available``, and remove its node row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Mapping

import psycopg
from psycopg_pool import AsyncConnectionPool

from . import _cron, _events
from ._acker import Acker
from ._client import check_schema
from ._coordination import Coordination, QueueControl, control_channel
from ._dsn import connection_options, resolve_dsn, unavailable
from ._engine import Engine
from ._errors import ConfigError
from ._executor import Executor
from ._heartbeat import Heartbeat
from ._job import QUEUE_NAME, Job
from ._leader import Leader, Pruner, Rescuer, Scheduler, Vacuumer
from ._migrate import check_versions
from ._notifier import Notifier
from ._producer import Producer
from ._service import TRANSIENT, _first_line, reconnect_delay
from ._stager import Stager
from ._threads import JobThreads

log = logging.getLogger("pgqueue.node")


def default_node_name() -> str:
    return f"{socket.gethostname()}.{os.getpid()}"


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


class Node:
    """Runs the jobs of ``queues`` (name → concurrency) until stopped.

    Timing options, in seconds: ``poll_interval`` (1) between polls when no notification
    comes; ``shutdown_grace`` (15) for running jobs at stop; ``heartbeat_interval`` (5)
    and ``heartbeat_expiry`` (30): a node silent for longer is dead and its jobs are
    rescued; ``lease_ttl`` (15) of the leadership; ``rescue_interval`` (5) and
    ``prune_interval`` (60) of the leader's duties. ``prune_ages`` maps a final state to
    the seconds its jobs are kept. ``vacuum_dead_rows`` (50,000; None: never) is how many
    dead rows (and at least a tenth of the live ones) make the leader vacuum the jobs
    table, checked every ``rescue_interval``. ``cron`` adds entries to those the app
    registered.
    """

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
        heartbeat_interval: float = 5.0,
        heartbeat_expiry: float = 30.0,
        lease_ttl: float = 15.0,
        rescue_interval: float = 5.0,
        prune_interval: float = 60.0,
        prune_ages: Mapping[str, float] | None = None,
        vacuum_dead_rows: int | None = 50_000,
        cron: Iterable[_cron.Cron] = (),
    ) -> None:
        self.dsn = resolve_dsn(dsn)
        self.schema = check_schema(schema)
        self.queues = dict(queues or {"default": 10})
        for queue, limit in self.queues.items():
            if not QUEUE_NAME.match(queue):
                raise ConfigError(f"not a queue name: {queue!r}")
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ConfigError(f"queue {queue} needs a concurrency >= 1, got {limit!r}")
        self.poll_interval = _positive("poll_interval", poll_interval)
        if isinstance(shutdown_grace, bool) or not shutdown_grace >= 0:
            raise ConfigError(f"shutdown_grace must be >= 0 seconds, got {shutdown_grace!r}")
        self.shutdown_grace = float(shutdown_grace)
        self.heartbeat_interval = _positive("heartbeat_interval", heartbeat_interval)
        self.heartbeat_expiry = _positive("heartbeat_expiry", heartbeat_expiry)
        if self.heartbeat_interval * 2 > self.heartbeat_expiry:
            raise ConfigError(
                f"heartbeat_expiry ({heartbeat_expiry} s) must be at least twice heartbeat_interval ({heartbeat_interval} s)"
            )
        self.lease_ttl = _positive("lease_ttl", lease_ttl)
        self.rescue_interval = _positive("rescue_interval", rescue_interval)
        self.prune_interval = _positive("prune_interval", prune_interval)
        self.prune_ages = dict(prune_ages or {})
        if vacuum_dead_rows is not None and (
            isinstance(vacuum_dead_rows, bool)
            or not isinstance(vacuum_dead_rows, int)
            or vacuum_dead_rows < 1
        ):
            raise ConfigError(
                f"vacuum_dead_rows must be an integer >= 1 or None, got {vacuum_dead_rows!r}"
            )
        self.vacuum_dead_rows = vacuum_dead_rows
        self.listen = listen
        self.name = name or default_node_name()
        # Unique per process, so a restarted node never inherits its predecessor's jobs.
        self.id = f"{self.name}/{uuid.uuid4().hex[:6]}"
        self.cron_entries = [*_cron.registered(), *cron]
        self.producers: dict[str, Producer] = {}
        self._pool: AsyncConnectionPool | None = None
        self._threads: JobThreads | None = None
        self._stop_requested = asyncio.Event()
        self._hurry = asyncio.Event()
        self._stopped = False
        self._pool_check: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()
        self.engine: Engine | None = None
        self.coordination: Coordination | None = None
        self.acker: Acker | None = None
        self.stager: Stager | None = None
        self.notifier: Notifier | None = None
        self.heartbeat: Heartbeat | None = None
        self.leader: Leader | None = None
        self.rescuer: Rescuer | None = None
        self.pruner: Pruner | None = None
        self.vacuumer: Vacuumer | None = None
        self.scheduler: Scheduler | None = None
        self.handed_back: list[Job] = []

    def _statement_options(self) -> dict[str, object]:
        # Behind PgBouncer in transaction mode (the reason to run without LISTEN), a
        # server-side prepared statement may land on another server connection.
        return {} if self.listen else {"prepare_threshold": None}

    @property
    def application_name(self) -> str:
        return f"pgqueue:{self.id}"[:63]

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        if self._pool is not None:
            return
        try:
            probe = await psycopg.AsyncConnection.connect(
                self.dsn, **connection_options(self.application_name)
            )
        except psycopg.Error as exc:
            raise unavailable(exc, self.dsn) from None
        pool = AsyncConnectionPool(
            self.dsn,
            min_size=min(len(self.queues) + 2, 8),
            max_size=len(self.queues) + 6,
            open=False,
            kwargs={**connection_options(self.application_name), **self._statement_options()},
            timeout=5.0,
            name=f"pgqueue-{self.id}",
        )
        try:
            engine = Engine(pool, self.schema)
            check_versions(self.schema, await engine.applied_versions(probe))
        finally:
            await probe.close()
        await pool.open(wait=True, timeout=10)
        self._pool = pool
        self.engine = engine
        coordination = self.coordination = Coordination(pool, self.schema)
        # Registered before the first claim, so nobody takes our jobs for a dead node's.
        await coordination.register_node(self.id, self.queues, self.heartbeat_expiry)
        total = sum(self.queues.values())
        # Twice the slots: a timed-out or cancelled sync job keeps its thread until it returns.
        self._threads = JobThreads(2 * total + 2)
        executor = Executor(self.id, self._threads)
        self.acker = Acker(engine, on_db_error=self._db_error)
        for queue, limit in self.queues.items():
            self.producers[queue] = Producer(
                queue,
                limit,
                engine=engine,
                executor=executor,
                acker=self.acker,
                node=self.id,
                poll_interval=self.poll_interval,
                on_db_error=self._db_error,
            )
        # A queue paused before this node started stays paused: controls come first.
        self._apply_controls(await coordination.queue_controls())
        self.heartbeat = Heartbeat(
            coordination,
            node=self.id,
            interval=self.heartbeat_interval,
            expiry=self.heartbeat_expiry,
            queues=self._queue_limits,
            running_jobs=self._running_jobs,
            pending=self.acker.pending_ids,
            oldest_claim=self._oldest_claim,
            on_controls=self._apply_controls,
            on_lost=self._drop_lost_attempts,
            on_orphans=self._hand_back_orphans,
        )
        self.leader = Leader(coordination, node=self.id, ttl=self.lease_ttl)
        self.rescuer = Rescuer(
            self.leader, coordination, interval=self.rescue_interval, heartbeat=self.heartbeat
        )
        self.pruner = Pruner(
            self.leader, coordination, interval=self.prune_interval, ages=self.prune_ages
        )
        if self.vacuum_dead_rows is not None:
            self.vacuumer = Vacuumer(
                self.leader,
                coordination,
                interval=self.rescue_interval,
                min_dead=self.vacuum_dead_rows,
            )
        self.scheduler = Scheduler(self.leader, coordination, entries=self.cron_entries)
        self.stager = Stager(engine, interval=self.poll_interval, on_staged=self._wake_queue)
        await self.acker.start()
        for producer in self.producers.values():
            await producer.start()
        await self.stager.start()
        if self.listen:
            self.notifier = Notifier(
                self.dsn,
                [engine.channel, control_channel(self.schema)],
                on_notify=self._on_notify,
                on_connect=self._wake_all,
                application_name=self.application_name,
            )
            await self.notifier.start()
        for service in (
            self.heartbeat,
            self.leader,
            self.rescuer,
            self.pruner,
            self.vacuumer,
            self.scheduler,
        ):
            if service is not None:
                await service.start()
        log.info(
            "node %s started: queues %s, schema %s",
            self.id,
            ", ".join(f"{q}:{n}" for q, n in self.queues.items()),
            self.schema,
        )
        _events.emit("node_start", node=self.id)

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
        assert self.acker is not None and self.engine is not None and self.coordination is not None
        # 0. Leader duties end first; the lease is released so another node takes over.
        for duty in (self.scheduler, self.vacuumer, self.pruner, self.rescuer, self.leader):
            if duty is not None:
                await duty.stop()
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
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        if not await self.acker.flush(timeout=10.0):
            log.error("stopping with %d job outcome(s) unwritten", self.acker.pending)
        await self.acker.stop()
        if unfinished:
            await self._hand_back(unfinished)
        # 6. Leave: with our row gone, anything still in our name is rescued at once.
        with contextlib.suppress(*TRANSIENT):
            await self.coordination.delete_node(self.id)
        if self.stager is not None:
            await self.stager.stop()
        if self.notifier is not None:
            await self.notifier.stop(timeout=0)
        if self._pool_check is not None:
            self._pool_check.cancel()
        if self._threads is not None:
            self._threads.shutdown()
        await self._pool.close()
        log.info("node %s stopped", self.id)
        _events.emit("node_stop", node=self.id)

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

    async def _hand_back_orphans(self, orphans: dict[int, int]) -> None:
        assert self.engine is not None
        jobs = [Job(id=i, worker="", attempt=a) for i, a in orphans.items()]
        queues = await self.engine.release_orphans(jobs, self.id)
        log.warning(
            "handed back %d job(s) claimed in this node's name whose claim reply was lost: %s",
            len(jobs),
            ", ".join(map(str, orphans)),
        )
        for queue in queues:
            self._wake_queue(queue)

    # ---- wiring ---------------------------------------------------------------------

    def _queue_limits(self) -> dict[str, int]:
        return {q: p.limit for q, p in self.producers.items()}

    def _oldest_claim(self) -> float | None:
        """When the oldest claim still waiting for its reply began (monotonic), if any."""
        times = [p.claiming_since for p in self.producers.values() if p.claiming_since is not None]
        return min(times) if times else None

    def _running_jobs(self) -> list[Job]:
        return [job for p in self.producers.values() for job, _ in p.running_jobs.values()]

    def _apply_controls(self, controls: dict[str, QueueControl]) -> None:
        for queue, producer in self.producers.items():
            control = controls.get(queue, QueueControl())
            producer.control(paused=control.paused, limit=control.concurrency)
        if self._threads is not None:
            # Scaled up past the configured concurrency: sync jobs need threads to match.
            self._threads.size = max(self._threads.size, 2 * sum(self._queue_limits().values()) + 2)

    def _drop_lost_attempts(self, lost: Mapping[int, int]) -> None:
        """The heartbeat's finding: these attempts (id → attempt) are no longer ours."""
        self._drop_lost(set(lost), lost)

    def _drop_lost(self, ids: set[int], attempts: Mapping[int, int] | None = None) -> None:
        for producer in self.producers.values():
            for job_id in producer.drop(ids, attempts):
                log.warning(
                    "job %s is no longer this node's (cancelled or rescued): stopped it", job_id
                )

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == self.engine.channel:  # type: ignore[union-attr]
            self._wake_queue(payload)
            return
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("ignoring a malformed control message: %r", payload[:200])
            return
        if message.get("action") == "cancel":
            ids = {int(i) for i in message.get("ids", []) if isinstance(i, int)}
            self._drop_lost(ids)
        elif message.get("action") == "controls" and self.heartbeat is not None:
            task = asyncio.ensure_future(self._reread_controls())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _reread_controls(self) -> None:
        assert self.coordination is not None
        with contextlib.suppress(*TRANSIENT):
            self._apply_controls(await self.coordination.queue_controls())

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
