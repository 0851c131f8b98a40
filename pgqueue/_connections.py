"""The Client's pool connections: each keeps one cursor for single enqueues.

psycopg builds a new transformer (the per-cursor state that dumps parameters and loads
results) for every cursor it opens. A single enqueue that opened and closed one spent
about 15 us of CPU on it, ~5 % of the whole call on the bench machine. A pool hands a
connection to one caller at a time, so one cursor per connection serves every single
enqueue on it, one after another.

Only the Client's own enqueues, between its getconn and putconn, use the kept cursor
(they pass ``kept=True``). A connection a caller brings (``conn=``), even one checked out
of ``client.pool()``, is the caller's: its threads may share it and a cursor is not safe
to share, so its enqueues open a cursor of their own, as before.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg


class PoolConnection(psycopg.Connection[Any]):
    """A sync pool connection that keeps one cursor, so that a single enqueue does not
    pay for a new one."""

    _kept: psycopg.Cursor[Any] | None = None

    def kept_cursor(self) -> psycopg.Cursor[Any]:
        """The kept cursor, opened on first use. Nothing closes it but the connection's
        end, and the pool discards a connection that is closed or broken when it comes
        back (psycopg_pool's putconn) and makes a new object, which opens a new cursor:
        so no check of ``closed`` is needed here."""
        if self._kept is None:
            self._kept = self.cursor()
        return self._kept


class AsyncPoolConnection(psycopg.AsyncConnection[Any]):
    """``PoolConnection`` for the async pool."""

    _kept: psycopg.AsyncCursor[Any] | None = None

    def kept_cursor(self) -> psycopg.AsyncCursor[Any]:
        """As ``PoolConnection.kept_cursor``."""
        if self._kept is None:
            self._kept = self.cursor()
        return self._kept


def one_cursor(conn: psycopg.Connection[Any], kept: bool) -> contextlib.AbstractContextManager[Any]:
    """With ``kept`` (the Client's own checkout), the connection's kept cursor, left
    open; otherwise a cursor of its own, closed after."""
    if kept and isinstance(conn, PoolConnection):
        return contextlib.nullcontext(conn.kept_cursor())
    return conn.cursor()


def one_cursor_async(
    conn: psycopg.AsyncConnection[Any], kept: bool
) -> contextlib.AbstractAsyncContextManager[Any]:
    """``one_cursor`` for an ``AsyncConnection``."""
    if kept and isinstance(conn, AsyncPoolConnection):
        return contextlib.nullcontext(conn.kept_cursor())
    return conn.cursor()
