"""The database boundary: every statement pgqueue runs goes through this module.

Queries come from ``pgqueue.sql``; this module binds parameters and turns rows into
``Job`` values. ``Engine`` serves the asyncio runtime from a pool of autocommit
connections (one statement, one round trip). Enqueue runs on a caller's connection,
sync or async, through ``insert_jobs`` / ``insert_jobs_async``: one parameter builder,
one result reader, and a two-line execute for each kind of connection. Every cursor
opened there reads tuples (``tuple_row``): a caller's connection may have been given
another row factory, and an error reading the row of an INSERT that already ran would
make the caller retry it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import Loader
from psycopg.rows import RowMaker, tuple_row
from psycopg_pool import AsyncConnectionPool

from ._connections import fetch_one, fetch_one_async
from ._errors import ConfigError
from ._job import Job, JobSpec, collector_paused
from ._outcomes import Transition, unreadable
from ._unique import period_ms, states_literal, unique_key
from .sql import Queries, queries

_JOB_ORDER = tuple(f.name for f in fields(Job))
_JOB_FIELDS = frozenset(_JOB_ORDER) - {"meta_updates", "_cancel"}
# What reading a row PostgreSQL holds can raise in Python: a value out of Python's range
# (psycopg's DataError: a '-infinity' or BC timestamp), text that is not UTF-8 (a
# SQL_ASCII database), JSON nested past the parser's depth. Nothing else (a TypeError
# would be pgqueue's own bug) makes a claimed job be discarded.
UNREADABLE = (psycopg.DataError, ValueError, RecursionError, OverflowError)
# Where a claimed row (claim_columns: Job's first fields, in order) holds these two.
_ID_ATTEMPT = (_JOB_ORDER.index("id"), _JOB_ORDER.index("attempt"))
log = logging.getLogger("pgqueue.engine")
# How often an enqueue asks again for a unique job that a concurrent transaction
# committed after this one's snapshot (it is then visible to the next statement).
_CONFLICT_ROUNDS = 5


def channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema's jobs, which every insert statement notifies."""
    return f"{schema}.pgqueue_jobs"


def job_row(cursor: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> RowMaker[Job]:
    """A psycopg row factory building ``Job`` from whatever job columns a query returns."""
    return _row_maker(cursor.description or ())


def _positional(values: Sequence[Any]) -> Job:
    return Job(*values)


def claimed_row(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[Job]:
    """fetch_jobs' row factory. Its columns (claim_columns) are Job's first fields in
    order, which a unit test checks, so the result's description is not read: building
    it cost 20 us a claim, more than the rest of ``job_row``."""
    return _positional


# ---- enqueue ---------------------------------------------------------------------------


# The batch document's encoder (C speed; args were checked when their spec was built).
_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _tags_literal(tags: Sequence[str]) -> str:
    quoted = ('"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' for t in tags)
    return "{" + ",".join(quoted) + "}"


def insert_params(q: Queries, specs: Sequence[JobSpec]) -> tuple[dict[str, str], list[str | None]]:
    """The parameters of ``insert_jobs`` for ``specs`` (the ``rows`` document, the
    channel, the table whose id sequence it draws from), and each spec's unique key."""
    rows: list[list[Any]] = []
    keys: list[str | None] = []
    for s in specs:
        at = None if s.scheduled_at is None else s.scheduled_at.isoformat()
        tags = _tags_literal(s.tags) if s.tags else "{}"
        if s.unique is None:
            keys.append(None)
            rows.append([s.worker, s.queue, s.args, s.meta, tags, s.priority, s.max_attempts,
                         at, s.schedule_in, None, None, None])  # fmt: skip
        else:
            key = unique_key(s.unique, worker=s.worker, queue=s.queue, args=s.args)
            keys.append(key)
            rows.append([s.worker, s.queue, s.args, s.meta, tags, s.priority, s.max_attempts,
                         at, s.schedule_in, key, states_literal(s.unique.states),
                         period_ms(s.unique)])  # fmt: skip
    params = {"rows": _ENCODE(rows), "channel": channel(q.schema), "table": q.table("pgqueue_jobs")}
    return params, keys


def plain_params(q: Queries, specs: Sequence[JobSpec]) -> dict[str, Any]:
    """The parameters of ``insert_jobs_plain``: a batch in which no job is unique.

    The document is joined from the JSON each spec already holds (args and meta were
    encoded when it was built) and pieces shared by every job of a worker and queue, so
    a bulk enqueue encodes each value once.
    """
    heads: dict[tuple[str, str], str] = {}
    parts: list[str] = []
    timed = False
    for s in specs:
        head = heads.get((s.worker, s.queue))
        if head is None:
            head = heads[(s.worker, s.queue)] = _ENCODE([s.worker, s.queue])[:-1]
        if s.scheduled_at is None and s.schedule_in is None and not s.tags:
            tail = f'"{{}}",{s.priority},{s.max_attempts},null,null]'
        else:
            timed = timed or s.scheduled_at is not None or s.schedule_in is not None
            at = None if s.scheduled_at is None else s.scheduled_at.isoformat()
            tags = _tags_literal(s.tags) if s.tags else "{}"
            tail = _ENCODE([tags, s.priority, s.max_attempts, at, s.schedule_in])[1:]
        parts.append(f"{head},{s.args_json},{s.meta_json},{tail}")
    return {"rows": "[" + ",".join(parts) + "]", "timed": timed, "channel": channel(q.schema)}


# A batch of at least this many jobs, none unique, goes through COPY: five round trips
# (begin, reserve, copy, notify, commit) instead of one, which the one-statement insert
# wins below about 350 jobs; from there COPY's cheaper rows win (jobs/s, statement against
# COPY, on one connection: 200 jobs 134,000 / 122,000; 500: 157,000 / 165,000; 1,000:
# 151,000 / 174,000; 5,000: 153,000 / 227,000).
COPY_FROM = 500


def _by_copy(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], specs: Sequence[JobSpec]
) -> bool:
    """Whether a batch of ``COPY_FROM`` or more jobs takes COPY in ``insert_jobs``: none
    unique, on a connection not in pipeline mode (a caller's ``with conn.pipeline():``),
    where libpq refuses COPY; the statement path works there. (copy_jobs explains an id
    clash itself.)"""
    return conn.pgconn.pipeline_status == pq.PipelineStatus.OFF and all(
        s.unique is None for s in specs
    )


def _reserve_params(q: Queries, count: int) -> dict[str, Any]:
    return {"table": q.table("pgqueue_jobs"), "count": count}


def _due_now(spec: JobSpec) -> bool:
    return spec.scheduled_at is None and spec.schedule_in is None


def _defaults(s: JobSpec) -> bool:
    """The spec's meta, tags, priority and max_attempts are the table's column defaults,
    so a statement may leave those columns out."""
    return (
        type(s.priority) is int and type(s.max_attempts) is int
        and s.priority == 0 and s.max_attempts == 20 and not s.tags and s.meta_json == "{}"
    )  # fmt: skip


def copy_form(specs: Iterable[JobSpec]) -> str:
    """Which COPY a batch needs: ``plain`` (copy_jobs_plain) when every job is due now
    with the column defaults' meta, tags, priority and max_attempts, ``now``
    (copy_jobs_now) when every job is due now, else ``timed`` (copy_jobs)."""
    plain = True
    for s in specs:
        if not _due_now(s):
            return "timed"
        if plain and not _defaults(s):
            plain = False
    return "plain" if plain else "now"


def _copy_query(q: Queries, form: str) -> str:
    return {"plain": q.copy_jobs_plain, "now": q.copy_jobs_now, "timed": q.copy_jobs}[form]


def _dues(specs: Sequence[JobSpec], now: datetime) -> list[datetime]:
    """Each job's due time from the database's now(), as insert_jobs_plain computes it.

    Elapsed time, as now() + interval adds it: arithmetic on the session's time zone would
    add wall-clock time and move jobs by an hour across a DST change."""
    utc = now.astimezone(UTC)
    return [
        s.scheduled_at or (utc + timedelta(seconds=s.schedule_in or 0)).astimezone(now.tzinfo)
        for s in specs
    ]


# Rows per write: big enough that a write costs little, small enough that the server
# starts on the first rows while the rest are formatted (or, from Worker.enqueue_many,
# still being built).
COPY_CHUNK = 4096


def _copy_field(value: str) -> str:
    """``value`` as a field of COPY's text format (backslash, tab, newline, CR escaped).

    Tab, newline and CR are not printable, so the common field is checked in two quick
    scans; whatever else is unprintable passes through the replacements unchanged."""
    if value.isprintable() and "\\" not in value:
        return value
    return (value.replace("\\", "\\\\").replace("\t", "\\t")
            .replace("\n", "\\n").replace("\r", "\\r"))  # fmt: skip


class CopyRows:
    """The rows of one COPY of ``count`` jobs, formatted a chunk of specs at a time.

    Given reserve_job_ids' row (now() and the ids), each job's id, state and due time are
    decided here exactly as insert_jobs_plain decides them in SQL. The data is COPY's text
    format, written by hand: psycopg's per-value row formatting cost twice the server's
    whole COPY. ``form`` is ``copy_form``'s for the batch, which the caller guarantees:
    ``now`` leaves state and scheduled_at to their defaults (sparing the server a fifth
    of its time), ``plain`` meta, tags, priority and max_attempts as well. ``encoding`` is
    the connection's: the server reads COPY data in the session's client_encoding.
    """

    def __init__(self, count: int, reserved: Sequence[Any] | None, form: str, encoding: str):
        now, ids = reserved if reserved is not None else (None, None)
        if now is None or ids is None or len(ids) != count:
            raise RuntimeError("reserve_job_ids did not return one id per job")
        self.now = now
        self.ids = sorted(ids)  # nextval hands them out ascending; make input order certain
        self.specs: list[JobSpec] = []
        self.dues: list[datetime] | None = [] if form == "timed" else None
        self.plain = form == "plain"
        self._encoding = encoding
        self._names: dict[str, str] = {}  # worker and queue names repeat: escape each once

    def _name(self, value: str) -> str:
        escaped = self._names.get(value)
        if escaped is None:
            escaped = self._names[value] = _copy_field(value)
        return escaped

    def chunk(self, specs: Sequence[JobSpec]) -> bytes:
        """The rows of the next ``specs``, in the columns of the batch's form."""
        offset, now, ids, name = len(self.specs), self.now, self.ids, self._name
        if offset + len(specs) > len(ids):
            raise RuntimeError("more jobs than ids reserved for them")
        if self.plain:
            lines = [
                f"{ids[offset + i]}\t{name(s.queue)}\t{name(s.worker)}\t"
                f"{_copy_field(s.args_json)}\n"
                for i, s in enumerate(specs)
            ]
            self.specs.extend(specs)
            return "".join(lines).encode(self._encoding)
        dues = None if self.dues is None else _dues(specs, now)
        lines = []
        for i, s in enumerate(specs):
            if type(s.priority) is not int or type(s.max_attempts) is not int:
                # Built around the checks (dataclasses.replace): refuse, as the
                # statement path does, rather than write True as 1.
                raise ConfigError(
                    f"priority and max_attempts must be integers, got {s.priority!r} "
                    f"and {s.max_attempts!r}"
                )
            tags = _copy_field(_tags_literal(s.tags)) if s.tags else "{}"
            state, tail = ("", "\n") if dues is None else (
                "scheduled\t" if dues[i] > now else "available\t", f"\t{dues[i].isoformat()}\n"
            )  # fmt: skip
            lines.append(
                f"{ids[offset + i]}\t{state}{name(s.queue)}\t{name(s.worker)}\t"
                f"{_copy_field(s.args_json)}\t{_copy_field(s.meta_json)}\t{tags}\t"
                f"{s.priority:d}\t{s.max_attempts:d}{tail}"
            )
        self.specs.extend(specs)
        if dues is not None:
            self.dues.extend(dues)  # type: ignore[union-attr]
        return "".join(lines).encode(self._encoding)

    def jobs(self) -> list[Job]:
        """The inserted jobs, once every reserved id has its row."""
        if len(self.specs) != len(self.ids):
            raise RuntimeError(f"{len(self.specs)} jobs written for {len(self.ids)} ids")
        return plain_jobs(self.specs, (self.now, self.ids, self.dues))


def _chunks(specs: Sequence[JobSpec]) -> Iterator[Sequence[JobSpec]]:
    return (specs[i : i + COPY_CHUNK] for i in range(0, len(specs), COPY_CHUNK))


def copy_jobs(
    conn: psycopg.Connection[Any],
    q: Queries,
    count: int,
    chunks: Iterable[Sequence[JobSpec]],
    form: str,
) -> list[Job]:
    """Insert ``count`` jobs, none unique, arriving as ``chunks`` of specs, with COPY
    (``form``: ``copy_form``'s for them).

    Ids are reserved first; each chunk is sent as soon as it exists, so the server
    inserts one chunk while the next is built. One statement, all or nothing: an error
    while building a chunk ends the COPY and inserts none of it. In one transaction (the
    caller's, or one of its own), so inserted_at is the reserved now()."""
    own = conn.transaction() if conn.autocommit else contextlib.nullcontext()
    try:
        with own, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(q.reserve_job_ids, _reserve_params(q, count))
            rows = CopyRows(count, cur.fetchone(), form, conn.info.encoding)
            with cur.copy(_copy_query(q, form)) as copy:
                for chunk in chunks:
                    copy.write(rows.chunk(chunk))
                # Built while the server still works through the rows sent.
                jobs = rows.jobs()
            if (wake := _wake_params(q, jobs)) is not None:
                cur.execute(q.notify_queues, wake)
    except psycopg.errors.UniqueViolation as exc:
        _explain_id_clash(exc, q)
        raise
    return jobs


async def copy_jobs_async(
    conn: psycopg.AsyncConnection[Any],
    q: Queries,
    count: int,
    chunks: Iterable[Sequence[JobSpec]],
    form: str,
) -> list[Job]:
    """``copy_jobs`` for an ``AsyncConnection``."""
    own = conn.transaction() if conn.autocommit else contextlib.nullcontext()
    try:
        async with own, conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(q.reserve_job_ids, _reserve_params(q, count))
            rows = CopyRows(count, await cur.fetchone(), form, conn.info.encoding)
            async with cur.copy(_copy_query(q, form)) as copy:
                for chunk in chunks:
                    await copy.write(rows.chunk(chunk))
                jobs = rows.jobs()
            if (wake := _wake_params(q, jobs)) is not None:
                await cur.execute(q.notify_queues, wake)
    except psycopg.errors.UniqueViolation as exc:
        _explain_id_clash(exc, q)
        raise
    return jobs


def _wake_params(q: Queries, jobs: Sequence[Job]) -> dict[str, Any] | None:
    """notify_queues' parameters for the queues a COPY gave available jobs (None: none)."""
    queues = sorted({j.queue for j in jobs if j.state == "available"})
    return {"channel": channel(q.schema), "queues": queues} if queues else None


def plain_jobs(specs: Sequence[JobSpec], row: Sequence[Any] | None) -> list[Job]:
    """The jobs ``insert_jobs_plain`` made: its one row holds now(), the ids in input
    order, and (for a batch with scheduled jobs) their scheduled times."""
    if row is None or row[1] is None or len(row[1]) != len(specs):
        raise RuntimeError("insert_jobs_plain did not return one id per job")
    now, ids, times = row[0], row[1], row[2]
    jobs = []
    with collector_paused():
        for i, spec in enumerate(specs):
            due = now if times is None else times[i]
            state = "scheduled" if due > now else "available"
            jobs.append(_inserted_job(spec, (False, ids[i], state, now, due)))
    return jobs


# Column positions in insert_jobs' rows: conflict, id, state, inserted_at, scheduled_at,
# unique_key, then the rest of an existing row (NULL for inserted ones).
_KEY = 5
_EXISTING = (
    "id", "state", "inserted_at", "scheduled_at", "unique_key", "queue", "worker", "args",
    "meta", "tags", "errors", "attempt", "max_attempts", "priority", "attempted_at",
    "completed_at", "discarded_at", "cancelled_at", "attempted_by",
)  # fmt: skip


def _inserted_job(spec: JobSpec, row: Sequence[Any]) -> Job:
    """The job a spec became: the database adds its id, state and times."""
    # Positional, in Job's field order (id .. scheduled_at): bulk enqueues build 100,000s.
    return Job(
        row[1], spec.worker, spec.queue, spec.args, row[2], dict(spec.meta), list(spec.tags),
        [], 0, spec.max_attempts, spec.priority, row[3], row[4],
    )  # fmt: skip


def _existing_job(row: Sequence[Any]) -> Job:
    fields = dict(zip(_EXISTING, row[1:], strict=True))
    del fields["unique_key"]
    return Job(**fields, conflict=True)


def _assign(
    specs: Sequence[JobSpec], keys: Sequence[str | None], rows: Sequence[tuple[Any, ...]]
) -> list[Job | None]:
    """Match the statement's rows to the specs, in input order.

    Inserted rows come first: the jobs that are not unique in input order, then the
    unique ones in key order (insert_jobs takes keys in one order, against deadlocks,
    though it drew their ids in input order), each key at most once, as its first spec;
    rows that already existed follow, flagged conflict. A unique spec that inserted
    nothing gets the existing row, or the row an earlier spec of the same batch
    inserted; None if neither is visible yet (a concurrent commit), which the caller
    asks for again. A row count that does not match the specs raises: a job given
    another's row would be worse than no job.
    """
    plain = iter([r for r in rows if not r[0] and r[_KEY] is None])
    fresh = {r[_KEY]: r for r in rows if not r[0] and r[_KEY] is not None}
    existing = {r[_KEY]: r for r in rows if r[0]}
    claimed: dict[str, Job] = {}
    out: list[Job | None] = []
    for spec, key in zip(specs, keys, strict=True):
        if key is None:
            row = next(plain, None)
            if row is None:
                raise RuntimeError("insert_jobs returned fewer rows than it inserted")
            out.append(_inserted_job(spec, row))
        elif key in claimed:
            out.append(replace(claimed[key], meta=dict(claimed[key].meta), conflict=True))
        elif key in fresh:
            out.append(claimed.setdefault(key, _inserted_job(spec, fresh[key])))
        else:
            out.append(_existing_job(existing[key]) if key in existing else None)
    if next(plain, None) is not None or not fresh.keys() <= claimed.keys():
        raise RuntimeError("insert_jobs returned rows that match none of its jobs")
    return out


def _row_maker(description: Any) -> Callable[[Sequence[Any]], Job]:
    names = tuple(c.name for c in description)
    if names and names == _JOB_ORDER[: len(names)]:
        # Columns in Job's own order (the claim's): positional, 0.4 us a row against
        # 2.4 for the keyword form.
        return _positional
    keep = [(i, n) for i, n in enumerate(names) if n in _JOB_FIELDS]
    return lambda values: Job(**{n: values[i] for i, n in keep})


def _single(q: Queries, spec: JobSpec) -> tuple[str, Sequence[Any] | dict[str, Any]]:
    """The statement and parameters for one job that is not unique.

    The commonest enqueue (``Worker.enqueue(args)``: due now, default options) sends
    three values and the channel by position (insert_job_plain); other jobs due now name
    every column (insert_job_now), scheduled ones add the time (insert_job).
    """
    due_now = _due_now(spec)
    if due_now and _defaults(spec):
        return q.insert_job_plain, (spec.queue, spec.worker, spec.args_json, channel(q.schema))
    params = {
        "channel": channel(q.schema),
        "queue": spec.queue, "worker": spec.worker, "args": spec.args_json, "meta": spec.meta_json,
        "tags": _tags_literal(spec.tags) if spec.tags else "{}", "priority": spec.priority,
        "max_attempts": spec.max_attempts,
    }  # fmt: skip
    if due_now:
        return q.insert_job_now, params
    params.update(at=spec.scheduled_at, delay=spec.schedule_in)
    return q.insert_job, params


def _single_job(spec: JobSpec, row: Sequence[Any] | None) -> Job:
    """The job of ``_single``'s row: (id, inserted_at) for a job due now, insert_job's
    fuller row for a scheduled one."""
    assert row is not None
    if _due_now(spec):
        return _inserted_job(spec, (False, row[0], "available", row[1], row[1]))
    return _inserted_job(spec, row)


def insert_jobs(
    conn: psycopg.Connection[Any], q: Queries, specs: Sequence[JobSpec], *, kept: bool = False
) -> list[Job]:
    """Insert ``specs`` on ``conn`` in one statement (more only for racing unique jobs).
    ``kept``: ``conn`` is the Client's own checkout, on which a single job may skip the
    cursor (see ``_connections``)."""
    if len(specs) >= COPY_FROM and _by_copy(conn, specs):
        return copy_jobs(conn, q, len(specs), _chunks(specs), copy_form(specs))
    try:
        if len(specs) == 1 and specs[0].unique is None:
            return [_single_job(specs[0], fetch_one(conn, kept, *_single(q, specs[0])))]
        if any(s.unique is not None for s in specs):
            return _insert_unique(conn, q, specs)
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(q.insert_jobs_plain, plain_params(q, specs))
            return plain_jobs(specs, cur.fetchone())
    except psycopg.errors.UniqueViolation as exc:
        _explain_id_clash(exc, q)
        raise


def _insert_unique(
    conn: psycopg.Connection[Any], q: Queries, specs: Sequence[JobSpec]
) -> list[Job]:
    """``insert_jobs`` for a batch with unique jobs: insert_jobs, asked again for the
    jobs whose existing row a concurrent commit hid from the statement's snapshot."""
    result: list[Job | None] = [None] * len(specs)
    todo = list(range(len(specs)))
    for _ in range(_CONFLICT_ROUNDS):
        batch = [specs[i] for i in todo]
        params, keys = insert_params(q, batch)
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(q.insert_jobs, params)
            rows = cur.fetchall()
        todo = _merge(result, todo, _assign(batch, keys, rows))
        if not todo:
            return result  # type: ignore[return-value]
    raise _unresolved(specs, todo)


async def insert_jobs_async(
    conn: psycopg.AsyncConnection[Any],
    q: Queries,
    specs: Sequence[JobSpec],
    *,
    kept: bool = False,
) -> list[Job]:
    """``insert_jobs`` for an ``AsyncConnection``."""
    if len(specs) >= COPY_FROM and _by_copy(conn, specs):
        return await copy_jobs_async(conn, q, len(specs), _chunks(specs), copy_form(specs))
    try:
        if len(specs) == 1 and specs[0].unique is None:
            row = await fetch_one_async(conn, kept, *_single(q, specs[0]))
            return [_single_job(specs[0], row)]
        if any(s.unique is not None for s in specs):
            return await _insert_unique_async(conn, q, specs)
        async with conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(q.insert_jobs_plain, plain_params(q, specs))
            return plain_jobs(specs, await cur.fetchone())
    except psycopg.errors.UniqueViolation as exc:
        _explain_id_clash(exc, q)
        raise


async def _insert_unique_async(
    conn: psycopg.AsyncConnection[Any], q: Queries, specs: Sequence[JobSpec]
) -> list[Job]:
    """``_insert_unique`` for an ``AsyncConnection``."""
    result: list[Job | None] = [None] * len(specs)
    todo = list(range(len(specs)))
    for _ in range(_CONFLICT_ROUNDS):
        batch = [specs[i] for i in todo]
        params, keys = insert_params(q, batch)
        async with conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(q.insert_jobs, params)
            rows = await cur.fetchall()
        todo = _merge(result, todo, _assign(batch, keys, rows))
        if not todo:
            return result  # type: ignore[return-value]
    raise _unresolved(specs, todo)


def _explain_id_clash(exc: psycopg.errors.UniqueViolation, q: Queries) -> None:
    """Add to a clash on the jobs' primary key what causes it and how to mend it.

    The identity handed out an id a row already has: rows were written with ids of
    their own (a data-only restore, a copy from another database) and the identity was
    left behind them. Every enqueue that draws such an id fails (the statement, whole)
    until the identity is moved past them; psycopg's message names only the key."""
    if exc.diag.constraint_name != "pgqueue_jobs_pkey":
        return
    table = q.table("pgqueue_jobs")
    exc.add_note(
        f"the id identity of {table} is behind ids already in the table (rows restored "
        "or copied with their ids?); move it past them: SELECT setval("
        f"pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
    )


def _merge(result: list[Job | None], todo: list[int], jobs: list[Job | None]) -> list[int]:
    left = []
    for index, job in zip(todo, jobs, strict=True):
        if job is None:
            left.append(index)
        else:
            result[index] = job
    return left


def _unresolved(specs: Sequence[JobSpec], todo: list[int]) -> RuntimeError:
    names = sorted({specs[i].worker for i in todo})
    return RuntimeError(
        f"{len(todo)} unique job(s) of {', '.join(names)} conflicted with a row that is not "
        "visible to this transaction (REPEATABLE READ or SERIALIZABLE?); retry the enqueue"
    )


# ---- the worker runtime ----------------------------------------------------------------


def _ack_params(transitions: Sequence[Transition]) -> dict[str, Any]:
    """ack_jobs' arrays. Ids and attempts go as array literals, and for a batch of
    plain completions (nearly every batch) the other five go as NULL: psycopg takes
    about 180 us to adapt seven 50-element lists, this about 10."""
    # In id order, like every other statement that locks several jobs: no deadlocks.
    ts = sorted(transitions, key=lambda t: t.id)
    params: dict[str, Any] = {
        "ids": _int_array(t.id for t in ts),
        "attempts": _int_array(t.attempt for t in ts),
        "states": None, "delays": None, "errors": None, "metas": None, "extra_attempts": None,
    }  # fmt: skip
    if any(not t.plain_completion for t in ts):
        params.update(
            states=[t.state for t in ts],
            delays=[t.delay for t in ts],
            errors=[None if t.error is None else json.dumps(t.error, default=str) for t in ts],
            metas=[None if t.meta is None else json.dumps(t.meta, default=str) for t in ts],
            extra_attempts=[t.extra_attempts for t in ts],
        )
    return params


_decode_json = json.JSONDecoder().decode
# PostgreSQL writes jsonb with no whitespace around the document, so its text goes
# straight to the decoder's C scanner: decode() would first match leading and trailing
# whitespace with two regular expressions (a fifth of the time of a small document).
_scan_json = json.JSONDecoder().scan_once


def _jsonb(text: Any) -> Any:
    """A jsonb document from its UTF-8 text (bytes or a memoryview, decoded in place)."""
    if text == b"{}":
        return {}
    if text == b"[]":
        return []
    return _parse(str(text, "utf-8"))


def _parse(doc: str) -> Any:
    """One JSON document, read by the scanner itself (json.loads first sniffs encodings)."""
    try:
        value, end = _scan_json(doc, 0)
    except StopIteration:
        end = -1
    if end != len(doc):  # not the bare document expected: the full parser says why
        return _decode_json(doc)
    return value


class _JsonbLoader(Loader):
    """jsonb for the worker's connections. A claimed row carries three documents, its
    meta and errors nearly always empty: those skip the parser, the rest is decoded from
    UTF-8 text directly (psycopg's loader goes through json.loads, which sniffs each
    value's encoding first)."""

    def load(self, data: Any) -> Any:
        return _jsonb(data)


class _JsonbBinaryLoader(_JsonbLoader):
    """The binary form (the claim's): a version byte, then the same text."""

    format = psycopg.pq.Format.BINARY

    def load(self, data: Any) -> Any:
        # The empty documents first, compared whole (version byte included): a slice of
        # the memoryview psycopg passes, and each comparison of one, cost more than the
        # decoding (3 documents a row: about 1 us less).
        if data == _EMPTY_OBJECT:
            return {}
        if data == _EMPTY_ARRAY:
            return []
        if data[:1] != b"\x01":
            raise psycopg.DataError("unknown jsonb binary format")
        return _parse(str(data[1:], "utf-8"))


_EMPTY_OBJECT = b"\x01{}"
_EMPTY_ARRAY = b"\x01[]"


def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("jsonb", _JsonbLoader)
    conn.adapters.register_loader("jsonb", _JsonbBinaryLoader)


_CLAIM_SETTINGS = (
    "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; "
    "SET enable_bitmapscan = off; SET enable_sort = off; SET enable_hashjoin = off; "
    "SET enable_mergejoin = off"
)


def _int(value: bytes | None) -> int:
    """An integer column of a binary result, read from its bytes (big-endian)."""
    assert value is not None
    return int.from_bytes(value, "big", signed=True)


def _int_array(values: Iterable[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


class Engine:
    """Job operations of a worker node over a pool of autocommit connections."""

    def __init__(self, pool: AsyncConnectionPool, schema: str) -> None:
        self.pool = pool
        self.schema = schema
        self.q = queries(schema)
        self.channel = channel(schema)

    async def applied_versions(self, conn: psycopg.AsyncConnection[Any]) -> list[int]:
        """Migration versions recorded in the schema (empty when never migrated)."""
        cur = await conn.execute(
            self.q.migrations_table_exists, {"table": self.q.table("pgqueue_migrations")}
        )
        row = await cur.fetchone()
        if not row or not row[0]:
            return []
        cur = await conn.execute(self.q.applied_migrations)
        return [r[0] for r in await cur.fetchall()]

    async def connect(self, application_name: str = "pgqueue") -> psycopg.AsyncConnection[Any]:
        """A connection of its own, for a loop that should not queue for the pool
        (with the pool's settings: keepalives, prepared statements or not)."""
        conn = await psycopg.AsyncConnection.connect(
            self.pool.conninfo, **{**self.pool.kwargs, "application_name": application_name}
        )
        _configure(conn)
        return conn

    async def fetch_jobs(
        self,
        queue: str,
        limit: int,
        node: str,
        acks: Sequence[Transition] = (),
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> list[Job]:
        """Complete ``acks`` (plain completions only) and claim up to ``limit`` jobs of
        ``queue``: one statement, one commit."""
        # One attempt per job, its latest: the statement finds an id's attempt by the id's
        # first position, and an older attempt of the same job (held through an outage,
        # then the job rescued and run again here) could only be refused anyway.
        latest: dict[int, int] = {}
        for t in acks:
            if not t.plain_completion:
                raise ValueError("fetch_jobs carries plain completions only; use ack_jobs")
            if latest.get(t.id, -1) < t.attempt:
                latest[t.id] = t.attempt
        # In id order, like every other statement that locks several jobs: no deadlocks.
        ids = sorted(latest)
        params = {
            "ids": _int_array(ids), "attempts": _int_array(latest[i] for i in ids),
            "queue": queue, "limit": limit, "node": node,
        }  # fmt: skip
        if conn is not None:
            jobs = await self._fetch(conn, params)
        else:
            async with self.pool.connection() as c:
                jobs = await self._fetch(c, params)
        # The claim wrote the node into each row; the row need not carry it back.
        for job in jobs:
            job.attempted_by = node
        return jobs

    async def _fetch(self, conn: psycopg.AsyncConnection[Any], params: dict[str, Any]) -> list[Job]:
        # Binary results, the jsonb loader above and a positional Job: a claimed row
        # becomes a Job in 4.8 us instead of 8.0 (worker CPU per job -10 % in W2).
        async with conn.cursor(row_factory=claimed_row, binary=True) as cur:
            await cur.execute(self.q.fetch_jobs, params)
            try:
                return await cur.fetchall()
            except UNREADABLE:  # the claim has committed: no row may be lost with it
                return await self._read_each(conn, cur)

    async def _read_each(
        self, conn: psycopg.AsyncConnection[Any], cur: psycopg.AsyncCursor[Job]
    ) -> list[Job]:
        """The claimed rows this client can read; the others discarded, saying why.

        Only a row written past pgqueue's checks gets here (by SQL or another language:
        a '-infinity' timestamp, JSON nested past the parser's depth). Failing the whole
        claim instead would leave every job of the batch executing in this node's name
        until the orphan check hands them back, to be claimed with the same row again.
        """
        result = cur.pgresult
        assert result is not None
        jobs: list[Job] = []
        bad: list[Transition] = []
        for row in range(result.ntuples):
            await cur.scroll(row, "absolute")
            try:
                job = await cur.fetchone()
            except UNREADABLE as exc:
                job_id, attempt = (_int(result.get_value(row, col)) for col in _ID_ATTEMPT)
                log.error("job %s cannot be read (%s): discarding it", job_id, exc)
                bad.append(unreadable(job_id, attempt, exc, datetime.now(UTC)))
            else:
                assert job is not None
                jobs.append(job)
        if bad:
            try:
                await conn.execute(self.q.ack_jobs, _ack_params(bad))
            except psycopg.Error as exc:
                # They stay executing in this node's name: the orphan check hands them
                # back, and the next claim of them tries again. The others run now.
                log.error("cannot discard %d unreadable job(s): %s", len(bad), exc)
        return jobs

    async def tune_claims(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Make ``conn``, a producer's own connection, plan its claims once.

        PostgreSQL re-plans a prepared claim on every run when it guesses a custom plan is
        cheaper (as it does on a large table), and planning it cost a quarter of the
        server's time per claim at concurrency 10. A generic plan is made once, but from
        the statistics of that moment: one made on an empty table would seq-scan the same
        table a million rows later. With the scans and joins that could go wrong switched
        off, fetch_jobs has a single plan whatever the statistics (index scans of the
        fetch index and the primary key), so the generic one is the right one. The
        settings are the session's: behind PgBouncer (no LISTEN, no prepared statements)
        they would leak to other clients, so they are left out there.
        """
        if self.pool.kwargs.get("prepare_threshold", 5) is None:
            return
        await conn.execute(_CLAIM_SETTINGS)

    async def ack_jobs(self, transitions: Sequence[Transition]) -> int:
        """Apply outcomes; returns how many rows were still theirs to change."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(self.q.ack_jobs, _ack_params(transitions))
            return cur.rowcount

    async def stage_jobs(self, limit: int = 5000) -> dict[str, int]:
        """Make due jobs available; returns jobs staged per queue (workers are notified)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(self.q.stage_jobs, {"limit": limit, "channel": self.channel})
            return {queue: count for queue, count, _ in await cur.fetchall()}

    async def handback_jobs(self, jobs: Sequence[Job]) -> list[str]:
        """Return unfinished jobs to ``available``; returns the queues to wake."""
        if not jobs:
            return []
        params = {"ids": [j.id for j in jobs], "attempts": [j.attempt for j in jobs]}
        async with self.pool.connection() as conn:
            cur = await conn.execute(self.q.handback_jobs, params)
            queues = sorted({queue for _, queue in await cur.fetchall()})
            if queues:
                await conn.execute(
                    self.q.notify_queues, {"channel": self.channel, "queues": queues}
                )
            return queues

    async def release_orphans(self, jobs: Sequence[Job], node: str) -> list[str]:
        """Return jobs claimed in ``node``'s name whose claim reply never arrived."""
        params = {"ids": [j.id for j in jobs], "attempts": [j.attempt for j in jobs], "node": node}
        async with self.pool.connection() as conn:
            cur = await conn.execute(self.q.release_orphans, params)
            queues = sorted({queue for _, queue in await cur.fetchall()})
            if queues:
                await conn.execute(
                    self.q.notify_queues, {"channel": self.channel, "queues": queues}
                )
            return queues
