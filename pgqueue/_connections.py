"""The Client's pool connections: one statement straight on libpq, one kept cursor.

A single enqueue is one short statement, and on the bench machine psycopg's cursor layer
(converting the query, dumping the parameters, the prepared-statement bookkeeping, the
result's description) cost a fifth to a quarter of the client's CPU for it (measured on
the slow instance of 2026-11-29; tests/bench/client_cost.py). The commonest
enqueue (``insert_job_plain``: text parameters, by position) therefore skips the cursor
on a connection of the Client's own pool: ``fetch_one`` prepares the statement once per
connection under a name of its own, sends it with libpq's ``PQsendQueryPrepared``, and
waits with psycopg's own generator and ``Connection.wait`` (so Ctrl-C still cancels the
query in the server, as a cursor's execute does). Its row is loaded by one kept
``Transformer``, in the connection's time zone, exactly as a cursor loads it.

Other statements (named parameters of other types) use a cursor: the connection's kept
cursor, as psycopg builds a transformer for every cursor it opens (about 15 us a call).

Only the Client's own enqueues, between its getconn and putconn, take either shortcut
(they pass ``kept=True``). A connection a caller brings (``conn=``), even one checked out
of ``client.pool()``, is the caller's: its threads may share it, it may be in a pipeline
or a transaction whose statements psycopg tracks, so its enqueues open a cursor of their
own, as before. The pool discards a connection that comes back closed or broken
(psycopg_pool's putconn) and makes a new object, so the kept state never outlives the
session it was made for.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Generator, Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import Transformer
from psycopg.errors import error_from_result
from psycopg.generators import execute

_UNDEFINED_STATEMENT = b"26000"  # invalid_sql_statement_name: DEALLOCATE / DISCARD ALL ran


@functools.cache
def numbered(query: str) -> bytes:
    """``query``'s ``%s`` placeholders as libpq's ``$1 .. $n``.

    Only for statements that take every parameter by position and hold no other ``%``
    (a ``%%`` or ``%(name)s`` would need psycopg's full query conversion)."""
    parts = query.split("%s")
    if any("%" in part for part in parts):
        raise ValueError("numbered() takes only %s placeholders")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], 1):
        out.append(f"${i}{part}")
    return "".join(out).encode()


class _Kept:
    """What a pool connection keeps between single enqueues: its cursor, the names of
    the statements it prepared, the transformer that loads their rows."""

    _pgq_cursor: Any = None
    _pgq_names: dict[bytes, bytes] | None = None
    _pgq_serial = 0
    _pgq_tx: Transformer | None = None

    def _statement(self, text: bytes) -> bytes | None:
        return None if self._pgq_names is None else self._pgq_names.get(text)

    def _new_name(self) -> bytes:
        # Never reused: a PREPARE interrupted after the server ran it leaves its name
        # taken there, unknown here.
        self._pgq_serial += 1
        return b"pgqueue_%d" % self._pgq_serial

    def _remember(self, text: bytes, name: bytes) -> None:
        if self._pgq_names is None:
            self._pgq_names = {}
        self._pgq_names[text] = name

    def _forget(self, text: bytes) -> None:
        if self._pgq_names is not None:
            self._pgq_names.pop(text, None)

    def _transformer(self) -> Transformer:
        if self._pgq_tx is None:
            self._pgq_tx = Transformer(self)  # type: ignore[arg-type]
        return self._pgq_tx


class PoolConnection(_Kept, psycopg.Connection[Any]):
    """A sync pool connection that keeps its single enqueues' state (``_Kept``)."""

    def kept_cursor(self) -> psycopg.Cursor[Any]:
        """The kept cursor, opened on first use and closed only with the connection."""
        if self._pgq_cursor is None:
            self._pgq_cursor = self.cursor()
        return self._pgq_cursor  # type: ignore[no-any-return]


class AsyncPoolConnection(_Kept, psycopg.AsyncConnection[Any]):
    """``PoolConnection`` for the async pool."""

    def kept_cursor(self) -> psycopg.AsyncCursor[Any]:
        """As ``PoolConnection.kept_cursor``."""
        if self._pgq_cursor is None:
            self._pgq_cursor = self.cursor()
        return self._pgq_cursor  # type: ignore[no-any-return]


def _run(
    conn: PoolConnection | AsyncPoolConnection, text: bytes, params: list[bytes], retry: bool
) -> Generator[Any, Any, pq.abc.PGresult]:
    """Send ``text`` (prepared once per connection, unless the caller turned psycopg's
    preparing off with ``prepare_threshold=None``, as for PgBouncer) and return its last
    result. I/O-free: ``Connection.wait`` drives it, sync or async."""
    pgconn = conn.pgconn
    if conn.prepare_threshold is None:
        pgconn.send_query_params(text, params)
        return (yield from execute(pgconn))[-1]
    name = conn._statement(text)
    if name is None:
        name = conn._new_name()
        pgconn.send_prepare(name, text)
        done = (yield from execute(pgconn))[-1]
        if done.status != pq.ExecStatus.COMMAND_OK:
            return done
        conn._remember(text, name)
    pgconn.send_query_prepared(name, params)
    res = (yield from execute(pgconn))[-1]
    if retry and res.error_field(pq.DiagnosticField.SQLSTATE) == _UNDEFINED_STATEMENT:
        # Someone ran DEALLOCATE or DISCARD ALL on this connection: prepare it again.
        conn._forget(text)
        return (yield from _run(conn, text, params, False))
    return res


def _row(conn: PoolConnection | AsyncPoolConnection, res: pq.abc.PGresult) -> tuple[Any, ...]:
    if res.status != pq.ExecStatus.TUPLES_OK:
        raise error_from_result(res, encoding=conn.info.encoding)
    tx = conn._transformer()
    tx.set_pgresult(res)
    return tx.load_row(0, tuple)


def _direct(kept: bool, params: Sequence[Any] | dict[str, Any]) -> bool:
    return kept and isinstance(params, tuple) and all(type(p) is str for p in params)


def fetch_one(
    conn: psycopg.Connection[Any],
    kept: bool,
    query: str,
    params: Sequence[Any] | dict[str, Any],
) -> Any:
    """The one row ``query`` returns. With ``kept`` (the Client's own checkout), a
    statement of text parameters by position runs straight on libpq and any other on
    the kept cursor; without it, on a cursor of its own, closed after."""
    if isinstance(conn, PoolConnection) and _direct(kept, params):
        enc = conn.info.encoding
        sent = [p.encode(enc) for p in params]
        with conn.lock:
            res = conn.wait(_run(conn, numbered(query), sent, True))
        return _row(conn, res)
    cm = (
        contextlib.nullcontext(conn.kept_cursor())
        if kept and isinstance(conn, PoolConnection)
        else conn.cursor()
    )
    with cm as cur:
        cur.execute(query, params)
        return cur.fetchone()


async def fetch_one_async(
    conn: psycopg.AsyncConnection[Any],
    kept: bool,
    query: str,
    params: Sequence[Any] | dict[str, Any],
) -> Any:
    """``fetch_one`` for an ``AsyncConnection``."""
    if isinstance(conn, AsyncPoolConnection) and _direct(kept, params):
        enc = conn.info.encoding
        sent = [p.encode(enc) for p in params]
        async with conn.lock:
            res = await conn.wait(_run(conn, numbered(query), sent, True))
        return _row(conn, res)
    cm = (
        contextlib.nullcontext(conn.kept_cursor())
        if kept and isinstance(conn, AsyncPoolConnection)
        else conn.cursor()
    )
    async with cm as cur:
        await cur.execute(query, params)
        return await cur.fetchone()
