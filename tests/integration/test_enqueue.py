"""Enqueue: the API of DESIGN §3, transactions, unique jobs, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

import pgqueue
from pgqueue import ConfigError
from pgqueue._connections import numbered
from pgqueue._engine import COPY_CHUNK, COPY_FROM, channel
from tests.helpers import job_row


class Resize(pgqueue.Worker):
    queue = "media"
    max_attempts = 7
    priority = 2

    def perform(self, job: pgqueue.Job) -> None:
        return None


class Once(pgqueue.Worker):
    unique = pgqueue.Unique(period=300, keys=["id"])

    def perform(self, job: pgqueue.Job) -> None:
        return None


def count(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM pgqueue_jobs").fetchone()[0]


def test_enqueue_inserts_with_class_defaults(client: pgqueue.Client, db, schema) -> None:
    job = Resize.enqueue({"path": "a.png"}, client=client, tags=["img"], meta={"by": "test"})
    assert (job.worker, job.queue, job.max_attempts, job.priority) == (Resize.name, "media", 7, 2)
    assert (job.state, job.attempt, job.conflict) == ("available", 0, False)
    row = job_row(db, schema, job.id)
    assert (
        row["args"] == {"path": "a.png"}
        and row["tags"] == ["img"]
        and row["meta"] == {"by": "test"}
    )


def test_options_override_and_schedule(client: pgqueue.Client, db) -> None:
    later = Resize.enqueue(
        {}, client=client, schedule_in=60, priority=0, queue="other", max_attempts=1
    )
    assert later.state == "scheduled" and later.queue == "other" and later.priority == 0
    assert later.scheduled_at - later.inserted_at >= timedelta(seconds=59)
    at = datetime.now(UTC) + timedelta(hours=1)
    assert Resize.enqueue({}, client=client, scheduled_at=at).scheduled_at == at
    past = Resize.enqueue({}, client=client, scheduled_at=datetime.now(UTC) - timedelta(hours=1))
    assert past.state == "available"


def test_enqueue_by_name_and_function_workers(client: pgqueue.Client) -> None:
    job = client.enqueue("some.other.Worker", {"x": 1}, queue="q")
    assert job.worker == "some.other.Worker" and job.queue == "q"


def test_enqueue_many_is_one_statement_in_order(
    client: pgqueue.Client, dsn: str, schema: str
) -> None:
    executed: list[str] = []

    class Counting(psycopg.Cursor):
        def execute(self, query, params=None, **kw):  # type: ignore[override]
            executed.append(str(query)[:30])
            return super().execute(query, params, **kw)

    specs = [Resize.new({"i": i}) for i in range(500)] + [Once.new({"id": 1}), Once.new({"id": 1})]
    with psycopg.connect(dsn, autocommit=True, cursor_factory=Counting) as conn:
        jobs = client.enqueue_many(specs, conn=conn)
    assert len(executed) == 1
    assert [j.args.get("i") for j in jobs[:500]] == list(range(500))
    assert [j.id for j in jobs[:500]] == sorted(j.id for j in jobs[:500])
    assert jobs[501].conflict and jobs[501].id == jobs[500].id and not jobs[500].conflict


@pytest.mark.parametrize("size", [300, COPY_FROM + 200], ids=["statement", "copy"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_batch_without_unique_jobs_returns_what_was_stored(
    client: pgqueue.Client, db, dsn: str, schema: str, mode: str, size: int
) -> None:
    # A batch with no unique job takes the one-row-back statement, or COPY when it is
    # large: every returned Job must still be exactly its row (id by input order, state,
    # times, tags, meta), whatever characters the values hold.
    at = datetime.now(UTC) + timedelta(hours=2)
    past = datetime.now(UTC) - timedelta(hours=2)
    specs = [Resize.new({"i": i}) for i in range(size)]
    specs[7] = Resize.new({"i": 7}, scheduled_at=at, tags=['a"b', "c\\d", "e,f", "t\tn\n"])
    specs[8] = Resize.new({"i": 8}, schedule_in=30.5, meta={"k": [1, "é"], "\\": "\r\n"})
    specs[9] = Resize.new({"i": 9}, scheduled_at=past, queue="q2", priority=9)
    specs[10] = pgqueue.JobSpec.build("by.name", {"i": 10}, max_attempts=3)
    specs[12] = pgqueue.JobSpec.build("odd\\name\twith\ttabs\n\r", {"i": 12}, tags=["x"])
    specs[11] = Resize.new({"i": 11, "s": 'tab\there\nline \\N \\ \u00e9 \u2603 "q"'})
    if mode == "sync":
        jobs = client.enqueue_many(specs)
    else:

        async def go() -> list[pgqueue.Job]:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                return await client.enqueue_many_async(specs, conn=conn)

        jobs = asyncio.run(go())
    assert [j.args["i"] for j in jobs] == list(range(size))
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    for job in jobs:
        row = job_row(db, schema, job.id)
        got = (job.worker, job.queue, job.args, job.state, job.meta, job.tags, job.priority,
               job.max_attempts, job.inserted_at, job.scheduled_at)  # fmt: skip
        want = tuple(row[k] for k in ("worker", "queue", "args", "state", "meta", "tags",
                                      "priority", "max_attempts", "inserted_at", "scheduled_at"))  # fmt: skip
        assert got == want, job.id
    assert jobs[7].state == "scheduled" and jobs[7].scheduled_at == at
    assert jobs[7].tags == ['a"b', "c\\d", "e,f", "t\tn\n"]
    assert jobs[11].args["s"] == 'tab\there\nline \\N \\ \u00e9 \u2603 "q"'
    assert jobs[12].worker == "odd\\name\twith\ttabs\n\r" and jobs[12].tags == ["x"]
    assert jobs[8].state == "scheduled" and jobs[9].state == "available"
    assert jobs[0].state == "available" and jobs[0].scheduled_at == jobs[0].inserted_at


def test_a_copy_batch_due_now_stores_every_character(client: pgqueue.Client, db, schema) -> None:
    # A batch of due jobs leaves state and scheduled_at to the defaults (copy_jobs_now);
    # its rows are written as COPY text by pgqueue, so every field that can hold a tab,
    # newline, CR or backslash must arrive exactly, and nothing may shift a column.
    odd = 'a\tb\nc\rd\\e \\N "q" \u00e9\u2603'
    specs = [Resize.new({"i": i}) for i in range(COPY_FROM)]
    specs[1] = Resize.new({"i": 1, odd: odd}, tags=[odd, "{x}"], meta={odd: [odd]})
    specs[2] = pgqueue.JobSpec.build(odd, {"i": 2}, queue="q.2-x_y", priority=9)
    jobs = client.enqueue_many(specs)
    assert [j.args["i"] for j in jobs] == list(range(COPY_FROM))
    for job in jobs[:4]:
        row = job_row(db, schema, job.id)
        assert (row["worker"], row["queue"], row["args"], row["meta"], row["tags"],
                row["priority"], row["state"]) == (
            job.worker, job.queue, job.args, job.meta, job.tags, job.priority, "available")  # fmt: skip
    assert jobs[1].tags == [odd, "{x}"] and jobs[1].meta == {odd: [odd]}
    assert jobs[2].worker == odd and jobs[2].queue == "q.2-x_y"
    assert count(db) == COPY_FROM


class Plain(pgqueue.Worker):
    # Every option at the column defaults but the queue: copy_jobs_plain's shape.
    queue = "plain"

    def perform(self, job: pgqueue.Job) -> None:
        return None


def _stored(db: psycopg.Connection) -> list[tuple]:
    return db.execute(
        "SELECT id, queue, worker, args, meta, tags, priority, max_attempts, state::text,"
        " scheduled_at = inserted_at FROM pgqueue_jobs ORDER BY id"
    ).fetchall()


@pytest.mark.parametrize("api", ["specs", "sync", "async"])
def test_a_plain_copy_batch_stores_the_column_defaults(client: pgqueue.Client, db, api) -> None:
    # Four columns a row; the rest are the table's defaults, which must be exactly what
    # a Worker with default options asks for (a changed default would show here).
    odd = 'a\tb\nc\\d \\N "q" \u00e9'
    args = [{"i": i, "s": odd} for i in range(COPY_CHUNK + 3)]
    if api == "specs":
        jobs = client.enqueue_many([Plain.new(a) for a in args])
    else:
        jobs = _enqueue_many(client, api, args, cls=Plain)
    worker = Plain.name
    assert _stored(db) == [
        (j.id, "plain", worker, a, {}, [], 0, 20, "available", True)
        for j, a in zip(jobs, args, strict=True)
    ]
    assert {(j.state, j.priority, j.max_attempts, j.meta == {}, j.tags == []) for j in jobs} == {
        ("available", 0, 20, True, True)
    }


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_plain_single_enqueue_stores_the_column_defaults(client: pgqueue.Client, db, api) -> None:
    # Worker.enqueue(args) sends three values (insert_job_plain); the row must be what
    # the options-naming statement (insert_job_now) stores for the same job, and what
    # the returned Job says.
    odd = {"s": 'a\tb "q" \u00e9 \\N', "n": [1, None]}

    def enqueue(**options) -> pgqueue.Job:
        if api == "sync":
            return Plain.enqueue(odd, client=client, **options)

        async def main() -> pgqueue.Job:
            try:
                return await Plain.enqueue_async(odd, client=client, **options)
            finally:
                await client.aclose()

        return asyncio.run(main())

    plain, named = enqueue(), enqueue(tags=["t"])
    rows = _stored(db)
    assert rows == [
        (plain.id, "plain", Plain.name, odd, {}, [], 0, 20, "available", True),
        (named.id, "plain", Plain.name, odd, {}, ["t"], 0, 20, "available", True),
    ]
    assert (plain.state, plain.args, plain.meta, plain.tags, plain.priority) == (
        "available", odd, {}, [], 0)  # fmt: skip
    stored = db.execute(
        "SELECT inserted_at, scheduled_at FROM pgqueue_jobs WHERE id = %s", (plain.id,)
    ).fetchone()
    assert (plain.inserted_at, plain.scheduled_at) == stored


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_refused_enqueue_gives_its_connection_back(dsn: str, schema: str, db, api) -> None:
    # One connection in the pool: an insert the database refuses (a spec built around
    # the checks, whose args jsonb cannot hold) must hand it back, usable, or the next
    # enqueue would wait out the pool's timeout.
    client = pgqueue.Client(dsn, schema=schema, max_size=1, connect_timeout=2)
    bad = dataclasses.replace(Plain.new({"s": 1}), args_json='{"s":"\\u0000"}')

    async def main() -> pgqueue.Job:
        try:
            for _ in range(3):
                with pytest.raises(psycopg.DataError):
                    await client.enqueue_many_async([bad])
            return await Plain.enqueue_async({"s": "ok"}, client=client)
        finally:
            await client.aclose()

    try:
        if api == "sync":
            for _ in range(3):
                with pytest.raises(psycopg.DataError):
                    client.enqueue_many([bad])
            job = Plain.enqueue({"s": "ok"}, client=client)
        else:
            job = asyncio.run(main())
    finally:
        client.close()
    assert _stored(db) == [
        (job.id, "plain", Plain.name, {"s": "ok"}, {}, [], 0, 20, "available", True)
    ]


@pytest.mark.parametrize("api", ["sync", "async"])
def test_single_enqueues_keep_their_statement_and_cursor_on_the_pool_connection(
    dsn: str, schema: str, db, api
) -> None:
    # One connection in the pool. The Client's own plain enqueues run one statement it
    # prepared once on that connection, straight on libpq; one with options runs on the
    # cursor the connection keeps. A caller's conn= (even one from the Client's pool)
    # touches neither. A DEALLOCATE ALL by a caller is survived (prepared again), a
    # connection with preparing turned off gets none, and one the server dropped is
    # replaced with fresh state.
    client = pgqueue.Client(dsn, schema=schema, max_size=1, connect_timeout=2)

    async def enqueue(n: int, conn=None, **options) -> pgqueue.Job:
        if api == "sync":
            return Plain.enqueue({"n": n}, client=client, conn=conn, **options)
        return await Plain.enqueue_async({"n": n}, client=client, conn=conn, **options)

    @contextlib.asynccontextmanager
    async def checkout():
        if api == "sync":
            with client.pool().connection() as conn:
                yield conn
        else:
            async with (await client.apool()).connection() as conn:
                yield conn

    async def run(conn, query: str) -> list:
        cur = conn.execute(query)
        if api == "async":
            cur = await cur
        if cur.description is None:
            return []
        rows = cur.fetchall()
        return (await rows) if api == "async" else rows

    async def prepared(conn) -> list[str]:
        rows = await run(conn, "SELECT name FROM pg_prepared_statements WHERE name LIKE 'pgqueue%'")
        return sorted(r[0] for r in rows)

    async def main() -> list[pgqueue.Job]:
        try:
            async with checkout() as conn:
                jobs = [await enqueue(1, conn)]
                # the caller's own checkout: a cursor of its own, nothing prepared by name
                assert conn._pgq_cursor is None and conn._pgq_names is None
                assert await prepared(conn) == []
            jobs.append(await enqueue(2))
            jobs.append(await enqueue(3))
            async with checkout() as conn:
                pid = conn.info.backend_pid
                assert list(conn._pgq_names.values()) == [b"pgqueue_1"] and conn._pgq_cursor is None
                assert await prepared(conn) == ["pgqueue_1"]
            jobs.append(await enqueue(4, priority=1))  # options: the kept cursor
            async with checkout() as conn:
                cursor = conn.kept_cursor()
                assert cursor.statusmessage == "INSERT 0 1"
                result = cursor.pgresult
                jobs.append(await enqueue(5, conn))  # the caller's: nothing kept is touched
                assert cursor.pgresult is result and list(conn._pgq_names) == [
                    numbered(client.queries.insert_job_plain)
                ]
                await run(conn, "DEALLOCATE ALL")
            jobs.append(await enqueue(6))  # prepared again, under a new name
            async with checkout() as conn:
                assert await prepared(conn) == ["pgqueue_2"]
                await run(conn, "DEALLOCATE ALL")
                conn.prepare_threshold = None  # as behind PgBouncer: nothing prepared
            jobs.append(await enqueue(7))
            async with checkout() as conn:
                assert await prepared(conn) == []
                conn.prepare_threshold = 5
            async with checkout() as conn:
                await run(conn, "SET TimeZone = 'Asia/Tokyo'")  # a caller's, left behind
            tokyo = await enqueue(9)  # loaded in the session's zone, as a cursor would
            assert str(tokyo.inserted_at.tzinfo) == "Asia/Tokyo"
            db.execute("DELETE FROM pgqueue_jobs WHERE id = %s", (tokyo.id,))
            db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(psycopg.OperationalError):
                await enqueue(0)
            jobs.append(await enqueue(8))
            async with checkout() as conn:
                assert conn.info.backend_pid != pid
                assert conn._pgq_cursor is None and list(conn._pgq_names.values()) == [b"pgqueue_1"]
            return jobs
        finally:
            await client.aclose()

    try:
        jobs = asyncio.run(main())
    finally:
        client.close()
    priority = {4: 1}
    assert _stored(db) == [
        (job.id, "plain", Plain.name, {"n": n}, {}, [], priority.get(n, 0), 20, "available", True)
        for n, job in zip(range(1, 9), jobs, strict=True)
    ]
    # The libpq path's rows load as the cursor's (job 4) do.
    assert {str(j.inserted_at.tzinfo) for j in jobs} == {str(jobs[3].inserted_at.tzinfo)}
    assert {j.state for j in jobs} == {"available"}


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_pool_connection_handed_back_changed_does_not_lose_the_next_enqueues(
    dsn: str, schema: str, db, api
) -> None:
    # A caller borrows the Client's only pool connection and gives it back out of
    # autocommit. The Client's enqueues must still commit: without autocommit their
    # INSERT would open a transaction that the pool rolls back at putconn, after the
    # enqueue had returned a Job with an id.
    client = pgqueue.Client(dsn, schema=schema, max_size=1, connect_timeout=2)

    async def main() -> list[pgqueue.Job]:
        try:
            if api == "sync":
                with client.pool().connection() as conn:
                    conn.autocommit = False
                return [
                    Plain.enqueue({"n": 1}, client=client),
                    Plain.enqueue({"n": 2}, client=client, priority=3),
                ]
            async with (await client.apool()).connection() as conn:
                await conn.set_autocommit(False)
            return [
                await Plain.enqueue_async({"n": 1}, client=client),
                await Plain.enqueue_async({"n": 2}, client=client, priority=3),
            ]
        finally:
            if api == "async":
                await client.aclose()
            client.close()

    jobs = asyncio.run(main())
    ids = [j.id for j in jobs]
    rows = db.execute("SELECT id FROM pgqueue_jobs WHERE id = ANY(%s) ORDER BY id", (ids,))
    assert [r[0] for r in rows] == sorted(ids)


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_failing_plain_enqueue_raises_psycopgs_own_error(dsn: str, schema: str, db, api) -> None:
    # The libpq path raises what a cursor would (the server's error, by class) when the
    # statement cannot be prepared (a schema never migrated), remembers nothing as
    # prepared, and its connection goes on serving.
    client = pgqueue.Client(dsn, schema=schema + "_missing", max_size=1, connect_timeout=2)

    async def main() -> None:
        try:
            for _ in range(2):
                with pytest.raises(psycopg.errors.UndefinedTable):
                    await Plain.enqueue_async({"n": 1}, client=client)
            async with (await client.apool()).connection() as conn:
                assert conn._pgq_serial == 2 and conn._pgq_names is None  # tried, twice
                assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        finally:
            await client.aclose()

    try:
        if api == "async":
            asyncio.run(main())
        else:
            for _ in range(2):
                with pytest.raises(psycopg.errors.UndefinedTable):
                    Plain.enqueue({"n": 1}, client=client)
            with client.pool().connection() as conn:
                assert conn._pgq_serial == 2 and conn._pgq_names is None  # tried, twice
                assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        client.close()


def test_text_that_looks_like_what_jsonb_refuses_is_stored_as_given(
    client: pgqueue.Client, db
) -> None:
    # The refusal of NUL and unpaired surrogates must not catch their look-alikes: an
    # escaped backslash before "u0000", a surrogate pair, the NUL's name in text.
    tricky = {"a": "\\u0000", "b": "\\\\ud800", "c": "\U0001f600 \u00e9", "d": "\\x00"}
    jobs = [
        Plain.enqueue(tricky, client=client),
        Plain.enqueue(tricky, client=client, meta=tricky, tags=["\\u0000"]),
        *client.enqueue_many([Plain.new(tricky) for _ in range(COPY_FROM)])[:1],
    ]
    for job in jobs:
        row = db.execute("SELECT args, meta, tags FROM pgqueue_jobs WHERE id = %s", (job.id,))
        args, meta, tags = row.fetchone()
        assert args == tricky and meta in ({}, tricky) and tags in ([], ["\\u0000"])


@pytest.mark.parametrize(
    "last",
    [
        {"meta": {"k": 1}},
        {"tags": ["t"]},
        {"priority": 1},
        {"max_attempts": 3},
        {"schedule_in": 60},
    ],
    ids=["meta", "tags", "priority", "max_attempts", "scheduled"],
)
def test_one_job_unlike_the_rest_decides_a_batchs_copy(client: pgqueue.Client, db, last) -> None:
    # The whole list decides the COPY's columns, not its first chunk: the odd job is
    # the very last, and it must be stored as asked, the others as plain as they are.
    specs = [Plain.new({"i": i}) for i in range(COPY_CHUNK + 5)]
    specs[-1] = Plain.new({"i": -1}, **last)
    jobs = client.enqueue_many(specs)
    rows = _stored(db)
    assert len(rows) == len(specs) and rows[0][4:8] == ({}, [], 0, 20)
    odd = job_row(db, db.execute("SELECT current_schema()").fetchone()[0], jobs[-1].id)
    expected = {"meta": {}, "tags": [], "priority": 0, "max_attempts": 20}
    expected.update({k: v for k, v in last.items() if k in expected})
    assert {k: odd[k] for k in expected} == expected
    assert odd["state"] == ("scheduled" if "schedule_in" in last else "available")


@pytest.mark.parametrize("size", [10, COPY_FROM], ids=["statement", "copy"])
def test_a_batch_keeps_the_session_encoding_and_elapsed_time(
    client: pgqueue.Client, dsn: str, db, size: int
) -> None:
    # The caller's session may read another client_encoding and time zone. Both paths
    # must store the same characters, and schedule_in is elapsed time even across a DST
    # change (220 days from any date crosses one in Paris).
    later = timedelta(days=220)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET client_encoding TO 'LATIN1'")
        conn.execute("SET TimeZone TO 'Europe/Paris'")
        specs = [
            pgqueue.JobSpec.build("caf\u00e9.w", {"\u00e9": i}, tags=["\u00e9t\u00e9"],
                                  schedule_in=later.total_seconds() if i % 2 else None)
            for i in range(size)
        ]  # fmt: skip
        jobs = client.enqueue_many(specs, conn=conn)
    rows = db.execute(
        "SELECT worker, tags, args, scheduled_at - inserted_at FROM pgqueue_jobs ORDER BY id"
    ).fetchall()
    assert [r[2] for r in rows] == [{"\u00e9": i} for i in range(size)]
    assert {(r[0], tuple(r[1])) for r in rows} == {("caf\u00e9.w", ("\u00e9t\u00e9",))}
    assert [r[3] for r in rows] == [later if i % 2 else timedelta(0) for i in range(size)]
    # (in UTC: Python subtracts two datetimes of one zone as wall-clock times)
    elapsed = [j.scheduled_at.astimezone(UTC) - j.inserted_at.astimezone(UTC) for j in jobs]
    assert elapsed == [r[3] for r in rows]


def test_a_copy_batch_refuses_a_priority_that_is_not_an_integer(client: pgqueue.Client, db) -> None:
    # A spec built around the checks (dataclasses.replace) with priority=True: the
    # statement path's database refuses it; COPY must not write it as 1.
    specs = [Resize.new({"i": i}) for i in range(COPY_FROM)]
    specs[5] = dataclasses.replace(specs[5], priority=True)
    with pytest.raises(ConfigError, match="must be integers"):
        client.enqueue_many(specs)
    assert count(db) == 0
    assert len(client.enqueue_many(specs[:5] + specs[6:])) == COPY_FROM - 1


@pytest.mark.parametrize("size", [10, COPY_FROM + 10], ids=["statement", "copy"])
def test_a_batch_the_database_refuses_inserts_nothing(client: pgqueue.Client, db, size) -> None:
    # Specs are validated when built; one built around the checks fails its CHECK
    # constraint in the database. The whole batch is refused, the ids it reserved are
    # a gap, and the pool's connection is left usable.
    specs = [Resize.new({"i": i}) for i in range(size)]
    specs[size - 3] = dataclasses.replace(specs[size - 3], priority=42)
    with pytest.raises(psycopg.errors.CheckViolation):
        client.enqueue_many(specs)
    assert count(db) == 0
    jobs = client.enqueue_many(specs[:2] + specs[-2:])
    assert count(db) == 4 and all(j.id for j in jobs)


def test_non_json_args_insert_nothing(client: pgqueue.Client, db) -> None:
    with pytest.raises(ConfigError, match="args must be JSON-serialisable"):
        client.enqueue_many([Resize.new({"ok": 1}), Resize.new({"bad": {1, 2}})])
    with pytest.raises(ConfigError, match="args must be JSON-serialisable"):
        Resize.enqueue({"when": datetime.now()}, client=client)
    assert count(db) == 0


@pytest.mark.parametrize("size", [3, COPY_FROM + 5], ids=["statement", "copy"])
def test_a_worker_enqueues_a_list_of_args(client: pgqueue.Client, db, schema, size) -> None:
    # Worker.enqueue_many: the class's defaults, or the same options for every job;
    # the specs are built with the collector paused, which is left as it was found.
    args = [{"n": i} for i in range(size)]
    jobs = Resize.enqueue_many(args, client=client)
    assert [j.args for j in jobs] == args and gc.isenabled()
    assert {(j.worker, j.queue, j.priority, j.max_attempts, j.state) for j in jobs} == {
        (Resize.name, "media", 2, 7, "available")
    }
    rows = db.execute("SELECT id, args FROM pgqueue_jobs ORDER BY id").fetchall()
    assert rows == [(j.id, a) for j, a in zip(jobs, args, strict=True)]
    later = Resize.enqueue_many(
        [{"n": -1}, None], client=client, queue="other", priority=0, tags=["t"], schedule_in=60
    )
    assert [(j.args, j.queue, j.priority, j.tags, j.state) for j in later] == [
        ({"n": -1}, "other", 0, ["t"], "scheduled"),
        ({}, "other", 0, ["t"], "scheduled"),
    ]
    assert count(db) == size + 2


def test_a_worker_list_goes_through_an_overridden_new(client: pgqueue.Client) -> None:
    class Stamped(Resize):
        name = "tests.stamped"

        @classmethod
        def new(cls, args=None, **options):  # type: ignore[no-untyped-def, override]
            return super().new({**(args or {}), "stamp": 1}, **options)

    assert [j.args for j in Stamped.enqueue_many([{"n": 1}], client=client)] == [
        {"n": 1, "stamp": 1}
    ]


def test_a_worker_list_with_one_bad_args_inserts_nothing(client: pgqueue.Client, db) -> None:
    gc.disable()
    try:
        with pytest.raises(ConfigError, match="args must be JSON-serialisable"):
            Resize.enqueue_many(
                [{"n": i} for i in range(COPY_FROM)] + [{"bad": {1}}], client=client
            )
        assert not gc.isenabled()  # a caller's paused collector stays paused
    finally:
        gc.enable()
    with pytest.raises(ConfigError, match="args must be a JSON object"):
        Resize.enqueue_many([{"n": 1}, ["not", "a", "dict"]], client=client)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="priority"):
        Resize.enqueue_many([{"n": 1}], client=client, priority=10)
    assert count(db) == 0 and gc.isenabled()


def _enqueue_many(
    client: pgqueue.Client, api: str, args, cls: type[pgqueue.Worker] | None = None, **options
) -> list[pgqueue.Job]:
    cls = cls or Resize
    if api == "sync":
        return cls.enqueue_many(args, client=client, **options)

    async def main() -> list[pgqueue.Job]:
        try:
            return await cls.enqueue_many_async(args, client=client, **options)
        finally:
            await client.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_long_worker_list_streams_into_one_copy_in_order(client: pgqueue.Client, db, api) -> None:
    # On the client's own connection, from COPY_FROM jobs, the specs are built a chunk
    # at a time while the COPY takes the chunk before: several chunks, any iterable.
    n = 2 * COPY_CHUNK + 7
    jobs = _enqueue_many(client, api, ({"n": i} for i in range(n)), tags=["t"], schedule_in=60)
    assert [j.args["n"] for j in jobs] == list(range(n))
    assert [j.id for j in jobs] == sorted({j.id for j in jobs})
    assert {(j.state, j.queue, j.priority, j.max_attempts, tuple(j.tags)) for j in jobs} == {
        ("scheduled", "media", 2, 7, ("t",))
    }
    rows = db.execute(
        "SELECT id, (args->>'n')::int, state::text, tags, priority, scheduled_at, inserted_at"
        " FROM pgqueue_jobs ORDER BY id"
    ).fetchall()
    assert [(r[0], r[1], r[5]) for r in rows] == [(j.id, j.args["n"], j.scheduled_at) for j in jobs]
    assert all(r[2] == "scheduled" and r[3] == ["t"] and r[4] == 2 for r in rows)
    assert all(r[5] - r[6] >= timedelta(seconds=59) for r in rows)


@pytest.mark.parametrize("api", ["sync", "async"])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({1}, "args must be JSON-serialisable"),
        ("a\x00b", "args cannot be stored: PostgreSQL refuses the NUL character"),
        ("/data/\udcff.txt", "args cannot be stored: PostgreSQL refuses an unpaired surrogate"),
    ],
    ids=["set", "nul", "surrogate"],
)
def test_bad_args_in_a_later_chunk_of_a_streamed_list_inserts_nothing(
    client: pgqueue.Client, db, api, bad, message
) -> None:
    # The COPY has already taken two chunks when the third fails to build: the error is
    # the caller's, nothing is inserted, and the pool's connection works on.
    args = [{"n": i} for i in range(2 * COPY_CHUNK)] + [{"bad": bad}]
    with pytest.raises(ConfigError, match=message):
        _enqueue_many(client, api, args)
    assert count(db) == 0 and gc.isenabled()
    assert len(_enqueue_many(client, api, args[:COPY_FROM])) == COPY_FROM
    assert count(db) == COPY_FROM


def test_a_worker_list_inside_the_callers_transactions(
    client: pgqueue.Client, dsn: str, schema: str, db
) -> None:
    listener = listen(dsn, schema)
    with psycopg.connect(dsn) as conn:
        Resize.enqueue_many([{"n": i} for i in range(COPY_FROM)], client=client, conn=conn)
        assert count(db) == 0 and notes(listener, 0.3) == []
        conn.rollback()
        Resize.enqueue_many([{"n": 1}, {"n": 2}], client=client, conn=conn)
        conn.commit()
    assert count(db) == 2 and notes(listener, 2.0)[:1] == ["media"]

    async def main() -> list[pgqueue.Job]:
        async with await psycopg.AsyncConnection.connect(dsn) as aconn:
            await Resize.enqueue_many_async([{"n": 3}], client=client, conn=aconn)
            await aconn.rollback()
            await Resize.enqueue_many_async([{"n": 4}], client=client, conn=aconn)
            await aconn.commit()
        jobs = await Resize.enqueue_many_async(
            [{"n": i} for i in range(5, 5 + COPY_FROM)], client=client
        )
        await client.aclose()
        return jobs

    jobs = asyncio.run(main())
    assert len(jobs) == COPY_FROM and jobs[0].args == {"n": 5}
    assert sorted(r[0] for r in db.execute("SELECT (args->>'n')::int FROM pgqueue_jobs"))[:3] == [
        1, 2, 4,
    ]  # fmt: skip
    assert count(db) == 3 + COPY_FROM
    listener.close()


def listen(dsn: str, schema: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel(schema))))
    return conn


def notes(conn: psycopg.Connection, wait: float) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=wait)]


def test_transactional_enqueue_sync(client: pgqueue.Client, dsn: str, schema: str, db) -> None:
    listener = listen(dsn, schema)
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        job = Resize.enqueue({"n": 1}, client=client, conn=conn)
        assert count(db) == 0  # not visible outside the caller's transaction
        assert notes(listener, 0.3) == []  # and nobody is woken yet
        conn.rollback()
        assert count(db) == 0
        Resize.enqueue({"n": 2}, client=client, conn=conn)
        conn.commit()
    assert count(db) == 1 and job.id is not None
    assert notes(listener, 2.0)[:1] == ["media"]
    listener.close()


def test_transactional_enqueue_async(client: pgqueue.Client, dsn: str, schema: str, db) -> None:
    listener = listen(dsn, schema)

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as aconn:
            await Resize.enqueue_async({"n": 1}, client=client, conn=aconn)
            assert count(db) == 0
            await aconn.rollback()
            await Resize.enqueue_async({"n": 2}, client=client, conn=aconn)
            await aconn.commit()
        # Without conn: the client's async pool, autocommitted.
        job = await client.enqueue_async(Resize, {"n": 3})
        assert job.id
        await client.aclose()

    asyncio.run(main())
    assert sorted(r[0] for r in db.execute("SELECT args->>'n' FROM pgqueue_jobs")) == ["2", "3"]
    assert "media" in notes(listener, 2.0)
    listener.close()


@pytest.mark.parametrize("size", [3, COPY_FROM], ids=["statement", "copy"])
def test_transactional_batch(client: pgqueue.Client, dsn: str, schema: str, db, size) -> None:
    # Both batch paths insert inside the caller's transaction and wake workers at commit.
    listener = listen(dsn, schema)
    with psycopg.connect(dsn) as conn:
        client.enqueue_many([Resize.new({"n": i}) for i in range(size)], conn=conn)
        assert count(db) == 0 and notes(listener, 0.3) == []
        conn.rollback()
        assert count(db) == 0
        jobs = client.enqueue_many([Resize.new({"n": i}) for i in range(size)], conn=conn)
        conn.commit()
    assert count(db) == size and {j.state for j in jobs} == {"available"}
    assert notes(listener, 2.0)[:1] == ["media"]
    listener.close()


def test_every_insert_path_wakes_exactly_the_queues_it_made_available(
    client: pgqueue.Client, dsn: str, schema: str, db
) -> None:
    # Each insert statement notifies for itself (migration 0004 dropped the trigger):
    # a due job wakes its queue, a scheduled one does not, a unique job that already
    # exists inserts nothing and wakes nobody.
    listener = listen(dsn, schema)
    past = datetime.now(UTC) - timedelta(minutes=5)
    Resize.enqueue({"n": 1}, client=client, queue="due-now")  # insert_job_now
    Plain.enqueue({"n": 1}, client=client, queue="plain-now")  # insert_job_plain
    Resize.enqueue({"n": 2}, client=client, queue="due-past", scheduled_at=past)  # insert_job
    Resize.enqueue({"n": 3}, client=client, queue="later", schedule_in=3600)
    Once.enqueue({"id": 1}, client=client, queue="unique")  # insert_jobs
    assert sorted(notes(listener, 1.0)) == ["due-now", "due-past", "plain-now", "unique"]
    assert Once.enqueue({"id": 1}, client=client, queue="unique").conflict
    assert notes(listener, 0.5) == []
    # Batches: the statement path and COPY, each with a queue of scheduled jobs only.
    for size in (10, COPY_FROM):
        specs = [Resize.new({"i": i}, queue=f"batch-{size}") for i in range(size - 1)]
        specs.append(Resize.new({"i": -1}, queue=f"later-{size}", schedule_in=3600))
        client.enqueue_many(specs)
        assert notes(listener, 1.0) == [f"batch-{size}"]
    listener.close()


def test_twenty_threads_racing_one_unique_job_make_one_row(client: pgqueue.Client, db) -> None:
    barrier = threading.Barrier(20)
    results: list[pgqueue.Job] = []
    lock = threading.Lock()

    def insert() -> None:
        barrier.wait()
        job = Once.enqueue({"id": 42, "noise": threading.get_ident()}, client=client)
        with lock:
            results.append(job)

    threads = [threading.Thread(target=insert) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count(db) == 1
    assert len({j.id for j in results}) == 1
    assert sum(not j.conflict for j in results) == 1 and sum(j.conflict for j in results) == 19


def test_unique_in_enqueue_many_against_existing_rows(client: pgqueue.Client, db) -> None:
    first = Once.enqueue({"id": 1}, client=client)
    jobs = client.enqueue_many(
        [Once.new({"id": 1}), Once.new({"id": 2}), Resize.new({}), Once.new({"id": 2})]
    )
    assert [j.conflict for j in jobs] == [True, False, False, True]
    assert jobs[0].id == first.id and jobs[3].id == jobs[1].id
    assert count(db) == 3


def test_unique_states_release_the_key(client: pgqueue.Client, db) -> None:
    job = Once.enqueue({"id": 9}, client=client)
    db.execute("UPDATE pgqueue_jobs SET state = 'discarded' WHERE id = %s", [job.id])
    again = Once.enqueue({"id": 9}, client=client)
    assert not again.conflict and again.id != job.id


def test_unique_period_is_a_sliding_window(client: pgqueue.Client, db) -> None:
    # Ten seconds shifted by nine, then two more: a bucketed window would disagree 90 % of
    # the time, as with one second and 900 ms, and the 1 s left for b's enqueue is enough
    # on a slow machine.
    period = pgqueue.Unique(period=10.0)
    a = Resize.enqueue({"w": 1}, client=client, unique=period)
    # Less than a period later: a duplicate, wherever the clock's second boundaries fall.
    db.execute(
        "UPDATE pgqueue_jobs SET unique_window = int8range(lower(unique_window) - 9000, upper(unique_window) - 9000) WHERE id = %s",
        [a.id],
    )
    b = Resize.enqueue({"w": 1}, client=client, unique=period)
    assert b.conflict and b.id == a.id
    # More than a period later: a new job.
    db.execute(
        "UPDATE pgqueue_jobs SET unique_window = int8range(lower(unique_window) - 2000, upper(unique_window) - 2000) WHERE id = %s",
        [a.id],
    )
    c = Resize.enqueue({"w": 1}, client=client, unique=period)
    assert not c.conflict and c.id != a.id
    # Different args never conflict.
    assert not Resize.enqueue({"w": 2}, client=client, unique=period).conflict


def test_retry_never_fails_on_uniqueness(client: pgqueue.Client, db, schema) -> None:
    from pgqueue import _admin

    old = Once.enqueue({"id": 5}, client=client)
    db.execute("UPDATE pgqueue_jobs SET state = 'discarded' WHERE id = %s", [old.id])
    new = Once.enqueue({"id": 5}, client=client)
    assert not new.conflict
    # Retrying the old one would clash with the live new one: it comes back without its window.
    assert _admin.retry_jobs(db, schema, [old.id]) == [old.id]
    row = db.execute(
        "SELECT state::text, unique_window FROM pgqueue_jobs WHERE id = %s", [old.id]
    ).fetchone()
    assert row == ("available", None)
    assert Once.enqueue({"id": 5}, client=client).id == new.id


def test_unreachable_database_is_one_clear_error() -> None:
    client = pgqueue.Client("postgresql://u:hunter2hunter2@127.0.0.1:1/db", connect_timeout=2)
    with pytest.raises(pgqueue.DatabaseUnavailable) as info:
        Resize.enqueue({}, client=client)
    message = str(info.value)
    assert message.startswith("cannot connect to PostgreSQL at u@127.0.0.1:1/db")
    assert "hunter2hunter2" not in message and "\n" not in message
