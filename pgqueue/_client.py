"""``Client``: how application code enqueues jobs, sync or async, on its own transaction or not.

One Client serves both worlds: a sync pool and an async pool, each opened on first use.
Given ``conn=`` (the caller's psycopg connection), an enqueue runs inside the caller's
transaction and neither commits nor opens a pool; workers are woken when it commits.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from . import _admin, _engine
from ._connections import AsyncPoolConnection, PoolConnection, restore, restore_async
from ._coordination import control_channel
from ._dsn import describe, resolve_dsn, unavailable
from ._errors import ConfigError
from ._job import Job, JobSpec, check_text
from ._loop_pool import LoopPool
from ._worker import Worker
from .sql import queries

SCHEMA_ENV = "PGQUEUE_SCHEMA"


# PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes. The notification channels
# "<schema>.pgqueue_jobs" and "<schema>.pgqueue_control" are identifiers, so the schema
# name gets what the longer suffix leaves.
_IDENTIFIER_BYTES = 63
_CHANNELS = (_engine.channel, control_channel)
SCHEMA_MAX_BYTES = _IDENTIFIER_BYTES - max(len(c("").encode()) for c in _CHANNELS)


def check_schema(schema: object) -> str:
    """``schema`` if pgqueue can use it, else a ConfigError saying why.

    Every insert notifies on ``_engine.channel(schema)``, and pause, resume and cancel
    on ``control_channel(schema)``: pg_notify refuses a channel past 63 bytes and LISTEN
    silently truncates it. A longer name would let the Client be built and every enqueue
    fail (or nodes miss every control message), so it is refused here, counted in UTF-8
    bytes as the server counts."""
    if not isinstance(schema, str) or not schema:
        raise ConfigError(f"schema must be a non-empty name, got {schema!r}")
    check_text(schema, f"schema {schema!r}")
    size = len(schema.encode("utf-8"))
    if size > SCHEMA_MAX_BYTES:
        raise ConfigError(
            f"schema must be at most {SCHEMA_MAX_BYTES} bytes in UTF-8, got {schema!r} "
            f"({size} bytes): its notification channels "
            f"({', '.join(repr(c('<schema>')) for c in _CHANNELS)}) must fit PostgreSQL's "
            f"{_IDENTIFIER_BYTES}-byte identifier limit"
        )
    return schema


class Client:
    """Entry point for enqueueing; cheap to construct, pools open lazily.

    dsn: PostgreSQL connection string; default ``$DATABASE_URL``.
    schema: where pgqueue's tables live; default ``$PGQUEUE_SCHEMA`` or ``public``.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        self.dsn = resolve_dsn(dsn)
        self.schema = check_schema(schema or os.environ.get(SCHEMA_ENV) or "public")
        self.queries = queries(self.schema)
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._pool: ConnectionPool[PoolConnection] | None = None
        self._apools: dict[asyncio.AbstractEventLoop, LoopPool] = {}

    def __repr__(self) -> str:
        return f"<pgqueue.Client {describe(self.dsn)} schema={self.schema}>"

    # ---- pools --------------------------------------------------------------------

    def pool(self) -> ConnectionPool[PoolConnection]:
        """The sync pool, opened (and checked) on first use."""
        with self._lock:
            if self._pool is None:
                pool = ConnectionPool(
                    self.dsn, connection_class=PoolConnection, check=restore,
                    name="pgqueue-sync", **self._pool_options(),
                )  # fmt: skip
                try:
                    # A direct first connection reports the real reason (refused, bad
                    # password, no such database) at once instead of a pool timeout.
                    psycopg.connect(self.dsn, connect_timeout=self._timeout_s()).close()
                    pool.open(wait=True, timeout=self._connect_timeout)
                except Exception as exc:
                    pool.close()
                    raise unavailable(exc, self.dsn) from None
                self._pool = pool
            return self._pool

    async def apool(self) -> AsyncConnectionPool[AsyncPoolConnection]:
        """The async pool of the running event loop, opened on first use and closed
        with the loop (see ``LoopPool``). Refused once the loop has shut down its
        async generators (it is ending): enqueues still work then, one connection each."""
        entry = await self._loop_pool()
        if entry.ended:
            raise RuntimeError(
                "pgqueue: this event loop has shut down its async generators (it is "
                "ending), so its pool is closed; enqueue still works, or use a "
                "connection of your own"
            )
        return entry.pool

    async def _loop_pool(self) -> LoopPool:
        loop = asyncio.get_running_loop()
        entry = self._apools.get(loop)
        if entry is None:
            entry = await self._open_apool(loop)
        return entry

    async def _open_apool(self, loop: asyncio.AbstractEventLoop) -> LoopPool:
        """A new pool for ``loop``, unless another coroutine of the loop made one while
        this one waited for its connections: then that one, and this one is closed."""
        self._retire_ended_loops()
        if getattr(loop, "_asyncgens_shutdown_called", False):
            # The loop's first enqueue, from an async generator closed as the loop
            # ends: a pool opened now would outlive the loop (its watch comes too late
            # to be closed). asyncio has no public word for this state; a loop without
            # the attribute opens its pool, closed at the Client's next pool or close().
            entry = self._apools[loop] = LoopPool(ended=True)
            return entry
        entry = LoopPool()
        pool = AsyncConnectionPool(
            self.dsn, connection_class=AsyncPoolConnection, check=restore_async,
            configure=entry.track, name="pgqueue-async", **self._pool_options(),
        )  # fmt: skip
        try:
            first = await psycopg.AsyncConnection.connect(
                self.dsn, connect_timeout=self._timeout_s()
            )
            await first.close()
            await pool.open(wait=True, timeout=self._connect_timeout)
        except BaseException as exc:  # cancelled too: the pool's connections are closed
            await pool.close()
            if isinstance(exc, Exception):
                raise unavailable(exc, self.dsn) from None
            raise
        winner = self._apools.get(loop)
        if winner is not None:
            await pool.close()
            return winner
        entry.pool = pool
        self._apools[loop] = entry
        await entry.watch()
        return entry

    def _forget_apool(self, loop: asyncio.AbstractEventLoop, entry: LoopPool) -> None:
        if self._apools.get(loop) is entry:
            del self._apools[loop]

    def _retire_ended_loops(self) -> None:
        """Forget the pools of closed event loops and close whatever connections they
        left open: all of them if the loop was closed without shutting down its async
        generators (so ``LoopPool.watch`` never heard of it), else those busy then."""
        for loop, entry in list(self._apools.items()):
            if loop.is_closed():
                self._forget_apool(loop, entry)
                entry.retire(force=True)

    async def _connect_alone(self) -> psycopg.AsyncConnection[Any]:
        """A connection of its own, for an enqueue on a loop whose pool has ended."""
        try:
            return await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=self._timeout_s()
            )
        except Exception as exc:
            raise unavailable(exc, self.dsn) from None

    def _pool_options(self) -> dict[str, Any]:
        """What the sync pool and each loop's async pool share: sizes, autocommit
        connections, opened by the caller (after a direct first connection)."""
        return {
            "min_size": self._min_size, "max_size": self._max_size, "open": False,
            "kwargs": {"autocommit": True}, "timeout": self._connect_timeout,
        }  # fmt: skip

    def _timeout_s(self) -> int:
        return max(1, round(self._connect_timeout))

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
        self._retire_ended_loops()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._apools.get(loop)
        if entry is not None and not entry.ended:  # an ended one stays (see LoopPool)
            self._forget_apool(loop, entry)
            await entry.end()
        self.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- enqueue ------------------------------------------------------------------

    def enqueue(
        self,
        worker: type[Worker] | str,
        args: Mapping[str, Any] | None = None,
        *,
        conn: psycopg.Connection[Any] | None = None,
        **options: Any,
    ) -> Job:
        """Insert one job of ``worker`` (a Worker class or a registered name)."""
        return self.enqueue_many([_spec(worker, args, options)], conn=conn)[0]

    def enqueue_many(
        self, specs: Sequence[JobSpec], *, conn: psycopg.Connection[Any] | None = None
    ) -> list[Job]:
        """Insert many jobs in one statement; returns them in order (duplicates flagged)."""
        specs = _check_specs(specs)
        if not specs:
            return []
        if conn is not None:
            return _engine.insert_jobs(conn, self.queries, specs)
        # getconn/putconn, not pool.connection(): that context manager's commit and
        # bookkeeping cost a single enqueue 3 %, and an autocommit connection has nothing
        # to commit (putconn still resets one left in a transaction, replaces a broken one).
        pool = self.pool()
        c = pool.getconn()
        try:
            return _engine.insert_jobs(c, self.queries, specs, kept=True)
        finally:
            pool.putconn(c)

    async def enqueue_async(
        self,
        worker: type[Worker] | str,
        args: Mapping[str, Any] | None = None,
        *,
        conn: psycopg.AsyncConnection[Any] | None = None,
        **options: Any,
    ) -> Job:
        jobs = await self.enqueue_many_async([_spec(worker, args, options)], conn=conn)
        return jobs[0]

    async def enqueue_many_async(
        self, specs: Sequence[JobSpec], *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> list[Job]:
        specs = _check_specs(specs)
        if not specs:
            return []
        if conn is not None:
            return await _engine.insert_jobs_async(conn, self.queries, specs)
        entry = await self._loop_pool()
        if entry.ended:
            async with await self._connect_alone() as alone:
                return await _engine.insert_jobs_async(alone, self.queries, specs)
        c = await entry.pool.getconn()  # as in enqueue_many
        try:
            return await _engine.insert_jobs_async(c, self.queries, specs, kept=True)
        finally:
            await entry.release(c)  # the loop may have shut down while the statement ran

    def _copy_many(self, count: int, chunks: Iterable[Sequence[JobSpec]], form: str) -> list[Job]:
        """``Worker.enqueue_many``'s streamed batch: ``count`` jobs, none unique, whose
        specs arrive in ``chunks`` as the COPY takes them (see ``_engine.copy_jobs``)."""
        with self.pool().connection() as c:
            return _engine.copy_jobs(c, self.queries, count, chunks, form)

    async def _copy_many_async(
        self, count: int, chunks: Iterable[Sequence[JobSpec]], form: str
    ) -> list[Job]:
        entry = await self._loop_pool()
        if entry.ended:
            async with await self._connect_alone() as alone:
                return await _engine.copy_jobs_async(alone, self.queries, count, chunks, form)
        c = await entry.pool.getconn()  # autocommit: copy_jobs_async commits its own
        try:
            return await _engine.copy_jobs_async(c, self.queries, count, chunks, form)
        finally:
            await entry.release(c)

    # ---- queue control and cancellation (every node, through the database) ---------

    def pause_queue(self, queue: str) -> None:
        """Stop claiming ``queue`` on every node (persisted: restarted nodes stay paused)."""
        with self.pool().connection() as c:
            _admin.pause_queue(c, self.schema, queue)

    def resume_queue(self, queue: str) -> None:
        with self.pool().connection() as c:
            _admin.resume_queue(c, self.schema, queue)

    def scale_queue(self, queue: str, limit: int | None) -> None:
        """Run ``queue`` with ``limit`` slots on every node (None: each node's own)."""
        with self.pool().connection() as c:
            _admin.scale_queue(c, self.schema, queue, limit)

    def cancel_jobs(self, ids: Sequence[int]) -> list[int]:
        """Cancel jobs that have not finished, stopping executing ones on their node."""
        with self.pool().connection() as c:
            return _admin.cancel_jobs(c, self.schema, ids)

    def cancel_job(self, job_id: int) -> bool:
        return bool(self.cancel_jobs([job_id]))


def _spec(
    worker: type[Worker] | str, args: Mapping[str, Any] | None, options: dict[str, Any]
) -> JobSpec:
    if isinstance(worker, type) and issubclass(worker, Worker):
        return worker.new(args, **options)
    if isinstance(worker, str):
        return JobSpec.build(worker, args, **options)
    raise ConfigError(f"enqueue needs a Worker class or a worker name, got {worker!r}")


def _check_specs(specs: Sequence[JobSpec]) -> list[JobSpec]:
    specs = list(specs)
    for s in specs:
        if not isinstance(s, JobSpec):
            raise ConfigError(
                f"enqueue_many takes JobSpec values (from Worker.new(...)), got {type(s).__name__}"
            )
    return specs


_default: Client | None = None
_default_lock = threading.Lock()


def configure(dsn: str | None = None, *, schema: str | None = None, **options: Any) -> Client:
    """Set (and return) the Client used when ``enqueue`` is given none."""
    global _default
    client = Client(dsn, schema=schema, **options)
    with _default_lock:
        old, _default = _default, client
    if old is not None:
        old.close()
    return client


def default_client() -> Client:
    """The configured Client, or one for ``$DATABASE_URL`` made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def configured_client() -> Client | None:
    """The Client an app module configured, if any (the worker command honours it)."""
    return _default
