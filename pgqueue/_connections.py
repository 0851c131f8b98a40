"""The Client's pool connections: each keeps one cursor for single enqueues.

psycopg builds a new transformer (the per-cursor state that dumps parameters and loads
results) for every cursor it opens. A single enqueue that opened and closed one spent
about 15 us of CPU on it, ~5 % of the whole call on the bench machine. A pool hands a
connection to one caller at a time, so one cursor per connection serves every single
enqueue on it, one after another. A connection the caller brings (``conn=``) is not one
of these: its enqueues open their own cursor, as before.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg


class PoolConnection(psycopg.Connection[Any]):
    """A sync pool connection with its kept cursor."""

    _kept: psycopg.Cursor[Any] | None = None

    def kept_cursor(self) -> psycopg.Cursor[Any]:
        if self._kept is None or self._kept.closed:
            self._kept = self.cursor()
        return self._kept


class AsyncPoolConnection(psycopg.AsyncConnection[Any]):
    """An async pool connection with its kept cursor."""

    _kept: psycopg.AsyncCursor[Any] | None = None

    def kept_cursor(self) -> psycopg.AsyncCursor[Any]:
        if self._kept is None or self._kept.closed:
            self._kept = self.cursor()
        return self._kept


def one_cursor(conn: psycopg.Connection[Any]) -> contextlib.AbstractContextManager[Any]:
    """The connection's kept cursor (left open), or a cursor of its own (closed after)."""
    if isinstance(conn, PoolConnection):
        return contextlib.nullcontext(conn.kept_cursor())
    return conn.cursor()


def one_cursor_async(
    conn: psycopg.AsyncConnection[Any],
) -> contextlib.AbstractAsyncContextManager[Any]:
    """``one_cursor`` for an ``AsyncConnection``."""
    if isinstance(conn, AsyncPoolConnection):
        return contextlib.nullcontext(conn.kept_cursor())
    return conn.cursor()
