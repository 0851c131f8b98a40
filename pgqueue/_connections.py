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
own, as before, reading tuples whatever row factory the caller gave the connection
(``row_factory=dict_row``). The pool discards a connection that comes back closed or broken
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
from psycopg.rows import tuple_row

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
    _pgq_tz: bytes | None = None

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
        # Its timestamptz loader keeps the session's time zone from when it was made: a
        # caller's SET TimeZone (or DISCARD ALL) on this connection makes a new one.
        tz = self.pgconn.parameter_status(b"TimeZone")  # type: ignore[attr-defined]
        if self._pgq_tx is None or tz != self._pgq_tz:
            self._pgq_tx, self._pgq_tz = Transformer(self), tz  # type: ignore[arg-type]
        return self._pgq_tx


class PoolConnection(_Kept, psycopg.Connection[Any]):
    """A sync pool connection that keeps its single enqueues' state (``_Kept``)."""

    def kept_cursor(self) -> psycopg.Cursor[Any]:
        """The kept cursor, opened on first use and closed only with the connection."""
        if self._pgq_cursor is None:
            self._pgq_cursor = self.cursor(row_factory=tuple_row)
        return self._pgq_cursor  # type: ignore[no-any-return]


class AsyncPoolConnection(_Kept, psycopg.AsyncConnection[Any]):
    """``PoolConnection`` for the async pool."""

    def kept_cursor(self) -> psycopg.AsyncCursor[Any]:
        """As ``PoolConnection.kept_cursor``."""
        if self._pgq_cursor is None:
            self._pgq_cursor = self.cursor(row_factory=tuple_row)
        return self._pgq_cursor  # type: ignore[no-any-return]


def restore(conn: psycopg.Connection[Any]) -> None:
    """The sync pool's ``check``: a connection a caller handed back out of autocommit is
    put back in it before anyone gets it again. Every statement of the Client's (an
    enqueue's INSERT among them) relies on autocommit to commit; without it the INSERT
    would open a transaction that the pool rolls back at putconn, after the enqueue had
    returned the job.

    ``check`` runs inline in getconn, an attribute test. Not ``reset``: a pool with a
    reset hands every returned connection to its worker thread, which cost each enqueue
    ~100 us more CPU and ~120 us more wall time (tests/bench/client_cost.py)."""
    if not conn.closed and not conn.autocommit:
        conn.autocommit = True


async def restore_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """``restore`` for the async pool."""
    if not conn.closed and not conn.autocommit:
        await conn.set_autocommit(True)


def _needs_prepare(conn: PoolConnection | AsyncPoolConnection, text: bytes) -> bool:
    """Whether ``text`` must be prepared first: not yet on this connection, unless the
    caller turned psycopg's preparing off (``prepare_threshold=None``, as for PgBouncer)."""
    return conn.prepare_threshold is not None and conn._statement(text) is None


def _prepare(
    conn: PoolConnection | AsyncPoolConnection, text: bytes
) -> Generator[Any, Any, pq.abc.PGresult]:
    """PREPARE ``text`` under a new name, remembered once the server has it. I/O-free:
    ``Connection.wait`` drives it, sync or async. Its own wait, apart from the INSERT's:
    a Ctrl-C (or a cancelled task) during it must not go on to insert the job."""
    name = conn._new_name()
    conn.pgconn.send_prepare(name, text)
    res = (yield from execute(conn.pgconn))[-1]
    if res.status == pq.ExecStatus.COMMAND_OK:
        conn._remember(text, name)
    return res


def _send(
    conn: PoolConnection | AsyncPoolConnection, text: bytes, params: list[bytes]
) -> Generator[Any, Any, pq.abc.PGresult]:
    """Run ``text``: by its prepared name, or unnamed where preparing is off."""
    name = conn._statement(text)
    if name is None:
        conn.pgconn.send_query_params(text, params)
    else:
        conn.pgconn.send_query_prepared(name, params)
    return (yield from execute(conn.pgconn))[-1]


def _stale(conn: PoolConnection | AsyncPoolConnection, text: bytes, res: pq.abc.PGresult) -> bool:
    """Whether the statement's name was gone (a caller ran DEALLOCATE or DISCARD ALL on
    this connection): forgotten, to be prepared again once."""
    if res.error_field(pq.DiagnosticField.SQLSTATE) != _UNDEFINED_STATEMENT:
        return False
    conn._forget(text)
    return True


def _row(conn: PoolConnection | AsyncPoolConnection, res: pq.abc.PGresult) -> tuple[Any, ...]:
    if res.status != pq.ExecStatus.TUPLES_OK:
        raise error_from_result(res, encoding=conn.info.encoding)
    tx = conn._transformer()
    tx.set_pgresult(res)
    return tx.load_row(0, tuple)


def _direct(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
    kept: bool,
    params: Sequence[Any] | dict[str, Any],
) -> bool:
    """Whether the statement may skip the cursor: the Client's own checkout, text
    parameters by position, and a connection in autocommit with no transaction open (a
    caller may hand a pool connection back changed; psycopg's transaction handling is
    the cursor's)."""
    return (
        kept
        and isinstance(params, tuple)
        and all(type(p) is str for p in params)
        and conn.autocommit
        and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
    )


def _encoded(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], params: Any
) -> list[bytes]:
    # As psycopg's str dumper: UTF-8 on a SQL_ASCII connection.
    enc = conn.info.encoding
    if enc == "ascii":
        enc = "utf-8"
    return [p.encode(enc) for p in params]


def fetch_one(
    conn: psycopg.Connection[Any],
    kept: bool,
    query: str,
    params: Sequence[Any] | dict[str, Any],
) -> Any:
    """The one row ``query`` returns. With ``kept`` (the Client's own checkout), a
    statement of text parameters by position runs straight on libpq and any other on
    the kept cursor; without it, on a cursor of its own, closed after."""
    if isinstance(conn, PoolConnection) and _direct(conn, kept, params):
        text, sent = numbered(query), _encoded(conn, params)
        with conn.lock:
            for _ in range(2):
                if _needs_prepare(conn, text):
                    res = conn.wait(_prepare(conn, text))
                    if res.status != pq.ExecStatus.COMMAND_OK:
                        break
                res = conn.wait(_send(conn, text, sent))
                if not _stale(conn, text, res):
                    break
        return _row(conn, res)
    cm = (
        contextlib.nullcontext(conn.kept_cursor())
        if kept and isinstance(conn, PoolConnection)
        else conn.cursor(row_factory=tuple_row)
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
    if isinstance(conn, AsyncPoolConnection) and _direct(conn, kept, params):
        text, sent = numbered(query), _encoded(conn, params)
        async with conn.lock:
            for _ in range(2):  # as in fetch_one
                if _needs_prepare(conn, text):
                    res = await conn.wait(_prepare(conn, text))
                    if res.status != pq.ExecStatus.COMMAND_OK:
                        break
                res = await conn.wait(_send(conn, text, sent))
                if not _stale(conn, text, res):
                    break
        return _row(conn, res)
    cm = (
        contextlib.nullcontext(conn.kept_cursor())
        if kept and isinstance(conn, AsyncPoolConnection)
        else conn.cursor(row_factory=tuple_row)
    )
    async with cm as cur:
        await cur.execute(query, params)
        return await cur.fetchone()
