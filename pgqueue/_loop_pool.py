"""One event loop's async pool of a Client, and how it is closed when its loop ends.

A Client serves every event loop that enqueues through it, each with a pool of its own;
``asyncio.run`` ends a loop without closing such a pool. Kept apart from the Client:
the rules for closing connections that may still carry a statement are the whole job.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import AsyncConnectionPool

from ._connections import AsyncPoolConnection

# A connection may be finished when it is idle: no statement in flight, no transaction
# open (UNKNOWN: already broken). An INSERT that was sent and is finished before its
# result arrives may still commit, while its caller sees an error and enqueues again.
_FINISHABLE = (pq.TransactionStatus.IDLE, pq.TransactionStatus.UNKNOWN)


class LoopPool:
    """One event loop's async pool, closed when its loop ends.

    An ended loop (``asyncio.run`` returned) can no longer run the pool's close, so its
    connections would stay open as long as the Client: one pool more for every
    ``asyncio.run`` of an enqueue. The pool's connections are therefore tracked as it
    makes them (``configure``) and closed without a loop (libpq's finish) when the loop
    shuts down its async generators: ``asyncio.run`` does, after cancelling every task,
    the pool's workers among them, which leaves the pool's own close unable to finish.

    That shutdown closes every async generator at once, the user's too, and one whose
    ``finally`` enqueues may be in the middle of its INSERT then: only idle connections
    are finished, a busy one when its enqueue hands it back, or, at the latest, once its
    loop is closed (nothing can await it any more), at the Client's next new pool or
    ``close()``. From then on the pool is ``ended``: it hands out no connection (its
    workers, which would make new ones, are gone), an enqueue on its loop runs on a
    connection of its own, and the entry stays in the Client until its loop is closed,
    so that a generator closed after the clean-up opens no pool the loop would never
    close (nor does one making the loop's first enqueue: see ``Client._open_apool``).
    A loop closed without that shutdown is found at the Client's next new pool or
    ``close()`` too.
    """

    pool: AsyncConnectionPool[AsyncPoolConnection]

    def __init__(self, *, ended: bool = False) -> None:
        self.conns: weakref.WeakSet[AsyncPoolConnection] = weakref.WeakSet()
        self.ended = ended
        self._guard: AsyncGenerator[None, None] | None = None

    async def track(self, conn: AsyncPoolConnection) -> None:
        """The pool's ``configure``: remember each connection it makes."""
        self.conns.add(conn)

    async def watch(self) -> None:
        """End the pool when the running loop shuts down its async generators. The
        generator is kept here: collected, it would end at once."""
        self._guard = self._until_shutdown()
        await self._guard.asend(None)

    async def _until_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self.ended = True
            self.retire()

    async def end(self) -> None:
        """Close the pool while its loop still runs (``Client.aclose``)."""
        await self.pool.close()
        if self._guard is not None:
            await self._guard.aclose()

    def retire(self, *, force: bool = False) -> None:
        """Close, without a loop, the pool's connections that are open and idle; with
        ``force`` (the loop is closed) all of them."""
        for conn in list(self.conns):
            if force:
                if not conn.closed:
                    conn.pgconn.finish()
            else:
                _finish_idle(conn)

    async def release(self, conn: AsyncPoolConnection) -> None:
        """Return ``conn`` to the pool; if the loop ended while it was out, finish it
        too, unless a caller waiting in the pool since before takes it over."""
        if not self.ended:
            await self.pool.putconn(conn)
            return
        spare = not self.pool.get_stats().get("requests_waiting")
        await self.pool.putconn(conn)
        if spare:
            _finish_idle(conn)


def _finish_idle(conn: psycopg.AsyncConnection[Any]) -> None:
    """Close ``conn`` without a loop if it is open and idle (``_FINISHABLE``)."""
    if not conn.closed and conn.pgconn.transaction_status in _FINISHABLE:
        conn.pgconn.finish()
